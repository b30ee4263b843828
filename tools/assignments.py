"""Build the nbgrader course folder: one assignment per notebook, source and release.

    python tools/assignments.py [--out build/assignments]        (make assignments)

Each ``notebooks/NN_name.py`` becomes the assignment ``NN_name``:

- ``OUT/source/NN_name/NN_name.ipynb``: the course notebook for nbgrader. Cells tagged
  ``answer`` become *autograded answers* (``### BEGIN SOLUTION`` ... ``### END SOLUTION``),
  cells tagged ``check`` become *autograder tests* (``points-N`` tag: N points, else 1; hidden
  tests between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``); the solution
  explanations (markdown cells tagged ``solution``) are left out, since nbgrader only grades
  code; every other cell is kept, outputs cleared.
- ``OUT/release/NN_name/NN_name.ipynb``: what ``nbgrader generate_assignment`` makes of it,
  the student's copy: each answer is a stub (``raise NotImplementedError()``) and the hidden
  tests are gone. ``make student`` copies these into ``build/student/``.

``OUT/nbgrader_config.py`` is the course's configuration (cell timeout for the training
notebooks); ``OUT/gradebook.db`` the gradebook. ``docs/instructor.md`` says how to use the
folder on a JupyterHub (collect, ``nbgrader autograde``, feedback).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from course import ROOT, course_sources, is_solution, read_source, tags  # noqa: E402

ANSWER, CHECK = "answer", "check"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
CELL_TIMEOUT = 600  # seconds per cell when nbgrader executes a notebook (training cells)
CONFIG = f"""\
# nbgrader configuration of the drsl course (written by tools/assignments.py)
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "drsl"
c.Execute.timeout = {CELL_TIMEOUT}
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
"""
_EXERCISE = re.compile(r"^\*\*Exercise (\d+)\.\*\*", re.M)


def points(cell) -> int:
    """The points of a check cell: its ``points-N`` tag, else 1."""
    found = [int(t.split("-", 1)[1]) for t in tags(cell) if re.fullmatch(r"points-\d+", t)]
    return found[0] if found else 1


def graded_cells(nb) -> list[tuple[int, object, object]]:
    """``(exercise, answer cell, check cell)`` for every exercise, in order."""
    out, exercise, answer = [], None, None
    for cell in nb.cells:
        if cell.cell_type == "markdown" and not is_solution(cell) and _EXERCISE.search(cell.source):
            exercise = int(_EXERCISE.search(cell.source).group(1))
        if ANSWER in tags(cell):
            answer = cell
        if CHECK in tags(cell):
            out.append((exercise, answer, cell))
            answer = None
    return out


def nbgrader_notebook(nb):
    """The course notebook as an nbgrader source notebook (see the module docstring)."""
    out = nbformat.v4.new_notebook(metadata=dict(nb.metadata))
    out.metadata.pop("jupytext", None)
    out.metadata.pop("widgets", None)
    exercise = 0
    for cell in nb.cells:
        if is_solution(cell):
            continue
        cell = nbformat.from_dict(dict(cell))
        cell.metadata = dict(cell.metadata)
        if cell.cell_type == "markdown" and _EXERCISE.search(cell.source):
            exercise = int(_EXERCISE.search(cell.source).group(1))
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        meta = {"schema_version": 3, "solution": False, "grade": False, "locked": False}
        if ANSWER in tags(cell):
            meta.update(solution=True, grade_id=f"ex{exercise}-answer")
            cell.metadata["nbgrader"] = meta
        elif CHECK in tags(cell):
            meta.update(
                grade=True, locked=True, points=points(cell), grade_id=f"ex{exercise}-check"
            )
            cell.metadata["nbgrader"] = meta
        out.cells.append(cell)
    return out


def write_config(course: Path) -> None:
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(CONFIG)


@contextlib.contextmanager
def in_course(course: Path):
    """Run nbgrader with ``course`` as working folder (where it looks for its config)."""
    before = Path.cwd()
    os.chdir(course)
    try:
        yield
    finally:
        os.chdir(before)


def api(course: Path):
    """nbgrader's Python API on the course folder (its config and gradebook)."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config import Config

    # nbgrader migrates its gradebook by running the `alembic` script of its environment
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")

    cfg = Config()
    cfg.CourseDirectory.root = str(course)
    cfg.CourseDirectory.course_id = "drsl"
    cfg.Execute.timeout = CELL_TIMEOUT
    cfg.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    return NbGraderAPI(config=cfg)


def build(course: Path, sources: list[Path] | None = None) -> list[Path]:
    """Write ``course/source`` from the course notebooks and generate ``course/release``.

    Returns the release notebooks. Raises RuntimeError naming the notebook when nbgrader
    cannot generate one.
    """
    write_config(course)
    sources = sources or course_sources()
    for source in sources:
        folder = course / "source" / source.stem
        folder.mkdir(parents=True, exist_ok=True)
        nb = nbgrader_notebook(read_source(source))
        nbformat.validate(nb)
        nbformat.write(nb, folder / f"{source.stem}.ipynb")
    grader = api(course)
    released = []
    with in_course(course):
        for source in sources:
            result = grader.generate_assignment(source.stem)
            if not result["success"]:
                raise RuntimeError(f"nbgrader could not release {source.stem}: {result['log']}")
            released.append(course / "release" / source.stem / f"{source.stem}.ipynb")
    return released


def autograde(course: Path, assignment: str, submissions: dict) -> dict[str, tuple[float, float]]:
    """Submit each ``{student: notebook}`` of ``assignment`` and run ``nbgrader autograde``.

    Returns ``{student: (score, max_score)}`` from the gradebook. The course folder must hold
    the assignment's source (:func:`build`).
    """
    from nbgrader.api import Gradebook

    grader = api(course)
    url = f"sqlite:///{course / 'gradebook.db'}"
    scores = {}
    with in_course(course):
        for student, nb in submissions.items():
            folder = course / "submitted" / student / assignment
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, folder / f"{assignment}.ipynb")
            with Gradebook(url) as gb:
                gb.update_or_create_student(student)
            result = grader.autograde(assignment, student)
            if not result["success"]:
                raise RuntimeError(f"autograde {assignment} / {student} failed: {result['log']}")
            with Gradebook(url) as gb:
                sub = gb.find_submission(assignment, student)
                scores[student] = (float(sub.score), float(sub.max_score))
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "assignments")
    args = parser.parse_args(argv)
    released = build(args.out.resolve())
    total = 0
    for path in released:
        nb = nbformat.read(path, as_version=4)
        cells = [c.metadata.get("nbgrader", {}) for c in nb.cells]
        score = sum(m.get("points", 0) for m in cells if m.get("grade"))
        total += score
        checks = sum(bool(m.get("grade")) for m in cells)
        print(f"[assignments] {path.stem}: {checks} checks, {score} points")
    print(f"[assignments] {len(released)} assignments, {total} points: {args.out}/source, release")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
