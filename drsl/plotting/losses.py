"""Figures of the loss itself (notebook 01): one anchor's ranked list, the loss terms, and the
step function with its smoothed versions. The gradient figures (finite-difference error
curves, line profiles, identity update vs smooth gradient, balance) are in
:mod:`drsl.plotting.gradients`.

Every function takes ``ax=None`` (or ``axes=None``), draws into it or into a new figure and
returns the matplotlib Figure; none saves a file or prints. Inputs are plain arrays or tensors
computed by :mod:`drsl.losses` and :mod:`drsl.gradcheck` (this module computes nothing of its
own beyond what it draws).

Reference: ``docs/drsl-loss-spec.md`` ("Words", "The loss for one anchor", "Two ways to get a
gradient", "Why it suits imbalance").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ._style import NEG_COLOR, POS_COLOR
from ._util import new_axes, to_numpy

# the gradient figures lived here before drsl.plotting.gradients: the old import path
# ``drsl.plotting.losses.plot_balance`` keeps working (one object, one home)
from .gradients import (  # noqa: F401
    plot_balance,
    plot_line_profile,
    plot_step_sweep,
    plot_update_comparison,
    plot_update_row,
)

__all__ = ["plot_anchor_list", "plot_loss_terms", "plot_step_functions"]

_TARGET_CMAP = "viridis"


def plot_anchor_list(
    distances,
    is_positive,
    targets=None,
    *,
    names: Sequence[str] | None = None,
    delta: float | None = None,
    ax=None,
    title: str | None = None,
) -> Figure:
    """One anchor's retrieval list on a distance axis: positives above, negatives below.

    Each item sits at its distance to the anchor (rank 1 = nearest, numbered ``#k``);
    positives are circles coloured by their angle target ``t`` (if given), negatives red
    squares. With ``delta``, a bar of width ``2 delta`` under the axis shows the linear
    ramp's reach: two items closer than ``delta`` are "partly" ahead of each other.

    Args:
        distances (array-like): ``n`` distances to the anchor (any order).
        is_positive (array-like): ``n`` bools.
        targets (array-like, optional): ``n`` angle targets in ``[0, 1]`` (read for positives).
        names (Sequence[str], optional): ``n`` labels; default ``p1.., n1..`` in rank order.
        delta (float, optional): the ramp half-width to draw.
        ax (matplotlib.axes.Axes, optional): where to draw; a new figure if None.
        title (str, optional): the axes title.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: spec "Words" (score ``s_j = -d_j``, higher = earlier; angle target ``t_j``).

    Example:
        >>> fig = plot_anchor_list([1.0, 0.5, 2.0], [True, False, True], [0.9, 0.5, 0.6])
        >>> [t.get_text() for t in fig.axes[0].texts if t.get_text().startswith("#")]
        ['#1', '#2', '#3']
    """
    d = to_numpy(distances).astype(float)
    pos = to_numpy(is_positive).astype(bool)
    if d.ndim != 1 or d.shape != pos.shape:
        raise ValueError(
            f"distances and is_positive must be 1-D of one length: {d.shape}, {pos.shape}"
        )
    order = np.argsort(d, kind="stable")
    if names is None:
        names = [""] * len(d)
        kp = kn = 0
        for j in order:
            if pos[j]:
                kp += 1
                names[j] = f"p{kp}"
            else:
                kn += 1
                names[j] = f"n{kn}"
    elif len(names) != len(d):
        raise ValueError(f"names must have {len(d)} entries, got {len(names)}")
    fig, ax = new_axes(ax, (9, 2.8))
    cmap, norm = colormaps[_TARGET_CMAP], Normalize(0.0, 1.0)
    t = None if targets is None else to_numpy(targets).astype(float)
    ax.axhline(0.0, color="0.3", lw=1, zorder=1)
    ax.plot([0.0], [0.0], marker="*", ms=16, color="black", zorder=3)
    ax.annotate("anchor", (0.0, 0.0), xytext=(0, -18), textcoords="offset points", ha="center")
    for rank, j in enumerate(order, start=1):
        y = 0.5 if pos[j] else -0.5
        if pos[j]:
            face = cmap(norm(t[j])) if t is not None else POS_COLOR
            ax.scatter(d[j], y, s=170, marker="o", color=face, edgecolor=POS_COLOR, lw=2, zorder=3)
        else:
            ax.scatter(d[j], y, s=150, marker="s", color=NEG_COLOR, zorder=3)
        ax.plot([d[j], d[j]], [0.0, y], color="0.7", lw=0.8, zorder=2)
        label = names[j] if t is None or not pos[j] else f"{names[j]}\nt={t[j]:.2f}"
        va = "bottom" if pos[j] else "top"
        ax.annotate(
            label,
            (d[j], y),
            xytext=(0, 11 if pos[j] else -11),
            textcoords="offset points",
            ha="center",
            va=va,
            fontsize="small",
        )
        ax.text(
            d[j],
            0.06 if not pos[j] else -0.06,
            f"#{rank}",
            ha="center",
            va="bottom" if not pos[j] else "top",
            fontsize="x-small",
            color="0.25",
        )
    if delta is not None:
        x0 = 0.02 * max(float(d.max(initial=1.0)), 1e-12)
        ax.plot([x0, x0 + 2 * delta], [-1.25, -1.25], color="0.2", lw=3)
        ax.text(
            x0 + delta,
            -1.2,
            f"2 delta = {2 * delta:g}",
            ha="center",
            va="bottom",
            fontsize="x-small",
        )
    if t is not None:
        fig.colorbar(
            plt.cm.ScalarMappable(norm=norm, cmap=cmap),
            ax=ax,
            label="angle target t",
            fraction=0.04,
            pad=0.01,
        )
    ax.set_ylim(-1.5, 1.5)
    ax.set_xlim(-0.08 * max(d.max(initial=1.0), 1e-12), 1.08 * max(d.max(initial=1.0), 1e-12))
    ax.set_yticks([-0.5, 0.5], ["negatives", "positives"])
    ax.set_xlabel("distance to the anchor  (score s = -distance: left is retrieved first)")
    ax.spines[["top", "right", "left"]].set_visible(False)
    ax.set_title(
        title or f"ranked list: {pos.sum()} positives, {(~pos).sum()} negatives", fontsize="medium"
    )
    return fig


def plot_loss_terms(
    l_rank,
    l_sort,
    l_sort_target,
    *,
    names: Sequence[str] | None = None,
    sort_weight: float = 1.0,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Per-positive bars of the ranking error, the sorting errors and their contribution.

    Args:
        l_rank (array-like): ``P`` ranking errors ``l_R(i)``.
        l_sort (array-like): ``P`` sorting errors ``l_S(i)``.
        l_sort_target (array-like): ``P`` target sorting errors ``l*_S(i)``.
        names (Sequence[str], optional): ``P`` labels; default ``p1..pP``.
        sort_weight (float): ``lambda``, for the total bar. Default 1.
        ax (matplotlib.axes.Axes, optional): where to draw.
        title (str, optional): the axes title.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: spec "The loss for one anchor".

    Example:
        >>> fig = plot_loss_terms([0.0, 0.5], [0.1, 0.3], [0.1, 0.2])
        >>> len(fig.axes[0].patches)
        8
    """
    lr, ls, lst = (to_numpy(v).astype(float) for v in (l_rank, l_sort, l_sort_target))
    if not (lr.shape == ls.shape == lst.shape) or lr.ndim != 1:
        raise ValueError("l_rank, l_sort and l_sort_target must be 1-D of one length")
    names = list(names) if names is not None else [f"p{k + 1}" for k in range(len(lr))]
    fig, ax = new_axes(ax, (6.5, 3.2))
    x = np.arange(len(lr))
    w = 0.2
    total = lr + sort_weight * (ls - lst)
    bars = [
        (lr, "ranking error $l_R$", NEG_COLOR),
        (ls, "sorting error $l_S$", "#7570b3"),
        (lst, "target sorting error $l^*_S$", "#b3b0d9"),
        (total, rf"$l_R + {sort_weight:g}(l_S - l^*_S)$", "0.25"),
    ]
    for k, (v, lab, col) in enumerate(bars):
        ax.bar(x + (k - 1.5) * w, v, width=w, label=lab, color=col)
    ax.set_xticks(x, names)
    ax.set_ylabel("error")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.legend(fontsize="small", frameon=False, ncol=2, loc="upper left")
    top = max(float(np.max(np.concatenate([lr, ls, lst, total]), initial=0.0)), 0.05)
    ax.set_ylim(0, top * 1.45)  # room for the legend
    ax.set_title(
        title or f"per positive; the anchor's loss is the mean: {total.mean():.4f}",
        fontsize="medium",
    )
    return fig


def plot_step_functions(
    x, curves: Mapping[str, object], *, delta: float | None = None, ax=None
) -> Figure:
    """The step functions ``H(x)`` side by side.

    Args:
        x (array-like): the abscissa (score differences ``s_j - s_i``).
        curves (Mapping[str, array-like]): name -> ``H(x)``.
        delta (float, optional): mark ``x = +-delta``.
        ax (matplotlib.axes.Axes, optional): where to draw.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: spec "Words", step function ``H``.

    Example:
        >>> fig = plot_step_functions([-1, 0, 1], {"hard": [0, 0, 1]}, delta=0.5)
        >>> fig.axes[0].get_legend_handles_labels()[1]
        ['hard']
    """
    xs = to_numpy(x).astype(float)
    fig, ax = new_axes(ax, (5.5, 3.2))
    for name, y in curves.items():
        ax.plot(
            xs,
            to_numpy(y).astype(float),
            lw=2,
            label=name,
            drawstyle="steps-post" if name == "hard" else "default",
        )
    if delta is not None:
        for v in (-delta, delta):
            ax.axvline(v, color="0.6", ls=":", lw=1)
        ax.text(delta, 0.02, " +delta", fontsize="small", color="0.4")
        ax.text(-delta, 0.02, "-delta ", fontsize="small", color="0.4", ha="right")
    ax.set_xlabel("$x = s_j - s_i$  (> 0: j is retrieved before i)")
    ax.set_ylabel("$H(x)$")
    ax.legend(frameon=False, loc="upper left")
    ax.set_title("the step H and its smoothed versions", fontsize="medium")
    return fig
