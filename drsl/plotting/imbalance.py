"""Figures of the first imbalance experiment (``experiments/imbalance.py``): the test
metric against the positive/negative ratio each anchor saw, per loss, with and without CE;
the validation learning curves behind the step budget; the paired differences to a baseline.

Every function reads the experiment's CSVs as pandas frames (``imbalance.csv``,
``imbalance_cells.csv``, ``imbalance_curves.csv``) and returns the figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from ._util import new_axes

__all__ = ["plot_imbalance", "plot_val_curves", "plot_paired_differences"]

_LABEL = {"mAP": "mAP", "R1": "rank-1", "mINP": "mINP"}
_MARKERS = "osD^v<>"


def _cell_ratio(cells) -> dict[tuple[int, int, int], float]:
    return {(int(r.P), int(r.K), int(r.memory_size)): float(r.ratio) for r in cells.itertuples()}


def _cell_name(P: int, K: int, M: int) -> str:
    return f"{P}x{K}" + (f"+{M}" if M else "")


def plot_imbalance(
    rows,
    cells,
    *,
    metric: str = "mAP",
    split: str = "test",
    losses: Sequence[str] | None = None,
    axes: Sequence[Any] | None = None,
):
    """Metric (mean +- std over seeds) against the measured pos/neg ratio, log x.

    Two panels, the losses with CE + BNNeck and the metric losses alone; one line per loss.
    Each cell sits at the ratio its anchors saw (``cells["ratio"]``, measured with the memory:
    a memory adds positives too), labelled ``P x K (+ memory)``.

    Args:
        rows (pandas.DataFrame): ``imbalance.csv`` (its ``final`` rows are drawn).
        cells (pandas.DataFrame): ``imbalance_cells.csv`` (``P, K, memory_size, ratio``).
        metric (str): ``"mAP"``, ``"R1"`` or ``"mINP"``. split (str): ``"test"`` or ``"val"``.
        losses (Sequence[str], optional): the losses, in order (default: sorted).
        axes (Sequence[Axes], optional): two axes; a new figure if None.

    Returns:
        matplotlib.figure.Figure: the figure.

    Example:
        >>> import pandas as pd
        >>> rows = pd.DataFrame({"phase": "final", "split": "test", "P": [4, 16], "K": 4,
        ...     "memory_size": [0, 8192], "loss": "drsl", "with_ce": True, "seed": 0,
        ...     "mAP": [0.3, 0.2]})
        >>> cells = pd.DataFrame({"P": [4, 16], "K": 4, "memory_size": [0, 8192],
        ...                       "ratio": [0.25, 0.004]})
        >>> len(plot_imbalance(rows, cells).axes)
        2
    """
    part = rows[(rows["phase"] == "final") & (rows["split"] == split)]
    if part.empty:
        raise ValueError(f"no final {split} rows to draw")
    ratio = _cell_ratio(cells)
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.0), sharey=True, layout="constrained")
    else:
        fig = axes[0].figure
    names = list(losses) if losses is not None else sorted(set(part["loss"]))
    for ax, ce in zip(axes, (True, False), strict=False):
        sub = part[part["with_ce"].astype(bool) == ce]
        for i, name in enumerate(names):
            g = sub[sub["loss"] == name].groupby(["P", "K", "memory_size"])[metric]
            stats = g.agg(["mean", "std"]).reset_index()
            if stats.empty:
                continue
            x = np.array(
                [ratio[(int(r.P), int(r.K), int(r.memory_size))] for r in stats.itertuples()]
            )
            order = np.argsort(x)
            ax.errorbar(
                x[order] * (1 + 0.03 * (i - (len(names) - 1) / 2)),
                100 * stats["mean"].to_numpy()[order],
                yerr=100 * stats["std"].fillna(0.0).to_numpy()[order],
                marker=_MARKERS[i % len(_MARKERS)],
                capsize=3,
                lw=1.5,
                label=name,
            )
        ax.set_xscale("log")
        shown = sorted(ratio.items(), key=lambda kv: kv[1])
        for (P, K, M), r in shown:
            ax.axvline(r, color="0.85", lw=0.8, zorder=0)
            ax.annotate(
                _cell_name(P, K, M),
                (r, 1.0),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=7,
                color="0.4",
            )
        ax.set(
            xlabel="positives / negatives per anchor (measured, log)",
            title="with CE + BNNeck" if ce else "metric loss alone",
        )
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(f"{split} {_LABEL.get(metric, metric)} (%), mean ± std over seeds")
    axes[0].legend(fontsize=8)
    return fig


def plot_val_curves(curves, lrs=None, *, ax=None):
    """Validation mAP against training images seen: the runs behind the step budget.

    One line per loss variant at its chosen learning rate in each tuning cell (tuning runs,
    solid), and the budget check at a longer budget (dashed).

    Args:
        curves (pandas.DataFrame): ``imbalance_curves.csv``.
        lrs (pandas.DataFrame, optional): ``drsl.analysis.select_lr`` output (``loss,
            with_ce, lr``); default: every tuning run is drawn.
        ax (Axes, optional): where to draw; a new figure if None.

    Returns:
        matplotlib.figure.Figure: the figure.
    """
    fig, ax = new_axes(ax, figsize=(7.5, 4.2))
    c = curves.copy()
    c["images_seen"] = c["step"] * c["P"] * c["K"]
    tune = c[c["phase"] == "tune"]
    if lrs is not None:
        keep = {(r.loss, bool(r.with_ce), float(r.lr)) for r in lrs.itertuples()}
        tune = tune[
            [
                (a, bool(b), float(d)) in keep
                for a, b, d in zip(tune["loss"], tune["with_ce"], tune["lr"], strict=True)
            ]
        ]
    groups = [(tune, "-", 1.2), (c[c["phase"] == "budget"], "--", 2.0)]
    for part, style, width in groups:
        for key, run in part.groupby(["P", "K", "memory_size", "loss", "with_ce", "lr", "images"]):
            P, K, M, loss, ce, lr, images = key
            name = f"{'ce+' if bool(ce) else ''}{loss} {_cell_name(int(P), int(K), int(M))}"
            extra = f" ({int(images):,} img)" if style == "--" else ""
            ax.plot(run["images_seen"], 100 * run["mAP"], style, lw=width, label=name + extra)
    ax.set(xlabel="training images seen", ylabel="validation mAP (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    return fig


def plot_paired_differences(diffs, *, ax=None):
    """Paired differences to a baseline with their 95 % intervals, one row per cell.

    Args:
        diffs (pandas.DataFrame): ``drsl.analysis.paired_differences`` output.
        ax (Axes, optional): where to draw; a new figure if None.

    Returns:
        matplotlib.figure.Figure: the figure (points: mean difference; bars: the interval;
        the zero line: no difference).
    """
    fig, ax = new_axes(ax, figsize=(7.5, 0.35 * len(diffs) + 1.2))
    labels = [
        f"{'ce+' if bool(r.with_ce) else ''}{r.loss} "
        + _cell_name(int(r.P), int(r.K), int(r.memory_size))
        for r in diffs.itertuples()
    ]
    y = np.arange(len(diffs))[::-1]
    mean, low, high = (100 * diffs[k].to_numpy() for k in ("diff", "low", "high"))
    ax.errorbar(mean, y, xerr=np.vstack([mean - low, high - mean]), fmt="o", capsize=3)
    ax.axvline(0, color="0.3", lw=1)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set(xlabel="difference (points), mean and 95 % interval over paired seeds")
    ax.grid(alpha=0.3, axis="x")
    return fig
