"""drsl.metrics against a naive per-query loop (the Market protocol written out plainly), on
both counting paths of the ranking (listing the candidates, counting per bucket)."""

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drsl.distances import chunked_euclidean, pairwise_euclidean
from drsl.metrics import (
    _count,
    average_precision,
    evaluate_embeddings,
    evaluate_rank,
    gallery_roles,
)

PATHS = ("auto", "listing", "buckets")


@contextmanager
def ranking_path(path):
    """Force one of the two counting paths (the share threshold decides between them)."""
    saved = _count._MANY_SHARE
    _count._MANY_SHARE = {"auto": saved, "listing": 2.0, "buckets": 0.0}[path]
    try:
        yield
    finally:
        _count._MANY_SHARE = saved


# ----------------------------------------------------------------------------- the reference


def naive_ap(matches, mode):
    """AP of one ranked list, written as the loops of torchreid and of Market's compute_AP."""
    ranks = np.flatnonzero(matches)  # 0-based ranks of the matches
    n = len(ranks)
    ap = 0.0
    for i, r in enumerate(ranks):
        precision = (i + 1) / (r + 1)
        if mode == "noninterp":
            ap += precision / n
        else:
            old_precision = i / r if r != 0 else 1.0
            ap += (old_precision + precision) / 2 / n
    return ap


