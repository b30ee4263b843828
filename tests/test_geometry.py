"""drsl.geometry: pairs under the Market protocol, overlap statistics, rank-in-rank Spearman,
per-query rankings and the cached t-SNE, on small synthetic embeddings of known structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from drsl import geometry as G
from drsl.distances import pairwise_angle, pairwise_euclidean
from drsl.metrics import average_precision, evaluate_rank, gallery_roles


def clusters(num_ids=12, per_id=8, num_cams=4, dim=16, spread=2.0, noise=1.0, seed=0):
    """Identity centres plus Gaussian noise: the larger spread / noise, the cleaner."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids, dim)) * spread
    pids = np.repeat(np.arange(1, num_ids + 1), per_id)
    cams = rng.integers(0, num_cams, size=pids.size)
    feats = centres[pids - 1] + noise * rng.normal(size=(pids.size, dim))
    return feats.astype(np.float32), pids, cams


def split(feats, pids, cams, *, junk=3, distractors=4, seed=0):
    """First item of each identity is the query; the rest the gallery, plus junk/distractors."""
    rng = np.random.default_rng(seed)
    first = np.zeros(pids.size, bool)
    first[np.unique(pids, return_index=True)[1]] = True
    q = (feats[first], pids[first], cams[first])
    gf, gp, gc = feats[~first], pids[~first].copy(), cams[~first]
    gp[rng.choice(gp.size, size=junk, replace=False)] = -1
    extra = rng.normal(size=(distractors, feats.shape[1])).astype(np.float32) * 3
    gf = np.concatenate([gf, extra])
    gp = np.concatenate([gp, np.zeros(distractors, dtype=gp.dtype)])
    gc = np.concatenate([gc, rng.integers(0, cams.max() + 1, size=distractors)])
    return q, (gf, gp, gc)


@pytest.fixture(scope="module")
def market():
    feats, pids, cams = clusters(noise=2.5)
    (qf, qp, qc), (gf, gp, gc) = split(feats, pids, cams)
    return qf, gf, qp, gp, qc, gc


# ------------------------------------------------------------------------------- protocol


def test_protocol_masks_agree_with_metrics_gallery_roles(market):
    _, _, qp, gp, qc, gc = market
    pos, neg = G.protocol_masks(qp, gp, qc, gc)
    for i in range(qp.size):
        roles = gallery_roles(int(qp[i]), int(qc[i]), gp, gc)
        np.testing.assert_array_equal(pos[i], roles == "match")
        np.testing.assert_array_equal(neg[i], np.isin(roles, ["negative", "distractor"]))
    assert not (pos & neg).any()


def test_protocol_masks_errors():
    with pytest.raises(ValueError, match="both"):
        G.protocol_masks([1], [1], [0], None)
    with pytest.raises(ValueError, match="exclude_self"):
        G.protocol_masks([1], [1, 2], exclude_self=True)
    with pytest.raises(ValueError, match="integers"):
        G.protocol_masks([1.5], [1])


def test_pair_geometry_uses_drsl_distances(market):
    qf, gf, qp, gp, qc, gc = market
    geo = G.pair_geometry(torch.from_numpy(qf), torch.from_numpy(gf), qp, gp, qc, gc)
    want_d = pairwise_euclidean(torch.from_numpy(qf), torch.from_numpy(gf)).numpy()
    want_a = pairwise_angle(torch.from_numpy(qf), torch.from_numpy(gf)).numpy()
    np.testing.assert_array_equal(geo.dist, want_d)
    np.testing.assert_array_equal(geo.angle, want_a)
    pos, neg = G.protocol_masks(qp, gp, qc, gc)
    np.testing.assert_array_equal(geo.pos_mask, pos)
    np.testing.assert_array_equal(geo.pos_dist, want_d[pos])
    np.testing.assert_array_equal(geo.neg_angle, want_a[neg])
    assert geo.num_pos == pos.sum() > 0 and geo.num_neg == neg.sum() > 0
    # NumPy input gives the same numbers
    geo_np = G.pair_geometry(qf, gf, qp, gp, qc, gc)
    np.testing.assert_array_equal(geo_np.dist, geo.dist)


