"""The pages of the HTML book that tools/book.py writes into its Sphinx source folder.

- :func:`book_notebook`: an executed notebook ready for the book (solutions collapsed behind
  "Show solution", widget views replaced by a note pointing at the static figures);
- :func:`course_map`: the landing page's table (notebook, exercises, solutions, time);
- :func:`markdown_section` / :func:`rewrite_links`: a README section and repository pages as book
  pages whose links point inside the book (or become plain paths), never outside it;
- :func:`api_page`: the API reference, autosummary over drsl's public modules.
"""

from __future__ import annotations

import copy
import pkgutil
import re
import shutil
from pathlib import Path

import nbformat
import tomllib
from course import ROOT, holds_solution, is_solution, tags, title_of, without_widgets

EXPLORER_NOTE = (
    '<p class="drsl-widget-note"><em>The interactive explorer runs in JupyterLab '
    "(<code>make course</code>) or as an app (<code>make explore</code>); this page shows the "
    "same content as static figures.</em></p>"
)
WIDGET_NOTE = (
    '<p class="drsl-widget-note"><em>An interactive widget: it runs in JupyterLab '
    "(<code>make course</code>).</em></p>"
)
# the text column of a notebook page at 1280 px (sphinx-book-theme, both sidebars shown); a cell
# with a wider figure spans the page's margin too (the theme's ``full-width``: 136 % of it)
COLUMN_PX = 688
SHOW = "Show solution"
SOLUTION_OPEN = f'<details class="drsl-solution">\n<summary>{SHOW}</summary>\n'
SOLUTION_CLOSE = "</details>\n"
# repository file -> book page (relative to the book's source root)
PAGES = {"docs/drsl-loss-spec.md": "spec", "docs/instructor.md": "instructor"}
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def display_math_blocks(markdown: str) -> str:
    """Put blank lines around ``$$ ... $$`` display math that sits inside a paragraph.

    Jupyter renders ``$$`` display math anywhere; MyST (the book's parser) only as a block of
    its own, and leaves the dollars raw otherwise. Lines inside code fences are left alone.
    """
    out, lines, i, fenced = [], markdown.splitlines(), 0, False
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if fenced or not line.lstrip().startswith("$$"):
            out.append(line)
            i += 1
            continue
        end = i
        if "$$" not in line.lstrip()[2:]:  # the block closes on a later line
            end = next((j for j in range(i + 1, len(lines)) if "$$" in lines[j]), i)
        if out and out[-1].strip():
            out.append("")
        out.extend(lines[i : end + 1])
        if end + 1 < len(lines) and lines[end + 1].strip():
            out.append("")
        i = end + 1
    return "\n".join(out)


def explorer_stem(root: Path = ROOT) -> str | None:
    """The notebook that ``make explore`` serves as an app (the explorer), e.g. ``07_explore``:
    the one ``drsl.widgets.serve`` picks."""
    from drsl.widgets.serve import explorer_notebook

    try:
        return explorer_notebook(root).stem
    except FileNotFoundError:
        return None


def with_solution_toggles(cells: list) -> list:
    """The cells with each run of consecutive solution cells (prose and code) inside ONE
    collapsed toggle: a ``<details>`` opened by a markdown cell before the run, closed after."""
    out, inside = [], False
    for cell in cells:
        solution = holds_solution(cell)
        if solution and not inside:
            out.append(nbformat.v4.new_markdown_cell(SOLUTION_OPEN))
        elif inside and not solution:
            out.append(nbformat.v4.new_markdown_cell(SOLUTION_CLOSE))
        out.append(cell)
        inside = solution
    if inside:
        out.append(nbformat.v4.new_markdown_cell(SOLUTION_CLOSE))
    return out


def png_width(data: str) -> int:
    """The pixel width of a base64 PNG (from its IHDR chunk)."""
    import base64
    import struct

    return struct.unpack(">I", base64.b64decode(data[:44])[16:20])[0]


def figure_width(cell) -> int:
    """The widest figure of a code cell's outputs in CSS pixels (0 when it has none)."""
    widths = [0]
    for output in cell.get("outputs", []):
        png = output.get("data", {}).get("image/png")
        if png:
            declared = output.get("metadata", {}).get("image/png", {}).get("width")
            widths.append(int(declared) if declared else png_width(png))
    return max(widths)


