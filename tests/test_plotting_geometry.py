"""drsl.plotting.geometry, .rank_in_rank and .ranking: every function returns a Figure, draws
exactly the data it was given (points, histogram totals, green/red borders, match ranks),
writes no file."""

from __future__ import annotations

import os

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from drsl import geometry as G
from drsl.metrics import evaluate_rank, gallery_roles
from drsl.plotting import geometry as PG
from drsl.plotting import rank_in_rank as PRR
from drsl.plotting import ranking as PR

matplotlib.use("Agg")


def make_set(num_ids=10, per_id=8, num_cams=4, dim=16, noise=2.5, seed=0):
    """Clusters with noise enough for imperfect rankings; query = first item of each id;
    gallery = the rest, with 3 junk (-1) and 4 distractors (0)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids, dim)) * 2.0
    pids = np.repeat(np.arange(1, num_ids + 1), per_id)
    cams = rng.integers(0, num_cams, size=pids.size)
    feats = (centres[pids - 1] + noise * rng.normal(size=(pids.size, dim))).astype(np.float32)
    first = np.zeros(pids.size, bool)
    first[np.unique(pids, return_index=True)[1]] = True
    gp = pids[~first].copy()
    gp[rng.choice(gp.size, size=3, replace=False)] = -1
    extra = (3 * rng.normal(size=(4, dim))).astype(np.float32)
    return {
        "feats": feats,
        "pids": pids,
        "cams": cams,
        "is_query": first,
        "qf": feats[first],
        "gf": np.concatenate([feats[~first], extra]),
        "qp": pids[first],
        "gp": np.concatenate([gp, np.zeros(4, dtype=gp.dtype)]),
        "qc": cams[first],
        "gc": np.concatenate([cams[~first], rng.integers(0, num_cams, size=4)]),
    }


@pytest.fixture(scope="module")
def data():
    d = make_set()
    d["geo"] = G.pair_geometry(d["qf"], d["gf"], d["qp"], d["gp"], d["qc"], d["gc"])
    return d


@pytest.fixture(autouse=True)
def empty_cwd(tmp_path, monkeypatch):
    """Run each test in an empty folder and check that it stays empty."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    yield
    plt.close("all")
    assert os.listdir(work) == [], "a plotting function wrote files"


# ------------------------------------------------------------------------------- t-SNE


def test_plot_tsne_draws_every_item_of_the_chosen_identities(data):
    ids = [2, 5, 7]
    fig = PG.plot_tsne(
        data["feats"], data["pids"], data["cams"], is_query=data["is_query"], ids=ids,
        perplexity=5, max_iter=250,
    )  # fmt: skip
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    mask = np.isin(data["pids"], ids)
    xy = G.tsne(data["feats"][mask], perplexity=5, max_iter=250)  # from the cache
    colls = [c for c in ax.collections if (c.get_gid() or "").startswith("cam")]
    offsets = np.concatenate([c.get_offsets() for c in colls])
    assert len(offsets) == mask.sum()
    np.testing.assert_allclose(
        offsets[np.lexsort(offsets.T)], xy[np.lexsort(xy.T)].astype(np.float64), rtol=1e-6
    )
    # one colour per identity, distinct across identities
    pid_of = {tuple(p): pid for p, pid in zip(xy.tolist(), data["pids"][mask], strict=True)}
    colour_of = {}
    for c in colls:
        for p, fc in zip(c.get_offsets().tolist(), c.get_facecolors(), strict=True):
            colour_of.setdefault(pid_of[tuple(np.float32(p).tolist())], set()).add(tuple(fc))
    assert sorted(colour_of) == ids
    assert all(len(v) == 1 for v in colour_of.values())
    assert len({next(iter(v)) for v in colour_of.values()}) == len(ids)
    # queries: black-edged, as many as the chosen identities have
    nq = sum(len(c.get_offsets()) for c in colls if c.get_gid().endswith("query"))
    assert nq == (mask & data["is_query"]).sum()
    # one marker per camera: one legend entry per camera
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    cams = np.unique(data["cams"][mask])
    assert [f"cam {c}" for c in cams] == [t for t in labels if t.startswith("cam")]
    assert "3 identities" in ax.get_title()