def test_pair_geometry_angle_embeddings_are_used(market):
    qf, gf, qp, gp, qc, gc = market
    qa, ga = qf[:, ::-1] ** 2, gf[:, ::-1] ** 2  # some other embedding of the same items
    geo = G.pair_geometry(qf, gf, qp, gp, qc, gc, q_angle_feats=qa, g_angle_feats=ga)
    want = pairwise_angle(torch.from_numpy(qa.copy()), torch.from_numpy(ga.copy())).numpy()
    np.testing.assert_allclose(geo.angle, want, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(
        geo.dist, pairwise_euclidean(torch.from_numpy(qf), torch.from_numpy(gf)).numpy()
    )
    with pytest.raises(ValueError, match="one row"):
        G.pair_geometry(qf, gf, qp, gp, qc, gc, q_angle_feats=qa[:2])


def test_batch_geometry_counts_ordered_pairs():
    feats, pids, _ = clusters(num_ids=5, per_id=4)
    geo = G.batch_geometry(feats, pids)
    assert geo.num_pos == 5 * 4 * 3  # every anchor, its K - 1 positives
    assert geo.num_neg == 20 * 16
    assert not np.diagonal(geo.pos_mask).any() and not np.diagonal(geo.neg_mask).any()
    with pytest.raises(ValueError, match="2-D"):
        G.batch_geometry(feats[0], pids)
    with pytest.raises(ValueError, match="length"):
        G.batch_geometry(feats, pids[:-1])


# ------------------------------------------------------------------------------- statistics


@settings(max_examples=30, deadline=None)
@given(
    pos=st.lists(st.integers(0, 6), min_size=1, max_size=15),
    neg=st.lists(st.integers(0, 6), min_size=1, max_size=15),
)
def test_separation_auc_equals_sklearn_with_ties(pos, neg):
    y = np.r_[np.zeros(len(pos)), np.ones(len(neg))]  # negatives are the "positive class"
    want = roc_auc_score(y, np.r_[pos, neg])
    assert G.separation_auc(pos, neg) == pytest.approx(want, abs=1e-12)


def test_separation_auc_extremes_and_empty():
    assert G.separation_auc([1, 2], [3, 4]) == 1.0
    assert G.separation_auc([3, 4], [1, 2]) == 0.0
    assert G.separation_auc([1, 1], [1]) == 0.5
    assert np.isnan(G.separation_auc([], [1.0]))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_overlap_fraction_matches_a_loop(seed):
    rng = np.random.default_rng(seed)
    v = rng.integers(0, 5, size=(6, 9)).astype(float)  # ties on purpose
    role = rng.integers(0, 3, size=(6, 9))  # 0 ignored, 1 positive, 2 negative
    pos, neg = role == 1, role == 2
    hits, rows = 0, 0
    for i in range(6):
        if pos[i].any() and neg[i].any():
            rows += 1
            hits += v[i][neg[i]].min() < v[i][pos[i]].max()
    got = G.overlap_fraction(v, pos, neg)
    if rows == 0:
        assert np.isnan(got)
    else:
        assert got == pytest.approx(hits / rows)


def test_overlap_fraction_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        G.overlap_fraction(np.zeros((2, 3)), np.zeros((2, 2), bool), np.zeros((2, 3), bool))


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), ties=st.booleans())
def test_spearman_per_query_matches_scipy(seed, ties):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=(7, 10))
    a = rng.normal(size=(7, 10))
    if ties:
        d, a = d.round(0), a.round(0)
    pos = rng.random((7, 10)) < 0.5
    rho, idx = G.spearman_per_query(d, a, pos, min_positives=3)
    want_idx, want = [], []
    for i in range(7):
        if pos[i].sum() >= 3:
            r = spearmanr(d[i][pos[i]], a[i][pos[i]]).statistic
            if np.isfinite(r):
                want_idx.append(i)
                want.append(r)
    assert idx.tolist() == want_idx
    np.testing.assert_allclose(rho, want, atol=1e-12)


