"""The student edition (``make student``): no solution survives, answers are stubs, hidden
tests are gone, and every other cell is kept in order without outputs. (That each student
notebook runs top to bottom and scores zero is tests/test_assignments.py's autograde test.)"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from course import course_sources, is_solution, read_source, tags  # noqa: E402
from student import student_notebook, write_student_edition  # noqa: E402

SOURCES = course_sources()


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    write_student_edition(out)
    return out


def _toy_notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Title\n## Exercises\n1. Compute x."),
        nbformat.v4.new_code_cell("x = 1  # exercise"),
        nbformat.v4.new_code_cell("x = 42  # the answer", metadata={"tags": ["solution"]}),
        nbformat.v4.new_markdown_cell("Because 42.", metadata={"tags": ["solution", "x"]}),
        nbformat.v4.new_code_cell("print(x)", metadata={"tags": ["raises-exception"]}),
    ]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="42\n")]
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nb.cells[4].execution_count = 3
    nb.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    return nb


def test_student_notebook_drops_solutions_outputs_and_pairing():
    out = student_notebook(_toy_notebook())
    assert [c.source for c in out.cells] == [
        "# Title\n## Exercises\n1. Compute x.",
        "x = 1  # exercise",
        "print(x)",
    ]
    assert out.cells[2].metadata["tags"] == ["raises-exception"]
    assert out.cells[2].outputs == [] and out.cells[2].execution_count is None
    assert "jupytext" not in out.metadata
    nbformat.validate(out)


def test_one_student_notebook_per_course_notebook(edition):
    assert sorted(p.stem for p in edition.glob("*.ipynb")) == [s.stem for s in SOURCES]


def _stubbed(cell) -> str:
    """The source a student sees: an answer's solution region replaced by the stub, a check's
    hidden tests removed."""
    src = cell.source
    if "answer" in tags(cell):
        head, rest = src.split("### BEGIN SOLUTION", 1)
        src = (
            head
            + "# YOUR CODE HERE\nraise NotImplementedError()"
            + rest.split("### END SOLUTION", 1)[1]
        )
    if "check" in tags(cell) and "### BEGIN HIDDEN TESTS" in src:
        head, rest = src.split("### BEGIN HIDDEN TESTS", 1)
        src = head + rest.split("### END HIDDEN TESTS", 1)[1]
    return src.strip()


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_no_solution_survives_and_every_other_cell_is_kept_in_order(edition, source):
    original = read_source(source)
    student = nbformat.read(edition / f"{source.stem}.ipynb", as_version=4)
    kept = [(c.cell_type, _stubbed(c)) for c in original.cells if not is_solution(c)]
    assert [(c.cell_type, c.source.strip()) for c in student.cells] == kept
    assert not any(is_solution(c) for c in student.cells)
    text = "\n".join(c.source for c in student.cells)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    answers = [c for c in original.cells if "answer" in tags(c)]
    solutions = [
        c.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0] for c in answers
    ]
    assert not [s for s in solutions if s.strip() and s.strip() in text]
    assert text.count("raise NotImplementedError()") == len(answers) > 0
    code = [c for c in student.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert student.metadata["kernelspec"]["name"] == "python3"
    assert "jupytext" not in student.metadata
