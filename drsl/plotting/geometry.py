"""Embedding geometry figures: t-SNE, positive vs negative distance and angle histograms with
their overlap statistics, the rank-in-rank view, and ranking grids under the Market protocol.

Every function takes ``ax=None`` (or ``axes=None``), draws into it or into a new figure, and
returns the matplotlib Figure; none saves a file or prints. The numbers come from
:mod:`drsl.geometry` (which takes every distance and angle from :mod:`drsl.distances` and every
AP from :mod:`drsl.metrics`).

Reference: spec ``drsl-loss.md`` ("Words"; "The loss for one anchor": rank, then in rank);
the paper's abstract (inter-class distance distribution, intra-class angle structure).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, NullFormatter

from drsl.geometry import (
    PairGeometry,
    overlap_stats,
    rank_queries,
    select_identities,
    select_queries,
    spearman_per_query,
    tsne,
)

__all__ = [
    "POS_COLOR",
    "NEG_COLOR",
    "plot_tsne",
    "plot_pair_histograms",
    "plot_rank_in_rank",
    "plot_ranking",
]

#: Colour of positive pairs / true matches (green), and of negatives / false matches (red).
from ._style import NEG_COLOR, POS_COLOR
from ._util import new_axes, to_numpy

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
_KIND_LABEL = {"distance": "Euclidean distance", "angle": "angle (degrees)"}


def _filled_stairs(ax, counts, edges, colour, label: str) -> None:
    """A histogram as a filled outline: translucent face, solid edge (one style throughout)."""
    ax.stairs(
        counts,
        edges,
        fill=True,
        facecolor=to_rgba(colour, 0.3),
        edgecolor=colour,
        linewidth=1.6,
        label=label,
    )


def _id_colours(ids: np.ndarray) -> dict:
    n = len(ids)
    if n <= 10:
        cols = plt.get_cmap("tab10").colors
    elif n <= 20:
        cols = plt.get_cmap("tab20").colors
    else:
        cols = plt.get_cmap("turbo")(np.linspace(0.05, 0.95, n))
    return {int(p): to_rgba(cols[i]) for i, p in enumerate(ids)}


# --------------------------------------------------------------------------------------------
# t-SNE


def plot_tsne(
    features,
    pids,
    camids=None,
    *,
    is_query=None,
    ids: Sequence[int] | None = None,
    num_ids: int = 8,
    seed: int = 0,
    perplexity: float = 30.0,
    pca_dim: int | None = 50,
    max_iter: int = 1000,
    cache_dir: str | Path | None = None,
    ax=None,
    title: str | None = None,
) -> Figure:
    """t-SNE of the embeddings of a few identities: colour = identity, marker = camera.

    The identities are ``ids`` or ``num_ids`` drawn at random (:func:`drsl.geometry.
    select_identities`); only their items enter the t-SNE (:func:`drsl.geometry.tsne`, PCA
    first, cached in memory; on disk only when ``cache_dir`` is given). Queries, when
    ``is_query`` marks them, are drawn larger with a black edge. The axes carry no ticks:
    t-SNE coordinates have no unit, only neighbourhoods mean something.

    Args:
        features (Tensor or np.ndarray, n x D): embeddings (e.g. query and gallery stacked).
        pids (array-like, n): identities.
        camids (array-like, n, optional): cameras (one marker each); None = one marker.
        is_query (array-like of bool, n, optional): which items are queries.
        ids (sequence of int, optional): identities to show; default ``num_ids`` at random.
        num_ids (int): identities drawn when ``ids`` is None. Default 8.
        seed (int): seed of the draw and of the t-SNE. Default 0.
        perplexity, pca_dim, max_iter: passed to :func:`drsl.geometry.tsne`.
        cache_dir (str or Path, optional): on-disk t-SNE cache (the only file this may write).
        ax (matplotlib Axes, optional): where to draw; default a new figure.
        title (str, optional): the title; default says what is shown.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: van der Maaten & Hinton, JMLR 2008.
    """
    x = to_numpy(features)
    p = to_numpy(pids).astype(np.int64)
    n = x.shape[0]
    if p.shape != (n,):
        raise ValueError(f"pids must have length {n}, got shape {p.shape}")
    c = np.zeros(n, dtype=np.int64) if camids is None else to_numpy(camids).astype(np.int64)
    q = np.zeros(n, dtype=bool) if is_query is None else to_numpy(is_query).astype(bool)
    if c.shape != (n,) or q.shape != (n,):
        raise ValueError(f"camids and is_query must have length {n}, got {c.shape}, {q.shape}")
    chosen = select_identities(p, num_ids=num_ids, ids=ids, seed=seed)
    mask = np.isin(p, chosen)
    coords = tsne(
        x[mask],
        perplexity=perplexity,
        pca_dim=pca_dim,
        seed=seed,
        max_iter=max_iter,
        cache_dir=cache_dir,
    )
    p, c, q = p[mask], c[mask], q[mask]
    colours = _id_colours(chosen)
    fig, ax = new_axes(ax, (7.5, 5.5))
    cams = np.unique(c)
    for ci, cam in enumerate(cams):
        marker = _MARKERS[ci % len(_MARKERS)]
        for query in (False, True):
            sel = (c == cam) & (q == query)
            if not sel.any():
                continue
            coll = ax.scatter(
                coords[sel, 0],
                coords[sel, 1],
                c=[colours[int(v)] for v in p[sel]],
                marker=marker,
                s=70 if query else 30,
                edgecolors="black" if query else "none",
                linewidths=1.2 if query else 0.0,
                alpha=0.9,
                zorder=3 if query else 2,
            )
            coll.set_gid(f"cam{int(cam)}-{'query' if query else 'gallery'}")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    handles = []
    if camids is not None:
        handles += [
            Line2D(
                [], [], ls="", marker=_MARKERS[i % len(_MARKERS)], color="0.35", label=f"cam {cam}"
            )
            for i, cam in enumerate(cams)
        ]
    if q.any():
        handles.append(
            Line2D(
                [], [], ls="", marker="o", mfc="white", mec="black", mew=1.2, ms=8, label="query"
            )
        )
    if len(chosen) <= 12:
        handles += [
            Line2D([], [], ls="", marker="o", color=colours[int(pid)], label=f"id {pid}")
            for pid in chosen
        ]
    if handles:
        ax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            fontsize=8,
            frameon=False,
            borderaxespad=0.0,
        )
    ax.set_title(
        title
        if title is not None
        else f"t-SNE of {mask.sum()} embeddings: {len(chosen)} identities (colour)"
        + (", camera (marker)" if camids is not None else "")
    )
    return fig


# --------------------------------------------------------------------------------------------
# histograms


def plot_pair_histograms(
    geom: PairGeometry,
    *,
    kind: str = "distance",
    bins: int | Sequence[float] = 50,
    normalize: bool = True,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Histograms of the positive and of the negative pairs' distances (or angles).

    Both use the same bin edges. With ``normalize`` each histogram sums to 1 (a share of its
    pairs: negatives far outnumber positives), else it counts pairs. The legend gives the
    number of pairs and the overlap statistics: the ROC-AUC of telling negatives from
    positives by this value (:func:`drsl.geometry.separation_auc`, 1 = no overlap) and the
    share of anchors whose nearest negative comes before their farthest positive
    (:func:`drsl.geometry.overlap_fraction`, 0 = every ranked list perfect).

    Args:
        geom (PairGeometry): pairs from :func:`drsl.geometry.pair_geometry`.
        kind (str): ``"distance"`` (Euclidean) or ``"angle"`` (degrees). Default distance.
        bins (int or sequence of float): number of bins or the bin edges (pass the same edges
            to compare two models on one scale). Default 50.
        normalize (bool): shares (True, default) or counts.
        ax (matplotlib Axes, optional): where to draw; default a new figure.
        title (str, optional): the title; default names the kind.

    Returns:
        matplotlib.figure.Figure: the figure (two ``StepPatch`` artists, positives first).

    Reference: the paper's abstract (inter-class distance distribution, intra-class angles).
    """
    values = geom.values(kind)
    pos, neg = values[geom.pos_mask], values[geom.neg_mask]
    if pos.size == 0 and neg.size == 0:
        raise ValueError("geom holds no pair: nothing to plot")
    both = np.concatenate([pos, neg]).astype(np.float64)
    edges = np.histogram_bin_edges(both, bins=bins)
    s = overlap_stats(geom) if pos.size and neg.size else {}
    key = "distance" if kind == "distance" else "angle"
    fig, ax = new_axes(ax, (6.5, 4.2))
    for vals, colour, name in ((pos, POS_COLOR, "positives"), (neg, NEG_COLOR, "negatives")):
        counts = np.histogram(vals, bins=edges)[0].astype(np.float64)
        if normalize and vals.size:
            counts /= vals.size
        _filled_stairs(ax, counts, edges, colour, f"{name} (n={vals.size:,})")
    legend_title = None
    if s:
        legend_title = (
            f"ROC-AUC neg vs pos: {s[f'auc_{key}']:.3f}\n"
            f"anchors with nearest neg < farthest pos: {100 * s[f'overlap_{key}']:.1f}%"
        )
    top = max(
        (p.get_data().values.max() for p in ax.patches[-2:] if p.get_data().values.size),
        default=1.0,
    )
    ax.set_ylim(0, 1.5 * top if top > 0 else 1.0)  # headroom: the legend sits above the bars
    ax.legend(title=legend_title, fontsize=8, title_fontsize=8, loc="upper right", framealpha=0.9)
    ax.set_xlabel(_KIND_LABEL[kind])
    ax.set_ylabel("share of pairs per bin" if normalize else "number of pairs")
    ax.set_title(title if title is not None else f"Positive vs negative pairs: {_KIND_LABEL[kind]}")
    return fig


