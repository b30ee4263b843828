"""Benchmark: Market-size evaluation (3368 queries x 19732 gallery, D=512, 751 ids, 6 cameras).

Measures, in one process, the time and peak memory of

- the **floor**: the distance matrix alone, ``pairwise_euclidean(q, g)`` (drsl.distances);
- ``evaluate_rank(pairwise_euclidean(q, g), ...)``: distances + the Market-protocol ranking;
- ``evaluate_embeddings(q, g, ...)``: the same, block by block (never the full matrix);
- a torchreid-style loop (full ``argsort`` per row, then one query at a time) on a subset of
  queries, scaled to all queries, for scale.

Times are the best of ``--repeats`` interleaved rounds (the machine may be shared). Peak
memory is the process's resident high-water mark (``VmHWM``, reset before each measurement
through ``/proc/self/clear_refs``) minus the resident size before it. The gallery follows
Market-1501: 2793 distractors (pid 0), 3819 junk (pid -1), the rest from the query identities.
Features are identity centres plus noise (``--noise``; a trained-model-like mAP) or pure noise
(``--random``, the worst case: every gallery item can precede the farthest match).

Run: ``.venv/bin/python benchmarks/bench_metrics.py [--repeats 3] [--out results/metrics.md]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from drsl.distances import pairwise_euclidean
from drsl.metrics import evaluate_embeddings, evaluate_rank

NQ, NG, D, IDS, CAMS = 3368, 19732, 512, 751, 6
DISTRACTORS, JUNK = 2793, 3819


def rss_kib() -> int:
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def hwm_kib() -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def measure(fn):
    """(seconds, extra peak MiB over the resident size before the call, result)."""
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
    before = rss_kib()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    return dt, (hwm_kib() - before) / 1024, out


def market_like(seed: int, noise: float, random: bool):
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, IDS + 1, NQ)
    q_camids = rng.integers(0, CAMS, NQ)
    g_pids = np.concatenate(
        [
            np.zeros(DISTRACTORS, int),
            -np.ones(JUNK, int),
            rng.integers(1, IDS + 1, NG - DISTRACTORS - JUNK),
        ]
    )
    g_camids = rng.integers(0, CAMS, NG)
    perm = rng.permutation(NG)
    g_pids, g_camids = g_pids[perm], g_camids[perm]
    gen = torch.Generator().manual_seed(seed)
    if random:
        q, g = torch.randn(NQ, D, generator=gen), torch.randn(NG, D, generator=gen)
    else:
        centres = torch.randn(IDS + 1, D, generator=gen)
        centres[0] = 0  # distractors and junk: no identity
        q = centres[q_pids] + noise * torch.randn(NQ, D, generator=gen)
        g = centres[np.maximum(g_pids, 0)] + noise * torch.randn(NG, D, generator=gen)
    return q, g, q_pids, g_pids, q_camids, g_camids


def torchreid_style(distmat: np.ndarray, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """The usual Python evaluation (torchreid ``eval_market1501``), for scale only."""
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    aps = []
    for i in range(distmat.shape[0]):
        order = indices[i]
        remove = ((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])) | (
            g_pids[order] == -1
        )
        raw = matches[i][~remove]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        cmc[cmc > 1] = 1
        _ = cmc[:max_rank]
        tmp = raw.cumsum() / (np.arange(len(raw)) + 1.0) * raw
        aps.append(tmp.sum() / raw.sum())
    return float(np.mean(aps))


def _distances_then_rank(q, g, qp, gp, qc, gc):
    return evaluate_rank(pairwise_euclidean(q, g), qp, gp, qc, gc)


def run(args) -> str:
    lines = []
    scenarios = [
        (f"trained-like features (noise {args.noise})", args.noise, False),
        (f"weak-model features (noise {args.weak_noise})", args.weak_noise, False),
        ("random features (worst case)", 0.0, True),
    ]
    for label, noise, random in scenarios:
        q, g, qp, gp, qc, gc = market_like(0, noise, random)
        ids = (qp, gp, qc, gc)
        floor, full, chunked = [], [], []
        for _ in range(args.repeats):
            floor.append(measure(partial(pairwise_euclidean, q, g)))
            full.append(measure(partial(_distances_then_rank, q, g, *ids)))
            chunked.append(measure(partial(evaluate_embeddings, q, g, *ids)))
        dist = floor[-1][2]
        ranking = [measure(partial(evaluate_rank, dist, *ids)) for _ in range(args.repeats)]
        t_floor, m_floor = min(r[0] for r in floor), max(r[1] for r in floor)
        res = full[0][2]
        assert np.array_equal(res.all_AP, ranking[0][2].all_AP)
        lines.append(
            f"\n### {label}: mAP {res.mAP:.1%}, rank-1 {res.cmc[0]:.1%}, mINP {res.mINP:.1%}\n"
        )
        lines.append("| what | seconds (best) | x floor | peak extra MiB | extra over floor MiB |")
        lines.append("|---|---:|---:|---:|---:|")
        for name, rows in (
            ("floor: `pairwise_euclidean(q, g)`", floor),
            ("`evaluate_rank(pairwise_euclidean(q, g))`", full),
            ("`evaluate_embeddings(q, g)` (blocks)", chunked),
            ("`evaluate_rank(distmat)` alone (ranking only)", ranking),
        ):
            t, m = min(r[0] for r in rows), max(r[1] for r in rows)
            over = f"{m - m_floor:+.0f}" if "alone" not in name else "-"
            lines.append(f"| {name} | {t:.2f} | {t / t_floor:.2f} | {m:.0f} | {over} |")
        if args.loop_queries:
            n = args.loop_queries
            sub = (dist[:n].numpy(), qp[:n], gp, qc[:n], gc)
            t, _, _ = measure(partial(torchreid_style, *sub))
            scaled = t * NQ / n
            lines.append(
                f"| torchreid-style loop (ranking only; {n} queries, time x {NQ / n:.1f}) | "
                f"{scaled:.2f} | {scaled / t_floor:.2f} | - | - |"
            )
        del q, g, dist
    head = [
        "# Evaluation benchmark: Market-size (3368 x 19732, D=512, 751 ids, 6 cameras)",
        "",
        f"`benchmarks/bench_metrics.py`, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, {platform.machine()}, {os.cpu_count()} CPUs (load average at start "
        f"{os.getloadavg()[0]:.1f}: a shared machine), best of {args.repeats} interleaved rounds.",
        "",
        "- floor: the distance matrix alone; `x floor` = time / floor time, in the same run.",
        "- peak extra MiB: resident high-water mark during the call minus the resident size",
        "  before it; `extra over floor` subtracts the floor's own peak.",
        "- targets: total <= 2.5 x the floor and <= 0.5 GiB over the floor.",
    ]
    return "\n".join(head + lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--noise", type=float, default=1.6, help="feature noise (mAP ~70%%)")
    parser.add_argument("--weak-noise", type=float, default=2.0, help="feature noise (mAP ~30%%)")
    parser.add_argument("--loop-queries", type=int, default=300, help="0 skips the loop")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "metrics.md"
    )
    args = parser.parse_args()
    text = run(args)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
