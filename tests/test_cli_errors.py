"""Every user error through the real command line (a subprocess each): one line on
stderr naming the culprit and the fix, no traceback, exit status 2 (1 for a diverged run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from test_cli import write_market

from drsl.fsutil import lock_folder

TINY = ["-P", "3", "-K", "2", "--epochs", "1", "--base-width", "2", "--height", "32",
        "--width", "16", "--device", "cpu", "--threads", "1", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Build every broken input, run all the commands at once, return their results."""
    root = tmp_path_factory.mktemp("cli_errors")
    good = write_market(root / "good")
    jpgs = sorted((good / "bounding_box_train").glob("*.jpg"))
    trunc = root / "truncated"
    shutil.copytree(good, trunc)
    t = trunc / "bounding_box_train" / jpgs[3].name
    t.write_bytes(t.read_bytes()[:200])
    empty = root / "empty"
    shutil.copytree(good, empty)
    (empty / "bounding_box_train" / jpgs[5].name).write_bytes(b"")
    (empty / "bounding_box_train" / jpgs[6].name).write_bytes(b"")
    (root / "a_file").write_text("not a folder")
    damaged = root / "damaged"
    damaged.mkdir()
    (damaged / "last.pt").write_bytes(b"PK\x03\x04 half a zip")
    (root / "ckdir").mkdir()
    (root / "bad.toml").write_text("lr = 0.002\nbogus_key = 1\n")
    locked = root / "locked"
    data = ["--data", str(good)]
    commands = {
        "truncated jpeg": (["train", "--data", str(trunc), *TINY, "--out", str(root / "r1")],
                           2, [str(t), "unreadable"]),
        "zero-byte jpeg": (["train", "--data", str(empty), *TINY, "--out", str(root / "r2")],
                           2, [jpgs[5].name, "1 other"]),
        "--out is a file": (["train", *data, *TINY, "--out", str(root / "a_file")],
                            2, [str(root / "a_file"), "folder"]),
        "damaged last.pt": (["train", *data, *TINY, "--out", str(damaged)],
                            2, [str(damaged / "last.pt"), "--no-resume"]),
        "checkpoint is a directory": (["eval", str(root / "ckdir"), *data],
                                      2, [str(root / "ckdir"), "is a directory"]),
        "checkpoint damaged": (["eval", str(damaged / "last.pt"), *data],
                               2, ["not a readable checkpoint"]),
        "data is a file": (["train", "--data", str(root / "a_file"), *TINY],
                           2, [str(root / "a_file"), "is a file"]),
        "folder in use": (["train", *data, *TINY, "--out", str(locked)],
                          2, [str(locked), f"process {os.getpid()}"]),
        "config unknown key": (["train", "--config", str(root / "bad.toml"), *TINY],
                               2, ["bogus_key", "valid"]),
        "config missing": (["train", "--config", str(root / "nope.toml")],
                           2, ["config file not found"]),
        "diverged": (["train", *data, *TINY, "--lr", "1e6", "--epochs", "30",
                      "--warmup-steps", "0", "--eval-every", "0", "--out", str(root / "div")],
                     1, ["at step", "lower the learning rate"]),
    }  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with lock_folder(locked, what="run folder"):
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-m", "drsl", *argv],
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            for name, (argv, _, _) in commands.items()
        }
        results = {}
        for name, p in procs.items():
            out, err = p.communicate(timeout=600)
            results[name] = (p.returncode, out, err)
    return {name: (results[name], code, words) for name, (_, code, words) in commands.items()}


CASES = ["truncated jpeg", "zero-byte jpeg", "--out is a file", "damaged last.pt",
         "checkpoint is a directory", "checkpoint damaged", "data is a file", "folder in use",
         "config unknown key", "config missing", "diverged"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_user_error_is_one_line(cases, name):
    (code, out, err), want_code, words = cases[name]
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith("drsl: error: ")
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert code == want_code, (code, err)
    assert "trained" not in out
