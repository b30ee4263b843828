"""Paths and switches shared by the package, the notebooks and the command line.

Environment variables:

- ``DRSL_FAST``: ``1`` (or ``true``/``yes``) runs notebooks and scripts in fast mode:
  smaller data, fewer steps, same code path. Used by the test suite.
- ``DRSL_DATA``: the data folder; defaults to ``data/`` at the repository root.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def fast_mode() -> bool:
    """Whether fast mode is on (``DRSL_FAST`` set to 1/true/yes/on).

    Returns:
        bool: True in fast mode.

    Example:
        >>> import os
        >>> os.environ["DRSL_FAST"] = "1"; fast_mode()
        True
        >>> os.environ["DRSL_FAST"] = "0"; fast_mode()
        False
        >>> del os.environ["DRSL_FAST"]
    """
    return os.environ.get("DRSL_FAST", "").strip().lower() in _TRUE


def repo_root() -> Path:
    """The repository root when drsl runs from a checkout (editable install), else the CWD.

    Returns:
        pathlib.Path: the folder holding ``pyproject.toml`` and ``data/``.
    """
    here = Path(__file__).resolve().parents[1]
    if (here / "pyproject.toml").is_file():
        return here
    return Path.cwd()


def data_dir() -> Path:
    """The data folder: ``$DRSL_DATA`` if set (created if missing), else ``<repo>/data``.

    Returns:
        pathlib.Path: the folder (``<repo>/data`` may not exist yet).

    Raises:
        ValueError: ``DRSL_DATA`` names a file, or a folder that cannot be created (one line
            naming ``DRSL_DATA`` and the fix).
    """
    env = os.environ.get("DRSL_DATA")
    if not env:
        return repo_root() / "data"
    path = Path(env).expanduser().resolve()
    fix = "point DRSL_DATA at a folder you can write, or unset it to use the repository's data/"
    if path.exists() and not path.is_dir():
        raise ValueError(f"DRSL_DATA={env} is a file, not a folder; {fix}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"DRSL_DATA={env} cannot be created ({err.strerror}); {fix}") from None
    return path


@contextmanager
def torch_threads(n: int = 1, *, device=None):
    """Run torch (and the BLAS/OpenMP pools, via threadpoolctl) on ``n`` CPU threads, then restore.

    The one home of the package's thread limits. Short, memory-bound passes (the explorer's
    tiny batches, each pass of the evaluation's ranking) gain nothing from a second thread and,
    on a busy machine, wait for a descheduled one (up to 10x slower with 2 threads under load),
    so those callers use one thread; the ranking instead spreads whole sub-blocks of queries
    over threads that each take the next one when free (:mod:`drsl.metrics._blocks`).

    Args:
        n (int): threads to use inside the block (>= 1).
        device (torch.device | str | None): when given and not a CPU device, nothing changes.

    Example:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    import torch
    from threadpoolctl import threadpool_limits

    if device is not None and torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