def book_notebook(nb, stem: str = "", header: str = ""):
    """A copy of an executed notebook for the book: each exercise's solution (prose and code)
    collapsed behind one "Show solution" toggle; a cell with a figure wider than the column
    tagged ``full-width``; progress bars static, other widget views a
    note (the explorer's own note only in the explorer notebook, ``stem``); ``header``
    (markdown: download and launch links) placed after the title cell."""
    note = EXPLORER_NOTE if stem and stem == explorer_stem() else WIDGET_NOTE
    nb = without_widgets(copy.deepcopy(nb), note)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = display_math_blocks(cell.source)
        elif figure_width(cell) > COLUMN_PX and "full-width" not in tags(cell):
            cell.metadata["tags"] = [*tags(cell), "full-width"]
    cells = with_solution_toggles(nb.cells)
    if header:
        title = next((i for i, c in enumerate(cells) if c.cell_type == "markdown"), -1)
        cells.insert(title + 1, nbformat.v4.new_markdown_cell(header))
    nb.cells = cells
    return nb


def exercise_count(nb) -> int:
    """The notebook's exercises: its ``**Exercise N.**`` paragraphs, or else the numbered items
    under its ``## Exercises`` heading (solution cells not counted)."""
    bold = numbered = 0
    inside = False
    for cell in nb.cells:
        if cell.cell_type != "markdown" or is_solution(cell):
            continue
        for line in cell.source.splitlines():
            if line.startswith("## "):
                inside = line.strip().lower().startswith("## exercises")
            bold += bool(re.match(r"^\*\*Exercise \d+", line))
            numbered += bool(inside and re.match(r"^\d+\.\s", line))
    return bold or numbered


def solution_count(nb) -> int:
    """The notebook's solutions: runs of consecutive cells tagged ``solution``."""
    runs, previous = 0, False
    for cell in nb.cells:
        current = is_solution(cell)
        runs += current and not previous
        previous = current
    return runs


def student_minutes(guide: str) -> dict[str, int]:
    """The class time of each notebook from the instructor guide: the markdown table whose
    header has a "student time" column, rows ``| NN name | ... | 60 min | ...`` (key ``NN_name``).
    """
    minutes, column = {}, None
    for line in guide.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|"):
            column = None
            continue
        if column is None:
            column = next((i for i, c in enumerate(cells) if "student time" in c.lower()), None)
            continue
        row = re.match(r"^(\d\d)\s+(\w+)$", cells[0])
        value = re.match(r"^(\d+)\s*min", cells[column]) if column < len(cells) else None
        if row and value:
            minutes[f"{row.group(1)}_{row.group(2)}"] = int(value.group(1))
    return minutes


def course_map(rows: list[dict], minutes: dict[str, int]) -> str:
    """The landing page's course map: one row per notebook with the class time the instructor
    guide plans for it (MyST markdown). Raises ValueError when the guide lacks a notebook."""
    missing = [row["stem"] for row in rows if row["stem"] not in minutes]
    if missing:
        raise ValueError(
            f"docs/instructor.md gives no student time for {', '.join(missing)}: add a row "
            "to its table with the 'student time' column"
        )
    lines = [
        "| # | notebook | exercises | time in class |",
        "|---|----------|-----------|---------------|",
    ]
    for row in rows:
        lines.append(
            f"| {row['number']} | {{doc}}`{row['title']} <notebooks/{row['stem']}>` | "
            f"{row['exercises']} | {minutes[row['stem']]} min |"
        )
    total = sum(minutes[row["stem"]] for row in rows)
    lines.append(f"|   | **all {len(rows)} notebooks** | | **{total} min** |")
    return "\n".join(lines) + "\n"


def repository_url(pyproject: Path = ROOT / "pyproject.toml") -> str | None:
    """The repository's public URL: ``DRSL_REPOSITORY_URL`` or ``[project.urls] Repository``
    of pyproject.toml; None when neither says (the book then has no launch links)."""
    import os

    url = os.environ.get("DRSL_REPOSITORY_URL", "").strip()
    if not url and pyproject.is_file():
        urls = tomllib.loads(pyproject.read_text()).get("project", {}).get("urls", {})
        url = urls.get("Repository", "") or urls.get("repository", "")
    return url.rstrip("/").removesuffix(".git") or None


COLAB_TAG = "colab"  # a notebook's cell that installs drsl on Colab (pip from the repository)


def launch_header(
    stem: str, download: str, url: str | None, *, colab: bool = True, branch: str = "main"
) -> str:
    """The markdown line under a notebook's title: download the notebook (no outputs) and, when
    the repository is on GitHub, open it on Binder (``postBuild`` installs drsl there) or, for a
    notebook with a Colab install cell (``colab``: a cell tagged ``colab``), on Colab."""
    links = [f"{{download}}`Download this notebook (.ipynb) <{download}>`"]
    github = re.match(r"^https://github\.com/([^/]+/[^/]+)$", url or "")
    if github:
        repo, path = github.group(1), f"notebooks/{stem}.ipynb"
        binder = f"https://mybinder.org/v2/gh/{repo}/{branch}?labpath={path}"
        links.append(f"[Launch on Binder]({binder})")
        if colab:
            google = f"https://colab.research.google.com/github/{repo}/blob/{branch}/{path}"
            links.append(f"[Open in Colab]({google})")
    return ":::{container} drsl-launch\n" + " \u00b7 ".join(links) + "\n:::\n"


