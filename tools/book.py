"""Build the HTML book of the executed course (Sphinx + myst-nb), readable without internet.

    python tools/book.py [--out build/book] [--src build/book-src] [--cache build/executed]
    make book                 # full mode (every notebook executed as a reader runs it)
    DRSL_FAST=1 make book     # fast mode, for a quick build

Steps: execute every ``notebooks/NN_name.py`` (cached in ``build/executed/<mode>/``, shared
with ``make slides``; full mode on one CPU thread per kernel, see ``FULL_MODE_THREADS``), one
progress line per notebook; write a Sphinx source folder from ``docs/book/`` (configuration,
landing page, glossary) plus generated pages: the course map with the class time of each
notebook (from ``docs/instructor.md``), the notebooks (each solution collapsed behind one "Show
solution", progress bars static, the explorer's widgets replaced by a note, a download link and,
when the repository URL is known, Binder and Colab links), the loss spec
``docs/drsl-loss-spec.md`` with its formula block typeset (``docs/book/spec-equations.md``), the
instructor guide and an API reference generated from the docstrings; copy MathJax 2.7 from the
jupyter-server-mathjax wheel into ``_static/mathjax``; run ``sphinx-build``. Exit status 1 when a
notebook fails or Sphinx does. The Sphinx warnings go to ``SRC/sphinx-warnings.log``, the
seconds each notebook took to ``SRC/build-times.txt``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from book_pages import (  # noqa: E402
    COLAB_TAG,
    api_page,
    book_notebook,
    course_map,
    launch_header,
    notebook_row,
    repository_url,
    rewrite_links,
    student_minutes,
    typeset_spec,
)
from course import (  # noqa: E402
    EXECUTED,
    ROOT,
    code_cell_count,
    course_sources,
    executed,
    fast_mode,
    mathjax_dir,
    read_source,
    tags,
)

BOOK_DOCS = ROOT / "docs" / "book"
GUIDE = ROOT / "docs" / "instructor.md"
SPEC_EQUATIONS = "spec-equations.md"  # docs/book/: the spec's formula block, typeset
# Full mode runs each notebook's kernel on ONE CPU thread: on the shared 2-core machine the
# training notebook 04 took 427 s on 1 thread and more than 1,470 s on 2 (once its kernel died),
# while the light 02 gained about 10 % from a second thread (benchmarks/results/book_threads.md).
FULL_MODE_THREADS = 1
HEARTBEAT_S = 10.0


class NotebookBar:
    """One terminal line per notebook: a progress bar over its code cells whose clock keeps
    ticking (a refresh every ``HEARTBEAT_S`` seconds) while a long cell runs."""

    def __init__(self, stem: str, cells: int):
        from tqdm import tqdm

        self.bar = tqdm(total=cells, desc=f"[book] {stem}", unit="cell", leave=True, ncols=90)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def _beat(self):
        while not self.stop.wait(HEARTBEAT_S):
            self.bar.refresh()

    def update(self):
        self.bar.update(1)

    def close(self, note: str, *, done: bool = True):
        self.stop.set()
        self.thread.join()
        if done:  # a cached notebook ran no cell here
            self.bar.update(self.bar.total - self.bar.n)
        self.bar.set_postfix_str(note, refresh=False)
        self.bar.close()


def execute_all(
    sources: list[Path], *, fast: bool, cache: Path, src: Path, threads: int | None
) -> list[dict]:
    """Execute (or reuse) every notebook and write its book copy and its clean download copy;
    return the course-map rows (with each notebook's build seconds, for the build log)."""
    from nbclient.exceptions import CellExecutionError

    (src / "notebooks").mkdir(parents=True, exist_ok=True)
    (src / "_downloads_src").mkdir(exist_ok=True)
    rows, failed, url = [], [], repository_url()
    for source in sources:
        bar = NotebookBar(source.stem, code_cell_count(source))
        try:
            run = executed(source, fast=fast, cache=cache, threads=threads, on_cell=bar.update)
        except CellExecutionError as err:
            lines = str(err).strip().splitlines()
            bar.close(f"FAILED: {lines[-1] if lines else err!r}", done=False)
            failed.append(source.name)
            continue
        bar.close(f"{'cached, ' if run.cached else ''}{run.seconds:.1f} s")
        nb = nbformat.read(run.path, as_version=4)
        clean = src / "_downloads_src" / f"{source.stem}.ipynb"
        plain = read_source(source)
        nbformat.write(plain, clean)
        colab = any(COLAB_TAG in tags(cell) for cell in plain.cells)
        header = launch_header(source.stem, f"../_downloads_src/{clean.name}", url, colab=colab)
        nbformat.write(
            book_notebook(nb, source.stem, header), src / "notebooks" / f"{source.stem}.ipynb"
        )
        rows.append(notebook_row(source.stem, nb) | {"seconds": run.seconds})
    if failed:
        raise SystemExit(f"[book] failed: {', '.join(failed)} (see {cache}/*.kernel.log)")
    if url is None:
        print(
            "[book] no repository URL ([project.urls] Repository in pyproject.toml or "
            "DRSL_REPOSITORY_URL): pages get a download link but no Binder/Colab links"
        )
    return rows


def write_pages(src: Path, rows: list[dict]) -> None:
    """Write the Sphinx source folder around the notebooks."""
    for item in BOOK_DOCS.iterdir():
        target = src / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        elif item.name != SPEC_EQUATIONS:
            shutil.copy2(item, target)
    (src / "_generated").mkdir(exist_ok=True)
    minutes = student_minutes(GUIDE.read_text())
    (src / "_generated" / "course_map.md").write_text(course_map(rows, minutes))
    for rel, page in (("docs/drsl-loss-spec.md", "spec"), ("docs/instructor.md", "instructor")):
        origin = ROOT / rel
        if not origin.is_file():
            raise FileNotFoundError(f"{origin} is missing: the book includes it")
        text = origin.read_text()
        if page == "spec":
            text = typeset_spec(text, (BOOK_DOCS / SPEC_EQUATIONS).read_text())
        (src / f"{page}.md").write_text(rewrite_links(text, origin, src))
    (src / "api.md").write_text(api_page())
    shutil.copytree(mathjax_dir(), src / "_static" / "mathjax", dirs_exist_ok=True)


def write_build_log(path: Path, rows: list[dict], mode: str, threads: int | None) -> None:
    """The build's timings (seconds per notebook), kept out of the book itself."""
    lines = [f"# make book, {mode} mode, kernel threads: {threads or 'default'}"]
    lines += [f"{row['stem']}\t{row['seconds']:.1f} s" for row in rows]
    lines.append(f"all\t{sum(row['seconds'] for row in rows):.1f} s")
    path.write_text("\n".join(lines) + "\n")


def sphinx_build(src: Path, out: Path) -> int:
    """Run sphinx-build (HTML) from ``src`` into ``out``; warnings go to a log file."""
    log = src / "sphinx-warnings.log"
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONWARNINGS="ignore::DeprecationWarning")
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-w", str(log), str(src), str(out)]
    return subprocess.run(cmd, env=env, cwd=ROOT).returncode


