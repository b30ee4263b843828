"""The figure of a pre-registered experiment's endpoints (``drsl.endpoints.endpoint_table``):
each comparison's paired difference with its Holm-level interval, a zero line, and the
equivalence band the plan names (E3 of ``configs/decisive/plan.toml``: +- 3 points).
"""

from __future__ import annotations

import numpy as np

from ._util import new_axes

__all__ = ["plot_endpoints"]


def _row_label(r) -> str:
    if r.versus:
        return f"{r.endpoint} ({r.of}): {r.loss} minus {r.versus}"
    return f"{r.endpoint}: {r.loss}"


def plot_endpoints(table, *, margin: float = 3.0, ax=None):
    """Every comparison of an endpoint table as a point (mean) with its interval.

    A filled point: the interval excludes 0 (Holm rejects "no difference"); an open one: no
    difference shown. The shaded band is +- ``margin`` (the plan's equivalence margin: E3 asks
    whether DRSL's cost lies inside it); thin lines separate the endpoints.

    Args:
        table (pandas.DataFrame): :func:`drsl.endpoints.endpoint_table`'s output (``endpoint,
            loss, versus, of, mean, low, high, level, rejects``), one row per comparison.
        margin (float): half-width of the equivalence band in points. Default 3.
        ax (Axes, optional): where to draw; a new figure if None.

    Returns:
        matplotlib.figure.Figure: the figure; one y tick per comparison, in the table's order
        from the top.

    Example:
        >>> import pandas as pd
        >>> t = pd.DataFrame(dict(endpoint=["E1", "E1"], loss=["drsl", "circle"], versus="",
        ...     of="", mean=[-1.0, -9.0], low=[-2.5, -12.0], high=[0.5, -6.0],
        ...     level=0.99, rejects=[False, True]))
        >>> [t.get_text() for t in plot_endpoints(t).axes[0].get_yticklabels()]
        ['E1: drsl', 'E1: circle']
    """
    if len(table) == 0:
        raise ValueError("no comparison to draw")
    fig, ax = new_axes(ax, figsize=(7.5, 0.24 * len(table) + 1.4))
    y = np.arange(len(table))[::-1]
    mean, low, high = (table[k].to_numpy(dtype=float) for k in ("mean", "low", "high"))
    rejects = table["rejects"].to_numpy(dtype=bool)
    ax.axvspan(-margin, margin, color="0.85", zorder=0, label=f"± {margin:g} points (E3)")
    ax.axvline(0, color="0.3", lw=1, zorder=1)
    err = np.vstack([mean - low, high - mean])
    for mask, face, name in ((rejects, "C0", "interval excludes 0"),
                             (~rejects, "white", "no difference shown")):  # fmt: skip
        if mask.any():
            ax.errorbar(mean[mask], y[mask], xerr=err[:, mask], fmt="o", color="C0", mfc=face,
                        capsize=2, lw=1, label=name, zorder=2)  # fmt: skip
    ends = table["endpoint"].to_numpy()
    for i in np.flatnonzero(ends[1:] != ends[:-1]):
        ax.axhline(y[i] - 0.5, color="0.6", lw=0.6)
    ax.set_yticks(y, [_row_label(r) for r in table.itertuples()], fontsize=7)
    levels = table["level"].to_numpy(dtype=float)
    ax.set(
        xlabel=f"paired difference of test mAP (points); intervals at Holm's level "
        f"({100 * np.nanmin(levels):.2f}-{100 * np.nanmax(levels):.2f} %)",
        ylim=(-0.8, len(table) - 0.2),
    )
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, loc="lower left")
    return fig
