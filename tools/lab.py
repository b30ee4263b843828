"""Open the course in JupyterLab (``make course``): rooted at the repository, first notebook open.

    python tools/lab.py [--dry-run] [extra jupyter lab arguments ...]

Lab's file browser starts at the repository root, so ``docs/drsl-loss-spec.md`` (which every
notebook cites) and ``notebooks/`` are both a click away; the first course notebook
(``notebooks/00_*.ipynb``) opens in a tab. As root (containers, many hub images) Jupyter refuses
to start without ``--allow-root``: it is added when the user id is 0. ``--dry-run`` prints the
command instead of running it.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from course import ROOT, course_sources  # noqa: E402


def lab_command(extra: list[str], *, uid: int | None = None, root: Path = ROOT) -> list[str]:
    """The ``jupyter lab`` command line: root folder, first notebook, ``--allow-root`` as root.

    Args:
        extra: further arguments for jupyter lab (``LAB_ARGS`` of ``make course``).
        uid: the user id (default: this process's; 0 is root).
        root: the repository root.

    Returns:
        The argument list, starting with the environment's ``jupyter`` executable.
    """
    if uid is None:
        uid = os.getuid() if hasattr(os, "getuid") else -1  # no user ids: never root
    first = course_sources(root / "notebooks")[0].with_suffix(".ipynb")
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter), "lab", f"--ServerApp.root_dir={root}"]
    if uid == 0 and "--allow-root" not in extra:
        cmd.append("--allow-root")
    return [*cmd, *extra, first.relative_to(root).as_posix()]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    dry = "--dry-run" in args
    args = [a for a in args if a != "--dry-run"]
    cmd = lab_command(args)
    if dry:
        print(shlex.join(cmd))
        return 0
    print(f"[course] JupyterLab at {ROOT} with {cmd[-1]} open (Ctrl-C to stop)", flush=True)
    os.chdir(ROOT)
    os.execv(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