def test_plot_tsne_into_given_axes_with_random_ids(data):
    fig, axes = plt.subplots(1, 2)
    out = PG.plot_tsne(
        data["feats"], data["pids"], num_ids=4, seed=1, perplexity=5, max_iter=250, ax=axes[1]
    )
    assert out is fig
    chosen = G.select_identities(data["pids"], num_ids=4, seed=1)
    n = sum(len(c.get_offsets()) for c in axes[1].collections)
    assert n == np.isin(data["pids"], chosen).sum()
    assert not axes[0].collections
    with pytest.raises(ValueError, match="length"):
        PG.plot_tsne(data["feats"], data["pids"][:-1])


# ------------------------------------------------------------------------------- histograms


def _bars_by_colour(ax):
    """The heights of each seaborn bar container, keyed by the class its colour stands for."""
    out = {}
    for cont in ax.containers:
        rgb = tuple(np.round(cont.patches[0].get_facecolor()[:3], 3))
        for name, colour in (("pos", PG.POS_COLOR), ("neg", PG.NEG_COLOR)):
            if rgb == tuple(np.round(to_rgba(colour)[:3], 3)):
                out[name] = np.array([b.get_height() for b in cont.patches])
                out[name + "_x"] = np.array([b.get_x() for b in cont.patches])
    return out


@pytest.mark.parametrize("kind", ["distance", "angle"])
def test_histogram_totals_equal_the_number_of_pairs(data, kind):
    geo = data["geo"]
    fig = PG.plot_pair_histograms(geo, kind=kind, normalize=False)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    bars = _bars_by_colour(ax)
    assert bars["pos"].sum() == geo.num_pos
    assert bars["neg"].sum() == geo.num_neg
    np.testing.assert_allclose(bars["pos_x"], bars["neg_x"])  # shared bin edges
    values = geo.pos_dist if kind == "distance" else geo.pos_angle
    edges = np.histogram_bin_edges(
        np.concatenate([values, geo.neg_dist if kind == "distance" else geo.neg_angle]), bins=50
    )
    np.testing.assert_array_equal(bars["pos"], np.histogram(values, bins=edges)[0])
    np.testing.assert_allclose(bars["pos_x"], edges[:-1])
    legend = ax.get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == [f"positives (n={geo.num_pos:,})", f"negatives (n={geo.num_neg:,})"]
    s = geo.stats()
    assert f"{s[f'auc_{kind}']:.3f}" in legend.get_title().get_text()
    assert f"{100 * s[f'overlap_{kind}']:.1f}%" in legend.get_title().get_text()
    assert ax.get_ylabel() == "number of pairs"


def test_histograms_normalised_and_shared_edges(data):
    geo = data["geo"]
    fig, ax = plt.subplots()
    edges = np.linspace(0, 180, 37)
    assert PG.plot_pair_histograms(geo, kind="angle", bins=edges, ax=ax) is fig
    bars = _bars_by_colour(ax)
    np.testing.assert_allclose(bars["pos_x"], edges[:-1])
    assert bars["pos"].sum() == pytest.approx(1.0)
    assert bars["neg"].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(bars["neg"], np.histogram(geo.neg_angle, edges)[0] / geo.num_neg)
    with pytest.raises(ValueError, match="'cosine'"):
        PG.plot_pair_histograms(geo, kind="cosine")


def test_histograms_by_model_share_angle_edges_but_not_distance_edges(data):
    geo = data["geo"]
    other = G.pair_geometry(
        2 * data["qf"], data["gf"], data["qp"], data["gp"], data["qc"], data["gc"]
    )
    geoms = {"a": geo, "b": other}
    fig = PG.plot_pair_histograms_by_model(geoms, kind="angle", bins=30)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["a: angles", "b: angles"]
    starts = [_bars_by_colour(ax)["pos_x"] for ax in fig.axes[:2]]
    np.testing.assert_allclose(starts[0], starts[1])  # one scale for both models
    lo = min(g.angle[g.pos_mask | g.neg_mask].min() for g in geoms.values())
    assert starts[0][0] == pytest.approx(lo)
    fig = PG.plot_pair_histograms_by_model(geoms, kind="distance", bins=30)
    widths = [np.ptp(_bars_by_colour(ax)["pos_x"]) for ax in fig.axes[:2]]
    assert widths[0] != pytest.approx(widths[1])  # each model on its own distance scale
    with pytest.raises(ValueError, match="one per model"):
        PG.plot_pair_histograms_by_model(geoms, axes=fig.axes[:1])
    with pytest.raises(ValueError, match="empty"):
        PG.plot_pair_histograms_by_model({})


