"""The explorer in a real browser: JupyterLab and Voila driven through Debian's chromium.

Playwright for Python (from PyPI) drives the system chromium (``/usr/bin/chromium``, installed
by ``tools/ensure_chromium.sh``; never ``playwright install``). Where no chromium can be had,
every test here skips with the reason. Run them alone with ``pytest -m browser``.

Screenshots (before/after a slider move, and the Voila app) are written to
``test-artifacts/browser/`` at the repository root (git-ignored); the servers' logs go there too.
Each server runs in its own process group with private Jupyter config/runtime folders; teardown
shuts it down, kills its group, and kills any kernel it started that is still alive (kernels run
in their own sessions, found by the private runtime folder in their command line).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from chromium import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
NOTEBOOK = NOTEBOOKS / "07_explore.ipynb"
ARTIFACTS = REPO / "test-artifacts" / "browser"
TIMEOUT_MS = 90_000


def _skip_reason() -> str | None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return (
            f"no chromium at {CHROMIUM}: run tools/ensure_chromium.sh (installs Debian's chromium "
            "with apt-get as root or with sudo) or set DRSL_CHROMIUM"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as err:  # pragma: no cover - it is in requirements.lock
        return f"playwright for Python is not installed ({err})"
    if not NOTEBOOK.is_file():
        return f"{NOTEBOOK} is missing (jupytext --to ipynb notebooks/07_explore.py)"
    return None


@pytest.fixture(scope="module")
def browser():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - localhost only
        return r.status, r.read()


def _private_env(tmp: Path) -> dict[str, str]:
    """Jupyter folders of our own: no user settings, a runtime folder that names our kernels."""
    settings = tmp / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # no "get notified about Jupyter news?" toast, no update check
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # never write the executed notebook (outputs) back into the repository
    docmanager = tmp / "lab-settings" / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # let the kernel use its inline backend, as a reader's would
    env.update(
        DRSL_FAST="1",
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
        IPYTHONDIR=str(tmp / "ipython"),
        PYTHONUNBUFFERED="1",
    )
    return env


def _pids_naming(marker: str) -> list[int]:
    """Processes whose command line contains ``marker`` (our private runtime folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="ignore"
            ):
                found.append(int(entry.name))
    return found


def _url_ok(url: str):
    def ready() -> bool:
        with contextlib.suppress(OSError, urllib.error.URLError):
            return _get(url)[0] == 200
        return False

    return ready


def _port_open(port: int):
    """Ready once the port accepts connections (Voila runs the notebook for every page
    request, so polling its pages would start a kernel each time)."""

    def ready() -> bool:
        with socket.socket() as s:
            s.settimeout(1.0)
            return s.connect_ex(("127.0.0.1", port)) == 0

    return ready


def _kernel_dirs(env: dict[str, str], log: Path) -> list[str]:
    """Folders naming our kernels in their command line: our runtime dir, and the one Voila
    picks for itself (it logs it)."""
    dirs = [env["JUPYTER_RUNTIME_DIR"]]
    with contextlib.suppress(OSError):
        m = re.search(r"Storing connection files in (\S+?)\.?\s*$", log.read_text(), re.M)
        if m:
            dirs.append(m.group(1))
    return dirs


@contextlib.contextmanager
def _server(cmd: list[str], ready, env: dict[str, str], log: Path, shutdown_url=None):
    """Start ``cmd`` in its own process group, wait until ``ready()``, and always tear it
    down: polite shutdown, then the group, then any kernel left (found by its folder)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}; see {log}")
                if ready():
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{cmd[0]} was not ready within 90 s; see {log}")
                time.sleep(0.3)
            yield proc
        finally:
            if shutdown_url and proc.poll() is None:
                with contextlib.suppress(OSError, urllib.error.URLError):
                    req = urllib.request.Request(shutdown_url, method="POST", data=b"")
                    urllib.request.urlopen(req, timeout=5)  # noqa: S310
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                if proc.poll() is not None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=wait)
            with contextlib.suppress(ProcessLookupError):  # the group, should a child linger
                os.killpg(proc.pid, signal.SIGKILL)
            for folder in _kernel_dirs(env, log):  # kernels live in sessions of their own
                for pid in _pids_naming(folder):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


def _wait_until(predicate, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _wait_image_settled(page, selector: str, *, different_from: str | None, timeout: float = 60):
    """Wait until the image's src differs from ``different_from`` and then stays put ~1 s."""
    img = page.locator(selector)
    if different_from is not None:
        _wait_until(lambda: img.get_attribute("src") != different_from, timeout, "a new image")
    last, since = img.get_attribute("src"), time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() - since < 1.0:
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector} kept changing for {timeout} s")
        time.sleep(0.2)
        src = img.get_attribute("src")
        if src != last:
            last, since = src, time.monotonic()
    return last


def _assert_widgets_rendered(page):
    page.wait_for_selector("img.drsl-batch-image", state="visible", timeout=TIMEOUT_MS)
    # a widget whose model never arrived shows "Loading widget..." in its place
    _wait_until(lambda: page.get_by_text("Loading widget").count() == 0, 30, "no 'Loading widget'")
    assert page.get_by_text("Loading widget").count() == 0
    assert page.locator(".drsl-batch-P .noUi-handle").count() == 1
    width = page.locator("img.drsl-batch-image").evaluate("img => img.naturalWidth")
    assert width > 300, f"the batch image did not load (naturalWidth {width})"
    assert [t.strip() for t in page.locator(".drsl-status").all_inner_texts()] == ["", ""]


