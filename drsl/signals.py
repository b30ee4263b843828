"""SIGTERM handled like Ctrl-C: what ``docker stop``, SLURM and Kubernetes send before a kill.

Inside :func:`sigterm_as_interrupt`, a SIGTERM raises :class:`Terminated`, a
``KeyboardInterrupt``: every cleanup that Ctrl-C runs runs too (``finally`` blocks, the
temporaries of ``drsl.fsutil.atomic_write``, folder locks), and the command line prints one
line and exits with 143 (128 + 15, the shell's status for SIGTERM) instead of dying mid-write.
Worker processes restore the default actions with :func:`default_signals_in_worker`, so that
stopping their pool never prints their tracebacks.

Reference: POSIX ``signal(7)``; Python ``signal`` (handlers run in the main thread).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["TERMINATED_STATUS", "Terminated", "default_signals_in_worker", "sigterm_as_interrupt"]

#: the exit status of a command stopped by SIGTERM (128 + 15)
TERMINATED_STATUS = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (raised in the main thread by :func:`sigterm_as_interrupt`)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated("SIGTERM")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside the block, SIGTERM raises :class:`Terminated` (in the main thread only:
    elsewhere Python cannot install handlers, and the block changes nothing).

    Example:
        >>> import os, time
        >>> with sigterm_as_interrupt():
        ...     try:
        ...         os.kill(os.getpid(), signal.SIGTERM)
        ...         time.sleep(5)  # the handler interrupts the sleep
        ...     except Terminated:
        ...         print("cleaned up")
        cleaned up
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def default_signals_in_worker() -> None:
    """For a pool worker: ignore Ctrl-C (the parent stops the pool) and die quietly on SIGTERM
    (how ``Pool.terminate`` stops workers), instead of printing a traceback each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
