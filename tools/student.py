"""Write the student edition: the course notebooks without their solutions, ready to hand out.

    python tools/student.py [--out build/student]        (make student)

Reads every ``notebooks/NN_name.py`` (jupytext source) and writes ``OUT/NN_name.ipynb``: the
nbgrader *release* of the notebook (``tools/assignments.py``), made in process without a
gradebook: the solution explanations (cells tagged ``solution``) are dropped, every answer cell
holds the stub ``raise NotImplementedError()``, the check cells keep their visible checks and
lose their hidden tests; every other cell is kept in order, without outputs or jupytext pairing.
``make assignments`` writes the same release with nbgrader itself, plus the gradebook.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from assignments import nbgrader_notebook, release_notebook  # noqa: E402
from course import ROOT, course_sources, is_solution, read_source  # noqa: E402


def student_notebook(nb):
    """The student's copy of a course notebook: its nbgrader release (no solution, answers as
    stubs, no hidden test, no outputs, no jupytext pairing)."""
    return release_notebook(nbgrader_notebook(nb))


def write_student_edition(out: Path, sources: list[Path] | None = None) -> list[Path]:
    """Write one student notebook per course source into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources or course_sources():
        nb = student_notebook(read_source(source))
        nbformat.validate(nb)
        path = out / f"{source.stem}.ipynb"
        nbformat.write(nb, path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "student")
    args = parser.parse_args(argv)
    total = dropped = 0
    for source in course_sources():
        nb = read_source(source)
        total += len(nb.cells)
        dropped += sum(is_solution(c) for c in nb.cells)
    paths = write_student_edition(args.out)
    print(
        f"[student] {len(paths)} notebooks in {args.out}/: {dropped} explanations dropped, "
        f"{total - dropped} cells kept (answer cells as stubs)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
