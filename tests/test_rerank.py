"""k-reciprocal re-ranking: the memory-bounded drsl.metrics.rerank_distances equals the
paper's per-item loop (drsl.metrics.reference.rerank_loop), ties and blocks included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import drsl.metrics.rerank as rerank_module
from drsl.distances import pairwise_euclidean
from drsl.metrics import evaluate_rank, rerank_distances
from drsl.metrics.reference import rerank_loop


def clustered(seed, nq=12, ng=70, dim=8, ids=10, noise=0.7, duplicates=0):
    """Queries and gallery around identity centres; ``duplicates`` gallery rows repeated
    (exact ties in every row's distances)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    q_pids, g_pids = rng.integers(0, ids, nq), rng.integers(0, ids, ng)
    q = centres[q_pids] + noise * rng.normal(size=(nq, dim))
    g = centres[g_pids] + noise * rng.normal(size=(ng, dim))
    if duplicates:
        g[-duplicates:] = g[:duplicates]
        g_pids[-duplicates:] = g_pids[:duplicates]
    return torch.tensor(q), torch.tensor(g), q_pids, g_pids


@pytest.mark.parametrize("k1,k2,lam", [(20, 6, 0.3), (7, 1, 0.3), (5, 3, 0.0), (4, 5, 1.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rerank_equals_the_per_item_loop(seed, k1, k2, lam):
    q, g, _, _ = clustered(seed)
    ref = rerank_loop(
        pairwise_euclidean(torch.cat([q, g])).numpy(), len(q), k1=k1, k2=k2, lambda_value=lam
    )
    got = rerank_distances(q, g, k1=k1, k2=k2, lambda_value=lam)
    assert got.dtype == torch.float64 and got.shape == (len(q), len(g))
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [3, 4])
def test_rerank_equals_the_loop_with_tied_distances(seed):
    q, g, _, _ = clustered(seed, ng=80, duplicates=30)
    ref = rerank_loop(pairwise_euclidean(torch.cat([q, g])).numpy(), len(q), k1=6, k2=3)
    got = rerank_distances(q, g, k1=6, k2=3)
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-12)


def test_rerank_is_the_same_whatever_the_block_sizes(monkeypatch):
    q, g, _, _ = clustered(5, nq=20, ng=90)
    whole = rerank_distances(q, g, k1=8, k2=4, chunk_size=110)  # one distance block
    monkeypatch.setattr(rerank_module, "_PAIR_BUDGET", 50)  # many small Jaccard blocks
    monkeypatch.setattr(rerank_module, "_ROW_ELEMENTS", 300)  # and small pair blocks
    # the same sums in the same order: bit for bit
    got = rerank_distances(q, g, k1=8, k2=4, chunk_size=110)
    torch.testing.assert_close(got, whole, rtol=0, atol=0)
    for chunk in (1, 7):  # other distance blocks: the matrix product may round differently
        got = rerank_distances(q, g, k1=8, k2=4, chunk_size=chunk)
        torch.testing.assert_close(got, whole, rtol=0, atol=1e-14)


def test_rerank_of_float32_features_is_float32_and_close_to_float64():
    q, g, _, _ = clustered(6)
    d32 = rerank_distances(q.float(), g.float(), k1=6, k2=3)
    d64 = rerank_distances(q, g, k1=6, k2=3)
    assert d32.dtype == torch.float32
    assert float((d32.double() - d64).abs().max()) < 1e-5
    assert float(d64.min()) >= 0.0 and float(d64.max()) <= 1.0


def test_rerank_lifts_map_on_clustered_features():
    q, g, q_pids, g_pids = clustered(7, nq=40, ng=400, ids=20, noise=1.3)
    cams_q, cams_g = np.zeros(len(q), int), np.ones(len(g), int)
    plain = evaluate_rank(pairwise_euclidean(q, g), q_pids + 1, g_pids + 1, cams_q, cams_g)
    reranked = evaluate_rank(rerank_distances(q, g), q_pids + 1, g_pids + 1, cams_q, cams_g)
    assert reranked.mAP > plain.mAP


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"k1": 0}, "k1 must be a positive integer"),
        ({"k1": 4, "k2": 6}, r"k2 must be an integer in \[1, k1 \+ 1\]"),
        ({"lambda_value": 1.5}, r"lambda_value must be in \[0, 1\]"),
        ({"k1": 200}, "lower k1"),
    ],
)
def test_rerank_rejects_bad_parameters_naming_them(kwargs, match):
    q, g, _, _ = clustered(8)
    with pytest.raises(ValueError, match=match):
        rerank_distances(q, g, **kwargs)


def test_rerank_rejects_bad_features_naming_them():
    q, g, _, _ = clustered(9)
    with pytest.raises(ValueError, match="g_feats holds NaN"):
        rerank_distances(q, torch.full_like(g, float("nan")))
    with pytest.raises(ValueError, match="differ in dimension"):
        rerank_distances(q, g[:, :3])
    with pytest.raises(ValueError, match="q_feats must be 2-D"):
        rerank_distances(q[0], g)
