"""drsl.fsutil: folder locks across processes, atomic writes, stale temporaries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from drsl.fsutil import (
    FolderLockedError,
    atomic_write,
    lock_folder,
    lock_path,
    pid_alive,
    remove_stale_temps,
    temp_sibling,
)

# a child that takes the lock, says so on stdout, then waits for its stdin to close
_HOLDER = textwrap.dedent(
    """
    import sys
    from drsl.fsutil import lock_folder
    with lock_folder(sys.argv[1], what="run folder"):
        print("locked", flush=True)
        sys.stdin.read()
    """
)

# a child that tries the lock once and prints the outcome
_TRY = textwrap.dedent(
    """
    import sys
    from drsl.fsutil import FolderLockedError, lock_folder
    try:
        with lock_folder(sys.argv[1], what="run folder"):
            print("acquired")
    except FolderLockedError as err:
        print("locked:", err)
    """
)


def _holder(path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _try(path) -> str:
    out = subprocess.run(
        [sys.executable, "-c", _TRY, str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_second_process_fails_at_once_with_folder_and_pid(tmp_path):
    run = tmp_path / "runs" / "x"
    proc = _holder(run)
    try:
        msg = _try(run)
        assert msg.startswith("locked: run folder ")
        assert str(run) in msg and f"process {proc.pid}" in msg
        assert "\n" not in msg and "choose another folder" in msg
        # the same in this process, with the exception's attributes
        with pytest.raises(FolderLockedError) as info:
            with lock_folder(run, what="run folder"):
                pass
        assert info.value.pid == proc.pid and info.value.path == run
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert _try(run) == "acquired"  # released on a clean exit
    assert not lock_path(run).exists()


def test_lock_released_after_sigkill(tmp_path):
    run = tmp_path / "x"
    proc = _holder(run)
    assert _try(run).startswith("locked:")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert lock_path(run).exists()  # the file stays behind, the kernel dropped the lock
    assert _try(run) == "acquired"
    with lock_folder(run):
        assert lock_path(run).read_text().strip() == str(os.getpid())


def test_lock_released_when_the_block_raises(tmp_path):
    with pytest.raises(KeyError):
        with lock_folder(tmp_path / "d"):
            raise KeyError("x")
    with lock_folder(tmp_path / "d") as p:
        assert p == tmp_path / "d"
    assert not (tmp_path / "d").exists()  # the lock never creates or writes the folder


def test_lock_is_not_reentrant_and_does_not_touch_the_folder(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    (d / "a.txt").write_text("mine")
    with lock_folder(d, what="dataset folder"):
        with pytest.raises(FolderLockedError, match=r"^dataset folder .* is in use by process"):
            with lock_folder(d, what="dataset folder"):
                pass
    assert [p.name for p in d.iterdir()] == ["a.txt"]


def test_atomic_write_replaces_and_cleans_up(tmp_path):
    p = tmp_path / "m.json"
    p.write_text("old")
    atomic_write(p, lambda tmp: tmp.write_text("new"))
    assert p.read_text() == "new"

    def fail(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(p, fail)
    assert p.read_text() == "new"
    assert sorted(q.name for q in tmp_path.iterdir()) == ["m.json"]


def test_atomic_write_folder_and_nothing_written(tmp_path):
    def make(tmp):
        tmp.mkdir()
        (tmp / "f").write_text("x")

    out = atomic_write(tmp_path / "set", make)
    assert (out / "f").read_text() == "x"
    with pytest.raises(FileNotFoundError, match="wrote nothing"):
        atomic_write(tmp_path / "empty", lambda tmp: None)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["set"]


def test_remove_stale_temps_keeps_live_writers(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    assert not pid_alive(dead_pid)
    (tmp_path / f"synthetic-fast.tmp-{dead_pid}").mkdir()
    (tmp_path / f"synthetic-fast.tmp-{dead_pid}" / "x.jpg").write_bytes(b"x")
    (tmp_path / f"synthetic.old-{dead_pid}").mkdir()
    (tmp_path / f"last.pt.tmp-{dead_pid}").write_bytes(b"x")
    mine = temp_sibling(tmp_path / "synthetic-fast")
    mine.mkdir()
    (tmp_path / "synthetic-fast").mkdir()  # the real set is never a temp
    removed = remove_stale_temps(tmp_path, "synthetic*.tmp-*")
    assert [p.name for p in removed] == [f"synthetic-fast.tmp-{dead_pid}"]
    removed = remove_stale_temps(tmp_path, "*")
    assert sorted(p.name for p in removed) == sorted(
        [f"synthetic.old-{dead_pid}", f"last.pt.tmp-{dead_pid}"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["synthetic-fast", mine.name])
    assert remove_stale_temps(tmp_path / "absent") == []


def test_wait_gives_up_with_the_same_message_or_gets_the_lock(tmp_path):
    run = tmp_path / "x"
    proc = _holder(run)
    try:
        with pytest.raises(FolderLockedError, match=f"in use by process {proc.pid}"):
            with lock_folder(run, wait=0.3):
                pass
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    with lock_folder(run, wait=None):  # free now: no waiting
        pass