def test_spearman_is_one_for_l2_normalised_embeddings(market):
    # on the unit sphere distance = sqrt(2 - 2 cos): a monotone function of the angle, so
    # every query's positives have the same order by distance and by angle (spec, "Words")
    qf, gf, qp, gp, qc, gc = market
    qn = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gn = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    geo = G.pair_geometry(qn.astype(np.float64), gn.astype(np.float64), qp, gp, qc, gc)
    rho, idx = G.spearman_per_query(geo.dist, geo.angle, geo.pos_mask)
    assert idx.size == (geo.pos_mask.sum(1) >= 3).sum() > 5
    np.testing.assert_allclose(rho, 1.0, atol=1e-9)
    # unnormalised features with random norms break the coincidence
    rng = np.random.default_rng(1)
    scale = rng.uniform(0.2, 5.0, size=(gn.shape[0], 1))
    geo2 = G.pair_geometry(qn, (gn * scale).astype(np.float32), qp, gp, qc, gc)
    rho2, _ = G.spearman_per_query(geo2.dist, geo2.angle, geo2.pos_mask)
    assert rho2.mean() < 0.9


def test_spearman_min_positives():
    with pytest.raises(ValueError, match="min_positives"):
        G.spearman_per_query(
            np.zeros((1, 3)), np.zeros((1, 3)), np.ones((1, 3), bool), min_positives=1
        )
    rho, idx = G.spearman_per_query(np.zeros((1, 3)), np.zeros((1, 3)), np.ones((1, 3), bool))
    assert rho.size == 0 and idx.size == 0  # all tied: dropped, not NaN


def test_overlap_stats_reflect_known_structure():
    feats, pids, cams = clusters(spread=5.0, noise=0.5)
    clean = G.batch_geometry(feats, pids, cams).stats()
    assert clean["auc_distance"] == 1.0 and clean["auc_angle"] == 1.0
    assert clean["overlap_distance"] == 0.0 and clean["overlap_angle"] == 0.0
    assert clean["pos_dist_mean"] < clean["neg_dist_mean"]
    # shuffled labels: no structure left, the AUC falls to chance and most anchors overlap
    shuffled = np.random.default_rng(0).permutation(pids)
    noisy = G.batch_geometry(feats, shuffled).stats()
    assert 0.4 < noisy["auc_distance"] < 0.6
    assert noisy["overlap_distance"] > 0.9
    assert set(noisy) >= {"num_pos", "num_neg", "spearman_median", "spearman_queries"}


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_per_query_auc_matches_separation_auc_row_by_row(seed):
    rng = np.random.default_rng(seed)
    v = rng.integers(0, 6, size=(6, 11)).astype(float)  # ties on purpose
    role = rng.integers(0, 3, size=(6, 11))
    pos, neg = role == 1, role == 2
    auc, idx = G.per_query_auc(v, pos, neg)
    want = [i for i in range(6) if pos[i].any() and neg[i].any()]
    assert idx.tolist() == want
    for a, i in zip(auc, idx, strict=True):
        assert a == pytest.approx(G.separation_auc(v[i][pos[i]], v[i][neg[i]]), abs=1e-12)