def notebook_row(stem: str, nb) -> dict:
    """The course-map facts of one executed notebook."""
    return {
        "number": stem[:2],
        "stem": stem,
        "title": title_of(nb).replace("`", ""),
        "exercises": exercise_count(nb),
        "solutions": solution_count(nb),
    }


SPEC_BLOCK_MARK = re.compile(r"<!-- typesets the spec's code block sha256:([0-9a-f]{16}) -->\n")


def typeset_spec(spec: str, typeset: str) -> str:
    """The spec with its indented formula block replaced by ``typeset`` (LaTeX display maths).

    ``typeset`` starts with ``<!-- typesets the spec's code block sha256:<16 hex> -->``: the
    digest of the indented block it replaces, so a changed spec fails the build instead of
    showing stale formulas. Raises ValueError when no block of the spec has that digest.
    """
    import hashlib

    mark = SPEC_BLOCK_MARK.match(typeset)
    if mark is None:
        raise ValueError("docs/book/spec-equations.md must start with its sha256 marker")
    # an indented code block: after a blank line, indented lines with single blank lines between
    for block in re.finditer(r"(?<=\n\n)(?: {4}.*\n(?:\n(?= {4}))?)+", spec):
        text = block.group(0).strip("\n")
        if hashlib.sha256(text.encode()).hexdigest()[:16] == mark.group(1):
            body = typeset[mark.end() :].strip("\n")
            return spec[: block.start()] + "\n" + body + "\n\n" + spec[block.end() :]
    raise ValueError(
        "docs/drsl-loss-spec.md's formula block changed: update docs/book/spec-equations.md "
        "(its LaTeX and its sha256 marker)"
    )


def markdown_section(text: str, names: tuple[str, ...]) -> tuple[str, str]:
    """The first ``## `` section of ``text`` whose title is in ``names`` (case-insensitive),
    headings promoted one level; returns (title, body). Raises ValueError when none is."""
    lines, start = text.splitlines(), None
    for i, line in enumerate(lines):
        if line.startswith("## ") and line[3:].strip().lower() in {n.lower() for n in names}:
            start = i
            break
    if start is None:
        raise ValueError(f"README.md has no section named {' or '.join(names)}: add one")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), None)
    body = [ln[1:] if ln.startswith("##") else ln for ln in lines[start + 1 : end]]
    return lines[start][3:].strip(), "\n".join(body).strip() + "\n"


def rewrite_links(text: str, origin: Path, src: Path) -> str:
    """Make the links of a repository markdown file (at ``origin``) valid in the book.

    Web links stay; links to a file that is a book page point to it; images are copied into
    ``src/_files``; anything else in the repository becomes its path in code (``path``), since
    the book cannot serve it.
    """

    def fix(match: re.Match) -> str:
        bang, label, target = match.groups()
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            return match.group(0)
        path, _, anchor = target.partition("#")
        repo_path = (origin.parent / path).resolve()
        try:
            rel = repo_path.relative_to(ROOT).as_posix()
        except ValueError:
            return label
        if rel in PAGES:
            return f"{bang}[{label}]({PAGES[rel]}.md{'#' + anchor if anchor else ''})"
        if rel.startswith("notebooks/") and re.match(r"notebooks/\d\d_\w+\.(py|ipynb)$", rel):
            return f"[{label}]({Path(rel).with_suffix('.ipynb').as_posix()})"
        if bang and repo_path.is_file():
            (src / "_files").mkdir(exist_ok=True)
            shutil.copy2(repo_path, src / "_files" / repo_path.name)
            return f"![{label}](_files/{repo_path.name})"
        return f"{label} (`{rel}`)" if label.strip("`") != rel else f"`{rel}`"

    return _LINK.sub(fix, text)


def public_modules() -> list[str]:
    """drsl's public top-level modules and subpackages (no leading underscore, no __main__)."""
    import drsl

    names = [m.name for m in pkgutil.iter_modules(drsl.__path__) if not m.name.startswith("_")]
    return [f"drsl.{name}" for name in sorted(names)]


def api_page() -> str:
    """The API reference page: an autosummary of every public module, recursively."""
    modules = "\n".join(f"   {name}" for name in public_modules())
    return (
        "# API reference\n\n"
        "Generated from the docstrings of the `drsl` package (Sphinx autodoc and autosummary).\n"
        "Each module's page lists its public functions and classes with their arguments, shapes,\n"
        "returns and examples.\n\n"
        "```{eval-rst}\n.. autosummary::\n   :toctree: generated\n   :recursive:\n\n"
        f"{modules}\n```\n"
    )
