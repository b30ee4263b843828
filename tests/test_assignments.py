"""Autograded exercises (``make assignments``): nbgrader's release holds no solution, and
``nbgrader autograde`` gives the solved notebook full marks, the unanswered release zero and a
half-solved one partial credit, for every notebook (fast mode)."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
from assignments import autograde as run_autograde  # noqa: E402
from assignments import build, graded_cells, nbgrader_notebook, release_notebook  # noqa: E402
from course import course_sources, read_source  # noqa: E402

SOURCES = course_sources()


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The nbgrader course folder of every notebook, built as `make assignments` builds it."""
    folder = tmp_path_factory.mktemp("course")
    build(folder)
    return folder


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_every_exercise_is_graded_with_points(source):
    graded = graded_cells(read_source(source))
    assert graded and all(answer is not None for _, answer, _ in graded), source.stem
    assert [n for n, _, _ in graded] == list(range(1, len(graded) + 1)), source.stem


@pytest.mark.slow
def test_nbgraders_release_holds_no_solution_and_matches_the_student_edition(course):
    for source in SOURCES:
        release = nbformat.read(course / "release" / source.stem / f"{source.stem}.ipynb", 4)
        text = "\n".join(c.source for c in release.cells)
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text, source.stem
        assert "**Solution" not in text, source.stem
        ours = release_notebook(nbgrader_notebook(read_source(source)))
        assert [c.source for c in release.cells] == [c.source for c in ours.cells], source.stem


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_autograde_full_marks_solved_zero_blank_partial_half(course, source, monkeypatch):
    monkeypatch.setenv("DRSL_FAST", "1")
    solved = nbformat.read(course / "source" / source.stem / f"{source.stem}.ipynb", 4)
    even = {n for n, _, _ in graded_cells(read_source(source)) if n % 2 == 0}
    submissions = {
        "solved": solved,
        "blank": nbformat.read(course / "release" / source.stem / f"{source.stem}.ipynb", 4),
        "half": release_notebook(solved, exercises=even),  # the even exercises left undone
    }
    scores = run_autograde(course, source.stem, submissions)
    total = scores["solved"][1]
    assert total == len(graded_cells(read_source(source))) and total > 0
    assert scores["solved"][0] == total, scores
    assert scores["blank"][0] == 0, scores
    assert 0 < scores["half"][0] < total, scores
