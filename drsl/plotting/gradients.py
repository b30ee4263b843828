"""Gradient figures (notebook 02): finite-difference error against the step (the "V"), line
profiles of a loss with its slopes, identity update vs smooth gradient, and the balance of the
push on positives and negatives.

Every function takes ``ax=None`` (or ``axes=None``), draws into it or into a new figure and
returns the matplotlib Figure; none saves a file or prints. Inputs are plain arrays or tensors
computed by :mod:`drsl.losses` and :mod:`drsl.gradcheck`.

Reference: ``docs/drsl-loss-spec.md`` ("Two ways to get a gradient", "Why it suits
imbalance"); Nocedal & Wright, Numerical Optimization, Sec. 8.1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ._style import NEG_COLOR, POS_COLOR
from ._util import new_axes, to_numpy

__all__ = [
    "plot_step_sweep",
    "plot_line_profile",
    "plot_update_comparison",
    "plot_update_row",
    "plot_balance",
]


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
