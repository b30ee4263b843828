"""Benchmark: k-reciprocal re-ranking at Market-1501 size (3368 queries x 15913 gallery images,
the gallery without Market's 3819 junk images, as torchreid loads it; D=512, 751 ids).

Measures, in one process, the plain evaluation (``evaluate_embeddings``) and the re-ranked one
(``rerank_distances`` with k1=20, k2=6, lambda=0.3, then ``evaluate_rank``): seconds, the ratio
of the two, and the peak memory of re-ranking (resident high-water mark during the call minus
the resident size before it, as ``bench_metrics.py`` measures). For scale, the dense matrices
that the usual implementation (the authors' ``re_ranking``, torchreid's, fast-reid's) holds at
once: the ``N x N`` float32 distances, their int32 argsort, ``V`` and its expansion,
``N = nq + ng``.

Features: identity centres plus noise (``--noise``), as in ``bench_metrics.py``.

Run: ``.venv/bin/python benchmarks/bench_rerank.py [--repeats 1] [--out results/rerank.md]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_metrics import NQ, market_like, measure  # noqa: E402

from drsl.metrics import evaluate_embeddings, evaluate_rank, rerank_distances  # noqa: E402


def _reranked(q, g, qp, gp, qc, gc):
    return evaluate_rank(rerank_distances(q, g), qp, gp, qc, gc)


def run(args) -> str:
    start_load = os.getloadavg()[0]
    q, g, qp, gp, qc, gc = market_like(0, args.noise, False)
    keep = gp != -1  # junk: not loaded (torchreid), dropped by drsl eval --rerank
    g, gp, gc = g[keep], gp[keep], gc[keep]
    ids = (qp, gp, qc, gc)
    plain, rerank = [], []
    with torch.no_grad():
        for _ in range(args.repeats):
            plain.append(measure(partial(evaluate_embeddings, q, g, *ids)))
            rerank.append(measure(partial(_reranked, q, g, *ids)))
    n = NQ + len(g)
    usual_mib = 4 * n * n * 4 / 2**20
    t_plain, t_rerank = min(r[0] for r in plain), min(r[0] for r in rerank)
    p_res, r_res = plain[0][2], rerank[0][2]
    out = [
        f"# Re-ranking benchmark: Market size ({NQ} x {len(g)}, D={q.shape[1]})",
        "",
        f"`benchmarks/bench_rerank.py`, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, {platform.machine()}, {os.cpu_count()} CPUs (load average at start "
        f"{start_load:.1f}, at the end {os.getloadavg()[0]:.1f}), best of {args.repeats}; "
        f"features: identity centres + noise {args.noise}.",
        "",
        "| evaluation | seconds | x plain | peak extra MiB | mAP | rank-1 |",
        "|---|---:|---:|---:|---:|---:|",
        f"| plain (`evaluate_embeddings`) | {t_plain:.2f} | 1.00 | "
        f"{max(r[1] for r in plain):.0f} | {p_res.mAP:.1%} | {p_res.cmc[0]:.1%} |",
        f"| re-ranked (`rerank_distances` + `evaluate_rank`) | {t_rerank:.2f} | "
        f"{t_rerank / t_plain:.1f} | {max(r[1] for r in rerank):.0f} | {r_res.mAP:.1%} | "
        f"{r_res.cmc[0]:.1%} |",
        "",
        f"The usual implementation holds four dense N x N arrays of 4 bytes (N = {n}): "
        f"{usual_mib:,.0f} MiB before any temporary. Here the one dense array is the "
        f"{NQ} x {len(g)} float32 result ({NQ * len(g) * 4 / 2**20:.0f} MiB).",
        "",
        "Where the time goes: step 1 computes all N x N distances (to find each item's 21 "
        f"nearest neighbours), {n * n / (NQ * len(g)):.1f} x the query x gallery distances of "
        "the plain evaluation.",
    ]
    assert np.isfinite(r_res.mAP)
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--noise", type=float, default=2.0, help="feature noise")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rerank.md")
    args = parser.parse_args()
    text = run(args)
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