def test_pair_ecdf_one_curve_per_model_and_class_each_reaching_one(data):
    geo = data["geo"]
    other = G.pair_geometry(
        2 * data["qf"], data["gf"], data["qp"], data["gp"], data["qc"], data["gc"]
    )
    fig = PG.plot_pair_ecdf({"a": geo, "b": other}, kind="angle", bins=64)
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 2]
    assert len(lines) == 4
    for ln in lines:
        y = np.asarray(ln.get_ydata())
        assert y[-1] == pytest.approx(1.0) and np.all(np.diff(y) >= -1e-12)
    # the positives' curve of model "a" at the median positive angle is about one half
    finals = sorted(np.interp(np.median(geo.pos_angle), ln.get_xdata(), ln.get_ydata())
                    for ln in lines)  # fmt: skip
    assert any(abs(v - 0.5) < 0.1 for v in finals)
    with pytest.raises(ValueError, match="empty"):
        PG.plot_pair_ecdf({})


# ------------------------------------------------------------------------------- rank in rank


def test_rank_in_rank_view(data):
    geo = data["geo"]
    fig = PRR.plot_rank_in_rank(geo, max_points=40, seed=0, title="model")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax_rho, ax_sc = fig.axes
    rho, _ = G.spearman_per_query(geo.dist, geo.angle, geo.pos_mask, min_positives=3)
    assert rho.size > 0
    (queries,) = [c for c in ax_rho.collections if c.get_gid() == "queries"]
    np.testing.assert_allclose(np.sort(queries.get_offsets()[:, 0]), np.sort(rho))
    median_line = next(ln for ln in ax_rho.get_lines() if ln.get_linestyle() == "--")
    assert median_line.get_xdata()[0] == pytest.approx(np.median(rho))
    assert f"n={rho.size:,}" in ax_rho.get_legend().get_title().get_text()
    (coll,) = [c for c in ax_sc.collections if c.get_gid() == "pairs"]
    xy, colours = np.asarray(coll.get_offsets()), coll.get_facecolors()
    is_pos = np.all(np.isclose(colours[:, :3], to_rgba(PG.POS_COLOR)[:3]), axis=1)
    is_neg = np.all(np.isclose(colours[:, :3], to_rgba(PG.NEG_COLOR)[:3]), axis=1)
    assert (is_pos | is_neg).all()
    assert geo.num_pos > 40 and is_pos.sum() == 40 and is_neg.sum() == 40
    # every green point is a positive pair (distance, angle), every red one a negative pair,
    # and no pair is drawn twice
    for sel, d_, a_ in (
        (is_pos, geo.pos_dist, geo.pos_angle),
        (is_neg, geo.neg_dist, geo.neg_angle),
    ):
        pairs = np.stack([d_, a_], 1).astype(np.float64)
        gap = np.abs(xy[sel][:, None, :] - pairs[None]).sum(-1)
        assert gap.min(1).max() < 1e-4
        assert len(set(gap.argmin(1).tolist())) == sel.sum()
    legend = [t.get_text() for t in ax_sc.get_legend().get_texts()]
    assert legend == [f"positives (40 of {geo.num_pos:,})", f"negatives (40 of {geo.num_neg:,})"]
    assert fig.get_suptitle() == "model"


