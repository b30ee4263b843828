"""Safe file-system steps shared by the package: folder locks, atomic writes, stale temps.

- :func:`lock_folder`: an advisory lock (``fcntl.flock``) on a folder that a process is about
  to write (a run folder, a dataset being generated). A second process fails at once with
  :class:`FolderLockedError`, a one-line message naming the folder and the holding process.
  The kernel drops the lock when its holder exits, even after ``SIGKILL``.
- :func:`atomic_write`: write a file (or a folder) through a temporary sibling
  ``<name>.tmp-<pid>`` and ``os.replace`` it into place, so a reader never sees half of it.
- :func:`remove_stale_temps`: delete ``*.tmp-<pid>`` siblings whose process is gone.
- :func:`append_csv_rows`: append rows to a results CSV that several processes share.
- :class:`WriteError`: a write that failed (a full disk, a quota, a read-only or failing disk),
  in one line naming the file and what was kept.

Temporary names always end in ``.tmp-<pid>`` (or ``.old-<pid>``), so :func:`remove_stale_temps`
can tell a temp of a live writer from the leftovers of a killed one.

POSIX only (``fcntl``), like the rest of the package's multiprocessing.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "FolderLockedError",
    "WriteError",
    "as_write_error",
    "lock_folder",
    "lock_path",
    "atomic_write",
    "temp_sibling",
    "remove_stale_temps",
    "pid_alive",
    "append_csv_rows",
]

_PID_SUFFIX = re.compile(r"\.(?:tmp|old)-(\d+)$")


class FolderLockedError(RuntimeError):
    """Another process holds the lock on a folder (one-line message: folder and pid)."""

    def __init__(self, what: str, path: Path, pid: int | None):
        self.path, self.pid = Path(path), pid
        holder = f"process {pid}" if pid else "another process"
        super().__init__(
            f"{what} {path} is in use by {holder}; wait for it to finish or choose another folder"
        )


class WriteError(OSError):
    """A file could not be written (disk full, quota, read-only or failing disk): one line
    naming the file, the reason and what was kept.

    Args:
        path (Path): the file. reason (str): why, in words. kept (str): what is on disk now.
        code (int, optional): the system's error number (``errno``).
    """

    def __init__(self, path: Path, reason: str, kept: str, code: int | None = None):
        super().__init__(
            f"could not write {path} ({reason}); {kept}; free some space and run the same "
            "command again"
        )
        self.path, self.reason, self.kept, self.errno = Path(path), reason, kept, code


#: system errors of a write that mean "the disk cannot take it", not a bug of the caller
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


def as_write_error(path: Path, err: BaseException, kept: str) -> WriteError | None:
    """The :class:`WriteError` for ``err`` raised while writing ``path`` (None: not a disk error).

    Args:
        path (Path): what was being written. err (BaseException): what the write raised.
        kept (str): what is on disk now, in words (e.g. ``"the previous version is kept"``).

    Returns:
        WriteError or None: None when ``err`` is not a disk error (re-raise it as it is).

    torch's zip writer reports a short write as ``RuntimeError: [enforce fail at
    inline_container.cc...] unexpected pos``; it is a write failure too.
    """
    if isinstance(err, WriteError):
        return err
    if isinstance(err, OSError) and err.errno in _DISK_ERRORS:
        reason, code = os.strerror(err.errno).lower(), err.errno
    elif isinstance(err, RuntimeError) and "inline_container" in str(err):
        reason, code = "the file could not be finished: is the disk full?", None
    else:
        return None
    return WriteError(path, reason, kept, code)


def lock_path(path: str | Path) -> Path:
    """The lock file of a folder: a hidden sibling ``.<name>.lock`` beside it.

    Beside rather than inside, so the folder itself may be absent (a dataset drawn into a
    temporary sibling and renamed at the end) and is never written to by the lock.

    Args:
        path (str or Path): the folder.

    Returns:
        pathlib.Path: the lock file's path.

    Example:
        >>> lock_path("runs/x").as_posix()
        'runs/.x.lock'
    """
    path = Path(path)
    return path.parent / f".{path.name}.lock"


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _acquire(lock: Path, what: str, folder: Path, wait: float | None) -> int:
    """Open and flock ``lock``; retry when the file was unlinked by its releasing holder.

    Polls every 0.1 s while waiting (a blocking ``flock`` could not honour a time limit).
    """
    deadline = None if wait is None else time.monotonic() + wait
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            if deadline is not None and time.monotonic() >= deadline:
                raise FolderLockedError(what, folder, pid) from None
            time.sleep(0.1)
            continue
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # we locked a file its last holder had just removed: try the new one


@contextmanager
def lock_folder(
    path: str | Path, *, what: str = "folder", wait: float | None = 0.0
) -> Iterator[Path]:
    """Hold an advisory lock on ``path`` for the duration of the block.

    The lock file :func:`lock_path` records the holder's pid (for the error message of the
    next process) and is removed on release. It is advisory: only code that asks for the lock
    is kept out. Not re-entrant: a second ``lock_folder`` on the same folder inside the block
    raises, as another process would.

    Args:
        path (str or Path): the folder to guard (it need not exist; its parent is created).
        what (str): how the message names it, e.g. ``"run folder"``, ``"dataset folder"``.
        wait (float or None): seconds to wait for the holder to finish; 0 (default) fails at
            once, None waits as long as it takes (the lock goes when its holder exits).

    Yields:
        pathlib.Path: ``path``.

    Raises:
        FolderLockedError: another process holds the lock after ``wait`` seconds (message:
            folder and pid).

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp()) / "run"
        >>> with lock_folder(d, what="run folder"):
        ...     try:
        ...         with lock_folder(d, what="run folder"):
        ...             pass
        ...     except FolderLockedError as err:
        ...         print(str(err).split(" is in use")[0].endswith("run"))
        True
        >>> lock_path(d).exists()  # removed on release
        False
    """
    folder = Path(path)
    lock = lock_path(folder)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(lock, what, folder, wait)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        # unlink before unlocking: a waiter that opened the old file sees a new inode and
        # retries (see _acquire), so two processes never both believe they hold the lock
        try:
            os.unlink(lock)
        except FileNotFoundError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def temp_sibling(path: str | Path, kind: str = "tmp") -> Path:
    """The temporary sibling ``<name>.<kind>-<pid>`` of ``path`` for this process.

    Args:
        path (str or Path): the final path.
        kind (str): ``"tmp"`` (being written) or ``"old"`` (being replaced).

    Returns:
        pathlib.Path: the sibling path.

    Example:
        >>> temp_sibling("a/b.pt").name == f"b.pt.tmp-{os.getpid()}"
        True
    """
    path = Path(path)
    return path.with_name(f"{path.name}.{kind}-{os.getpid()}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def atomic_write(path: str | Path, write_fn: Callable[[Path], object]) -> Path:
    """Write ``path`` through a temporary sibling and ``os.replace`` it into place.

    ``write_fn(tmp)`` writes the content to ``tmp`` (a file, or a folder to be renamed onto a
    path that is absent or an empty folder). On any failure, ``KeyboardInterrupt`` included,
    the temporary sibling is removed and the exception propagates; ``path`` is untouched.
    No ``fsync``: the goal is safety against killed processes (the page cache survives them),
    not against power loss.

    Args:
        path (str or Path): the final path.
        write_fn (callable): ``write_fn(tmp: Path)`` writes the content to ``tmp``.

    Returns:
        pathlib.Path: ``path``.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "note.txt"
        >>> atomic_write(p, lambda tmp: tmp.write_text("hello")).read_text()
        'hello'
        >>> sorted(q.name for q in p.parent.iterdir())
        ['note.txt']
    """
    path = Path(path)
    tmp = temp_sibling(path)
    _remove(tmp)
    try:
        write_fn(tmp)
        if not tmp.exists():
            raise FileNotFoundError(f"atomic_write: write_fn wrote nothing to {tmp}")
        os.replace(tmp, path)
    except BaseException as err:
        _remove(tmp)
        kept = "the previous version is kept" if path.exists() else "nothing was written there"
        failure = as_write_error(path, err, kept)
        if failure is not None and failure is not err:
            raise failure from None
        raise
    return path


def pid_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists on this machine.

    Args:
        pid (int): the process id.

    Returns:
        bool: True if it exists (also when it belongs to another user).

    Example:
        >>> pid_alive(os.getpid())
        True
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: str | Path, pattern: str = "*.tmp-*") -> list[Path]:
    """Delete the temporaries in ``folder`` matching ``pattern`` whose writer is gone.

    A temporary's writer is the pid at the end of its name (``.tmp-<pid>`` or ``.old-<pid>``);
    only names whose pid is no longer alive are removed, so a concurrent writer keeps its own.

    Args:
        folder (str or Path): where to look (a missing folder has nothing to remove).
        pattern (str): a glob, e.g. ``"synthetic-*.tmp-*"`` or ``"last.pt.tmp-*"``.

    Returns:
        list[pathlib.Path]: the removed paths, sorted.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> _ = (d / "x.tmp-999999999").write_text(""), (d / f"x.tmp-{os.getpid()}").write_text("")
        >>> [p.name for p in remove_stale_temps(d)]
        ['x.tmp-999999999']
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.glob(pattern)):
        m = _PID_SUFFIX.search(path.name)
        if m and not pid_alive(int(m.group(1))):
            _remove(path)
            removed.append(path)
    return removed


