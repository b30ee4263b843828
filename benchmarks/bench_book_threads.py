"""Benchmark: one course notebook executed in full mode with its kernel on 1 vs 2 CPU threads.

``make book`` executes every notebook in a fresh kernel; the kernel's thread count comes from
``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` (tools/course.py, ``executed(threads=...)``). This
measures the wall time of one notebook (default ``notebooks/04_train.py``, the heaviest) with
each setting, in interleaved rounds in one process (the machine may be shared: the load average
is recorded before each run), and writes the table to ``benchmarks/results/book_threads.md``.
tools/book.py's ``FULL_MODE_THREADS`` is chosen from it.

Run: ``.venv/bin/python benchmarks/bench_book_threads.py [--notebook 04_train] [--rounds 1]
[--out benchmarks/results/book_threads.md]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from course import executed  # noqa: E402


def load() -> float:
    """The 1-minute load average (0 where the platform has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebook", default="04_train", help="NN_name of a course notebook")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (1, 2) each")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/book_threads.md")
    args = parser.parse_args(argv)
    source = ROOT / "notebooks" / f"{args.notebook}.py"
    if not source.is_file():
        parser.error(f"--notebook {args.notebook}: no {source.relative_to(ROOT)}")
    from drsl.data.synth import ensure_dataset

    ensure_dataset(fast=False)
    rows = []
    for rnd in range(args.rounds):
        for threads in (1, 2):
            with tempfile.TemporaryDirectory() as cache:  # no cached copy: always executed
                before, start = load(), time.perf_counter()
                try:
                    seconds = executed(
                        source, fast=False, cache=Path(cache), threads=threads
                    ).seconds
                except Exception as err:  # noqa: BLE001 - a dead kernel is a result too
                    print(f"round {rnd + 1}, {threads} thread(s) failed: {err!r}"[:300])
                    seconds = -(time.perf_counter() - start)  # negative: failed after |s|
            rows.append((rnd + 1, threads, seconds, before, load()))
            print(f"round {rnd + 1}, {threads} thread(s): {seconds:.1f} s (load {before:.1f})")
    best = {
        t: min((r[2] for r in rows if r[1] == t and r[2] > 0), default=float("nan")) for t in (1, 2)
    }
    lines = [
        f"# `make book` full mode: notebook {args.notebook} on 1 vs 2 kernel threads",
        "",
        f"`benchmarks/bench_book_threads.py`, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{args.rounds} interleaved round(s); each run is a fresh kernel executing the notebook "
        "top to bottom in full mode (`DRSL_FAST=0`). The load average shows how busy the "
        "machine was (other jobs shared it). A negative time: the run failed after that long.",
        "",
        "| round | kernel threads | seconds | load before | load after |",
        "|---:|---:|---:|---:|---:|",
        *(f"| {r} | {t} | {s:.1f} | {a:.1f} | {b:.1f} |" for r, t, s, a, b in rows),
        "",
        f"Best: 1 thread {best[1]:.1f} s, 2 threads {best[2]:.1f} s "
        f"(2 threads / 1 thread = {best[2] / best[1]:.2f}).",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
