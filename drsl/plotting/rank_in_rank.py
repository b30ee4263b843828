"""Rank-in-rank figures: does each query's positives' distance order follow their angle order?
Per-query Spearman rho as a box with every query as a point, next to every pair's (distance,
angle), and one violin per model.

Every function takes ``ax=None`` (or ``axes=None``), draws into it or into a new figure, and
returns the matplotlib Figure; none saves a file or prints. The numbers come from
:func:`drsl.geometry.spearman_per_query`.

Reference: ``docs/drsl-loss-spec.md``, "The loss for one anchor" (rank, then in rank: the
sorting error ``l_S``); Spearman (1904).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from drsl.geometry import PairGeometry, spearman_per_query

from ._style import AXIS_LABEL as _KIND_LABEL
from ._style import NEG_COLOR, POS_COLOR
from ._util import new_axes

__all__ = ["plot_rank_in_rank", "plot_spearman_by_model"]


def _scatter_pairs(ax, geom: PairGeometry, max_points: int, rng) -> None:
    """Every pair as a point (distance, angle), a seeded subset per class, in random order."""
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
    coll = ax.scatter(
        np.concatenate(xs)[order],
        np.concatenate(ys)[order],
        s=7,
        c=[cols[i] for i in order],
        alpha=0.35,
        linewidths=0,
    )
    coll.set_gid("pairs")
    ax.set_xlabel(_KIND_LABEL["distance"])
    ax.set_ylabel(_KIND_LABEL["angle"])
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    ax.set_title("Distance vs angle of every pair")


def _rho_panel(ax, rho: np.ndarray, min_positives: int, rng) -> None:
    """Per-query Spearman rho as a box (quartiles) with every query as a jittered point."""
    if rho.size:
        with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib 3.11's deprecated `vert`
            warnings.filterwarnings("ignore", message=".*vert.*", category=DeprecationWarning)
            sns.boxplot(x=rho, ax=ax, color="0.85", width=0.5, fliersize=0, zorder=1)
        jitter = rng.uniform(-0.18, 0.18, size=rho.size)
        coll = ax.scatter(rho, jitter, s=9, color=POS_COLOR, alpha=0.5, linewidths=0, zorder=3)
        coll.set_gid("queries")
        med = float(np.median(rho))
        ax.axvline(med, color="black", ls="--", lw=1.2, label=f"median rho = {med:.2f}")
        ax.legend(fontsize=8, loc="upper left", title=f"queries (n={rho.size:,})", title_fontsize=8)
    else:
        ax.text(
            0.5,
            0.5,
            f"no query with >= {min_positives} positives",
            transform=ax.transAxes,
            ha="center",
            va="center",
        )
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(0.5, -0.5)
    ax.set_yticks([])
    ax.set_xlabel("Spearman rho: positives' distance order vs angle order")
    ax.set_title(f"Rank in rank, per query (>= {min_positives} positives)")


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
    (:func:`drsl.geometry.spearman_per_query`), as a seaborn box plot (quartiles) over every
    query drawn as a jittered point (gid ``"queries"``) and a dashed median line; rho = 1 when
    the positives sit at distances in the order of their angles, which DRSL's sorting term
    asks for. Right: each pair as a point (distance, angle); at most ``max_points`` per class
    are drawn (a seeded random subset), in one collection (gid ``"pairs"``) in random order
    so that neither class covers the other.

    Args:
        geom (PairGeometry): pairs from :func:`drsl.geometry.pair_geometry`.
        min_positives (int): fewest positives for a query to enter the left panel. Default 3.
        max_points (int): most points per class in the scatter (>= 1). Default 4000.
        seed (int): seed of the scatter's subset and the jitter. Default 0.
        axes (sequence of 2 Axes, optional): where to draw; default a new 1 x 2 figure.
        title (str, optional): a title: the figure's when it is new, else a first line over
            the left panel's. Default none.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: ``docs/drsl-loss-spec.md``, "The loss for one anchor": sorting error ``l_S``
    orders the positives by their angle targets ``t = (1 + cos) / 2``; Spearman (1904).
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
    rng = np.random.default_rng(seed)
    _rho_panel(ax_rho, rho, min_positives, rng)
    _scatter_pairs(ax_sc, geom, max_points, rng)
    if title is not None:
        if own_figure:
            fig.suptitle(title)
        else:
            ax_rho.set_title(f"{title}\n{ax_rho.get_title()}")
    return fig


def plot_spearman_by_model(
    geoms: Mapping[str, PairGeometry],
    *,
    min_positives: int = 3,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Per-query Spearman rho (positives' distance order vs angle order), one violin per model.

    ``seaborn.violinplot`` (cut at the data's range, quartiles inside); above each violin, the
    median and the number of queries (texts with gid ``"median:<model>"``).

    Args:
        geoms (Mapping[str, PairGeometry]): model name -> its pairs (same queries, ideally).
        min_positives (int): fewest positives for a query to count. Default 3.
        ax (matplotlib Axes, optional): where to draw; default a new figure.
        title (str, optional): the title.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: ``docs/drsl-loss-spec.md``, sorting error; Spearman (1904).
    """
    if not geoms:
        raise ValueError("geoms is empty: pass at least one model's PairGeometry")
    rhos = {
        name: spearman_per_query(g.dist, g.angle, g.pos_mask, min_positives=min_positives)[0]
        for name, g in geoms.items()
    }
    frame = pd.DataFrame(
        {"model": np.repeat(list(rhos), [r.size for r in rhos.values()]), "rho": np.concatenate(
            [r.astype(np.float64) for r in rhos.values()]
        )}
    )  # fmt: skip
    fig, ax = new_axes(ax, (1.6 + 2.2 * len(rhos), 4.2))
    sns.violinplot(
        frame, x="model", y="rho", hue="model", cut=0, inner="quart", ax=ax, legend=False
    )
    for i, (name, r) in enumerate(rhos.items()):
        text = f"median {np.median(r):.2f}\n(n={r.size:,})" if r.size else "no query"
        ax.text(i, 1.02, text, ha="center", va="bottom", fontsize=8, gid=f"median:{name}")
    ax.set_ylim(-1.05, 1.3)
    ax.set_xlabel("")
    ax.set_ylabel("Spearman rho per query")
    ax.set_title(
        title if title is not None else f"Rank in rank: queries with >= {min_positives} positives"
    )
    return fig
