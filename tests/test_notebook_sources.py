"""Notebook sources: every jupytext script has its paired .ipynb, in sync, without outputs,
with a python3 kernelspec, following the course template (goals ... references)."""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
SOURCES = sorted(NB_DIR.glob("[0-9][0-9]_*.py"))
IPYNBS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
SECTIONS = ["## Goals", "## Setup", "## Summary", "## Exercises", "## References"]


def _cells(nb):
    """What must agree between a pair: cell types, sources and tags."""
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", ()))) for c in nb.cells]


def test_there_are_notebooks():
    assert SOURCES, "no notebooks/NN_*.py sources"


def test_every_source_has_its_pair_and_back():
    assert [p.stem for p in SOURCES] == [p.stem for p in IPYNBS]


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_pair_in_sync(src):
    pair = src.with_suffix(".ipynb")
    assert pair.is_file(), f"{pair.name} missing: run `make notebooks`"
    want = _cells(jupytext.read(src))
    got = _cells(nbformat.read(pair, as_version=4))
    assert got == want, f"{pair.name} is out of sync with {src.name}: run `make notebooks`"


@pytest.mark.parametrize("pair", IPYNBS, ids=lambda p: p.name)
def test_committed_ipynb_has_no_outputs_and_a_kernelspec(pair):
    nb = nbformat.read(pair, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{pair.name} cell {i} carries outputs"
            assert cell.execution_count is None, f"{pair.name} cell {i} has an execution count"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", pair.name


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_source_follows_the_template(src):
    text = src.read_text()
    assert "kernelspec:" in "\n".join(text.splitlines()[:20]), f"{src.name}: no kernelspec header"
    nb = jupytext.read(src)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    positions = [markdown.find(s) for s in SECTIONS]
    assert all(p >= 0 for p in positions), f"{src.name} lacks {SECTIONS}: {positions}"
    assert positions == sorted(positions), f"{src.name}: sections out of order"
    assert nb.cells[0].cell_type == "markdown", f"{src.name} must open with prose"
    # prose before code: no two code cells in a row without markdown between them,
    # except right after setup (a section may hold a short sequence of code cells)
    kinds = "".join("m" if c.cell_type == "markdown" else "c" for c in nb.cells)
    assert "ccc" not in kinds, f"{src.name}: three code cells in a row without prose"


MAX_LINES = 500  # one lesson per notebook: about this many lines of jupytext source at most


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_each_notebook_is_one_lesson_of_at_most_500_lines(src):
    lines = len(src.read_text().splitlines())
    assert lines <= MAX_LINES, (
        f"{src.name} has {lines} lines (at most {MAX_LINES}): move logic into drsl, link to the "
        "notebook that already teaches a part, or split a second lesson off"
    )


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_notebook_imports_drsl_and_defines_no_package_function(src):
    code = "\n".join(c.source for c in jupytext.read(src).cells if c.cell_type == "code")
    assert re.search(r"^(from drsl|import drsl)", code, re.M), f"{src.name} does not import drsl"
    defs = re.findall(r"^def (\w+)", code, re.M)
    assert not defs, f"{src.name} defines top-level functions {defs}: they belong in drsl"


EXERCISE = re.compile(r"^\*\*Exercise (\d+)\.\*\*", re.M)


def _tags(cell) -> tuple:
    return tuple(cell.metadata.get("tags", ()))


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_every_exercise_has_a_solution_an_answer_cell_and_a_check(src):
    """After "## Exercises": each "**Exercise N.**" cell is followed by its explanation (a
    markdown cell tagged `solution`, "**Solution N.**"), an answer cell tagged `answer` whose
    solution sits between `### BEGIN SOLUTION` and `### END SOLUTION` (nbgrader makes it a stub)
    and a check cell tagged `check` that asserts something; exercises are numbered 1, 2, ..."""
    cells = jupytext.read(src).cells
    start = next(i for i, c in enumerate(cells) if "## Exercises" in c.source)
    numbers = []
    for i, cell in enumerate(cells):
        found = EXERCISE.findall(cell.source) if cell.cell_type == "markdown" else []
        if not found or "solution" in _tags(cell):
            continue
        assert i >= start and len(found) == 1, f"{src.name}: one exercise per cell, after Exercises"
        n = found[0]
        numbers.append(int(n))
        explain, answer, check = cells[i + 1 : i + 4]
        assert "solution" in _tags(explain) and f"**Solution {n}.**" in explain.source, src.name
        assert "answer" in _tags(answer) and answer.cell_type == "code", f"{src.name} ex. {n}"
        body = answer.source.split("### BEGIN SOLUTION")[-1]
        assert "### BEGIN SOLUTION" in answer.source and "### END SOLUTION" in body, src.name
        assert "check" in _tags(check) and "assert " in check.source, f"{src.name} ex. {n}"
        if "### BEGIN HIDDEN TESTS" in check.source:
            assert "### END HIDDEN TESTS" in check.source, f"{src.name} ex. {n}"
    assert numbers and numbers == list(range(1, len(numbers) + 1)), f"{src.name}: {numbers}"
    graded = [c for c in cells if {"answer", "check"} & set(_tags(c))]
    assert len(graded) == 2 * len(numbers), f"{src.name}: an answer or check cell outside"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_the_student_edition_reads_without_solutions(src):
    """Dropping the solution cells (as the student edition does) leaves every exercise and the
    template's sections, and no solution text."""
    cells = [c for c in jupytext.read(src).cells if "solution" not in _tags(c)]
    markdown = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    assert "**Solution" not in markdown
    assert all(s in markdown for s in SECTIONS)
    full = "\n".join(c.source for c in jupytext.read(src).cells if c.cell_type == "markdown")
    assert EXERCISE.findall(markdown) == EXERCISE.findall(full)


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_no_path_outside_the_repository_and_no_traceback_cells(src):
    text = src.read_text()
    outside = "shared" + "/"  # the steering folder beside the checkout (built: not named here)
    assert outside not in text, f"{src.name} names a folder outside the repository"
    assert "docs/drsl-loss-spec.md" in text or "drsl-loss-spec" not in text
    for cell in jupytext.read(src).cells:
        assert "raises-exception" not in _tags(cell), f"{src.name}: a traceback cell"


def _listed(text: str, pattern: str) -> list[str]:
    return ["_".join(m) for m in re.findall(pattern, text, re.M)]


def test_every_list_of_the_notebooks_names_each_one_once_in_order():
    """notebooks/README.md, the instructor guide and the course map of notebook 00 list exactly
    the notebooks there are, in order (a new or renumbered notebook must be added to each)."""
    stems = [p.stem for p in SOURCES]
    readme = (NB_DIR / "README.md").read_text()
    assert [s for s in re.findall(r"^\| \d\d \| `(\d\d_\w+)` \|", readme, re.M)] == stems
    guide = (ROOT / "docs" / "instructor.md").read_text()
    assert _listed(guide, r"^\| (\d\d) \| (\w+) \| ") == stems
    overview = "\n".join(c.source for c in jupytext.read(SOURCES[0]).cells)
    assert _listed(overview, r"^\| (\d\d) \| (\w+) \| ") == stems


# Numbers a markdown cell may hold (everything else comes from a cell's output). The list is
# short on purpose; each entry is a definition or a pointer, never a measurement:
NUMBER_ALLOWED = [
    r"```.*?```",  # fenced code: commands the reader types
    r"`[^`\n]*`",  # inline code: names and literal arguments (`K = 2`, `1e-10`)
    r"\$\$.*?\$\$",  # display formulas
    r"\$[^$\n]*\$",  # inline formulas and definitions ($K = 4$, $16 \times 4$, $1 : 1000$)
    r"^#+ [\d.]+",  # section numbers in headings
    r"^\s*\d+\. ",  # numbered list items
    r"\*\*(Exercise|Solution) \d+\.\*\*",  # exercise numbers
    r"\b([Nn]otebooks?|[Ss]ections?|ex\.|[Ee]xercises?|[Ss]olutions?)\s+\d+"
    r"(\s*(,|and|or|to)\s*\d+)*",  # cross-references: notebook 05, sections 1 and 2
    r"^\|\s*\d\d\s*\|",  # the course map's notebook numbers
    r"\b(19|20)\d\d\b",  # years (citations)
    r"\b[A-Za-z]+-\d+\b",  # names that hold a number: Market-1501, ResNet-18, rank-1
    r"(?<![\w.:/,])\d(?![\w.:/,]*\d)",  # a lone digit (item 0, the 3 positives of an example)
]
_NUMBER = re.compile(r"(?<![\w.])\d[\d,.]*\d|(?<![\w.])\d")


def hand_typed_numbers(markdown: str) -> list[str]:
    """The numbers of a markdown cell that no allow-list entry covers (References exempt)."""
    text = markdown.split("## References")[0]
    for pattern in NUMBER_ALLOWED:
        text = re.sub(pattern, " ", text, flags=re.S | re.M)
    return _NUMBER.findall(text)


def test_the_number_check_flags_results_typed_by_hand():
    assert hand_typed_numbers("A model of 0.31 M parameters, about 1:240, 3,700 images.") == [
        "0.31",
        "1",
        "240",
        "3,700",
    ]
    allowed = (
        "## 2. Setup\n**Exercise 3.** In notebook 05, $K = 4$, `delta=0.3`, Market-1501, 2019."
    )
    assert hand_typed_numbers(allowed) == []


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_no_hand_typed_number_in_prose(src):
    """Numbers about results are printed (or rendered as Markdown) by cells; markdown cells
    hold only the definitions and pointers of NUMBER_ALLOWED."""
    found = {
        i: hand_typed_numbers(c.source)
        for i, c in enumerate(jupytext.read(src).cells)
        if c.cell_type == "markdown"
    }
    found = {i: n for i, n in found.items() if n}
    assert not found, f"{src.name}: numbers typed into markdown cells {found}: print them"


BOOK_HIDES = {"remove-input", "hide-input", "remove-cell", "hide-cell"}  # myst-nb's tags


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_cells_that_only_build_prose_or_assert_are_hidden_in_the_book(src):
    """A code cell that renders Markdown, or holds nothing but asserts, carries a tag with which
    the book shows its output only (or nothing): a reader sees prose, tables and figures."""
    import ast

    loose = []
    for i, cell in enumerate(jupytext.read(src).cells):
        if cell.cell_type != "code" or {"solution", "answer", "check"} & set(_tags(cell)):
            continue  # an exercise's cells: the book shows them as the exercise
        body = ast.parse(cell.source).body
        prose = "Markdown(" in cell.source
        asserts_only = bool(body) and all(isinstance(node, ast.Assert) for node in body)
        if (prose or asserts_only) and not BOOK_HIDES & set(_tags(cell)):
            loose.append(i)
    assert not loose, f"{src.name}: cells {loose} build prose or assert: tag them remove-input"
