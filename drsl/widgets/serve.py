"""``python -m drsl.widgets.serve``: the ratio explorer as a Voila app that only its user reaches.

Voila listens on 127.0.0.1 only (never another machine) and asks for a token that it draws
at start (``--token``); the URL it prints carries it, and every other connection, to the page
or to a kernel's websocket, is refused. That matters beyond privacy: whoever reaches the app
drives a Python kernel, and Voila 0.5.13, the newest release on PyPI, spins at 100 % CPU and
grows without bound on one malformed websocket message (``read_header_from_binary_message``);
the token keeps such clients out. The token is never on the command line, where ``ps`` would
show it to other users. ``make explore`` runs this module.

Reference: Voila's ``--token`` and ``--Voila.ip`` options; jupyter_server's identity provider.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

__all__ = ["HOST", "explorer_notebook", "voila_command", "main"]

#: the only interface the app listens on
HOST = "127.0.0.1"


def explorer_notebook(root: str | os.PathLike | None = None) -> Path:
    """The explorer notebook of the course (``notebooks/NN_explore.ipynb``).

    Args:
        root (str | PathLike, optional): the repository (default: ``drsl.config.repo_root()``).

    Returns:
        pathlib.Path: the notebook.

    Raises:
        FileNotFoundError: no such notebook (``make notebooks`` writes the ``.ipynb`` files).
    """
    from drsl.config import repo_root

    folder = Path(root if root is not None else repo_root()) / "notebooks"
    found = sorted(folder.glob("*_explore.ipynb"))
    if not found:
        raise FileNotFoundError(
            f"no notebooks/*_explore.ipynb in {folder.parent}: run make notebooks"
        )
    return found[0]


def voila_command(
    notebook: str | os.PathLike, port: int, *, open_browser: bool = True
) -> list[str]:
    """The Voila command line that serves ``notebook`` on :data:`HOST` behind a fresh token.

    Args:
        notebook (str | PathLike): the ``.ipynb``. port (int): the port.
        open_browser (bool): let Voila open the tokenised URL in a browser.

    Returns:
        list[str]: the argv (the token is drawn by Voila, not written here).

    Example:
        >>> cmd = voila_command("x.ipynb", 8866, open_browser=False)
        >>> "--Voila.ip=127.0.0.1" in cmd and "--token" in cmd and "--no-browser" in cmd
        True
    """
    here = Path(sys.executable).with_name("voila")
    cmd = [str(here) if here.exists() else (shutil.which("voila") or "voila"), str(notebook)]
    cmd += [f"--port={port}", f"--Voila.ip={HOST}", "--token"]
    return cmd + ([] if open_browser else ["--no-browser"])


def main(argv: list[str] | None = None) -> int:
    """Serve the explorer (replaces this process with Voila, so Ctrl-C reaches it directly)."""
    parser = argparse.ArgumentParser(
        prog="python -m drsl.widgets.serve",
        description="Serve the ratio explorer as a Voila app on 127.0.0.1, behind a token.",
    )
    parser.add_argument("--port", type=int, default=8866, help="the port (default 8866)")
    parser.add_argument("--no-browser", action="store_true", help="only print the URL")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be in 1..65535, got {args.port}")
    try:
        notebook = explorer_notebook()
    except FileNotFoundError as err:
        parser.error(str(err))
    cmd = voila_command(notebook, args.port, open_browser=not args.no_browser)
    print(f"explorer: serving {notebook.name} on {HOST}:{args.port}; open the URL with its token")
    sys.stdout.flush()
    os.execvp(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