def append_csv_rows(
    path: str | os.PathLike,
    rows: list[dict],
    fields: list[str],
    *,
    lineterminator: str = "\r\n",
) -> None:
    """Append ``rows`` to the CSV ``path`` (the header first if the file is new or empty),
    in one write under an exclusive ``flock``, then fsync: several processes can share one
    results file, and a kill loses at most the rows not yet written.

    Args:
        path (str | PathLike): the CSV (its folder is made). rows (list[dict]): the rows.
        fields (list[str]): the columns, in order. lineterminator (str): the csv module's
            (default ``"\\r\\n"``, its own default).

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "r.csv"
        >>> append_csv_rows(f, [{"a": 1}], ["a"], lineterminator="\\n")
        >>> append_csv_rows(f, [{"a": 2}, {"a": 3}], ["a"], lineterminator="\\n")
        >>> f.read_text().split()
        ['a', '1', '2', '3']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def text(header: bool) -> bytes:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator=lineterminator)
        if header:
            w.writeheader()
        w.writerows(rows)
        return buf.getvalue().encode("utf-8")

    with open(path, "ab", buffering=0) as fh:  # unbuffered: a failed write leaves nothing behind
        fcntl.flock(fh, fcntl.LOCK_EX)
        start = os.lseek(fh.fileno(), 0, os.SEEK_END)
        try:
            view = memoryview(text(header=start == 0))
            while view:
                view = view[fh.write(view) :]
            os.fsync(fh.fileno())
        except OSError as err:  # no half row: cut the file back to the rows it had
            os.ftruncate(fh.fileno(), start)
            failure = as_write_error(path, err, "its earlier rows are kept")
            raise (failure or err) from None
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
