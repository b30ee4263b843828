"""Figures for the loss notebooks: one anchor's ranked list, the loss terms, step functions,
finite-difference error curves, line profiles, identity update vs smooth gradient, balance.

Every function takes ``ax=None`` (or ``axes=None``), draws into it or into a new figure and
returns the matplotlib Figure; none saves a file or prints. Inputs are plain arrays or tensors
computed by :mod:`drsl.losses` and :mod:`drsl.gradcheck` (this module computes nothing of its
own beyond what it draws).

Reference: spec ``drsl-loss.md`` ("Words", "The loss for one anchor", "Two ways to get a
gradient", "Why it suits imbalance").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ._util import new_axes, to_numpy

__all__ = [
    "plot_anchor_list",
    "plot_loss_terms",
    "plot_step_functions",
    "plot_step_sweep",
    "plot_line_profile",
    "plot_update_comparison",
    "plot_update_row",
    "plot_balance",
]

POS_COLOR = "#1a9850"
NEG_COLOR = "#d73027"
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


def plot_step_sweep(
    sweeps: Mapping[str, object], *, ax=None, guides: bool = True, title: str | None = None
) -> Figure:
    """Relative error of central differences against the step ``h``, log-log (the "V").

    Args:
        sweeps (Mapping[str, object]): name -> an object with ``.steps`` and ``.errors``
            (:class:`drsl.gradcheck.StepSweep`) or a ``(steps, errors)`` pair.
        ax (matplotlib.axes.Axes, optional): where to draw.
        guides (bool): draw the ``h^2`` (truncation) and ``eps/h`` (round-off) slopes through
            the first curve's minimum. Default True.
        title (str, optional): the axes title.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: Nocedal & Wright, Sec. 8.1.

    Example:
        >>> h = np.logspace(-8, 0, 9)
        >>> fig = plot_step_sweep({"f64": (h, h**2 + 1e-16 / h)})
        >>> len(fig.axes[0].lines)
        3
    """
    fig, ax = new_axes(ax, (6, 3.8))
    first = True
    for name, sw in sweeps.items():
        steps, errors = (sw.steps, sw.errors) if hasattr(sw, "errors") else sw
        steps, errors = np.asarray(steps, float), np.asarray(errors, float)
        floor = np.maximum(errors, 1e-18)  # an exact 0 has no place on a log axis
        (line,) = ax.loglog(steps, floor, marker="o", ms=3, lw=1.5, label=name)
        if guides and first:
            i = int(np.argmin(floor))
            h0, e0 = steps[i], floor[i]
            right, left = steps[steps >= h0], steps[steps <= h0]
            ax.loglog(right, e0 * (right / h0) ** 2, ls="--", color="0.5", lw=1)
            ax.loglog(left, e0 * (h0 / left), ls=":", color="0.5", lw=1)
            ax.text(
                right[-1],
                e0 * (right[-1] / h0) ** 2,
                " ~h² (truncation)",
                fontsize="small",
                color="0.35",
                va="center",
            )
            ax.text(
                left[0],
                e0 * (h0 / left[0]),
                "~eps/h (round-off) ",
                fontsize="small",
                color="0.35",
                ha="right",
                va="center",
            )
            first = False
    ax.set_xlabel("step h")
    ax.set_ylabel("relative error vs autograd")
    ax.legend(frameon=False, fontsize="small", loc="lower left")
    ax.set_title(title or "central differences: truncation vs round-off", fontsize="medium")
    ax.margins(x=0.25)
    return fig


def plot_line_profile(
    ts,
    values,
    slopes,
    *,
    fd: Mapping[str, object] | None = None,
    kinks: Sequence[float] | None = None,
    axes=None,
    title: str | None = None,
) -> Figure:
    """A loss along a line ``x + t v`` (top) and its slope (bottom), with kinks marked.

    Args:
        ts (array-like): positions ``t``.
        values (array-like): the loss at each ``t``.
        slopes (array-like): autograd's slope ``<grad, v>`` at each ``t``.
        fd (Mapping[str, array-like], optional): name -> finite-difference slopes at ``ts``.
        kinks (Sequence[float], optional): positions of kinks to mark.
        axes (sequence of 2 Axes, optional): where to draw; default a new 2 x 1 figure.
        title (str, optional): the figure title.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: spec "Words": the linear ramp has corners at ``x = +-delta``.

    Example:
        >>> fig = plot_line_profile([0, 1, 2], [0, 1, 1], [1, 1, 0], kinks=[1.0])
        >>> len(fig.axes)
        2
    """
    t = np.asarray(ts, float)
    if axes is None:
        fig, axes = plt.subplots(2, 1, figsize=(6.5, 5), sharex=True, layout="constrained")
    else:
        if len(axes) != 2:
            raise ValueError(f"axes must hold 2 Axes, got {len(axes)}")
        fig = axes[0].figure
    top, bottom = axes
    top.plot(t, to_numpy(values), color="black", lw=2)
    top.set_ylabel("loss")
    bottom.plot(t, to_numpy(slopes), color="black", lw=2, label="autograd")
    for name, est in (fd or {}).items():
        bottom.plot(t, to_numpy(est), lw=1.2, ls="--", marker=".", ms=4, label=name)
    for k in kinks or ():
        for a in axes:
            a.axvline(k, color=NEG_COLOR, ls=":", lw=1)
    bottom.set_xlabel("t  (position along the line)")
    bottom.set_ylabel("slope d loss / dt")
    bottom.legend(frameon=False, fontsize="small")
    if title:
        fig.suptitle(title, fontsize="medium")
    return fig


def plot_update_comparison(
    identity, smooth, labels, *, ax=None, title: str | None = None
) -> Figure:
    """Scatter of the identity update against the smooth gradient, entry by entry (``dL/ds``).

    Off-diagonal entries only; positives (same label) green, negatives red. Points on a line
    through the origin would mean the two fields differ by a scale only.

    Args:
        identity (array-like): ``B x B`` identity update.
        smooth (array-like): ``B x B`` smooth gradient.
        labels (array-like): ``B`` labels.
        ax (matplotlib.axes.Axes, optional): where to draw.
        title (str, optional): the axes title.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: spec "Two ways to get a gradient".

    Example:
        >>> fig = plot_update_comparison(np.eye(3), np.eye(3), [0, 0, 1])
        >>> len(fig.axes[0].collections)
        2
    """
    a, b, y = to_numpy(identity).astype(float), to_numpy(smooth).astype(float), to_numpy(labels)
    n = len(y)
    if a.shape != (n, n) or b.shape != (n, n):
        raise ValueError(f"identity and smooth must be {n} x {n}")
    same = y[:, None] == y[None, :]
    off = ~np.eye(n, dtype=bool)
    fig, ax = new_axes(ax, (4.8, 4.2))
    for mask, col, lab in (
        (same & off, POS_COLOR, "positive pairs"),
        (~same, NEG_COLOR, "negative pairs"),
    ):
        ax.scatter(b[mask], a[mask], s=10, alpha=0.6, color=col, label=lab)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.axvline(0, color="0.6", lw=0.8)
    ax.set_xlabel("smooth gradient  dL/ds")
    ax.set_ylabel("identity update  dL/ds")
    ax.legend(frameon=False, fontsize="small")
    ax.set_title(title or "identity update vs smooth gradient", fontsize="medium")
    return fig


def plot_update_row(
    parts: Mapping[str, object],
    *,
    names: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
) -> Figure:
    """Bars of one anchor's update per item (e.g. its ranking and sorting parts).

    Negative bars (``dL/ds < 0``) push an item up the list, positive ones push it down.

    Args:
        parts (Mapping[str, array-like]): name -> ``n`` values (one row of ``dL/ds``).
        names (Sequence[str], optional): ``n`` item labels.
        ax (matplotlib.axes.Axes, optional): where to draw.
        title (str, optional): the axes title.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: spec "Two ways to get a gradient", 2.

    Example:
        >>> fig = plot_update_row({"ranking": [-0.2, 0.2], "sorting": [0.0, 0.0]})
        >>> len(fig.axes[0].patches)
        4
    """
    rows = {k: to_numpy(v).astype(float) for k, v in parts.items()}
    n = len(next(iter(rows.values())))
    names = list(names) if names is not None else [str(k) for k in range(n)]
    fig, ax = new_axes(ax, (7, 3))
    w = 0.8 / max(len(rows), 1)
    colours = ["#e7298a", "#7570b3", "#66a61e", "#e6ab02"]
    for k, (lab, v) in enumerate(rows.items()):
        ax.bar(
            np.arange(n) + (k - (len(rows) - 1) / 2) * w,
            v,
            width=w,
            label=lab,
            color=colours[k % len(colours)],
        )
    ax.axhline(0, color="0.4", lw=0.8)
    ax.set_xticks(np.arange(n), names)
    ax.set_ylabel("dL/ds  (< 0: pushed up)")
    ax.legend(frameon=False, fontsize="small")
    ax.set_title(title or "one anchor's identity update", fontsize="medium")
    return fig


def plot_balance(
    x,
    curves: Mapping[str, object],
    *,
    xlabel: str = "identities per batch P",
    ylabel: str = "positive / negative gradient mass",
    ax=None,
    title: str | None = None,
) -> Figure:
    """Lines of a balance measure (e.g. positive/negative gradient mass) against ``P``.

    Args:
        x (array-like): the abscissa (e.g. ``P``).
        curves (Mapping[str, array-like]): name -> values at ``x``.
        xlabel (str): x label. ylabel (str): y label.
        ax (matplotlib.axes.Axes, optional): where to draw.
        title (str, optional): the axes title.

    Returns:
        matplotlib.figure.Figure: the figure (log y axis; a dotted line at 1).

    Reference: spec "Why it suits imbalance".

    Example:
        >>> fig = plot_balance([2, 4], {"drsl": [1.0, 1.0], "contrastive": [0.5, 0.1]})
        >>> fig.axes[0].get_yscale()
        'log'
    """
    xs = np.asarray(x, float)
    fig, ax = new_axes(ax, (6, 3.6))
    styles = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-")]
    for k, (name, v) in enumerate(curves.items()):
        marker, ls = styles[k % len(styles)]
        ax.plot(
            xs,
            to_numpy(v).astype(float),
            marker=marker,
            ls=ls,
            lw=1.8,
            ms=8 - k,
            alpha=0.85,
            label=name,
        )  # equal curves stay visible: markers shrink, styles vary
    ax.axhline(1.0, color="0.5", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize="small")
    ax.set_title(title or "how the push is shared as negatives multiply", fontsize="medium")
    return fig
