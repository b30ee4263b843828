"""Figures of the positive/negative-ratio explorer (notebook ``07_explore``).

The widgets of :mod:`drsl.widgets` draw these same figures on every change, and the notebook's
static grid (for GitHub / nbviewer, where widgets do not render) lays them out side by side.
They take the results of :mod:`drsl.explore` (``BatchSummary``, ``RatioCurves``, ``ToyRun``) and
compute nothing themselves. Every function takes ``ax=None`` (or ``axes=None``) and returns the
Figure.

Reference: ``docs/drsl-loss-spec.md``, "Why it suits imbalance".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullLocator

if TYPE_CHECKING:  # the data classes live in drsl.explore (which imports drsl.losses)
    from drsl.explore import BatchSummary, RatioCurves, ToyRun

__all__ = [
    "POS_COLOR",
    "NEG_COLOR",
    "plot_ranked_list",
    "plot_loss_values",
    "plot_gradient_share",
    "plot_batch_panel",
    "plot_ratio_curves",
    "plot_toy_embedding",
    "plot_toy_loss",
    "plot_explorer_grid",
    "plot_toy_grid",
]

#: Colours of positives (same identity as the anchor) and negatives: one style for the course
from ._style import NEG_COLOR, POS_COLOR  # noqa: E402
from ._util import new_axes, to_numpy  # noqa: E402


def _label(name: str) -> str:
    try:  # imported late: drsl.explore pulls in drsl.losses, which drsl.plotting must not need
        from drsl.explore import LOSS_LABELS
    except ImportError:  # pragma: no cover - only while drsl.losses is missing
        return name
    return LOSS_LABELS.get(name, name)


def _loss_colors(names: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    order = ["drsl", "drsl_smooth", "triplet", "contrastive", "smooth_ap", "drsl_rank"]
    return {n: cmap(order.index(n) if n in order else 6 + i % 4) for i, n in enumerate(names)}


def plot_ranked_list(distances, is_positive, *, ax=None, title: str | None = None) -> Figure:
    """One anchor's ranked list: a bar per retrieved item, rank 1 first, coloured by identity.

    The bar height is the item's distance to the anchor, so gaps between positives and
    negatives (compare them with ``delta``) are visible as well as the order.

    Args:
        distances (array-like): ``n`` distances in rank order (non-decreasing).
        is_positive (array-like): ``n`` bools, True for the anchor's positives.
        ax (matplotlib.axes.Axes, optional): where to draw; a new figure if None.
        title (str, optional): axes title; default says how many positives and negatives.

    Returns:
        matplotlib.figure.Figure: the figure holding ``ax``.

    Reference: spec "Words": higher score ``s_j = -||f_a - f_j||`` is retrieved earlier.

    Example:
        >>> fig = plot_ranked_list([0.5, 1.0, 2.0], [True, False, True])
        >>> [round(float(p.get_height()), 1) for p in fig.axes[0].patches]
        [0.5, 1.0, 2.0]
    """
    d = to_numpy(distances).astype(float)
    pos = to_numpy(is_positive).astype(bool)
    if d.shape != pos.shape or d.ndim != 1:
        raise ValueError(
            f"distances and is_positive must be 1-D of one length, got {d.shape} and {pos.shape}"
        )
    fig, ax = new_axes(ax, layout=None)
    ranks = np.arange(1, len(d) + 1)
    colors = np.where(pos, POS_COLOR, NEG_COLOR)
    ax.bar(ranks, d, width=0.85 if len(d) < 60 else 1.0, color=colors, linewidth=0)
    ax.set_xlim(0.4, len(d) + 0.6)
    ax.set_xlabel("rank (1 = retrieved first)")
    ax.set_ylabel("distance to anchor")
    if title is None:
        title = f"one anchor's ranked list: {pos.sum()} positives, {(~pos).sum()} negatives"
    ax.set_ylim(0, max(float(d.max(initial=0.0)), 1e-12) * 1.3)  # room for the legend
    ax.set_title(title, fontsize="medium")
    ax.legend(
        handles=[
            Patch(color=POS_COLOR, label="positive"),
            Patch(color=NEG_COLOR, label="negative"),
        ],
        loc="upper left",
        ncol=2,
        fontsize="small",
        frameon=False,
    )
    return fig


def plot_loss_values(
    values: Mapping[str, float], *, highlight: str | None = None, ax=None
) -> Figure:
    """Each loss's value on the batch as horizontal bars (the chosen one highlighted).

    Args:
        values (Mapping[str, float]): loss name -> value.
        highlight (str, optional): the loss to emphasise (the others are drawn faded).
        ax (matplotlib.axes.Axes, optional): where to draw; a new figure if None.

    Returns:
        matplotlib.figure.Figure: the figure holding ``ax``.

    Reference: spec "The loss for one anchor" (DRSL); the baselines of ``drsl.losses``.

    Example:
        >>> fig = plot_loss_values({"drsl": 0.2, "triplet": 0.5}, highlight="drsl")
        >>> [float(p.get_width()) for p in fig.axes[0].patches]
        [0.2, 0.5]
    """
    fig, ax = new_axes(ax, layout=None)
    names = list(values)
    colors = _loss_colors(names)
    y = np.arange(len(names))
    vals = np.array([float(values[n]) for n in names])
    bars = ax.barh(y, vals, color=[colors[n] for n in names])
    for bar, n, v in zip(bars, names, vals, strict=True):
        if highlight is not None and n != highlight:
            bar.set_alpha(0.45)
        ax.text(v, bar.get_y() + bar.get_height() / 2, f" {v:.3g}", va="center", fontsize="small")
    ax.set_yticks(y, [_label(n) for n in names], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlim(0, max(vals.max(initial=0.0), 1e-12) * 1.35)
    ax.set_xlabel("loss value on this batch")
    ax.set_title("each loss's value", fontsize="medium")
    return fig


def plot_gradient_share(
    mass: Mapping[str, Mapping[str, float]],
    *,
    pair_share: float | None = None,
    highlight: str | None = None,
    ax=None,
) -> Figure:
    """Share of each loss's total gradient mass on positive vs negative pairs (stacked to 1).

    A loss that treats every pair alike sits at the share of positive pairs (dotted line);
    one that balances positives against negatives sits at 0.5 (dashed line).

    Args:
        mass (Mapping[str, Mapping[str, float]]): loss name -> ``{"pos": ..., "neg": ...}``
            (from :func:`drsl.losses.gradient_mass`).
        pair_share (float, optional): share of positive pairs in the batch, drawn as a line.
        highlight (str, optional): the loss to emphasise.
        ax (matplotlib.axes.Axes, optional): where to draw; a new figure if None.

    Returns:
        matplotlib.figure.Figure: the figure holding ``ax``.

    Reference: spec "Two ways to get a gradient" (balance of the identity update) and
    "Why it suits imbalance".

    Example:
        >>> fig = plot_gradient_share({"drsl": {"pos": 1.0, "neg": 1.0}})
        >>> [float(p.get_width()) for p in fig.axes[0].patches]
        [0.5, 0.5]
    """
    fig, ax = new_axes(ax, layout=None)
    names = list(mass)
    y = np.arange(len(names))
    pos = np.array([float(mass[n]["pos"]) for n in names])
    neg = np.array([float(mass[n]["neg"]) for n in names])
    total = pos + neg
    share = np.divide(pos, total, out=np.full_like(pos, np.nan), where=total > 0)
    alpha = [1.0 if highlight in (None, n) else 0.45 for n in names]
    shown = np.nan_to_num(share)
    bp = ax.barh(y, shown, color=POS_COLOR)
    bn = ax.barh(y, np.where(total > 0, 1 - shown, 0.0), left=shown, color=NEG_COLOR)
    for i, a in enumerate(alpha):
        bp[i].set_alpha(a)
        bn[i].set_alpha(a)
        if total[i] > 0:
            text = f"{share[i]:.0%} on positives (total {total[i]:.2g})"
        else:
            text = "no gradient (loss flat here)"
        ax.text(
            0.02, y[i], text, va="center", fontsize="small",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75},
        )  # fmt: skip
    ax.axvline(0.5, color="k", linestyle="--", linewidth=1)
    if pair_share is not None:
        ax.axvline(pair_share, color="k", linestyle=":", linewidth=1.4)
    ax.set_yticks(y, [_label(n) for n in names], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share on positives (- - 50%, ··· share of positive pairs)")
    ax.set_title("gradient mass: positives vs negatives", fontsize="medium")
    return fig


def plot_batch_panel(summary: BatchSummary, *, highlight: str | None = None, axes=None) -> Figure:
    """The batch view in three panels: ranked list, loss values, gradient share.

    Args:
        summary (BatchSummary): from :func:`drsl.explore.summarize_batch`.
        highlight (str, optional): the chosen loss.
        axes (Sequence[Axes], optional): three axes; a new 1 x 3 figure if None.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: spec "Why it suits imbalance".
    """
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.4), width_ratios=[1.5, 1, 1.2])
        fig.subplots_adjust(left=0.05, right=0.98, wspace=0.55, bottom=0.17, top=0.87)
    if len(axes) != 3:
        raise ValueError(f"plot_batch_panel needs 3 axes, got {len(axes)}")
    s = summary
    title = (
        f"P={s.P}, K={s.K}: anchor {s.anchor} sees {s.K - 1} positives, {(s.P - 1) * s.K} negatives"
    )
    plot_ranked_list(s.distances, s.is_positive, ax=axes[0], title=title)
    if s.values:
        plot_loss_values(s.values, highlight=highlight, ax=axes[1])
    if s.mass:
        plot_gradient_share(
            s.mass, pair_share=s.ratio / (1 + s.ratio), highlight=highlight, ax=axes[2]
        )
        # the loss names are already on the middle panel's axis
        axes[2].set_yticklabels([])
    return axes[0].figure


def plot_ratio_curves(
    curves: RatioCurves,
    *,
    highlight: str | None = None,
    current_ratio: float | None = None,
    axes=None,
) -> Figure:
    """Loss values and gradient masses against the positive:negative ratio, in three panels.

    Left: each loss's value. Middle: total gradient mass on positive pairs (solid) and on
    negative pairs (dashed), log scale. Right: the positives' share of it, with the share a
    loss treating every pair alike would give (share of positive pairs, dotted) and the
    balance (0.5, dashed). The ratio falls to the left as P grows.

    Args:
        curves (RatioCurves): from :func:`drsl.explore.ratio_curves`.
        highlight (str, optional): the chosen loss (drawn thicker; the others thinner).
        current_ratio (float, optional): the explorer's current ratio, a grey band.
        axes (Sequence[Axes], optional): three axes; a new 1 x 3 figure if None.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: spec "Why it suits imbalance": ``(K-1)`` positives vs ``(P-1)K`` negatives.
    """
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
        fig.subplots_adjust(left=0.05, right=0.83, wspace=0.3, bottom=0.16, top=0.88)
    if len(axes) != 3:
        raise ValueError(f"plot_ratio_curves needs 3 axes, got {len(axes)}")
    names = list(curves.values)
    colors = _loss_colors(names)
    x = np.asarray(curves.ratio, dtype=float)
    for n in names:
        lw, alpha = (2.6, 1.0) if highlight in (None, n) else (1.3, 0.6)
        kw = {"color": colors[n], "lw": lw, "alpha": alpha, "marker": "o", "ms": 3}
        axes[0].plot(x, curves.values[n], label=_label(n), **kw)
        pos, neg = np.asarray(curves.pos[n], float), np.asarray(curves.neg[n], float)
        axes[1].plot(x, np.where(pos > 0, pos, np.nan), **kw)
        axes[1].plot(x, np.where(neg > 0, neg, np.nan), **{**kw, "ls": "--", "marker": None})
        axes[2].plot(x, curves.pos_share(n), **kw)
    axes[1].plot([], [], "k-", label="on positives")
    axes[1].plot([], [], "k--", label="on negatives")
    axes[2].plot(x, x / (1 + x), "k:", lw=1.4, label="share of positive pairs")
    axes[2].axhline(0.5, color="k", linestyle="--", linewidth=1, label="balanced (50%)")
    axes[1].set_yscale("log")
    axes[1].yaxis.set_minor_locator(NullLocator())
    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([0.02, 0.05, 0.1, 0.2, 0.5, 1.0]))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_locator(NullLocator())  # minor log ticks cost much drawing time
        ax.set_xlim(x.min() / 1.2, x.max() * 1.2)
        ax.set_xlabel("positives per negative (K-1)/((P-1)K)")
        if current_ratio is not None:
            ax.axvline(current_ratio, color="0.4", lw=6, alpha=0.25)
        ax.grid(True, which="major", alpha=0.3)
    P_txt = ",".join(str(p) for p in np.asarray(curves.P).tolist())
    axes[0].set_ylabel("loss value")
    axes[0].set_ylim(bottom=0)
    axes[0].set_title(f"loss value (K={curves.K}, P={P_txt})", fontsize="medium")
    axes[1].set_ylabel("total |dL/d distance|")
    axes[1].set_title("gradient mass on positives and negatives", fontsize="medium")
    axes[2].set_ylabel("share on positives")
    axes[2].set_ylim(0, 1)
    axes[2].set_title("positives' share of the gradient mass", fontsize="medium")
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    axes[2].legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(1.03, 1.02),
        fontsize="small",
        frameon=False,
    )
    return axes[0].figure


def _identity_colors(labels: np.ndarray):
    cmap = plt.get_cmap("tab10" if labels.max(initial=0) < 10 else "tab20")
    return cmap(labels % cmap.N)


def plot_toy_embedding(
    run: ToyRun, step: int | None = None, *, ax=None, trail: bool = True, title: str | None = None
) -> Figure:
    """The toy embedding at one training step: points coloured by identity, with their paths.

    Axis limits cover the whole run, so successive steps can be compared frame by frame.

    Args:
        run (ToyRun): from :func:`drsl.explore.train_toy`.
        step (int, optional): frame ``0..run.steps``; default the last.
        ax (Axes, optional): a 2-D axes (3-D axes for a sphere run); new figure if None.
        trail (bool): draw each point's path from step 0. Default True.
        title (str, optional): default names the loss, the step and the loss value.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: spec "Two ways to get a gradient" (what moves the points).
    """
    T = run.steps
    step = T if step is None else int(step)
    if not 0 <= step <= T:
        raise ValueError(f"step must be in 0..{T}, got {step}")
    pos = to_numpy(run.positions).astype(float)
    labels = to_numpy(run.labels).astype(int)
    colors = _identity_colors(labels)
    if run.sphere:
        fig, ax = new_axes(ax, layout=None, projection="3d")
        if ax.name != "3d":
            raise ValueError("a sphere run needs a 3-D axes (projection='3d')")
        u, v = np.mgrid[0 : 2 * np.pi : 24j, 0 : np.pi : 12j]
        ax.plot_wireframe(
            np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.5
        )
        if trail and step > 0:
            from mpl_toolkits.mplot3d.art3d import Line3DCollection

            segs = np.swapaxes(pos[: step + 1], 0, 1)  # B x (step+1) x 3
            ax.add_collection3d(Line3DCollection(list(segs), colors=colors, alpha=0.35, lw=1))
        cur = pos[step]
        ax.scatter(cur[:, 0], cur[:, 1], cur[:, 2], c=colors, s=28, depthshade=False)
        for lim in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
            lim(-1.05, 1.05)
        ax.set_box_aspect((1, 1, 1))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_zticks([])
    else:
        fig, ax = new_axes(ax, layout=None)
        if trail and step > 0:
            segs = np.swapaxes(pos[: step + 1], 0, 1)  # B x (step+1) x 2
            ax.add_collection(LineCollection(list(segs), colors=colors, alpha=0.35, lw=1))
        cur = pos[step]
        ax.scatter(cur[:, 0], cur[:, 1], c=colors, s=30, edgecolors="k", linewidths=0.4)
        lo, hi = pos.reshape(-1, 2).min(axis=0), pos.reshape(-1, 2).max(axis=0)
        pad = 0.08 * max(float((hi - lo).max()), 1e-6)
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(lo[1] - pad, hi[1] + pad)
        ax.set_aspect("equal", adjustable="box")
    if title is None:
        loss_value = float(run.losses[step])
        title = f"{_label(run.loss)}: step {step}/{T}, loss {loss_value:.3g}"
    ax.set_title(title, fontsize="medium")
    return fig


def plot_toy_loss(run: ToyRun, step: int | None = None, *, ax=None) -> Figure:
    """The toy run's loss against the step, with a marker at ``step``.

    Args:
        run (ToyRun): from :func:`drsl.explore.train_toy`.
        step (int, optional): the current frame; default the last.
        ax (Axes, optional): where to draw; a new figure if None.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: spec "The loss for one anchor" (the value being minimised).

    Example:
        >>> from types import SimpleNamespace
        >>> import torch
        >>> run = SimpleNamespace(losses=torch.tensor([1.0, 0.5, 0.25]), steps=2, loss="x")
        >>> fig = plot_toy_loss(run, 1)
        >>> fig.axes[0].lines[0].get_ydata().tolist()
        [1.0, 0.5, 0.25]
    """
    T = run.steps
    step = T if step is None else int(step)
    fig, ax = new_axes(ax, layout=None)
    losses = to_numpy(run.losses).astype(float)
    ax.plot(np.arange(T + 1), losses, color="0.3", lw=1.5)
    ax.plot([step], [losses[step]], "o", color="C3", ms=7)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("loss during training", fontsize="medium")
    ax.grid(True, alpha=0.3)
    return fig


def plot_explorer_grid(
    summaries: Sequence[BatchSummary],
    curves: RatioCurves | None = None,
    *,
    highlight: str | None = None,
) -> Figure:
    """The batch explorer as a static grid: one row per setting, then the ratio curves.

    For readers where widgets do not render (GitHub, nbviewer): the same panels as the
    explorer, for several (P, K) settings at once.

    Args:
        summaries (Sequence[BatchSummary]): one per row (e.g. P = 2, 4, 8, 16).
        curves (RatioCurves, optional): drawn in a last row.
        highlight (str, optional): the loss to emphasise.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: spec "Why it suits imbalance".
    """
    if len(summaries) == 0:
        raise ValueError("summaries must not be empty")
    rows = len(summaries) + (curves is not None)
    fig = plt.figure(figsize=(13, 3.3 * rows))
    gs = fig.add_gridspec(rows, 3, width_ratios=[1.5, 1, 1.2], hspace=0.6, wspace=0.55)
    fig.subplots_adjust(left=0.05, right=0.98, top=0.97, bottom=0.05)
    for r, s in enumerate(summaries):
        axes = [fig.add_subplot(gs[r, c]) for c in range(3)]
        plot_batch_panel(s, highlight=highlight, axes=axes)
    if curves is not None:
        sub = gs[rows - 1, :].subgridspec(1, 4, width_ratios=[1, 1, 1, 0.42], wspace=0.35)
        axes = [fig.add_subplot(sub[0, c]) for c in range(3)]
        plot_ratio_curves(curves, highlight=highlight, axes=axes)
    return fig


def plot_toy_grid(runs: Sequence[ToyRun], *, steps: Sequence[int] | None = None) -> Figure:
    """Toy-embedding snapshots as a grid: one row per run (loss), one column per step.

    Args:
        runs (Sequence[ToyRun]): from :func:`drsl.explore.train_toy`, one per loss.
        steps (Sequence[int], optional): frames to show; default start, middle and end.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: spec "Two ways to get a gradient".
    """
    if len(runs) == 0:
        raise ValueError("runs must not be empty")
    T = min(r.steps for r in runs)
    steps = [0, T // 2, T] if steps is None else [int(s) for s in steps]
    rows, cols = len(runs), len(steps) + 1
    fig = plt.figure(figsize=(3.2 * cols, 3.0 * rows))
    fig.subplots_adjust(left=0.04, right=0.98, top=0.95, bottom=0.05, hspace=0.45, wspace=0.3)
    for r, run in enumerate(runs):
        kw = {"projection": "3d"} if run.sphere else {}
        for c, t in enumerate(steps):
            ax = fig.add_subplot(rows, cols, r * cols + c + 1, **kw)
            plot_toy_embedding(run, t, ax=ax, title=f"{_label(run.loss)}: step {t}")
        ax = fig.add_subplot(rows, cols, r * cols + cols)
        plot_toy_loss(run, steps[-1], ax=ax)
    return fig
