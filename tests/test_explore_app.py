"""The explorer app (``make explore``) serves only its user: it listens on 127.0.0.1 and asks for
the token that Voila drew at start; a connection without it, to the page or to a kernel's
websocket, is refused."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drsl.widgets.serve import HOST, explorer_notebook, voila_command

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _request(port: int, path: str, headers: dict | None = None) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse().status
    finally:
        conn.close()


def _websocket(port: int, path: str) -> int:
    """The status of a websocket upgrade request (101: accepted)."""
    return _request(port, path, {"Connection": "Upgrade", "Upgrade": "websocket",
                                 "Sec-WebSocket-Version": "13",
                                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})  # fmt: skip


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """``python -m drsl.widgets.serve`` as ``make explore`` runs it; yields (port, token)."""
    tmp = tmp_path_factory.mktemp("voila")
    port = _free_port()
    env = {**os.environ, "DRSL_FAST": "1"}
    for name in ("runtime", "data", "config"):  # Jupyter folders of its own
        env[f"JUPYTER_{name.upper()}_DIR"] = str(tmp / name)
    log = tmp / "voila.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "drsl.widgets.serve", f"--port={port}", "--no-browser"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (m := re.search(rf"http://{HOST}:{port}/\?token=(\w+)", log.read_text())):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        yield port, m.group(1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_the_command_binds_localhost_and_asks_for_a_token():
    cmd = voila_command(explorer_notebook(), 8866)
    assert f"--Voila.ip={HOST}" in cmd and "--token" in cmd
    assert not any("token=" in part for part in cmd)  # drawn by Voila: not visible in ps
    assert explorer_notebook().name.endswith("_explore.ipynb")


@pytest.mark.slow
def test_a_connection_without_the_token_is_refused(app):
    port, token = app
    assert len(token) >= 32
    assert _request(port, "/") in (302, 403)  # to the login page, never the app
    assert _request(port, "/?token=wrong") in (302, 403)
    assert _request(port, "/api/kernels") in (302, 403)
    # the kernel websocket: refused before any message is read without the token; with it the
    # request gets as far as looking the (made-up) kernel up
    kernel = "/api/kernels/00000000-0000-0000-0000-000000000000/channels"
    assert _websocket(port, kernel) == 403
    assert _websocket(port, f"{kernel}?token={token}") == 404


@pytest.mark.slow
def test_the_app_is_not_reachable_from_other_interfaces(app):
    port, _ = app
    try:
        others = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    except OSError:
        others = set()
    others -= {HOST, "127.0.1.1"}
    if not others:
        pytest.skip("this machine has no non-loopback IPv4 address")
    for addr in others:
        with socket.socket() as s, pytest.raises(OSError):
            s.settimeout(5)
            s.connect((addr, port))
