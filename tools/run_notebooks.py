"""Execute every course notebook headless; write executed notebooks and HTML to a build folder.

    python tools/run_notebooks.py [--out build] [--fast] [--timeout 1800] [NOTEBOOK ...]

The main job's headless variant (``make course-headless``). Each notebook runs top to bottom in
a fresh python3 kernel with ``notebooks/`` as its working directory; the executed copy goes to
``OUT/notebooks/NAME.ipynb``, a rendering to ``OUT/html/NAME.html`` and the kernel's stderr to
``OUT/logs/NAME.kernel.log``. A notebook that fails
is still written (with the error in it); the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def course_notebooks() -> list[Path]:
    """The course notebooks in order: ``notebooks/NN_*.ipynb``."""
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def run_one(path: Path, out: Path, timeout: int) -> tuple[bool, float, str]:
    """Execute one notebook; write the executed copy and its HTML. Returns (ok, seconds, error)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        store_widget_state=True,
    )
    for sub in ("notebooks", "html", "logs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    error = ""
    # the kernel's own stderr (warnings, crashes) goes to a log file, not over the report
    with open(out / "logs" / f"{path.stem}.kernel.log", "w") as log:
        try:
            client.execute(stderr=log)
        except CellExecutionError as exc:
            error = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
        except Exception as exc:  # kernel died, timeout: keep going with the next notebook
            error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    nbformat.write(nb, out / "notebooks" / path.name)
    html, _ = HTMLExporter().from_notebook_node(nb)
    (out / "html" / f"{path.stem}.html").write_text(html, encoding="utf-8")
    return not error, seconds, error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="default: every notebooks/NN_*.ipynb"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "build", help="build folder (default: build)"
    )
    parser.add_argument("--fast", action="store_true", help="fast mode (DRSL_FAST=1)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    args = parser.parse_args(argv)

    if args.fast:
        os.environ["DRSL_FAST"] = "1"
    paths = [p.resolve() for p in args.notebooks] or course_notebooks()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"error: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    mode = "fast" if os.environ.get("DRSL_FAST", "") not in ("", "0") else "full"
    print(f"[headless] executing {len(paths)} notebooks ({mode} mode) into {args.out}/")
    failed = []
    total = time.perf_counter()
    for path in paths:
        print(f"[headless] {path.name} ...", end=" ", flush=True)
        ok, seconds, error = run_one(path, args.out, args.timeout)
        print(f"{'ok' if ok else 'FAILED'} in {seconds:.1f} s" + ("" if ok else f": {error}"))
        if not ok:
            failed.append(path.name)
    print(
        f"[headless] {len(paths) - len(failed)} passed, {len(failed)} failed "
        f"in {time.perf_counter() - total:.0f} s; HTML in {args.out / 'html'}/"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
