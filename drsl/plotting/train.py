"""Training plots: learning curves, the positive/negative-ratio sweep, and result tables as
annotated heatmaps (seaborn).

Every function takes ``ax=None`` / ``axes=None`` and returns the matplotlib Figure; none saves
or prints.

Reference: the imbalance experiment of the paper's abstract (positive/negative ratio
``(K - 1) / ((P - 1) K)`` in a P x K batch); ``docs/drsl-loss-spec.md``, "Why it suits imbalance".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from ._util import new_axes

__all__ = [
    "plot_learning_curves",
    "plot_result_heatmap",
    "plot_sensitivity",
    "plot_sweep",
    "sweep_table",
]

_METRIC_LABELS = {"mAP": "mAP", "R1": "rank-1", "mINP": "mINP"}


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(y) < window:
        return y
    kernel = np.ones(window) / window
    head = np.cumsum(y[: window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(y, kernel, mode="valid")])


def plot_learning_curves(
    runs: Mapping[str, Mapping[str, Sequence[Mapping[str, float]]]],
    *,
    metrics: Sequence[str] = ("mAP", "R1", "mINP"),
    smooth: int = 10,
    axes: Sequence[Any] | None = None,
):
    """Training loss per step (moving average) and evaluation metrics per step, for runs.

    Args:
        runs (Mapping[str, history]): label -> history as in ``TrainResult.history``
            (``{"train": [{"step", "loss", ...}], "eval": [{"step", "mAP", ...}]}``).
        metrics (Sequence[str]): evaluation keys to draw (solid mAP, dashed rank-1, dotted mINP).
        smooth (int): moving-average window over steps for the loss (1: raw).
        axes (Sequence[Axes], optional): two axes (loss, metrics); new figure if None.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: training logs of :func:`drsl.train.train`.

    Example:
        >>> h = {"train": [{"step": s, "loss": 1 / s} for s in range(1, 30)],
        ...      "eval": [{"step": 29, "mAP": 0.5, "R1": 0.6, "mINP": 0.2}]}
        >>> fig = plot_learning_curves({"run": h})
        >>> len(fig.axes)
        2
    """
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    else:
        fig = axes[0].figure
    ax_loss, ax_eval = axes[0], axes[1]
    styles = ["-", "--", ":", "-."]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, hist) in enumerate(runs.items()):
        c = colors[i % len(colors)]
        tr = hist.get("train", [])
        if tr:
            steps = np.array([r["step"] for r in tr])
            loss = np.array([r["loss"] for r in tr], dtype=float)
            ax_loss.plot(steps, loss, color=c, alpha=0.2, lw=0.8)
            ax_loss.plot(steps, _smooth(loss, smooth), color=c, lw=1.8, label=label)
        ev = hist.get("eval", [])
        for j, m in enumerate(metrics):
            pts = [(r["step"], r[m]) for r in ev if m in r]
            if pts:
                s, v = zip(*pts, strict=True)
                ax_eval.plot(
                    s,
                    100 * np.asarray(v),
                    styles[j % 4],
                    marker="o",
                    ms=3,
                    color=c,
                    label=f"{label}: {_METRIC_LABELS.get(m, m)}",
                )
    ax_loss.set(xlabel="step", ylabel="training loss", title="Training loss (moving average)")
    ax_eval.set(xlabel="step", ylabel="%", title="Query/gallery evaluation", ylim=(0, 100))
    for ax in (ax_loss, ax_eval):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return fig


def sweep_table(
    df,
    *,
    metrics: Sequence[str] = ("mAP", "R1", "mINP"),
    by: Sequence[str] = ("P", "K", "ratio", "loss"),
):
    """Mean and standard deviation over seeds of every (P, K, loss) cell of a sweep.

    Args:
        df (pandas.DataFrame): one row per run with columns ``P``, ``K``, ``ratio``, ``loss``,
            ``seed`` and the metrics (and any other column named in ``by``).
        metrics (Sequence[str]): metric columns to summarise.
        by (Sequence[str]): the columns that make a cell; the runs in a cell differ by seed
            (e.g. add ``"value"`` for a sensitivity study).

    Returns:
        pandas.DataFrame: the ``by`` columns, ``n`` and ``<m>_mean``, ``<m>_std``
        (sample standard deviation; NaN where a cell has a single run).

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"P": 4, "K": 4, "ratio": 0.25, "loss": "a",
        ...                    "seed": [0, 1], "mAP": [0.5, 0.7], "R1": 0.5, "mINP": 0.1})
        >>> t = sweep_table(df)
        >>> float(t["mAP_mean"].iloc[0]), int(t["n"].iloc[0])
        (0.6, 2)
    """
    from drsl.analysis import mean_std

    return mean_std(df, by, metrics)


def plot_sweep(
    df,
    *,
    metric: str = "mAP",
    losses: Sequence[str] | None = None,
    k_fixed: int = 4,
    p_fixed: int = 16,
    axes: Sequence[Any] | None = None,
):
    """The imbalance sweep: metric (mean +- std over seeds) against the pos/neg ratio.

    Two panels: the runs with ``K == k_fixed`` (P varies) and those with ``P == p_fixed``
    (K varies); a cell with both belongs to both. One line per loss; the x axis is the
    positive/negative ratio ``(K - 1) / ((P - 1) K)``: the cells at equal spacing in the order
    of their ratio, each tick labelled with the ratio and ``P x K``.

    Args:
        df (pandas.DataFrame): one row per run (see :func:`sweep_table`).
        metric (str): ``"mAP"``, ``"R1"`` or ``"mINP"``.
        losses (Sequence[str], optional): losses to draw, in order (default: all, sorted).
        k_fixed (int): K of the "P varies" panel. p_fixed (int): P of the "K varies" panel.
        axes (Sequence[Axes], optional): two axes; new figure if None.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: ``docs/drsl-loss-spec.md``, "Why it suits imbalance".

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"P": [2, 16, 16], "K": [4, 4, 2], "loss": "ce+drsl",
        ...                    "ratio": [0.75, 0.05, 1 / 30], "seed": 0,
        ...                    "mAP": [0.3, 0.4, 0.4], "R1": 0.5, "mINP": 0.1})
        >>> len(plot_sweep(df).axes)
        2
    """
    table = sweep_table(df, metrics=(metric,))
    panels = [
        ("P", table[table["K"] == k_fixed], f"P varies, K = {k_fixed}"),
        ("K", table[table["P"] == p_fixed], f"K varies, P = {p_fixed}"),
    ]
    if all(sub.empty for _, sub, _ in panels):
        raise ValueError(f"no runs with K == {k_fixed} or P == {p_fixed}")
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.9), sharey=True, constrained_layout=True)
    else:
        fig = axes[0].figure
    names = list(losses) if losses is not None else sorted(set(table["loss"]))
    markers = "osD^v<>"
    n = len(names)
    for ax, (_, sub, title) in zip(axes, panels, strict=False):
        sub = sub.sort_values("ratio")
        cells = sub.drop_duplicates(["P", "K"]).reset_index(drop=True)
        # cells at equal spacing in the order of their ratio (the ratios of the K panel are
        # too close for a true log axis); a small offset per loss keeps error bars apart
        pos = {(int(r.P), int(r.K)): i for i, r in enumerate(cells.itertuples())}
        for i, name in enumerate(names):
            rows = sub[sub["loss"] == name]
            if rows.empty:
                continue
            x = np.array([pos[(int(p), int(k))] for p, k in zip(rows["P"], rows["K"], strict=True)])
            ax.errorbar(
                x + 0.07 * (i - (n - 1) / 2),
                100 * rows[f"{metric}_mean"],
                yerr=100 * rows[f"{metric}_std"].fillna(0.0),
                marker=markers[i % len(markers)],
                capsize=3,
                lw=1.5,
                label=name,
            )
        ax.set_xticks(
            range(len(cells)),
            [f"{r.ratio:.3g}\n{int(r.P)}x{int(r.K)}" for r in cells.itertuples()],
        )
        ax.set_xlim(-0.4, len(cells) - 0.6)
        ax.set(xlabel="positives / negatives per anchor (K-1)/((P-1)K), and P x K", title=title)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(f"{_METRIC_LABELS.get(metric, metric)} (%), mean ± std over seeds")
    axes[0].legend(fontsize=8)
    return fig


def plot_sensitivity(
    df,
    *,
    param: str = "value",
    metric: str = "mAP",
    losses: Sequence[str] | None = None,
    log: bool = True,
    ax: Any | None = None,
):
    """A metric (mean +- std over seeds) against one setting, per loss and P x K cell.

    One colour per loss, one line style per cell (solid for the first in the order of ratio,
    dashed for the next, ...); the x axis is the setting (``value`` column), logarithmic by
    default, with a tick at every value run.

    Args:
        df (pandas.DataFrame): one row per run with columns ``value``, ``P``, ``K``, ``ratio``,
            ``loss``, ``seed`` and ``metric``.
        param (str): the x-axis label (what ``value`` is).
        metric (str): ``"mAP"``, ``"R1"`` or ``"mINP"``.
        losses (Sequence[str], optional): losses in colour order (default: all, sorted); a
            loss without runs keeps its colour, so panels given the same list agree.
        log (bool): logarithmic x axis.
        ax (Axes, optional): where to draw; new figure if None.

    Returns:
        matplotlib.figure.Figure: the figure.

    Reference: the sensitivity studies of ``experiments/sensitivity.py``
    (``docs/drsl-loss-spec.md``, "Step function" for ``delta``).

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"value": [0.1, 0.1, 1.0, 1.0], "P": 4, "K": 4, "ratio": 0.25,
        ...                    "loss": "ce+drsl", "seed": [0, 1, 0, 1],
        ...                    "mAP": [0.2, 0.3, 0.1, 0.1]})
        >>> fig = plot_sensitivity(df, param="delta")
        >>> [round(y, 2) for y in fig.axes[0].lines[0].get_ydata()]
        [25.0, 10.0]
    """
    table = sweep_table(df, metrics=(metric,), by=("value", "P", "K", "ratio", "loss"))
    if table.empty:
        raise ValueError("no runs to plot")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4), constrained_layout=True)
    else:
        fig = ax.figure
    names = list(losses) if losses is not None else sorted(set(table["loss"]))
    cells = table.drop_duplicates(["P", "K"]).sort_values("ratio", ascending=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    values = np.sort(table["value"].unique())
    # a small multiplicative offset per line keeps the error bars apart on the log axis
    n_lines = len(names) * len(cells)
    for i, name in enumerate(names):
        for j, cell in enumerate(cells.itertuples()):
            rows = table[(table["loss"] == name) & (table["P"] == cell.P) & (table["K"] == cell.K)]
            if rows.empty:
                continue
            rows = rows.sort_values("value")
            k = i * len(cells) + j - (n_lines - 1) / 2
            x = rows["value"].to_numpy(float) * (1.03**k if log else 1.0)
            ax.errorbar(
                x,
                100 * rows[f"{metric}_mean"],
                yerr=100 * rows[f"{metric}_std"].fillna(0.0),
                color=colors[i % len(colors)],
                ls=styles[j % len(styles)],
                marker="o",
                ms=4,
                capsize=3,
                lw=1.5,
                label=f"{name}, {int(cell.P)}x{int(cell.K)}",
            )
    if log:
        ax.set_xscale("log")
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.minorticks_off()
    ax.set(xlabel=param, ylabel=f"{_METRIC_LABELS.get(metric, metric)} (%), mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_result_heatmap(
    df,
    *,
    index: Sequence[str] = ("loss",),
    columns: Sequence[str] = ("P", "K"),
    metric: str = "mAP",
    ax: Any | None = None,
    title: str | None = None,
    cmap: str = "viridis",
):
    """A results table as an annotated heatmap: mean over seeds (colour and first line) and
    standard deviation (second line), in percent, of ``metric`` per cell of ``index x columns``.

    Args:
        df (pandas.DataFrame): one row per run (see :func:`sweep_table`), holding the
            ``index`` and ``columns`` columns, ``seed`` and ``metric``.
        index (Sequence[str]): the columns that make the heatmap's rows. Default the loss.
        columns (Sequence[str]): the columns that make its columns. Default ``P`` and ``K``.
        metric (str): ``"mAP"``, ``"R1"`` or ``"mINP"``.
        ax (Axes, optional): where to draw; new figure if None.
        title (str, optional): the title; default names the metric.
        cmap (str): the colour map. Default viridis.

    Returns:
        matplotlib.figure.Figure: the figure; the heatmap's mesh holds the means in percent
        (NaN where a cell has no run), each annotation reads ``mean`` over ``± std``
        on two lines.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"P": 4, "K": 4, "ratio": 0.25, "loss": ["a", "a", "b", "b"],
        ...                    "seed": [0, 1, 0, 1], "mAP": [0.2, 0.4, 0.1, 0.1]})
        >>> fig = plot_result_heatmap(df)
        >>> [t.get_text().split() for t in fig.axes[0].texts]
        [['30.0', '±', '14.1'], ['10.0', '±', '0.0']]
    """
    index, columns = list(index), list(columns)
    table = sweep_table(df, metrics=(metric,), by=(*index, *columns))
    if table.empty:
        raise ValueError("no runs to draw")
    mean = 100 * table.pivot_table(index=index, columns=columns, values=f"{metric}_mean")
    std = 100 * table.pivot_table(
        index=index, columns=columns, values=f"{metric}_std", dropna=False
    )
    std = std.reindex(index=mean.index, columns=mean.columns)
    annot = mean.map(lambda v: f"{v:.1f}") + std.map(
        lambda v: "\n± n/a" if np.isnan(v) else f"\n± {v:.1f}"
    )
    annot = annot.where(mean.notna(), "")
    rows, cols = mean.shape
    fig, ax = new_axes(ax, (1.6 + 1.15 * cols, 1.2 + 0.55 * rows))
    label = f"{_METRIC_LABELS.get(metric, metric)} (%), mean over seeds"
    sns.heatmap(
        mean,
        annot=annot.to_numpy(),
        fmt="",
        cmap=cmap,
        ax=ax,
        cbar_kws={"label": label},
        annot_kws={"fontsize": 8},
        linewidths=0.5,
    )
    ax.set_title(title if title is not None else f"{label}; ± std over seeds")
    return fig