def test_rank_in_rank_into_given_axes_without_enough_positives(data):
    geo = data["geo"]
    fig, axes = plt.subplots(2, 2)
    assert PRR.plot_rank_in_rank(geo, min_positives=50, axes=axes[1], title="m") is fig
    assert not [c for c in axes[1, 0].collections if c.get_gid() == "queries"]
    assert any("no query" in t.get_text() for t in axes[1, 0].texts)
    assert axes[1, 0].get_title().startswith("m\n")
    with pytest.raises(ValueError, match="2 Axes"):
        PRR.plot_rank_in_rank(geo, axes=[axes[0, 0]])


def test_spearman_by_model_one_violin_per_model_with_its_median(data):
    geo = data["geo"]
    other = G.pair_geometry(
        data["qf"] + 0.5, data["gf"], data["qp"], data["gp"], data["qc"], data["gc"]
    )
    fig, ax = plt.subplots()
    assert PRR.plot_spearman_by_model({"a": geo, "b": other}, ax=ax) is fig
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    for name, g in (("a", geo), ("b", other)):
        rho, _ = G.spearman_per_query(g.dist, g.angle, g.pos_mask, min_positives=3)
        (text,) = [t for t in ax.texts if t.get_gid() == f"median:{name}"]
        assert text.get_text() == f"median {np.median(rho):.2f}\n(n={rho.size:,})"
    assert len([c for c in ax.collections if c.get_paths()]) >= 2  # two violin bodies
    with pytest.raises(ValueError, match="empty"):
        PRR.plot_spearman_by_model({})


def test_one_course_theme_for_every_figure():
    import seaborn as sns

    from drsl.plotting import _style

    plt.rcParams["axes.grid"] = False
    _style.set_course_theme()  # already applied: nothing changes
    assert plt.rcParams["axes.grid"] is False
    _style.set_course_theme(force=True)
    assert plt.rcParams["axes.grid"] is True
    first = plt.rcParams["axes.prop_cycle"].by_key()["color"][0]
    assert to_rgba(first) == to_rgba(sns.color_palette(_style.THEME["palette"])[0])


# ------------------------------------------------------------------------------- ranking


def _images(n, seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, size=(16, 8, 3), dtype=np.uint8) for _ in range(n)]


def _all_axes(fig):
    out = []
    for ax in fig.axes:
        out += [ax, *ax.child_axes]  # the grid is drawn in inset axes of one parent
    return out


def _inner(fig, prefix):
    return {a.get_label(): a for a in _all_axes(fig) if a.get_label().startswith(prefix)}


@pytest.mark.parametrize("order", ["worst", "best", "random"])
def test_ranking_borders_and_strip(data, order):
    d, geo = data, data["geo"]
    qi, gi = _images(len(d["qp"]), 0), _images(len(d["gp"]), 1)
    topk = 6
    fig = PR.plot_ranking(
        geo.dist, d["qp"], d["gp"], d["qc"], d["gc"], qi, gi,
        order=order, num_queries=3, topk=topk, title="model",
    )  # fmt: skip
    assert isinstance(fig, Figure)
    sel = G.select_queries(geo.dist, d["qp"], d["gp"], d["qc"], d["gc"], order=order, num=3)
    res = evaluate_rank(geo.dist, d["qp"], d["gp"], d["qc"], d["gc"], max_rank=10)
    title = next(a for a in fig.axes if a.get_title()).get_title()
    word = {"worst": "worst first", "best": "best first", "random": "random"}[order]
    assert word in title and f"mAP over all = {res.mAP:.3f}" in title
    assert f"of {res.num_valid_q} valid" in title
    gallery = _inner(fig, "gallery:")
    strips = _inner(fig, "strip:")
    assert len(_inner(fig, "query:")) == 3 and len(strips) == 3
    for row, q in enumerate(sel.indices):
        # brute force under the protocol, from drsl.metrics' own roles
        roles = gallery_roles(int(d["qp"][q]), int(d["qc"][q]), d["gp"], d["gc"])
        kept = np.flatnonzero(~np.isin(roles, ["junk", "same_camera"]))
        ranked = kept[np.argsort(geo.dist[q, kept], kind="stable")]
        is_match = roles[ranked] == "match"
        for k in range(topk):
            ax = gallery[f"gallery:{row}:{k}"]
            want = PG.POS_COLOR if is_match[k] else PG.NEG_COLOR
            assert ax.spines["top"].get_edgecolor() == to_rgba(want)
            np.testing.assert_array_equal(ax.images[0].get_array(), gi[ranked[k]])
        assert f"gallery:{row}:{topk}" not in gallery
        (lines,) = strips[f"strip:{row}"].collections
        xs = sorted(seg[0, 0] for seg in lines.get_segments())
        assert xs == (np.flatnonzero(is_match) + 1).tolist()
        np.testing.assert_array_equal(
            _inner(fig, "query:")[f"query:{row}"].images[0].get_array(), qi[q]
        )
    assert sum(is_match[:topk]) < topk or order != "worst"  # the data give imperfect lists