def _move_P_slider(page) -> str:
    """Press ArrowRight on the focused P slider; return the new readout."""
    readout = page.locator(".drsl-batch-P .widget-readout")
    before = readout.inner_text().strip()
    handle = page.locator(".drsl-batch-P .noUi-handle")
    handle.scroll_into_view_if_needed()
    handle.focus()
    page.keyboard.press("ArrowRight")
    _wait_until(lambda: readout.inner_text().strip() != before, 10, "the P readout to change")
    return readout.inner_text().strip()


def _kernel_idle(base: str, token: str) -> bool:
    try:  # a kernel still starting can make the listing fail (500): not idle yet
        _, body = _get(f"{base}/api/kernels?token={token}")
    except (OSError, urllib.error.URLError):
        return False
    kernels = json.loads(body)
    return bool(kernels) and all(k["execution_state"] == "idle" for k in kernels)


def test_jupyterlab_runs_the_explorer_and_a_slider_updates_the_plot(browser, tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={NOTEBOOKS}", "--allow-root",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        f"--FileCheckpoints.checkpoint_dir={tmp_path / 'checkpoints'}",
    ]  # fmt: skip
    env = _private_env(tmp_path)
    log = ARTIFACTS / "jupyterlab.log"
    ready = _url_ok(f"{base}/api/status?token={token}")
    with _server(cmd, ready, env, log, f"{base}/api/shutdown?token={token}"):
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}")
        page.wait_for_selector(".jp-NotebookPanel", timeout=TIMEOUT_MS)
        # the kernel must be connected and idle before "Run All", or the command runs nothing
        _wait_until(lambda: _kernel_idle(base, token), 90, "an idle kernel")
        page.wait_for_selector(
            ".jp-NotebookPanel .jp-Notebook-ExecutionIndicator[data-status='idle']",
            timeout=TIMEOUT_MS,
        )
        no = page.get_by_role("button", name="No", exact=True)
        if no.count():  # the news toast, should the setting not have silenced it
            no.first.click()
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        _assert_widgets_rendered(page)
        # all cells done: no "[*]" prompt left and the kernel idle
        _wait_until(
            lambda: (
                page.locator(".jp-InputPrompt", has_text="*").count() == 0
                and _kernel_idle(base, token)
            ),
            120,
            "all cells to finish",
        )
        errors = page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
        )
        tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
        assert tracebacks == []
        image = page.locator("img.drsl-batch-image")
        src0 = _wait_image_settled(page, "img.drsl-batch-image", different_from=None)
        image.scroll_into_view_if_needed()
        pixels0 = image.screenshot()
        page.screenshot(path=ARTIFACTS / "lab_before.png")

        new_p = _move_P_slider(page)
        assert new_p == "9"
        _wait_until(lambda: _kernel_idle(base, token), 60, "the kernel to go idle")
        _wait_image_settled(page, "img.drsl-batch-image", different_from=src0)
        _wait_until(lambda: _kernel_idle(base, token), 60, "the kernel to go idle")
        pixels1 = image.screenshot()
        page.screenshot(path=ARTIFACTS / "lab_after.png")
        assert pixels1 != pixels0, "the plot did not change after moving the P slider"
        assert "P=9, K=4" in page.locator(".drsl-table").inner_text()
        assert page.get_by_text("Loading widget").count() == 0
        page.close()
    nb = json.loads(NOTEBOOK.read_text())
    assert all(not c.get("outputs") for c in nb["cells"]), "the test saved outputs into the repo"


def test_voila_serves_the_explorer_as_an_app(browser, tmp_path):
    from drsl.widgets.serve import voila_command

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = voila_command(NOTEBOOK.relative_to(REPO), port, open_browser=False)  # make explore's
    env = _private_env(tmp_path)
    log = ARTIFACTS / "voila.log"
    with _server(cmd, _port_open(port), env, log):
        _wait_until(lambda: "?token=" in log.read_text(), 30, "Voila to print its URL")
        token = re.search(r"\?token=(\w+)", log.read_text()).group(1)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.set_default_timeout(TIMEOUT_MS)
        # Voila streams the page as cells run; only the URL with the token reaches it
        page.goto(f"{base}/?token={token}", wait_until="commit")
        _assert_widgets_rendered(page)
        page.wait_for_selector("img.drsl-toy-image", state="attached", timeout=TIMEOUT_MS)
        # code hidden: an app, not a notebook
        assert page.get_by_text("explorer = make_explorer(").count() == 0
        image = page.locator("img.drsl-batch-image")
        src0 = _wait_image_settled(page, "img.drsl-batch-image", different_from=None)
        image.scroll_into_view_if_needed()
        pixels0 = image.screenshot()
        page.screenshot(path=ARTIFACTS / "voila_before.png")
        assert _move_P_slider(page) == "9"
        _wait_image_settled(page, "img.drsl-batch-image", different_from=src0)
        assert image.screenshot() != pixels0
        page.screenshot(path=ARTIFACTS / "voila_after.png")
        page.close()
