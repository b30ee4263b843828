"""Build the HTML book of the executed course (Sphinx + myst-nb), readable without internet.

    python tools/book.py [--out build/book] [--src build/book-src] [--cache build/executed]
    make book                 # full mode (every notebook executed as a reader runs it)
    DRSL_FAST=1 make book     # fast mode, for a quick build

Steps: execute every ``notebooks/NN_name.py`` (cached in ``build/executed/<mode>/``, shared
with ``make slides``); write a Sphinx source folder from ``docs/book/`` (configuration, landing
page) plus generated pages: the course map with the time each notebook took, the notebooks
(solutions collapsed behind "Show solution", the widget notebook with its static figures), the
loss spec ``docs/drsl-loss-spec.md``, the instructor guide ``docs/instructor.md``, the README's
results and an API reference generated from the docstrings; copy MathJax 2.7 from the
jupyter-server-mathjax wheel into ``_static/mathjax``; run ``sphinx-build``. Exit status 1 when a
notebook fails or Sphinx does. The Sphinx warnings go to ``SRC/sphinx-warnings.log``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_pages import (  # noqa: E402
    api_page,
    book_notebook,
    course_map,
    markdown_section,
    notebook_row,
    rewrite_links,
)
from course import (  # noqa: E402
    EXECUTED,
    ROOT,
    course_sources,
    executed,
    fast_mode,
    mathjax_dir,
)

BOOK_DOCS = ROOT / "docs" / "book"
RESULTS_SECTIONS = ("Results", "Measured")


def execute_all(sources: list[Path], *, fast: bool, cache: Path, src: Path) -> list[dict]:
    """Execute (or reuse) every notebook and write its book copy; return the course-map rows."""
    from nbclient.exceptions import CellExecutionError

    (src / "notebooks").mkdir(parents=True, exist_ok=True)
    rows, failed = [], []
    for source in sources:
        print(f"[book] {source.stem} ...", end=" ", flush=True)
        try:
            run = executed(source, fast=fast, cache=cache)
        except CellExecutionError as err:
            lines = str(err).strip().splitlines()
            print(f"FAILED: {lines[-1] if lines else err!r}")
            failed.append(source.name)
            continue
        print(f"{'cached, ' if run.cached else ''}{run.seconds:.1f} s")
        nb = nbformat.read(run.path, as_version=4)
        nbformat.write(book_notebook(nb), src / "notebooks" / f"{source.stem}.ipynb")
        rows.append(notebook_row(source.stem, nb, run.seconds))
    if failed:
        raise SystemExit(f"[book] failed: {', '.join(failed)} (see {cache}/*.kernel.log)")
    return rows


def write_pages(src: Path, rows: list[dict], mode: str) -> None:
    """Write the Sphinx source folder around the notebooks."""
    for item in BOOK_DOCS.iterdir():
        target = src / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)
    (src / "_generated").mkdir(exist_ok=True)
    (src / "_generated" / "course_map.md").write_text(course_map(rows, mode))
    for rel, page in (("docs/drsl-loss-spec.md", "spec"), ("docs/instructor.md", "instructor")):
        origin = ROOT / rel
        if not origin.is_file():
            raise FileNotFoundError(f"{origin} is missing: the book includes it")
        (src / f"{page}.md").write_text(rewrite_links(origin.read_text(), origin, src))
    readme = ROOT / "README.md"
    title, body = markdown_section(readme.read_text(), RESULTS_SECTIONS)
    results = (
        f"# Results\n\n*The README's section \u201c{title}\u201d: the figures measured on the "
        f"reference machine.*\n\n{body}"
    )
    (src / "results.md").write_text(rewrite_links(results, readme, src))
    (src / "api.md").write_text(api_page())
    shutil.copytree(mathjax_dir(), src / "_static" / "mathjax", dirs_exist_ok=True)


def sphinx_build(src: Path, out: Path) -> int:
    """Run sphinx-build (HTML) from ``src`` into ``out``; warnings go to a log file."""
    log = src / "sphinx-warnings.log"
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONWARNINGS="ignore::DeprecationWarning")
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-w", str(log), str(src), str(out)]
    return subprocess.run(cmd, env=env, cwd=ROOT).returncode


def build_book(out: Path, src: Path, cache: Path = EXECUTED, fast: bool | None = None) -> int:
    """Execute the course and build the book into ``out``; return the exit status."""
    fast = fast_mode() if fast is None else fast
    mode = "fast" if fast else "full"
    start = time.perf_counter()
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    sources = course_sources()
    print(f"[book] executing {len(sources)} notebooks ({mode} mode; cache {cache}/{mode})")
    rows = execute_all(sources, fast=fast, cache=cache, src=src)
    executed_at = time.perf_counter()
    write_pages(src, rows, mode)
    status = sphinx_build(src, out)
    end = time.perf_counter()
    pages = sum(1 for _ in out.rglob("*.html")) if out.is_dir() else 0
    for row in rows:
        print(f"[book] {row['stem']}: {row['exercises']} exercises, {row['solutions']} solutions")
    print(
        f"[book] {'built' if status == 0 else 'FAILED'}: {pages} pages in {out}/ in "
        f"{end - start:.0f} s (notebooks {executed_at - start:.0f} s, sphinx "
        f"{end - executed_at:.0f} s); open {out / 'index.html'}"
    )
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "book")
    parser.add_argument("--src", type=Path, default=ROOT / "build" / "book-src")
    parser.add_argument("--cache", type=Path, default=EXECUTED, help="executed notebooks")
    args = parser.parse_args(argv)
    return build_book(args.out.resolve(), args.src.resolve(), args.cache.resolve())


if __name__ == "__main__":
    raise SystemExit(main())
