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
import copy
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
        if cell.cell_type != "markdown" or (holds_solution(cell) and not with_solutions):
            continue
        count += sum(part.startswith("## ") for part in split_sections(cell.source))
    return count


# Tags (the book's and the deck's own): a cell left out of the decks; a cell shown without code
HIDE_TAGS = {"slide-hide", "remove-cell"}
HIDE_INPUT_TAGS = {"slide-hide-input", "remove-input", "hide-input"}
# What one sub-slide holds, in deck pixels (the deck is DECK_WIDTH x DECK_HEIGHT; the estimates
# below were fitted to chromium's measure of the decks, tests/test_slides.py)
DECK_WIDTH, DECK_HEIGHT = 960, 700
BUDGET = 610  # a sub-slide's content, estimated, with a margin for the estimate's error
PROSE_CHARS, PROSE_LINE, CODE_LINE, IMAGE_MAX = 72, 35, 25, 480
MAX_CODE_LINES, MAX_OUTPUT_LINES, MAX_TABLE_ROWS = 12, 8, 8
_IMAGE = ("image/png", "image/jpeg", "image/svg+xml")


def trim_lines(text: str, keep: int, what: str) -> str:
    """``text`` cut to ``keep`` lines plus one saying how many more the notebook has; a cut
    inside a markdown code fence closes the fence."""
    lines = text.rstrip("\n").splitlines()
    if len(lines) <= keep:
        return text
    head = lines[: keep - 1]
    fenced = sum(bool(_FENCE.match(line)) for line in head) % 2 == 1
    more = f"... ({len(lines) - len(head)} more {what} in the notebook)"
    return "\n".join([*head, more, *(["```"] if fenced else [])]) + "\n"


def _trim_output(output) -> None:
    """Shorten one output in place: long text and markdown cut, long HTML tables as text."""
    if output.get("output_type") == "stream":
        output["text"] = trim_lines(output.get("text", ""), MAX_OUTPUT_LINES, "lines")
        return
    data = output.get("data", {})
    html = data.get("text/html", "")
    if html.count("<tr") > MAX_TABLE_ROWS + 1 and "text/plain" in data:
        data.pop("text/html")
    for kind in ("text/plain", "text/markdown"):
        if kind in data:
            data[kind] = trim_lines(data[kind], MAX_OUTPUT_LINES, "lines")


def slide_code(cell):
    """The deck's copy of a code cell: when it draws a figure or writes prose (markdown) that
    output is the point and its code is hidden (as with a hide tag); long code and long outputs
    are cut, so a slide never prints a whole function."""
    cell = nbformat.from_dict(copy.deepcopy(dict(cell)))
    tags = set(cell.metadata.get("tags", []))
    shown = {k for o in cell.get("outputs", []) for k in o.get("data", {})}
    # the figure, or the prose a cell writes (text/markdown), is the point: the code is hidden
    if shown & {*_IMAGE, "text/markdown"} or tags & HIDE_INPUT_TAGS:
        cell.metadata["transient"] = {"remove_source": True}
    else:
        cell.source = trim_lines(cell.source, MAX_CODE_LINES, "lines")
    for output in cell.get("outputs", []):
        _trim_output(output)
    return cell


def _image_height(data: dict) -> float:
    png = data.get("image/png")
    if not png:
        return IMAGE_MAX
    import base64
    import struct

    width, height = struct.unpack(">II", base64.b64decode(png[:44])[16:24])
    return min(IMAGE_MAX, height * min(1.0, (DECK_WIDTH - 40) / max(width, 1)))


