"""The evaluation's ranking cut into sub-blocks and spread over threads gives exactly the ranks
of a stable sort of every row, for every input type, counting path, block and thread count."""

import numpy as np
import pytest
import torch

from drsl.metrics import _blocks, _count, evaluate_rank
from drsl.metrics.protocol import Gallery, as_ids
from drsl.metrics.reference import evaluate_market

FIELDS = ("cmc", "all_AP", "all_INP", "valid_queries", "first_match_rank")


def stable_ranks(distmat, q_pids, g_pids, q_camids, g_camids):
    """1-based ranks of each query's matches after a stable sort, junk and same-camera items
    of the query's identity left out (the protocol written out plainly)."""
    out = []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        gp, gc = g_pids[order], g_camids[order]
        drop = ((gp == q_pids[i]) & (gc == q_camids[i])) | (gp == -1)
        out.append(np.flatnonzero((gp == q_pids[i])[~drop]) + 1)
    return out


def case(seed, nq=23, ng=90, levels=6, dtype="float32"):
    """Tie-heavy distances (``levels`` values), junk, distractors, several cameras, queries
    without a match; most items far beyond the farthest match in some rows."""
    rng = np.random.default_rng(seed)
    g_pids = rng.integers(-1, 7, ng)
    q_pids = rng.integers(1, 9, nq)  # 7 and 8: no match in the gallery
    q_camids, g_camids = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    d = rng.integers(0, levels, (nq, ng)).astype(np.float64) / levels
    d[rng.random((nq, ng)) < 0.3] += 5.0  # a far tail: the items past every match
    d = d.astype(np.int64) if dtype == "int64" else (d * 7).astype(dtype)
    return d, q_pids, g_pids, q_camids, g_camids


def ranks_by_blocks(d, qp, gp, qc, gc, chunk, threads):
    dt = torch.as_tensor(d)
    gal = Gallery(as_ids(gp, "g"), as_ids(gc, "g"))
    out = {}
    for start, ranks, npos in _blocks.rank_blocks(
        dt, as_ids(qp, "q"), as_ids(qc, "q"), gal, chunk, threads=threads
    ):
        for i in range(ranks.shape[0]):
            out[start + i] = ranks[i, : int(npos[i])].numpy()
    return [out[i] for i in range(d.shape[0])]


@pytest.fixture
def small_sub_blocks(monkeypatch):
    """Sub-blocks of a few rows, so that every test case is cut into many."""
    monkeypatch.setattr(_blocks, "_SUB_ELEMENTS", 200)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
@pytest.mark.parametrize("share", [2.0, 0.0, 0.07])  # listing, buckets, chosen per sub-block
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("chunk", [1, 5, 23])
def test_ranks_equal_a_stable_sort_exactly(
    small_sub_blocks, monkeypatch, dtype, share, threads, chunk
):
    monkeypatch.setattr(_count, "_MANY_SHARE", share)
    for seed in range(3):
        d, qp, gp, qc, gc = case(seed, dtype=dtype)
        want = stable_ranks(d, qp, gp, qc, gc)
        got = ranks_by_blocks(d, qp, gp, qc, gc, chunk, threads)
        for w, g in zip(want, got, strict=True):
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("share", [2.0, 0.0])
def test_results_are_bit_identical_across_inputs_blocks_and_threads(monkeypatch, share):
    """numpy and tensor inputs, any sub-block size, any thread count: the same bits; and the
    reference loop's CMC and INP exactly, its AP to the last bits of a sum."""
    monkeypatch.setattr(_count, "_MANY_SHARE", share)
    d, qp, gp, qc, gc = case(7, nq=40, ng=300, levels=9)
    ref = evaluate_market(d, qp, gp, qc, gc)
    first, before = None, torch.get_num_threads()
    for sub, threads in [(1 << 20, 1), (300, 1), (700, 2), (301, 4)]:
        monkeypatch.setattr(_blocks, "_SUB_ELEMENTS", sub)
        torch.set_num_threads(threads)  # evaluate_rank counts on the caller's torch threads
        try:
            for x in (d, torch.from_numpy(d), torch.from_numpy(d).double().numpy()):
                r = evaluate_rank(x, qp, gp, qc, gc, chunk_size=16)
                first = first or r
                for f in FIELDS:
                    np.testing.assert_array_equal(getattr(r, f), getattr(first, f))
        finally:
            torch.set_num_threads(before)
    np.testing.assert_array_equal(first.cmc, ref["cmc"])
    assert first.mINP == ref["mINP"]
    assert first.mAP == pytest.approx(ref["mAP"], rel=0, abs=1e-12)


@pytest.mark.parametrize(
    "scale",
    [1e-300, 1e300, 3e38],  # float64 spans that vanish or overflow in float32; float32's max
)
def test_extreme_float64_spans_are_ranked_exactly(small_sub_blocks, monkeypatch, scale):
    monkeypatch.setattr(_count, "_MANY_SHARE", 0.0)  # the bucket path, or its fallback
    d, qp, gp, qc, gc = case(11, dtype="float64")
    d = d * scale - (scale if scale > 1 else 0.0)
    got = ranks_by_blocks(d, qp, gp, qc, gc, 5, 2)
    for w, g in zip(stable_ranks(d, qp, gp, qc, gc), got, strict=True):
        np.testing.assert_array_equal(g, w)


def test_sub_blocks_never_cross_a_block():
    subs = _blocks.sub_blocks(50, 1 << 18, 7)
    assert subs[0] == (0, 4) and subs[-1] == (49, 50)
    assert all(s // 7 == (e - 1) // 7 for s, e in subs)
    assert [i for s, e in subs for i in range(s, e)] == list(range(50))


def test_non_finite_rows_are_named_from_any_sub_block_and_thread(small_sub_blocks):
    d, qp, gp, qc, gc = case(3)
    d[[5, 17], [2, 40]] = [np.nan, np.inf]
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with pytest.raises(ValueError, match=r"NaN in query rows 5\b"):
            evaluate_rank(d, qp, gp, qc, gc, chunk_size=4)
        d[5, 2] = 0.0
        with pytest.raises(ValueError, match=r"inf in query rows 17\b"):
            evaluate_rank(torch.from_numpy(d), qp, gp, qc, gc)
    finally:
        torch.set_num_threads(before)
