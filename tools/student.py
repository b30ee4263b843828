"""Write the student edition: the course notebooks without their solutions, ready to hand out.

    python tools/student.py [--out build/student]        (make student)

Reads every ``notebooks/NN_name.py`` (jupytext source), drops the cells tagged ``solution``,
keeps every other cell in order, clears outputs and execution counts, drops the jupytext
pairing (a handed-out notebook has no ``.py`` twin) and writes ``OUT/NN_name.ipynb`` with the
python3 kernelspec. The notebooks still run top to bottom (tests/test_student.py executes them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from course import ROOT, course_sources, is_solution, read_source  # noqa: E402


def student_notebook(nb):
    """A copy of ``nb`` without solution cells, outputs, execution counts or jupytext pairing."""
    out = nbformat.v4.new_notebook(metadata=dict(nb.metadata))
    out.metadata.pop("jupytext", None)
    out.metadata.pop("widgets", None)
    for cell in nb.cells:
        if is_solution(cell):
            continue
        cell = nbformat.from_dict(dict(cell))
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        out.cells.append(cell)
    return out


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
        f"[student] {len(paths)} notebooks in {args.out}/: {dropped} solution cells dropped, "
        f"{total - dropped} cells kept"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