def test_ranking_with_paths_given_queries_and_axes(data, tmp_path):
    from PIL import Image

    d, geo = data, data["geo"]
    img_dir = tmp_path / "imgs"  # outside the checked cwd: the test writes these, not the plot
    img_dir.mkdir()
    arrays = _images(len(d["gp"]), 2)
    paths = []
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(img_dir / f"g{i}.png")
        paths.append(str(img_dir / f"g{i}.png"))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    out = PR.plot_ranking(
        geo.dist, d["qp"], d["gp"], d["qc"], d["gc"], _images(len(d["qp"]), 0), paths,
        query_indices=[4], topk=3, ax=axes[0],
    )  # fmt: skip
    assert out is fig
    gallery = _inner(fig, "gallery:")
    assert sorted(gallery) == ["gallery:0:0", "gallery:0:1", "gallery:0:2"]
    first = G.rank_queries(geo.dist, d["qp"], d["gp"], d["qc"], d["gc"], [4])[0].gallery[0]
    np.testing.assert_array_equal(gallery["gallery:0:0"].images[0].get_array(), arrays[first])
    assert "1 chosen queries" in axes[0].get_title()
    with pytest.raises(ValueError, match="one image per"):
        PR.plot_ranking(geo.dist, d["qp"], d["gp"], d["qc"], d["gc"], [], paths)
    with pytest.raises(ValueError, match="H x W x 3"):
        PR.plot_ranking(
            geo.dist, d["qp"], d["gp"], d["qc"], d["gc"], [np.zeros((4, 4))] * len(d["qp"]),
            paths, query_indices=[0],
        )  # fmt: skip
    with pytest.raises(ValueError, match="topk"):
        PR.plot_ranking(geo.dist, d["qp"], d["gp"], d["qc"], d["gc"], [], paths, topk=0)


def test_ranking_names_an_unreadable_image_in_one_line(data, tmp_path):
    """Paths go through drsl.data.datasets.read_image: a bad file is one BadImageError line."""
    from drsl.data.datasets import BadImageError

    d, geo = data, data["geo"]
    bad = tmp_path / "truncated.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n")  # a PNG signature and nothing after it
    first = G.rank_queries(geo.dist, d["qp"], d["gp"], d["qc"], d["gc"], [4])[0].gallery[0]
    g_images = [np.zeros((4, 4, 3), dtype=np.uint8)] * len(d["gp"])
    g_images[first] = str(bad)
    with pytest.raises(BadImageError, match="truncated.png") as err:
        PR.plot_ranking(
            geo.dist, d["qp"], d["gp"], d["qc"], d["gc"], _images(len(d["qp"]), 0), g_images,
            query_indices=[4], topk=3,
        )  # fmt: skip
    assert "\n" not in str(err.value)


def test_all_names_exported():
    import drsl.plotting

    for module in (PG, PRR):
        for name in module.__all__:
            assert getattr(drsl.plotting, name) is getattr(module, name)
    assert "plot_pair_ecdf" in PG.__all__ and "plot_spearman_by_model" in PRR.__all__
    assert drsl.plotting.plot_ranking is PR.plot_ranking
    # the rank-in-rank views' old path (drsl.plotting.geometry) is the same object
    assert PG.plot_rank_in_rank is PRR.plot_rank_in_rank
    assert PG.plot_spearman_by_model is PRR.plot_spearman_by_model