def test_paired_comparison():
    feats, pids, cams = clusters(num_ids=40, per_id=6, noise=1.0)
    (qf, qp, qc), (gf, gp, gc) = split(feats, pids, cams)
    good = G.pair_geometry(qf, gf, qp, gp, qc, gc)
    rng = np.random.default_rng(0)
    worse = G.pair_geometry(qf + 3 * rng.normal(size=qf.shape).astype(np.float32),
                            gf + 3 * rng.normal(size=gf.shape).astype(np.float32),
                            qp, gp, qc, gc)  # fmt: skip
    cmp = G.paired_comparison(good, worse)
    auc_good, idx = G.per_query_auc(good.dist, good.pos_mask, good.neg_mask)
    auc_worse, _ = G.per_query_auc(worse.dist, worse.pos_mask, worse.neg_mask)
    d = auc_good - auc_worse
    c = cmp["auc_distance"]
    assert c["queries"] == idx.size
    assert c["mean_a"] == pytest.approx(auc_good.mean()) and c["diff"] == pytest.approx(d.mean())
    assert c["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(d.size))
    assert c["a_higher"] == pytest.approx((d > 0).mean()) and c["b_higher"] == (d < 0).mean()
    assert c["diff"] > 2 * c["se"] > 0  # extra noise makes every statistic worse
    assert cmp["spearman"]["queries"] > 0
    assert G.paired_comparison(good, good)["auc_angle"]["diff"] == 0.0
    with pytest.raises(ValueError, match="share"):
        G.paired_comparison(good, G.pair_geometry(qf, gf, qp, gp))


# ------------------------------------------------------------------------------- queries


def test_select_identities():
    pids = np.array([3, 3, 5, 0, -1, 7, 9, 9])
    assert G.select_identities(pids, ids=[9, 3]).tolist() == [3, 9]
    drawn = G.select_identities(pids, num_ids=2, seed=1)
    assert len(drawn) == 2 and set(drawn) <= {3, 5, 7, 9}
    assert G.select_identities(pids, num_ids=2, seed=1).tolist() == drawn.tolist()
    with pytest.raises(ValueError, match="42"):
        G.select_identities(pids, ids=[42])
    with pytest.raises(ValueError, match="num_ids"):
        G.select_identities(pids, num_ids=0)


def test_rank_queries_follows_the_protocol_and_metrics(market):
    qf, gf, qp, gp, qc, gc = market
    geo = G.pair_geometry(qf, gf, qp, gp, qc, gc)
    res = evaluate_rank(geo.dist, qp, gp, qc, gc, max_rank=10)
    rankings = G.rank_queries(geo.dist, qp, gp, qc, gc, res.valid_queries)
    for rk, ap in zip(rankings, res.all_AP, strict=True):
        roles = gallery_roles(int(qp[rk.query]), int(qc[rk.query]), gp, gc)
        kept = np.flatnonzero(~np.isin(roles, ["junk", "same_camera"]))
        want = kept[np.argsort(geo.dist[rk.query, kept], kind="stable")]
        np.testing.assert_array_equal(rk.gallery, want)
        np.testing.assert_array_equal(rk.matches, roles[want] == "match")
        assert rk.ap == pytest.approx(ap, abs=1e-12)
        assert rk.ap == pytest.approx(average_precision(rk.matches))
        np.testing.assert_array_equal(rk.match_ranks, np.flatnonzero(roles[want] == "match") + 1)
    with pytest.raises(ValueError, match="out of range"):
        G.rank_queries(geo.dist, qp, gp, qc, gc, [len(qp)])


@pytest.mark.parametrize("order", ["best", "worst", "random"])
def test_select_queries_orders(market, order):
    qf, gf, qp, gp, qc, gc = market
    dist = G.pair_geometry(qf, gf, qp, gp, qc, gc).dist
    res = evaluate_rank(dist, qp, gp, qc, gc, max_rank=10)
    sel = G.select_queries(dist, qp, gp, qc, gc, order=order, num=4, seed=3)
    assert sel.order == order and len(sel.indices) == 4
    assert sel.mAP == pytest.approx(res.mAP)
    np.testing.assert_array_equal(sel.valid, res.valid_queries)
    ap_of = dict(zip(res.valid_queries.tolist(), res.all_AP.tolist(), strict=True))
    shown = [ap_of[int(i)] for i in sel.indices]
    assert len(set(res.all_AP.round(12))) > 4  # the data give distinct APs to order
    if order == "best":
        assert shown == sorted(res.all_AP.tolist(), reverse=True)[:4]
    elif order == "worst":
        assert shown == sorted(res.all_AP.tolist())[:4]
    else:
        assert set(sel.indices.tolist()) <= set(res.valid_queries.tolist())
        again = G.select_queries(dist, qp, gp, qc, gc, order=order, num=4, seed=3)
        np.testing.assert_array_equal(again.indices, sel.indices)


def test_select_queries_errors(market):
    qf, gf, qp, gp, qc, gc = market
    dist = G.pair_geometry(qf, gf, qp, gp, qc, gc).dist
    with pytest.raises(ValueError, match="'median'"):
        G.select_queries(dist, qp, gp, qc, gc, order="median")
    with pytest.raises(ValueError, match="no valid query"):
        G.select_queries(dist, qp, gp + 1000, qc, gc)
    given_ = G.select_queries(dist, qp, gp, qc, gc, query_indices=[2, 0])
    assert given_.order == "given" and given_.indices.tolist() == [2, 0]


# ------------------------------------------------------------------------------- t-SNE


class _CountingTSNE:
    """Wraps sklearn's TSNE to count the fits (the cache must avoid them)."""

    calls = 0

    def __init__(self, real):
        self.real = real

    def __call__(self, **kw):
        type(self).calls += 1
        return self.real(**kw)


@pytest.fixture
def counting_tsne(monkeypatch):
    import sklearn.manifold

    counter = _CountingTSNE(sklearn.manifold.TSNE)
    _CountingTSNE.calls = 0
    monkeypatch.setattr(sklearn.manifold, "TSNE", counter)
    G.clear_tsne_cache()
    yield _CountingTSNE
    G.clear_tsne_cache()


def test_tsne_memory_cache(counting_tsne):
    feats, _, _ = clusters(num_ids=4, per_id=6, dim=60)
    a = G.tsne(feats, perplexity=5, pca_dim=10, max_iter=250)
    assert a.shape == (24, 2) and a.dtype == np.float32
    a[0] = 1e9  # a copy: the cache is not changed through it
    b = G.tsne(torch.from_numpy(feats), perplexity=5, pca_dim=10, max_iter=250)
    assert counting_tsne.calls == 1 and b[0, 0] != 1e9
    G.tsne(feats, perplexity=5, pca_dim=10, max_iter=250, seed=1)  # other parameters: a new fit
    G.tsne(feats + 1e-3, perplexity=5, pca_dim=10, max_iter=250)  # other inputs: a new fit
    assert counting_tsne.calls == 3
    G.tsne(feats, perplexity=5, pca_dim=10, max_iter=250, use_cache=False)
    assert counting_tsne.calls == 4


def test_tsne_disk_cache(counting_tsne, tmp_path):
    feats, _, _ = clusters(num_ids=4, per_id=6)
    a = G.tsne(feats, perplexity=5, max_iter=250, cache_dir=tmp_path / "c")
    assert len(list((tmp_path / "c").rglob("output.pkl"))) == 1  # joblib.Memory's result file
    G.clear_tsne_cache()
    b = G.tsne(feats, perplexity=5, max_iter=250, cache_dir=tmp_path / "c")
    assert counting_tsne.calls == 1  # read from disk, not refitted
    np.testing.assert_array_equal(a, b)
    G.clear_tsne_cache()
    G.tsne(feats, perplexity=5, max_iter=250, seed=1, cache_dir=tmp_path / "c")
    assert counting_tsne.calls == 2
    assert len(list((tmp_path / "c").rglob("output.pkl"))) == 2


def test_tsne_separates_clusters_and_checks_input():
    feats, pids, _ = clusters(num_ids=3, per_id=10, spread=6.0, noise=0.3)
    xy = G.tsne(feats, perplexity=50, max_iter=500)  # perplexity capped at (n - 1) / 3
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.diag(np.full(len(xy), np.inf))
    assert (pids[d.argmin(1)] == pids).all()  # every point's 2-D nearest neighbour: same id
    with pytest.raises(ValueError, match="at least 4"):
        G.tsne(feats[:3])
    with pytest.raises(ValueError, match="perplexity"):
        G.tsne(feats, perplexity=0)
    with pytest.raises(ValueError, match="2-D"):
        G.tsne(feats[0])
