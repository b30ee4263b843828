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

from course import ROOT, is_solution, tags, title_of, without_widgets

WIDGET_NOTE = (
    '<p class="drsl-widget-note"><em>The interactive explorer runs in JupyterLab '
    "(<code>make course</code>) or as an app (<code>make explore</code>); section 3 shows "
    "the same content as static figures.</em></p>"
)
SHOW, HIDE = "Show solution", "Hide solution"
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


def book_notebook(nb):
    """A copy of an executed notebook for the book: code solutions collapsed (myst-nb
    ``hide-cell`` with a "Show solution" prompt), markdown solutions in a dropdown."""
    nb = without_widgets(copy.deepcopy(nb), WIDGET_NOTE)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = display_math_blocks(cell.source)
        if not is_solution(cell):
            continue
        if cell.cell_type == "code":
            cell.metadata["tags"] = [*tags(cell), "hide-cell"]
            cell.metadata["mystnb"] = {"code_prompt_show": SHOW, "code_prompt_hide": HIDE}
        elif cell.cell_type == "markdown":
            fence = ":" * 6
            cell.source = f"{fence}{{dropdown}} {SHOW}\n{cell.source}\n{fence}\n"
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


def course_map(rows: list[dict], mode: str) -> str:
    """The landing page's course map: one row per notebook (MyST markdown)."""
    lines = [
        f"| # | notebook | exercises | solutions | executed in ({mode} mode, this build) |",
        "|---|----------|-----------|-----------|------|",
    ]
    total = 0.0
    for row in rows:
        total += row["seconds"]
        lines.append(
            f"| {row['number']} | {{doc}}`{row['title']} <notebooks/{row['stem']}>` | "
            f"{row['exercises']} | {row['solutions']} | {row['seconds']:.0f} s |"
        )
    lines.append(f"|   | **all {len(rows)} notebooks** | | | **{total:.0f} s** |")
    return "\n".join(lines) + "\n"


def notebook_row(stem: str, nb, seconds: float) -> dict:
    """The course-map facts of one executed notebook."""
    return {
        "number": stem[:2],
        "stem": stem,
        "title": title_of(nb).replace("`", ""),
        "exercises": exercise_count(nb),
        "solutions": solution_count(nb),
        "seconds": seconds,
    }


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