# --------------------------------------------------------------------------------------------
# rank in rank


def plot_rank_in_rank(
    geom: PairGeometry,
    *,
    min_positives: int = 3,
    max_points: int = 4000,
    seed: int = 0,
    axes=None,
    title: str | None = None,
) -> Figure:
    """The rank-in-rank view: per-query Spearman of the positives' distance vs angle order,
    and a scatter of distance vs angle for positive and negative pairs.

    Left: the distribution over queries (with at least ``min_positives`` positives) of
    Spearman's rho between the order of its positives by distance and by angle
    (:func:`drsl.geometry.spearman_per_query`); rho = 1 when the positives sit at distances in
    the order of their angles, which DRSL's sorting term asks for. Right: each pair as a point
    (distance, angle); at most ``max_points`` per class are drawn (a seeded random subset), in
    one collection (gid ``"pairs"``) in random order so that neither class covers the other.

    Args:
        geom (PairGeometry): pairs from :func:`drsl.geometry.pair_geometry`.
        min_positives (int): fewest positives for a query to enter the left panel. Default 3.
        max_points (int): most points per class in the scatter (>= 1). Default 4000.
        seed (int): seed of the scatter's subset. Default 0.
        axes (sequence of 2 Axes, optional): where to draw; default a new 1 x 2 figure.
        title (str, optional): a title: the figure's when it is new, else a first line over
            the left panel's. Default none.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: spec "The loss for one anchor": sorting error ``l_S`` orders the positives by
    their angle targets ``t = (1 + cos) / 2``; Spearman (1904).
    """
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    own_figure = axes is None
    if own_figure:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    else:
        if len(axes) != 2:
            raise ValueError(f"axes must hold 2 Axes, got {len(axes)}")
        fig = axes[0].figure
    ax_rho, ax_sc = axes[0], axes[1]
    rho, _ = spearman_per_query(geom.dist, geom.angle, geom.pos_mask, min_positives=min_positives)
    edges = np.linspace(-1.0, 1.0, 21)
    counts = np.histogram(rho, bins=edges)[0]
    _filled_stairs(ax_rho, counts, edges, POS_COLOR, f"queries (n={rho.size:,})")
    if rho.size:
        med = float(np.median(rho))
        ax_rho.axvline(med, color="black", ls="--", lw=1.2, label=f"median rho = {med:.2f}")
    else:
        ax_rho.text(
            0.5,
            0.5,
            f"no query with >= {min_positives} positives",
            transform=ax_rho.transAxes,
            ha="center",
            va="center",
        )
    ax_rho.set_xlim(-1.05, 1.05)
    ax_rho.set_xlabel("Spearman rho: positives' distance order vs angle order")
    ax_rho.set_ylabel("number of queries")
    ax_rho.legend(fontsize=8, loc="upper left")
    ax_rho.set_title(f"Rank in rank, per query (>= {min_positives} positives)")

    rng = np.random.default_rng(seed)
    xs, ys, cols, handles = [], [], [], []
    for mask, colour, name in (
        (geom.pos_mask, POS_COLOR, "positives"),
        (geom.neg_mask, NEG_COLOR, "negatives"),
    ):
        d, a = geom.dist[mask], geom.angle[mask]
        if d.size > max_points:
            idx = np.sort(rng.choice(d.size, size=max_points, replace=False))
            d, a = d[idx], a[idx]
        xs.append(d)
        ys.append(a)
        cols += [colour] * d.size
        total = int(mask.sum())
        label = f"{name} ({d.size:,} of {total:,})" if d.size < total else f"{name} ({total:,})"
        handles.append(Line2D([], [], ls="", marker="o", ms=6, color=colour, label=label))
    # one collection in random order: neither class hides the other where they overlap
    order = rng.permutation(sum(x.size for x in xs))
    coll = ax_sc.scatter(
        np.concatenate(xs)[order],
        np.concatenate(ys)[order],
        s=7,
        c=[cols[i] for i in order],
        alpha=0.35,
        linewidths=0,
    )
    coll.set_gid("pairs")
    ax_sc.set_xlabel(_KIND_LABEL["distance"])
    ax_sc.set_ylabel(_KIND_LABEL["angle"])
    ax_sc.legend(handles=handles, fontsize=8, loc="lower right")
    ax_sc.set_title("Distance vs angle of every pair")
    if title is not None:
        if own_figure:
            fig.suptitle(title)
        else:
            ax_rho.set_title(f"{title}\n{ax_rho.get_title()}")
    return fig


