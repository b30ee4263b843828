"""Build one reveal.js deck per course notebook, served without internet.

    python tools/slides.py [--out build/slides] [--no-execute] [--with-solutions]   (make slides)

Each ``notebooks/NN_name.py`` becomes ``OUT/NN_name.slides.html`` through nbconvert's slides
exporter, after a preprocessing copy gives every cell its slide type from the structure:

- the title cell and every ``## `` section start a slide (markdown cells are split at each
  ``## `` heading, so one section is one slide, whatever the cell layout);
- inside a section, each prose cell starts a sub-slide and the code cells that follow it stay on
  that sub-slide (two code cells in a row: the second starts a new one);
- cells tagged ``solution`` are skipped (``--with-solutions`` keeps them, for the instructor).

By default the decks show outputs: the notebooks are executed (fast or full mode by
``DRSL_FAST``; the executed copies in ``build/executed/`` are reused, e.g. after ``make book``).
``--no-execute`` exports the sources without outputs. reveal.js (from the sphinx-revealjs wheel)
and MathJax 2.7 (from the jupyter-server-mathjax wheel) are copied to ``OUT/_assets/``; the
template ``tools/slides_template/drsl_reveal.html.j2`` loads nothing from a CDN.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from course import (  # noqa: E402
    EXECUTED,
    MATHJAX_CONFIG,
    ROOT,
    course_sources,
    executed,
    fast_mode,
    holds_solution,
    is_solution,
    mathjax_dir,
    read_source,
    reveal_dir,
    without_widgets,
)

TEMPLATE = Path(__file__).resolve().parent / "slides_template" / "drsl_reveal.html.j2"
ASSETS = "_assets"
WIDGET_NOTE = (
    "<p><em>Interactive widget: run this notebook in JupyterLab (<code>make course</code>) or "
    "as an app (<code>make explore</code>).</em></p>"
)
_FENCE = re.compile(r"^\s*(```|~~~)")


def split_sections(source: str) -> list[str]:
    """Split markdown at every ``## `` heading outside code fences (each part starts one)."""
    parts, current, fenced = [], [], False
    for line in source.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        if not fenced and line.startswith("## ") and any(s.strip() for s in current):
            parts.append("\n".join(current).strip("\n"))
            current = []
        current.append(line)
    if any(s.strip() for s in current):
        parts.append("\n".join(current).strip("\n"))
    return parts


def section_count(nb, *, with_solutions: bool = False) -> int:
    """The number of ``## `` sections of the notebook's markdown (outside code fences)."""
    count = 0
    for cell in nb.cells:
        if cell.cell_type != "markdown" or (is_solution(cell) and not with_solutions):
            continue
        count += sum(part.startswith("## ") for part in split_sections(cell.source))
    return count


def _slide_type(cell, index: int, previous: str | None) -> str:
    if cell.cell_type == "markdown":
        if index == 0 or cell.source.startswith(("# ", "## ")):
            return "slide"
        return "subslide"
    return "subslide" if previous == "code" else "-"


def slide_notebook(nb, *, with_solutions: bool = False):
    """A copy of ``nb`` with markdown split at ``## `` and a slide type on every cell."""
    out = nbformat.v4.new_notebook(metadata=dict(nb.metadata))
    previous = None
    for cell in nb.cells:
        if holds_solution(cell) and not with_solutions:
            continue
        pieces = [cell]
        if cell.cell_type == "markdown":
            pieces = [nbformat.v4.new_markdown_cell(p) for p in split_sections(cell.source)]
        for piece in pieces:
            piece = nbformat.from_dict(dict(piece))
            piece.metadata = dict(piece.metadata)
            kind = _slide_type(piece, len(out.cells), previous)
            piece.metadata["slideshow"] = {"slide_type": kind}
            out.cells.append(piece)
            previous = piece.cell_type
    return without_widgets(out, WIDGET_NOTE)


def copy_assets(out: Path) -> Path:
    """Copy reveal.js (dist/, plugin/notes) and MathJax to ``out/_assets``; return that folder."""
    assets = out / ASSETS
    reveal = reveal_dir()
    for sub in ("dist", "plugin/notes"):
        shutil.copytree(reveal / sub, assets / "reveal" / sub, dirs_exist_ok=True)
    shutil.copy2(reveal / "LICENSE", assets / "reveal" / "LICENSE")
    shutil.copytree(mathjax_dir(), assets / "mathjax", dirs_exist_ok=True)
    return assets


def exporter():
    """nbconvert's SlidesExporter on the local template, reveal.js and MathJax."""
    from nbconvert import SlidesExporter

    return SlidesExporter(
        template_file=str(TEMPLATE),
        reveal_url_prefix=f"{ASSETS}/reveal",
        reveal_theme="white",
        reveal_transition="none",
        reveal_number="c/t",
        mathjax_url=f"{ASSETS}/mathjax/MathJax.js?config={MATHJAX_CONFIG}",
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )


def build_slides(
    out: Path,
    *,
    execute: bool = True,
    fast: bool | None = None,
    with_solutions: bool = False,
    sources: list[Path] | None = None,
    cache: Path = EXECUTED,
) -> list[Path]:
    """Write ``out/NN_name.slides.html`` for each course source; return the deck paths."""
    fast = fast_mode() if fast is None else fast
    out.mkdir(parents=True, exist_ok=True)
    copy_assets(out)
    exp, decks = exporter(), []
    for source in sources or course_sources():
        if execute:
            nb = nbformat.read(executed(source, fast=fast, cache=cache).path, as_version=4)
        else:
            nb = read_source(source)
        body, _ = exp.from_notebook_node(
            slide_notebook(nb, with_solutions=with_solutions),
            resources={"metadata": {"name": source.stem}},
        )
        deck = out / f"{source.stem}.slides.html"
        deck.write_text(body, encoding="utf-8")
        decks.append(deck)
    return decks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "slides")
    parser.add_argument("--no-execute", action="store_true", help="sources only, no outputs")
    parser.add_argument("--with-solutions", action="store_true", help="keep solution cells")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    decks = build_slides(args.out, execute=not args.no_execute, with_solutions=args.with_solutions)
    mode = "sources" if args.no_execute else ("fast" if fast_mode() else "full") + " mode"
    seconds = time.perf_counter() - start
    print(
        f"[slides] {len(decks)} decks ({mode}) in {args.out}/ in {seconds:.0f} s; open {decks[0]}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
