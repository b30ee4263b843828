"""Embedding geometry figures: t-SNE, and positive vs negative distance and angle distributions
with their overlap statistics (seaborn ``histplot`` and ``ecdfplot`` with ``hue``). The
rank-in-rank views (per-query Spearman as box, strip and violin plots):
:mod:`drsl.plotting.rank_in_rank`; ranking grids: :mod:`drsl.plotting.ranking`.

Every function takes ``ax=None`` (or ``axes=None``), draws into it or into a new figure, and
returns the matplotlib Figure; none saves a file or prints. The numbers come from
:mod:`drsl.geometry` (which takes every distance and angle from :mod:`drsl.distances` and every
AP from :mod:`drsl.metrics`).

Reference: ``docs/drsl-loss-spec.md`` ("Words"; "The loss for one anchor": rank, then in rank);
the paper's abstract (inter-class distance distribution, intra-class angle structure).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from drsl.geometry import PairGeometry, overlap_stats, select_identities, tsne

__all__ = [
    "POS_COLOR",
    "NEG_COLOR",
    "plot_tsne",
    "plot_pair_histograms",
    "plot_pair_histograms_by_model",
    "plot_pair_ecdf",
]

#: Colour of positive pairs / true matches (green), and of negatives / false matches (red).
from ._style import AXIS_LABEL as _KIND_LABEL
from ._style import NEG_COLOR, POS_COLOR
from ._util import new_axes, to_numpy

# the rank-in-rank views lived here before drsl.plotting.rank_in_rank: the old import path
# ``drsl.plotting.geometry.plot_rank_in_rank`` keeps working (one object, one home)
from .rank_in_rank import plot_rank_in_rank, plot_spearman_by_model  # noqa: F401

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")


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
# distance and angle distributions


def _pair_histograms(geom: PairGeometry, kind: str, bins) -> tuple[np.ndarray, dict]:
    """Shared bin edges and per-class counts of the positive and negative pairs' values."""
    values = geom.values(kind)
    pos, neg = values[geom.pos_mask], values[geom.neg_mask]
    if pos.size == 0 and neg.size == 0:
        raise ValueError("geom holds no pair: nothing to plot")
    edges = np.histogram_bin_edges(np.concatenate([pos, neg]).astype(np.float64), bins=bins)
    counts = {
        "positives": (np.histogram(pos, bins=edges)[0], pos.size),
        "negatives": (np.histogram(neg, bins=edges)[0], neg.size),
    }
    return edges, counts


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

    Drawn by ``seaborn.histplot`` with ``hue`` = positives / negatives, on shared bin edges.
    With ``normalize`` each class sums to 1 (``stat="probability"``, ``common_norm=False``: a
    share of its own pairs, since negatives far outnumber positives), else it counts pairs.
    The counts are binned here first and passed as weights, so millions of pairs cost one
    ``np.histogram`` each. The legend gives the number of pairs and the overlap statistics:
    the ROC-AUC of telling negatives from positives by this value
    (:func:`drsl.geometry.separation_auc`, 1 = no overlap) and the share of anchors whose
    nearest negative comes before their farthest positive
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
        matplotlib.figure.Figure: the figure; ``ax.containers`` holds one bar container per
        class, its bars the per-bin shares (or counts).

    Reference: the paper's abstract (inter-class distance distribution, intra-class angles).
    """
    edges, counts = _pair_histograms(geom, kind, bins)
    labels = {name: f"{name} (n={n:,})" for name, (_, n) in counts.items()}
    centres = (edges[:-1] + edges[1:]) / 2
    frame = pd.DataFrame(
        {
            "value": np.tile(centres, 2),
            "weight": np.concatenate([c.astype(np.float64) for c, _ in counts.values()]),
            "pairs": np.repeat([labels["positives"], labels["negatives"]], centres.size),
        }
    )
    fig, ax = new_axes(ax, (6.5, 4.2))
    sns.histplot(
        frame,
        x="value",
        weights="weight",
        hue="pairs",
        hue_order=[labels["positives"], labels["negatives"]],
        palette=[POS_COLOR, NEG_COLOR],
        bins=edges.tolist(),  # a list: seaborn 0.13 compares an array to "auto" with weights
        stat="probability" if normalize else "count",
        common_norm=False,
        element="bars",
        alpha=0.35,
        linewidth=0.3,
        ax=ax,
    )
    key = "distance" if kind == "distance" else "angle"
    legend = ax.get_legend()
    if counts["positives"][1] and counts["negatives"][1]:
        s = overlap_stats(geom)
        legend.set_title(
            f"ROC-AUC neg vs pos: {s[f'auc_{key}']:.3f}\n"
            f"anchors with nearest neg < farthest pos: {100 * s[f'overlap_{key}']:.1f}%"
        )
    else:
        legend.set_title(None)
    top = max((max((b.get_height() for b in c), default=0.0) for c in ax.containers), default=1.0)
    ax.set_ylim(0, 1.5 * top if top > 0 else 1.0)  # headroom: the legend sits above the bars
    sns.move_legend(ax, "upper right", fontsize=8, title_fontsize=8, framealpha=0.9)
    ax.set_xlabel(_KIND_LABEL[kind])
    ax.set_ylabel("share of pairs per bin" if normalize else "number of pairs")
    ax.set_title(title if title is not None else f"Positive vs negative pairs: {_KIND_LABEL[kind]}")
    return fig


def plot_pair_histograms_by_model(
    geoms: Mapping[str, PairGeometry],
    *,
    kind: str = "distance",
    bins: int = 50,
    axes=None,
) -> Figure:
    """:func:`plot_pair_histograms` of several models side by side, one panel per model.

    Angles need no common scale, so with ``kind="angle"`` every panel gets the same ``bins``
    edges, spanning the kept pairs' angles of all models. Distances keep each model's own
    edges: nothing fixes the norm of a feature, so compare the shapes and the legends'
    statistics, not positions on the x-axis.

    Args:
        geoms (Mapping[str, PairGeometry]): display name -> that model's pairs (at least one).
        kind (str): ``"distance"`` or ``"angle"``. Default distance.
        bins (int): bins per panel. Default 50.
        axes (sequence of Axes, optional): one per model; default a new row of panels.

    Returns:
        matplotlib.figure.Figure: the figure, one panel per model titled
        ``"<name>: distances"`` (or ``angles``).

    Example:
        >>> import torch
        >>> from drsl.geometry import batch_geometry
        >>> g = batch_geometry(torch.randn(8, 3, generator=torch.Generator().manual_seed(0)),
        ...                    torch.arange(4).repeat_interleave(2))
        >>> len(plot_pair_histograms_by_model({"A": g, "B": g}, kind="angle").axes)
        2
    """
    if not geoms:
        raise ValueError("geoms is empty: pass at least one model's pairs")
    if axes is None:
        size = (6.5 * len(geoms), 4.2)
        _, grid = plt.subplots(1, len(geoms), figsize=size, layout="constrained", squeeze=False)
        axes = grid[0]
    if len(axes) != len(geoms):
        raise ValueError(f"{len(axes)} axes for {len(geoms)} models: pass one per model")
    edges: int | np.ndarray = bins
    kept = np.concatenate([g.values(kind)[g.pos_mask | g.neg_mask] for g in geoms.values()])
    if kind == "angle" and kept.size:
        edges = np.linspace(kept.min(), kept.max(), bins + 1)
    for ax, (name, geom) in zip(axes, geoms.items(), strict=True):
        plot_pair_histograms(geom, kind=kind, bins=edges, ax=ax, title=f"{name}: {kind}s")
    return axes[0].figure


def plot_pair_ecdf(
    geoms: Mapping[str, PairGeometry],
    *,
    kind: str = "angle",
    bins: int = 512,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Empirical CDFs of the positive and negative pairs' values, for several models on one axes.

    ``seaborn.ecdfplot`` with ``hue`` = model; positives solid, negatives dashed. An ECDF
    needs no bin choice to compare shapes and is not swamped by the many negatives; for speed
    the values are first binned on ``bins`` shared edges (the curve is exact at every edge).
    Angles share one scale across models; distances need not.

    Args:
        geoms (Mapping[str, PairGeometry]): model name -> its pairs.
        kind (str): ``"angle"`` (default, degrees) or ``"distance"``.
        bins (int): shared bins for the binned ECDF (>= 2). Default 512.
        ax (matplotlib Axes, optional): where to draw; default a new figure.
        title (str, optional): the title.

    Returns:
        matplotlib.figure.Figure: the figure; one line per (model, class), each ending at 1.
    """
    if not geoms:
        raise ValueError("geoms is empty: pass at least one model's PairGeometry")
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    span = [v for g in geoms.values() for v in (g.values(kind).min(), g.values(kind).max())]
    edges = np.linspace(min(span), max(span), bins + 1)
    parts = []
    for name, g in geoms.items():
        _, counts = _pair_histograms(g, kind, edges)
        for cls, (c, _) in counts.items():
            parts.append(
                pd.DataFrame({"value": edges[1:], "weight": c, "model": name, "pairs": cls})
            )
    frame = pd.concat(parts, ignore_index=True)
    fig, ax = new_axes(ax, (6.5, 4.2))
    palette = dict(zip(geoms, sns.color_palette(n_colors=len(geoms)), strict=True))
    for cls, ls in (("positives", "-"), ("negatives", "--")):
        sns.ecdfplot(
            frame[frame["pairs"] == cls],
            x="value",
            weights="weight",
            hue="model",
            hue_order=list(geoms),
            palette=palette,
            ls=ls,
            legend=False,
            ax=ax,
        )
    handles = [Line2D([], [], color=c, label=name) for name, c in palette.items()]
    handles += [
        Line2D([], [], color="0.3", ls=ls, label=c)
        for c, ls in (("positives", "-"), ("negatives", "--"))
    ]
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    ax.set_xlabel(_KIND_LABEL[kind])
    ax.set_ylabel("share of pairs up to this value")
    ax.set_title(title if title is not None else f"ECDF of pair {kind}s, per model")
    return fig
