"""Benchmark: draw the synthetic sets (time, size) and score hand-made baselines on them.

1. Draws the default set and the fast set from scratch into a scratch folder (``--out``,
   default a temporary folder; ``data/`` is not touched) and reports wall time, CPU time,
   workers, images, JPEG bytes and the size on disk.
2. Scores nearest-neighbour baselines on query/gallery with :mod:`drsl.metrics` (Market
   protocol): raw pixels and HSV colour histograms (global and 6 stripes), plus the raw pixels
   with same-camera matches counted (what the protocol prevents).

The issue's bar: the baselines must stay poor (mAP < 30%).

Run: ``.venv/bin/python benchmarks/bench_synth_baseline.py [--out DIR] [--results FILE]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from drsl.data import synth
from drsl.data.datasets import load_dataset
from drsl.data.features import color_histogram_features, load_images, raw_pixel_features
from drsl.metrics import evaluate_embeddings


def du_bytes(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def du_blocks(path: Path) -> int:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) * 1024


def cpu_seconds() -> float:
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def draw(name: str, config: synth.SynthConfig, out: Path) -> tuple[Path, str]:
    root = out / name
    if root.exists():
        shutil.rmtree(root)
    c0, t0 = cpu_seconds(), time.perf_counter()
    synth.generate(root, config=config, progress=False)
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    m = synth.read_manifest(root)
    n = len(m["files"])
    row = (
        f"| {name} | {n} | {m['counts']['train_ids']} + {m['counts']['test_ids']} | "
        f"{wall:.1f} | {cpu:.1f} | {m['workers']} | {m['bytes'] / 2**20:.1f} | "
        f"{du_blocks(root) / 2**20:.1f} |"
    )
    return root, row


def baselines(root: Path) -> list[str]:
    splits = load_dataset(root)
    qp, qc = splits.arrays("query")
    gp, gc = splits.arrays("gallery")
    q_img = load_images([p for p, _, _ in splits.query])
    g_img = load_images([p for p, _, _ in splits.gallery])
    rows = []
    for name, feat, cams in [
        ("raw pixels 16x32", raw_pixel_features, gc),
        ("raw pixels 32x64", lambda x: raw_pixel_features(x, size=(32, 64)), gc),
        ("HSV histogram 8x4x4", color_histogram_features, gc),
        ("HSV histogram 8x4x4, 6 stripes", lambda x: color_histogram_features(x, stripes=6), gc),
        ("raw pixels 16x32, same camera counted (no protocol)", raw_pixel_features, -9 + 0 * gc),
    ]:
        r = evaluate_embeddings(
            torch.from_numpy(feat(q_img)), torch.from_numpy(feat(g_img)), qp, gp, qc, cams
        )
        rows.append(f"| {name} | {r.mAP:.1%} | {r.cmc[0]:.1%} | {r.cmc[4]:.1%} | {r.mINP:.1%} |")
    chance = np.mean([(gp == p).sum() for p in qp]) / len(gp)
    rows.append(f"| (chance: matches per query / gallery size) | ~{chance:.1%} | | | |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="scratch folder for the sets")
    parser.add_argument(
        "--results", type=Path, default=Path(__file__).parent / "results" / "synth.md"
    )
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="drsl-synth-"))
    lines = [
        "# Synthetic data: generation and hand-made baselines",
        "",
        f"`benchmarks/bench_synth_baseline.py`, generator version {synth.GENERATOR_VERSION}, "
        f"{os.cpu_count()} CPUs (load average at start {os.getloadavg()[0]:.1f}: a shared "
        "machine, so wall times are upper bounds; CPU time counts all processes).",
        "",
        "| set | images | train + test ids | wall s | CPU s | workers | JPEG MiB | on disk MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    roots = {}
    for name, cfg in (("default", synth.DEFAULT), ("fast", synth.FAST)):
        roots[name], row = draw(name, cfg, out)
        lines.append(row)
    for name in ("default", "fast"):
        lines += [
            "",
            f"## Nearest-neighbour baselines on the {name} set (Market protocol)",
            "",
            "| feature | mAP | rank-1 | rank-5 | mINP |",
            "|---|---:|---:|---:|---:|",
            *baselines(roots[name]),
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    if args.out is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
