"""Benchmark: Market-size evaluation (3368 queries x 19732 gallery, D=512, 751 ids, 6 cameras).

Measures, in one process, the time and peak memory of

- the **floor**: the distance matrix alone, ``torch.cdist(q, g)``;
- ``pairwise_euclidean(q, g)`` (drsl.distances, inference path: no gradient);
- ``evaluate_rank(pairwise_euclidean(q, g), ...)``: distances + the Market-protocol ranking,
  on the tensor and on its NumPy view;
- ``evaluate_embeddings(q, g, ...)``: the same, block by block (never the full matrix);
- ``evaluate_rank(distmat)`` alone: the ranking step, on the tensor, its NumPy view and a
  float64 NumPy copy;
- with ``--baseline FILE`` (an earlier ranking saved as one file, e.g. by
  ``{ git show REV:drsl/metrics/_count.py; git show REV:drsl/metrics/rank.py | grep -v
  -e '^from __future__' -e '^from drsl.metrics._count'; } > old_metrics.py``): its ranking on
  the same matrices (checked to give bit-identical CMC, AP, INP and first-match ranks) and,
  as "before", its total on the same distances;
- a torchreid-style loop (full ``argsort`` per row, then one query at a time) on a subset of
  queries, scaled to all queries, for scale.

Times are the best of ``--repeats`` interleaved rounds (the machine may be shared). Peak
memory is the process's resident high-water mark (``VmHWM``, reset before each measurement
through ``/proc/self/clear_refs``) minus the resident size before it. The gallery follows
Market-1501: 2793 distractors (pid 0), 3819 junk (pid -1), the rest from the query identities.
Features are identity centres plus noise (``--noise``; a trained-model-like mAP) or pure noise
(``--random``, the worst case: every gallery item can precede the farthest match).

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/bench_metrics.py [--repeats 3] [--baseline
old_metrics.py] [--out results/metrics.md]`` (``PYTHONPATH=.``: the checkout's ``drsl``, not an
installed copy from another checkout).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import sys
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
    """The usual Python loop, after torchreid's ``eval_market1501``, for scale only.

    Not torchreid's exact code: torchreid drops no junk in this loop (its dataset loader never
    reads Market's junk images), so junk is dropped here to give comparable numbers; and, as
    there, ``np.argsort`` is the default quicksort, not stable, so ties may be ordered otherwise.
    """
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


def _distances_then_rank(q, g, qp, gp, qc, gc, numpy=False):
    dist = pairwise_euclidean(q, g)
    return evaluate_rank(dist.numpy() if numpy else dist, qp, gp, qc, gc)


def _old_total(old, q, g, qp, gp, qc, gc):
    return old.evaluate_rank(pairwise_euclidean(q, g), qp, gp, qc, gc)


def _same(a, b) -> bool:
    """Bit-identical results: CMC, every AP and INP, the valid queries and first matches."""
    keys = ("cmc", "all_AP", "all_INP", "valid_queries", "first_match_rank")
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in keys)


def load_baseline(path: Path):
    spec = importlib.util.spec_from_file_location("baseline_metrics", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_metrics"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _row(name, rows, t_floor, m_floor, alone=False):
    t, m = min(r[0] for r in rows), max(r[1] for r in rows)
    over = "-" if alone else f"{m - m_floor:+.0f}"
    return f"| {name} | {t:.2f} | {t / t_floor:.2f} | {m:.0f} | {over} |"


def run(args) -> str:
    start_load = os.getloadavg()[0]
    lines = []
    old = load_baseline(args.baseline) if args.baseline else None
    scenarios = [
        (f"trained-like features (noise {args.noise})", args.noise, False),
        (f"weak-model features (noise {args.weak_noise})", args.weak_noise, False),
        ("random features (worst case)", 0.0, True),
    ]
    summary = []
    for label, noise, random in scenarios:
        q, g, qp, gp, qc, gc = market_like(0, noise, random)
        ids = (qp, gp, qc, gc)
        keys = ("floor", "dist", "full", "full_np", "chunked", "rank", "rank_np", "rank_np64")
        rows = {k: [] for k in (*keys, "old", "old_rank", "old_rank_np64")}
        with torch.no_grad():
            for _ in range(args.repeats):
                rows["floor"].append(measure(partial(torch.cdist, q, g)))
                rows["dist"].append(measure(partial(pairwise_euclidean, q, g)))
                rows["full"].append(measure(partial(_distances_then_rank, q, g, *ids)))
                rows["full_np"].append(measure(partial(_distances_then_rank, q, g, *ids, True)))
                rows["chunked"].append(measure(partial(evaluate_embeddings, q, g, *ids)))
                if old is not None:
                    rows["old"].append(measure(partial(_old_total, old, q, g, *ids)))
            dist = rows["dist"][-1][2]
            dist64 = dist.double().numpy()
            for _ in range(args.repeats):
                rows["rank"].append(measure(partial(evaluate_rank, dist, *ids)))
                rows["rank_np"].append(measure(partial(evaluate_rank, dist.numpy(), *ids)))
                rows["rank_np64"].append(measure(partial(evaluate_rank, dist64, *ids)))
                if old is not None:
                    rows["old_rank"].append(measure(partial(old.evaluate_rank, dist, *ids)))
                    rank64 = partial(old.evaluate_rank, dist64, *ids)
                    rows["old_rank_np64"].append(measure(rank64))
        t_floor = min(r[0] for r in rows["floor"])
        m_floor = max(r[1] for r in rows["floor"])
        res = rows["full"][0][2]
        for key in ("full_np", "rank", "rank_np", "old", "old_rank"):
            assert not rows[key] or _same(res, rows[key][0][2]), f"{key} differs"
        if old is not None:
            assert _same(rows["rank_np64"][0][2], rows["old_rank_np64"][0][2]), "float64 differs"
        lines.append(
            f"\n### {label}: mAP {res.mAP:.1%}, rank-1 {res.cmc[0]:.1%}, mINP {res.mINP:.1%}\n"
        )
        lines.append("| what | seconds (best) | x floor | peak extra MiB | extra over floor MiB |")
        lines.append("|---|---:|---:|---:|---:|")
        names = [
            ("floor", "floor: `torch.cdist(q, g)`", False),
            ("dist", "`pairwise_euclidean(q, g)` (no grad)", False),
            ("full", "**`evaluate_rank(pairwise_euclidean(q, g))`**", False),
            ("full_np", "**the same on `pairwise_euclidean(q, g).numpy()`**", False),
            ("chunked", "`evaluate_embeddings(q, g)` (blocks)", False),
            ("rank", "`evaluate_rank(distmat)` alone (ranking only)", True),
            ("rank_np", "the same on `distmat.numpy()`", True),
            ("rank_np64", "the same on a float64 NumPy copy", True),
            ("old", "before: `pairwise_euclidean` + old `evaluate_rank`", False),
            ("old_rank", "before: old `evaluate_rank(distmat)` alone", True),
            ("old_rank_np64", "before: the same on the float64 NumPy copy", True),
        ]
        for key, name, alone in names:
            if rows[key]:
                lines.append(_row(name, rows[key], t_floor, m_floor, alone))
        best = {k: min(r[0] for r in v) / t_floor for k, v in rows.items() if v}
        summary.append((label, best))
        if args.loop_queries:
            n = args.loop_queries
            sub = (dist[:n].numpy(), qp[:n], gp, qc[:n], gc)
            t, _, _ = measure(partial(torchreid_style, *sub))
            scaled = t * NQ / n
            lines.append(
                f"| torchreid-style loop (ranking only; {n} queries, time x {NQ / n:.1f}) | "
                f"{scaled:.2f} | {scaled / t_floor:.2f} | - | - |"
            )
        del q, g, dist, dist64
    head = [
        "# Evaluation benchmark: Market-size (3368 x 19732, D=512, 751 ids, 6 cameras)",
        "",
        f"`benchmarks/bench_metrics.py`, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, {platform.machine()}, {os.cpu_count()} CPUs (load average at start "
        f"{start_load:.1f}, at the end {os.getloadavg()[0]:.1f}: a machine shared with other "
        f"jobs, so seconds vary from run to run; the ratios to the floor, measured in the same "
        f"rounds, vary less), best of {args.repeats} interleaved rounds.",
        "",
        "- floor: `torch.cdist(q, g)` alone; `x floor` = time / floor time, in the same run.",
        "- peak extra MiB: resident high-water mark during the call minus the resident size",
        "  before it; `extra over floor` subtracts the floor's own peak.",
        "- target: distances + ranking <= 1.5 x the floor on random and on trained-like",
        "  features, NumPy and tensor inputs alike, results bit-identical to before.",
        "- before: "
        + (
            f"`{args.baseline.name}` (`--baseline`), same matrices, same per-query AP"
            if args.baseline
            else "not measured (no `--baseline`)"
        )
        + ".",
        "",
        "| features | total now: tensor / NumPy (x floor) | total before | ranking now: "
        "tensor / NumPy / float64 | ranking before: tensor / float64 |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, best in summary:
        before = f"{best['old']:.2f}" if "old" in best else "-"
        rank_before = (
            f"{best['old_rank']:.2f} / {best['old_rank_np64']:.2f}" if "old_rank" in best else "-"
        )
        head.append(
            f"| {label} | {best['full']:.2f} / {best['full_np']:.2f} | {before} | "
            f"{best['rank']:.2f} / {best['rank_np']:.2f} / {best['rank_np64']:.2f} | "
            f"{rank_before} |"
        )
    return "\n".join(head + lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--noise", type=float, default=1.6, help="feature noise (mAP ~70%%)")
    parser.add_argument("--weak-noise", type=float, default=2.0, help="feature noise (mAP ~30%%)")
    parser.add_argument("--loop-queries", type=int, default=300, help="0 skips the loop")
    parser.add_argument(
        "--baseline", type=Path, default=None, help="an earlier drsl/metrics module, one file"
    )
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
