"""Paths and switches shared by the package, the notebooks and the command line.

Environment variables:

- ``DRSL_FAST``: ``1`` (or ``true``/``yes``) runs notebooks and scripts in fast mode:
  smaller data, fewer steps, same code path. Used by the test suite.
- ``DRSL_DATA``: the data folder; defaults to ``data/`` at the repository root.
"""

from __future__ import annotations

import os
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
    """The data folder: ``$DRSL_DATA`` if set, else ``<repo>/data``.

    Returns:
        pathlib.Path: the folder (it may not exist yet).
    """
    env = os.environ.get("DRSL_DATA")
    return Path(env).expanduser().resolve() if env else repo_root() / "data"