def build_book(
    out: Path,
    src: Path,
    cache: Path = EXECUTED,
    fast: bool | None = None,
    threads: int | None = None,
) -> int:
    """Execute the course and build the book into ``out``; return the exit status.
    ``threads``: the kernels' CPU threads (default: 1 in full mode, the environment's in fast)."""
    fast = fast_mode() if fast is None else fast
    mode = "fast" if fast else "full"
    threads = threads if threads is not None else (None if fast else FULL_MODE_THREADS)
    start = time.perf_counter()
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    sources = course_sources()
    print(
        f"[book] executing {len(sources)} notebooks ({mode} mode, kernel threads: "
        f"{threads or 'default'}; cache {cache}/{mode})"
    )
    rows = execute_all(sources, fast=fast, cache=cache, src=src, threads=threads)
    executed_at = time.perf_counter()
    write_build_log(src / "build-times.txt", rows, mode, threads)
    write_pages(src, rows)
    print("[book] sphinx-build (about a minute) ...", flush=True)
    status = sphinx_build(src, out)
    end = time.perf_counter()
    pages = sum(1 for _ in out.rglob("*.html")) if out.is_dir() else 0
    for row in rows:
        print(f"[book] {row['stem']}: {row['exercises']} exercises, {row['solutions']} solutions")
    print(
        f"[book] {'built' if status == 0 else 'FAILED'}: {pages} pages in {out}/ in "
        f"{end - start:.0f} s (notebooks {executed_at - start:.0f} s, sphinx "
        f"{end - executed_at:.0f} s); open {out / 'index.html'}; timings in "
        f"{src / 'build-times.txt'}"
    )
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "book")
    parser.add_argument("--src", type=Path, default=ROOT / "build" / "book-src")
    parser.add_argument("--cache", type=Path, default=EXECUTED, help="executed notebooks")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads per notebook kernel "
        f"(default: {FULL_MODE_THREADS} in full mode, the environment's in fast mode)",
    )
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    try:
        return build_book(
            args.out.resolve(), args.src.resolve(), args.cache.resolve(), threads=args.threads
        )
    except (ValueError, FileNotFoundError) as err:  # a page's source is missing or out of step
        print(f"[book] error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