def estimated_height(cell) -> float:
    """A cell's height on a slide in deck pixels, estimated from its text and figures."""
    if cell.cell_type == "markdown":
        height = 0.0
        for block in re.split(r"\n\s*\n", cell.source):
            lines = block.strip().splitlines()
            if not lines:
                continue
            if lines[0].startswith("#"):
                height += 80 if lines[0].startswith("# ") else 64
                lines = lines[1:]
            rows = [line for line in lines if line.lstrip().startswith("|")]
            height += 62 * len(rows)  # a table row, its cells often wrapped on two lines
            lines = [line for line in lines if not line.lstrip().startswith("|")]
            items = re.split(r"\n(?=\s*(?:[-*]|\d+\.)\s)", "\n".join(lines))
            chars = [len(" ".join(item.split())) for item in items if item.strip()]
            height += sum(-(-n // PROSE_CHARS) for n in chars) * PROSE_LINE + 16
            height += 40 * block.count("$$") // 2
        return height
    height = 0.0 if cell.metadata.get("transient", {}).get("remove_source") else 24
    height += 0 if height == 0 else CODE_LINE * len(cell.source.splitlines())
    return height + sum(_output_height(output) for output in cell.get("outputs", []))


def _output_height(output) -> float:
    data = output.get("data", {})
    if any(k in data for k in _IMAGE):
        return _image_height(data) + 10
    if output.get("output_type") == "stream":
        return CODE_LINE * len(output.get("text", "").splitlines()) + 10
    if "text/html" in data:
        return 30 * max(data["text/html"].count("<tr"), 2)
    if "text/markdown" in data:
        return estimated_height(nbformat.v4.new_markdown_cell(data["text/markdown"]))
    return CODE_LINE * len(data.get("text/plain", "").splitlines()) + 10


def split_outputs(cell) -> list:
    """A code cell whose outputs are taller than a sub-slide as several cells: the first with
    the code, the others with the code hidden and the next outputs, each fitting one."""
    parts, used = [nbformat.from_dict(copy.deepcopy(dict(cell)))], 0.0
    parts[0].outputs = []
    used = estimated_height(parts[0])
    for output in cell.get("outputs", []):
        height = _output_height(output)
        if parts[-1].outputs and used + height > BUDGET:
            more = nbformat.from_dict(copy.deepcopy(dict(parts[0])))
            more.source, more.outputs = "", []
            more["id"] = f"{cell.get('id', 'cell')}-{len(parts)}"
            more.metadata["transient"] = {"remove_source": True}
            parts.append(more)
            used = 0.0
        parts[-1].outputs.append(output)
        used += height
    return parts


def fit_markdown(piece: str) -> list[str]:
    """A markdown section cut at paragraph boundaries into parts that each fit one sub-slide."""
    parts, current = [], []
    for block in re.split(r"\n\s*\n", piece):
        trial = "\n\n".join([*current, block])
        if current and estimated_height(nbformat.v4.new_markdown_cell(trial)) > BUDGET:
            parts.append("\n\n".join(current))
            current = [block]
        else:
            current.append(block)
    parts.append("\n\n".join(current))
    return [p for p in parts if p.strip()]


def _deck_cells(nb, with_solutions: bool) -> list:
    """The cells a deck shows, in order: sections and over-long prose split, code prepared."""
    cells = []
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if (holds_solution(cell) and not with_solutions) or tags & HIDE_TAGS:
            continue
        if cell.cell_type == "markdown":
            for section in split_sections(cell.source):
                cells += [nbformat.v4.new_markdown_cell(p) for p in fit_markdown(section)]
        elif cell.cell_type == "code":
            cells += split_outputs(slide_code(cell))
    return cells


def slide_notebook(nb, *, with_solutions: bool = False):
    """A copy of ``nb`` as a deck: markdown split at ``## `` (one horizontal slide per section)
    and, where a section is long, at paragraphs (sub-slides); code prepared by
    :func:`slide_code`; each code cell stays on the sub-slide of the prose before it while the
    estimated height fits, else it starts a sub-slide of its own."""
    out = nbformat.v4.new_notebook(metadata=dict(nb.metadata))
    previous, used = None, 0.0
    for cell in _deck_cells(nb, with_solutions):
        height = estimated_height(cell)
        if cell.cell_type == "markdown":
            starts = not out.cells or cell.source.startswith(("# ", "## "))
            kind = "slide" if starts else "subslide"
            used = height
        elif previous == "code" or used + height > BUDGET:
            kind, used = "subslide", height
        else:
            kind, used = "-", used + height
        cell.metadata["slideshow"] = {"slide_type": kind}
        out.cells.append(cell)
        previous = cell.cell_type
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