# --------------------------------------------------------------------------------------------
# ranking grids


def _load_image(img) -> np.ndarray:
    if isinstance(img, (str, Path)):
        from PIL import Image

        with Image.open(img) as im:
            return np.asarray(im.convert("RGB"))
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().numpy()
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"an image must be a path or an H x W x 3 array, got shape {a.shape}")
    return a


def plot_ranking(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    q_images: Sequence,
    g_images: Sequence,
    *,
    order: str = "random",
    num_queries: int = 4,
    topk: int = 8,
    query_indices: Sequence[int] | None = None,
    seed: int = 0,
    ap_mode: str = "noninterp",
    ax=None,
    title: str | None = None,
) -> Figure:
    """Queries with their top-k gallery images (green border: true match, red: not) and a
    strip with the ranks of all their true matches.

    The Market protocol of :func:`drsl.metrics.evaluate_rank` applies: gallery items of the
    query's identity and camera, and junk (pid ``-1``), are left out of the ranking; ranks
    count only the kept items. The queries are ``query_indices``, else ``num_queries`` valid
    queries chosen by ``order`` (:func:`drsl.geometry.select_queries`): ``"random"``, or by
    AP, ``"best"`` or ``"worst"`` first; the title says which, and the mAP over all queries,
    since the worst queries alone misrepresent a model.

    Args:
        distmat (array-like, nq x ng): query-gallery distances.
        q_pids, g_pids, q_camids, g_camids (array-like): identities and cameras.
        q_images, g_images (sequence): per query / gallery item an image path or an
            ``H x W x 3`` array (only the displayed ones are read).
        order (str): ``"random"``, ``"best"`` or ``"worst"``. Default random.
        num_queries (int): queries shown when ``query_indices`` is None. Default 4.
        topk (int): gallery images per query (>= 1). Default 8.
        query_indices (sequence of int, optional): the queries to show, in this order.
        seed (int): seed of the random order. Default 0.
        ap_mode (str): AP definition, as in :mod:`drsl.metrics`. Default ``"noninterp"``.
        ax (matplotlib Axes, optional): a region to draw in (its frame is hidden and the grid
            drawn inside it); default a new figure.
        title (str, optional): a prefix for the title (e.g. the model's name).

    Returns:
        matplotlib.figure.Figure: the figure. Its inner axes carry labels
        ``"query:<row>"``, ``"gallery:<row>:<k>"`` and ``"strip:<row>"``.

    Reference: Market-1501 protocol (Zheng et al., ICCV 2015); AP from :mod:`drsl.metrics`.
    """
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    dm = to_numpy(distmat)
    nq, ng = dm.shape
    if len(q_images) != nq or len(g_images) != ng:
        raise ValueError(
            f"need one image per query and gallery item: {nq} and {ng}, got "
            f"{len(q_images)} and {len(g_images)}"
        )
    sel = select_queries(
        dm,
        q_pids,
        g_pids,
        q_camids,
        g_camids,
        order=order,
        num=num_queries,
        query_indices=query_indices,
        seed=seed,
        ap_mode=ap_mode,
    )
    rankings = rank_queries(dm, q_pids, g_pids, q_camids, g_camids, sel.indices, ap_mode=ap_mode)
    qp, gp = to_numpy(q_pids).astype(np.int64), to_numpy(g_pids).astype(np.int64)
    qc, gc = to_numpy(q_camids).astype(np.int64), to_numpy(g_camids).astype(np.int64)
    rows = len(rankings)
    if ax is None:
        fig = plt.figure(figsize=(1.05 * (topk + 1.5), 2.75 * rows + 0.6))
        ax = fig.add_axes((0.02, 0.02, 0.96, 1 - 0.5 / (2.75 * rows + 0.6) - 0.02))
    fig = ax.figure
    ax.set_axis_off()
    col_w = 1.0 / (topk + 1.4)
    row_h = 1.0 / rows
    describe = {
        "random": f"{rows} random queries (seed {seed})",
        "best": f"the {rows} best queries by AP, best first",
        "worst": f"the {rows} worst queries by AP, worst first",
        "given": f"{rows} chosen queries",
    }[sel.order]
    head = f"{title}: " if title else ""
    ax.set_title(
        f"{head}{describe} of {sel.valid.size} valid; mAP over all = {sel.mAP:.3f}",
        fontsize=10,
    )
    for r, rk in enumerate(rankings):
        top = 1.0 - r * row_h
        # per row, top to bottom: images 60%, their two-line labels, the strip's title,
        # the strip 9%, its tick labels
        img_h, strip_h = 0.60 * row_h, 0.09 * row_h
        img_y = top - 0.02 * row_h - img_h
        strip_y = img_y - 0.23 * row_h - strip_h
        qax = ax.inset_axes((0.0, img_y, col_w * 0.95, img_h))
        qax.imshow(_load_image(q_images[rk.query]), aspect="auto")
        qax.set_label(f"query:{r}")
        _frame(qax, "#1f4e9c", 3.0)
        qax.set_xlabel(f"query {rk.query}\nid {qp[rk.query]} · cam {qc[rk.query]}", fontsize=7)
        for k in range(min(topk, rk.gallery.size)):
            g = int(rk.gallery[k])
            gax = ax.inset_axes(((1.4 + k) * col_w, img_y, col_w * 0.92, img_h))
            gax.imshow(_load_image(g_images[g]), aspect="auto")
            gax.set_label(f"gallery:{r}:{k}")
            _frame(gax, POS_COLOR if rk.matches[k] else NEG_COLOR, 4.0)
            gax.set_xlabel(f"#{k + 1}\nid {gp[g]} · cam {gc[g]}", fontsize=7)
        sax = ax.inset_axes((1.4 * col_w, strip_y, 1.0 - 1.4 * col_w, strip_h))
        sax.set_label(f"strip:{r}")
        _rank_strip(sax, rk.match_ranks, rk.gallery.size, topk, rk.ap)
    return fig


def _frame(ax, colour: str, width: float) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(width)


def _rank_strip(ax, ranks: np.ndarray, n: int, topk: int, ap: float) -> None:
    """Ranks of all true matches as ticks along 1..n (log axis when n > 50)."""
    ax.axvspan(0.5, min(topk, n) + 0.5, color="0.88", zorder=0)
    ax.vlines(ranks, 0, 1, colors=POS_COLOR, linewidth=2.0, zorder=2)
    ax.set_xlim(0.5 if n <= 50 else 0.9, n + 0.5)
    if n > 50:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.tick_params(axis="x", labelsize=7, length=2, pad=1)
    for spine in ("top", "right", "left"):
        ax.spines[spine].set_visible(False)
    first = f", first at {ranks[0]}" if ranks.size else ""
    ap_text = f"{ap:.3f}" if ap >= 0.01 else f"{ap:.1e}"
    ax.set_title(
        f"ranks of all {ranks.size} true matches among {n} (grey: top-{topk}){first};"
        f" AP = {ap_text}",
        fontsize=7,
        loc="left",
        pad=2,
    )