def naive_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, mode):
    distmat = np.asarray(distmat)
    all_cmc, all_ap, all_inp, valid = [], [], [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        gp, gc = g_pids[order], g_camids[order]
        remove = ((gp == q_pids[i]) & (gc == q_camids[i])) | (gp == -1)
        matches = (gp == q_pids[i])[~remove]
        if not matches.any():
            continue
        cmc = np.minimum(np.cumsum(matches), 1).astype(float)
        cmc = np.concatenate([cmc, np.full(max(0, max_rank - len(cmc)), cmc[-1])])[:max_rank]
        all_cmc.append(cmc)
        all_ap.append(naive_ap(matches, mode))
        last = np.flatnonzero(matches)[-1] + 1
        all_inp.append(matches.sum() / last)
        valid.append(i)
    if not valid:
        return None
    return np.mean(all_cmc, 0), np.array(all_ap), np.array(all_inp), np.array(valid)


def assert_same(result, reference):
    cmc, ap, inp, valid = reference
    np.testing.assert_array_equal(result.valid_queries, valid)
    np.testing.assert_allclose(result.cmc, cmc, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.all_AP, ap, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.all_INP, inp, rtol=1e-12, atol=1e-12)
    assert result.mAP == pytest.approx(ap.mean(), abs=1e-12)
    assert result.mINP == pytest.approx(inp.mean(), abs=1e-12)
    assert result.num_valid_q == len(valid)


def random_case(rng, nq, ng, num_ids, num_cams, levels):
    """Random protocol case; ``levels`` distinct distance values force many ties."""
    ids = np.arange(-1, num_ids + 1)  # -1 junk, 0 distractor, then real ids 1..num_ids
    g_pids = rng.choice(ids, size=ng)
    q_pids = rng.choice(ids[2:], size=nq)
    q_pids[: max(1, nq // 8)] = num_ids + 5  # queries with no match at all
    q_camids = rng.integers(0, num_cams, size=nq)
    g_camids = rng.integers(0, num_cams, size=ng)
    distmat = rng.integers(0, levels, size=(nq, ng))
    return distmat, q_pids, g_pids, q_camids, g_camids


# ----------------------------------------------------------------------------- against the loop


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    nq=st.integers(1, 12),
    ng=st.integers(1, 40),
    num_ids=st.integers(1, 6),
    num_cams=st.integers(1, 3),
    levels=st.sampled_from([2, 4, 50, 10**6]),
    dtype=st.sampled_from(["int64", "int32", "float32", "float64", "torch32", "torch64"]),
    mode=st.sampled_from(["noninterp", "market"]),
    chunk=st.sampled_from([None, 1, 3, 5]),
    max_rank=st.integers(1, 50),
    path=st.sampled_from(PATHS),
)
def test_matches_naive_loop(
    seed, nq, ng, num_ids, num_cams, levels, dtype, mode, chunk, max_rank, path
):
    rng = np.random.default_rng(seed)
    distmat, qp, gp, qc, gc = random_case(rng, nq, ng, num_ids, num_cams, levels)
    if dtype.startswith("torch"):
        dm = torch.as_tensor(distmat / levels, dtype=getattr(torch, f"float{dtype[-2:]}"))
        ref_input = dm.numpy()
    else:
        dm = (distmat / levels).astype(dtype) if "float" in dtype else distmat.astype(dtype)
        ref_input = dm
    reference = naive_evaluate(ref_input, qp, gp, qc, gc, max_rank, mode)
    with ranking_path(path):
        if reference is None:
            with pytest.raises(ValueError, match="no query has a valid match"):
                evaluate_rank(dm, qp, gp, qc, gc, max_rank, ap_mode=mode, chunk_size=chunk)
            return
        result = evaluate_rank(dm, qp, gp, qc, gc, max_rank, ap_mode=mode, chunk_size=chunk)
    assert_same(result, reference)
    assert result.cmc.shape == (max_rank,)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("mode", ["noninterp", "market"])
@pytest.mark.parametrize("kind", ["int", "float32 ties", "float32 random", "float64 ties"])
def test_larger_cases_random_and_tie_heavy(mode, path, kind):
    rng = np.random.default_rng(3)
    levels = 10**9 if kind == "float32 random" else 7
    distmat, qp, gp, qc, gc = random_case(rng, 60, 500, 15, 4, levels)
    if kind != "int":
        distmat = (distmat / levels).astype(np.float64 if "64" in kind else np.float32)
    reference = naive_evaluate(distmat, qp, gp, qc, gc, 50, mode)
    with ranking_path(path):
        for chunk in (None, 7):
            got = evaluate_rank(distmat, qp, gp, qc, gc, ap_mode=mode, chunk_size=chunk)
            assert_same(got, reference)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "case",
    ["huge", "tiny", "negative", "all matches at the minimum", "one distance", "many rows"],
)
def test_bucket_edge_cases_match_the_loop(case, path):
    """Ranges that overflow float32, spans of zero or subnormal width, a block whose row
    offsets do not fit float32's integers: the exact answer every time."""
    rng = np.random.default_rng(5)
    nq, ng = (16_500, 3) if case == "many rows" else (9, 60)
    distmat, qp, gp, qc, gc = random_case(rng, nq, ng, 4, 2, 1000)
    d = (distmat / 1000).astype(np.float32)
    if case == "huge":
        d = (d.astype(np.float64) * 6e38 - 3e38).astype(np.float32)  # span over float32 max
    elif case == "tiny":
        d = (d * 1e-42).astype(np.float32)  # subnormal distances
    elif case == "negative":
        d = d - 0.5
    elif case == "all matches at the minimum":
        d = np.where(gp[None, :] == qp[:, None], 0.0, d + 1.0).astype(np.float32)
    elif case == "one distance":
        d = np.zeros_like(d)
    chunk = nq if case == "many rows" else None
    reference = naive_evaluate(d, qp, gp, qc, gc, 50, "noninterp")
    with ranking_path(path):
        assert_same(evaluate_rank(d, qp, gp, qc, gc, chunk_size=chunk), reference)


def test_all_equal_distances_rank_in_gallery_order():
    # every distance ties: the ranking is the gallery order itself
    g_pids = np.array([2, 1, 0, 1, -1, 1])
    g_camids = np.array([1, 1, 1, 0, 1, 1])
    r = evaluate_rank(np.zeros((1, 6)), [1], g_pids, [0], g_camids, max_rank=5)
    # after dropping nothing of camera 0 except the (1, cam 0) item and the junk:
    # order 2, 1, 0, 1 -> matches at ranks 2 and 4
    assert r.first_match_rank.tolist() == [2]
    assert r.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert r.mINP == pytest.approx(2 / 4)
    np.testing.assert_allclose(r.cmc, [0, 1, 1, 1, 1])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_negative_and_signed_zero_distances(dtype, path):
    # float32 takes the packed-key search, float64 the sort-based one: same answers
    d = np.array(
        [
            [3e30, -1.0, 3e30, 0.5, -0.0, 0.0, -2.5, 0.0],
            [-3e30, 1e30, 2.0, 2.0, 0.0, -0.0, -1e-30, 1e-30],
        ],
        dtype=dtype,
    )
    qp, gp = np.array([1, 2]), np.array([1, 2, 1, 2, 1, 2, 2, 1])
    qc, gc = np.array([0, 0]), np.array([1, 1, 1, 1, 1, 1, 1, 1])
    with ranking_path(path):
        for mode in ("noninterp", "market"):
            ref = naive_evaluate(d, qp, gp, qc, gc, 8, mode)
            assert_same(evaluate_rank(d, qp, gp, qc, gc, 8, ap_mode=mode), ref)
        # -0.0 and +0.0 tie: the lower gallery index ranks first
        r = evaluate_rank(np.array([[0.0, -0.0]], dtype=dtype), [1], [2, 1], [0], [1, 1])
    assert r.first_match_rank.tolist() == [2]


def test_torch_and_numpy_inputs_agree_and_float_int_ids():
    rng = np.random.default_rng(0)
    distmat, qp, gp, qc, gc = random_case(rng, 20, 80, 8, 3, 1000)
    a = evaluate_rank(distmat.astype(np.float32), qp, gp, qc, gc)
    b = evaluate_rank(
        torch.as_tensor(distmat, dtype=torch.float32),
        torch.as_tensor(qp),
        torch.as_tensor(gp).float(),
        list(qc),
        torch.as_tensor(gc),
    )
    np.testing.assert_array_equal(a.all_AP, b.all_AP)
    np.testing.assert_array_equal(a.cmc, b.cmc)


def test_half_precision_is_ranked_like_float32():
    rng = np.random.default_rng(1)
    distmat, qp, gp, qc, gc = random_case(rng, 10, 60, 6, 3, 30)
    half = torch.as_tensor(distmat / 30, dtype=torch.float16)
    ref = naive_evaluate(half.float().numpy(), qp, gp, qc, gc, 50, "noninterp")
    assert_same(evaluate_rank(half, qp, gp, qc, gc), ref)


def test_distractors_count_as_negatives_and_junk_is_dropped():
    # query pid 5 at camera 0; gallery: distractor, junk, match (cam 1)
    d = np.array([[0.1, 0.2, 0.3]])
    r = evaluate_rank(d, [5], [0, -1, 5], [0], [1, 1, 1], max_rank=3)
    assert r.first_match_rank.tolist() == [2]  # distractor ahead, junk gone
    assert r.mAP == pytest.approx(0.5)
    # the same gallery without the protocol's junk rule would rank the match third
    r2 = evaluate_rank(d, [5], [0, 7, 5], [0], [1, 1, 1], max_rank=3)
    assert r2.first_match_rank.tolist() == [3]


def test_same_camera_matches_are_dropped_not_counted():
    d = np.array([[0.0, 0.1, 0.2]])
    # the nearest item is the same person from the same camera: dropped
    r = evaluate_rank(d, [3], [3, 4, 3], [2], [2, 0, 0], max_rank=2)
    assert r.first_match_rank.tolist() == [2]
    np.testing.assert_allclose(r.cmc, [0.0, 1.0])


def test_query_without_valid_match_is_skipped():
    d = np.array([[0.0, 1.0], [0.5, 0.2]])
    # query 0's only match is in its own camera -> skipped; query 1 is valid
    r = evaluate_rank(d, [1, 2], [1, 2], [0, 0], [0, 1], max_rank=2)
    assert r.num_valid_q == 1
    assert r.valid_queries.tolist() == [1]
    assert r.all_AP.tolist() == [1.0]


def test_evaluate_embeddings_equals_evaluate_rank_on_the_same_distances():
    torch.manual_seed(0)
    q, g = torch.randn(37, 16), torch.randn(90, 16)
    rng = np.random.default_rng(2)
    qp, gp = rng.integers(1, 10, 37), rng.integers(-1, 10, 90)
    qc, gc = rng.integers(0, 3, 37), rng.integers(0, 3, 90)
    for chunk in (None, 8):
        blocks = chunked_euclidean(q, g, chunk_size=chunk or 37)
        full = evaluate_rank(torch.cat([b for _, b in blocks]), qp, gp, qc, gc, ap_mode="market")
        emb = evaluate_embeddings(q, g, qp, gp, qc, gc, ap_mode="market", chunk_size=chunk)
        np.testing.assert_array_equal(emb.all_AP, full.all_AP)
        np.testing.assert_array_equal(emb.cmc, full.cmc)
    # and, in float64, the same as one distance matrix (no near-ties to swap)
    q64, g64 = q.double(), g.double()
    one = evaluate_rank(pairwise_euclidean(q64, g64), qp, gp, qc, gc)
    emb = evaluate_embeddings(q64, g64, qp, gp, qc, gc, chunk_size=5)
    np.testing.assert_allclose(emb.all_AP, one.all_AP, rtol=0, atol=1e-15)
    cos = evaluate_embeddings(q64.numpy(), g64.numpy(), qp, gp, qc, gc, metric="cosine")
    qn, gn = torch.nn.functional.normalize(q64), torch.nn.functional.normalize(g64)
    ref = naive_evaluate((-(qn @ gn.T)).numpy(), qp, gp, qc, gc, 50, "noninterp")
    np.testing.assert_allclose(cos.all_AP, ref[1], atol=1e-12)


def test_result_ranges_and_monotone_cmc():
    rng = np.random.default_rng(4)
    distmat, qp, gp, qc, gc = random_case(rng, 50, 200, 10, 3, 10**6)
    r = evaluate_rank(distmat, qp, gp, qc, gc)
    assert np.all(np.diff(r.cmc) >= 0)
    assert 0 < r.mINP <= 1 and 0 < r.mAP <= 1
    assert r.cmc[0] == pytest.approx(np.mean(r.first_match_rank == 1))


def test_inp_is_precision_at_the_last_match():
    # ranked gallery: neg, neg, match, match -> AP = (1/3 + 2/4) / 2, INP = 2/4
    d = np.array([[0.0, 1.0, 2.0, 3.0]])
    r = evaluate_rank(d, [1], [2, 3, 1, 1], [0], [1, 1, 1, 1])
    assert r.mAP == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert r.mINP == pytest.approx(0.5)
    # a single match: AP and INP are both 1 / rank
    r = evaluate_rank(d, [1], [2, 3, 1, 4], [0], [1, 1, 1, 1])
    assert r.mAP == pytest.approx(1 / 3) and r.mINP == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------- average_precision


@settings(max_examples=50, deadline=None)
@given(matches=st.lists(st.booleans(), min_size=1, max_size=30).filter(any))
def test_average_precision_matches_loop(matches):
    for mode in ("noninterp", "market"):
        assert average_precision(matches, mode=mode) == pytest.approx(naive_ap(matches, mode))


def test_average_precision_conventions_differ_as_expected():
    # perfect ranking: both 1; one miss ahead: trapezoid is lower (its first step starts at 0)
    assert average_precision([True, True]) == 1.0
    assert average_precision([True, True], mode="market") == 1.0
    assert average_precision([False, True]) == 0.5
    assert average_precision([False, True], mode="market") == 0.25


# ----------------------------------------------------------------------------- roles and errors


def test_gallery_roles():
    roles = gallery_roles(4, 1, [4, 4, 0, -1, 9], [1, 2, 1, 2, 1])
    assert roles.tolist() == ["same_camera", "match", "distractor", "junk", "negative"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(distmat=np.zeros(3)), "2-D"),
        (dict(q_pids=[1, 2]), "q_pids has length 2, expected 1"),
        (dict(g_camids=[0]), "g_camids has length 1, expected 2"),
        (dict(ap_mode="interp"), "ap_mode must be one of"),
        (dict(max_rank=0), "max_rank"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(distmat=np.array([[np.nan, 1.0]])), "NaN"),
        (dict(q_pids=[1.5]), "integers"),
        (dict(distmat=np.array([[True, False]])), "real numbers"),
        (dict(distmat=np.array([[np.inf, 1.0]])), "inf in query rows 0"),
        (dict(g_pids=["a", "b"]), "g_pids must hold integers, got dtype <U1, e.g. 'a'"),
        (dict(q_pids=[np.nan]), "q_pids must hold integers"),
        (dict(q_camids=[True]), "q_camids must hold integers"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, message):
    args = dict(
        distmat=np.array([[0.1, 0.2]]), q_pids=[1], g_pids=[1, 2], q_camids=[0], g_camids=[1, 1]
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        evaluate_rank(**args)


@pytest.mark.parametrize("chunk", [None, 2])
def test_non_finite_messages_name_the_real_query_rows(chunk):
    d = np.random.default_rng(0).random((5, 7))
    q, g = [1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6, 7]
    qc, gc = [0] * 5, [1] * 7
    d[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN in query rows 3: ") as err:
        evaluate_rank(d, q, g, qc, gc, chunk_size=chunk)
    assert "\n" not in str(err.value)
    d[3, 2], d[1, 0], d[4, 6] = 0.5, np.inf, -np.inf
    with pytest.raises(ValueError, match=r"inf in query rows (1, 4|1): ") as err:
        evaluate_rank(torch.as_tensor(d), q, g, qc, gc, chunk_size=chunk)
    assert "4" in str(err.value)  # every bad row is named, across blocks too


def test_non_finite_features_are_rejected():
    q, g = torch.randn(3, 4), torch.randn(5, 4)
    q[1, 2] = float("inf")
    with pytest.raises(ValueError, match="q_feats holds NaN or inf in rows 1"):
        evaluate_embeddings(q, g, [1, 2, 3], [1, 2, 3, 1, 2], [0] * 3, [1] * 5)
    huge = torch.full((5, 4), 3e38)
    huge[0] = -3e38  # finite features, but their distance overflows float32
    with pytest.raises(ValueError, match="inf in query rows 0, 1, 2"):
        evaluate_embeddings(torch.zeros(3, 4), huge, [1, 2, 3], [1, 2, 3, 1, 2], [0] * 3, [1] * 5)


def test_empty_or_all_junk_gallery_has_no_valid_query():
    with pytest.raises(ValueError, match="no valid query"):
        evaluate_rank(np.zeros((2, 0)), [1, 2], [], [0, 0], [])
    with pytest.raises(ValueError, match="no valid query"):
        evaluate_embeddings(torch.zeros(2, 3), torch.ones(4, 3), [1, 2], [-1] * 4, [0, 0], [1] * 4)


def test_string_pids_give_one_line_error():
    with pytest.raises(ValueError) as err:
        evaluate_rank(np.zeros((1, 2)), ["x"], [1, 2], [0], [1, 1])
    assert str(err.value).startswith("q_pids must hold integers") and "\n" not in str(err.value)


def test_average_precision_without_match_raises():
    with pytest.raises(ValueError, match="no True entry"):
        average_precision([False, False])
    with pytest.raises(ValueError, match="1-D"):
        average_precision([[True]])
