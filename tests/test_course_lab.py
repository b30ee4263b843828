"""``make course`` (tools/lab.py): JupyterLab at the repository root with the first notebook open,
``--allow-root`` when run as root, and the loss spec reachable from Lab's file browser."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from lab import lab_command  # noqa: E402


def test_lab_opens_the_repository_root_with_the_first_notebook():
    cmd = lab_command(["--no-browser"], uid=1000)
    assert Path(cmd[0]).name == "jupyter" and cmd[1] == "lab"
    assert f"--ServerApp.root_dir={REPO}" in cmd
    assert "--allow-root" not in cmd
    first = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))[0]
    assert cmd[-1] == first.relative_to(REPO).as_posix() and (REPO / cmd[-1]).is_file()
    assert cmd[-2] == "--no-browser"  # make course's LAB_ARGS pass through


def test_lab_allows_root_only_as_root_and_once():
    assert "--allow-root" in lab_command([], uid=0)
    assert lab_command(["--allow-root"], uid=0).count("--allow-root") == 1


def test_dry_run_prints_the_command():
    out = subprocess.run(
        [sys.executable, "tools/lab.py", "--dry-run", "--no-browser"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith(str(Path(sys.executable).with_name("jupyter"))) and "lab" in out
    assert "notebooks/00_" in out and "--dry-run" not in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - localhost only
        return json.loads(response.read())


@pytest.mark.slow
def test_lab_starts_as_this_user_and_serves_the_spec():
    """The real command (as root in containers): the server starts and Lab's contents API, which
    its file browser reads, serves docs/drsl-loss-spec.md and the first notebook."""
    port, token = _free_port(), "drsl-test-token"
    args = ["--no-browser", "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}"]
    proc = subprocess.Popen(
        [sys.executable, "tools/lab.py", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/api"
    try:
        for _ in range(120):
            if proc.poll() is not None:
                pytest.fail(proc.stdout.read().decode()[-2000:])
            try:
                _get(f"{base}/status?token={token}")
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 60 s")
        spec = _get(f"{base}/contents/docs/drsl-loss-spec.md?token={token}&content=0")
        # "notebook" where jupytext (in the lock) serves markdown as a notebook
        assert spec["path"] == "docs/drsl-loss-spec.md" and spec["type"] in {"file", "notebook"}
        root = _get(f"{base}/contents?token={token}")
        assert {"docs", "notebooks"} <= {item["name"] for item in root["content"]}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_binder_installs_the_package_makes_the_fast_data_and_runs_fast():
    """Binder (repo2docker) runs postBuild once and every session through start."""
    post, start = REPO / "postBuild", REPO / "start"
    assert os.access(post, os.X_OK) and os.access(start, os.X_OK)
    text = post.read_text()
    assert "pip install --no-deps --no-build-isolation -e ." in text
    assert "ensure_dataset(fast=True)" in text and "set -euo pipefail" in text
    out = subprocess.run(
        [str(start), "sh", "-c", "echo $DRSL_FAST"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "DRSL_FAST"},
    ).stdout
    assert out.strip() == "1"
