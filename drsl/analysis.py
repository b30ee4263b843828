"""Reading an experiment's results table: learning-rate choice, mean +- std, paired differences.

The first imbalance experiment (``experiments/imbalance.py``) writes one row per evaluated run
and split to ``experiments/results/imbalance.csv``; its tables, figures and verdict are computed
here from that file, so anyone can recompute them (notebook 05 summarises it with
:func:`imbalance_history`; the decisive experiment's reading is ``drsl.endpoints``).

- :func:`select_lr`: the learning rate of each loss, chosen on the *validation* split only;
- :func:`mean_std` (any grouping; the sweep's table uses it too) and :func:`summary`: mean,
  std and n per cell and loss;
- :func:`paired_differences`: loss minus baseline over the same seeds (same batches, same
  initialisation), mean and a 95 % Student-t interval;
- :func:`markdown_table`: the table of the final runs (``experiments/imbalance.py table``);
- :func:`cell_effects`: what moving to a more imbalanced cell does to each loss (the same
  seed in both cells), and how much more it does to a loss than to a baseline.

Reference: Student-t interval of a mean of paired differences (e.g. Wasserman, *All of
Statistics*, 2004, sec. 10.2); the validation protocol of ``drsl.data.validation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "VARIANT",
    "CELL",
    "select_lr",
    "mean_std",
    "summary",
    "paired_differences",
    "cell_effects",
    "t_interval",
    "markdown_table",
    "LOSS_LABELS",
    "REGIMES",
    "Verdict",
    "imbalance_verdict",
    "sweep_history",
    "imbalance_history",
]

#: the columns that name a loss variant, and a batch cell
VARIANT = ["loss", "with_ce"]
CELL = ["P", "K", "memory_size"]


def select_lr(tune: pd.DataFrame, metric: str = "mAP") -> pd.DataFrame:
    """The learning rate of each loss variant: best mean validation ``metric`` over the cells.

    Args:
        tune (pd.DataFrame): rows of the tuning phase with ``loss, with_ce, lr, split,
            <metric>`` and the cell columns; only ``split == "val"`` rows are read (a run that
            diverged has a NaN metric and counts as the worst).

    Returns:
        pd.DataFrame: one row per ``(loss, with_ce)``: ``lr`` (the chosen one), ``val_<metric>``
        (its mean over the tuning cells) and ``cells`` (how many cells it was tried in).

    Example:
        >>> t = pd.DataFrame({"loss": ["a"] * 4, "with_ce": [True] * 4, "split": ["val"] * 4,
        ...                   "P": [4, 4, 16, 16], "K": 4, "memory_size": 0,
        ...                   "lr": [1e-3, 1e-2, 1e-3, 1e-2], "mAP": [0.2, 0.3, 0.25, 0.2]})
        >>> select_lr(t)[["loss", "lr"]].to_dict("records")
        [{'loss': 'a', 'lr': 0.01}]
    """
    val = tune[tune["split"] == "val"].copy()
    val[metric] = val[metric].astype(float).fillna(-np.inf)
    mean = val.groupby([*VARIANT, "lr"], sort=True).agg(
        score=(metric, "mean"), cells=(metric, "size")
    )
    mean = mean.reset_index().sort_values([*VARIANT, "score", "lr"], ascending=[1, 1, 0, 1])
    best = mean.groupby(VARIANT, sort=True).head(1).reset_index(drop=True)
    return best.rename(columns={"score": f"val_{metric}"})[
        [*VARIANT, "lr", f"val_{metric}", "cells"]
    ]


def mean_std(df: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Mean and sample standard deviation over the rows (seeds) of every group of ``by``.

    Args:
        df (pd.DataFrame): one row per run. by (Sequence[str]): the columns of a group.
        metrics (Sequence[str]): the metric columns.

    Returns:
        pd.DataFrame: the ``by`` columns, ``n``, ``<m>_mean`` and ``<m>_std`` (NaN for one row).

    Example:
        >>> df = pd.DataFrame({"loss": "a", "seed": [0, 1], "mAP": [0.5, 0.7]})
        >>> t = mean_std(df, ["loss"], ["mAP"])
        >>> float(t["mAP_mean"].iloc[0]), int(t["n"].iloc[0])
        (0.6, 2)
    """
    g = df.groupby(list(by), sort=True)
    out = g.size().rename("n").to_frame()
    for m in metrics:
        out[f"{m}_mean"] = g[m].mean()
        out[f"{m}_std"] = g[m].std(ddof=1)  # NaN for a single seed
    return out.reset_index()


def summary(
    rows: pd.DataFrame, metrics: Sequence[str] = ("mAP", "R1", "mINP"), split: str = "test"
) -> pd.DataFrame:
    """Mean, std and number of seeds per cell and loss variant on one split.

    Args:
        rows (pd.DataFrame): result rows (``split``, cell and variant columns, metrics).
        metrics (Sequence[str]): metric columns. split (str): ``"test"`` or ``"val"``.

    Returns:
        pd.DataFrame: ``P, K, memory_size, loss, with_ce, n, <m>_mean, <m>_std`` per metric.
    """
    return mean_std(rows[rows["split"] == split], [*CELL, *VARIANT], metrics)


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of a sample.

    Args:
        values (Sequence[float]): the sample (n >= 2 for an interval).
        level (float): confidence level. Default 0.95.

    Returns:
        tuple[float, float, float]: ``(mean, low, high)``; ``low = high = nan`` when n < 2.

    Example:
        >>> m, lo, hi = t_interval([1.0, 2.0, 3.0])
        >>> m, round(lo, 3), round(hi, 3)
        (2.0, -0.484, 4.484)
    """
    from scipy import stats

    x = np.asarray(values, dtype=float)
    mean = float(x.mean()) if x.size else float("nan")
    if x.size < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return mean, float(mean - half), float(mean + half)


def paired_differences(
    rows: pd.DataFrame,
    baseline: str,
    metric: str = "mAP",
    split: str = "test",
    level: float = 0.95,
) -> pd.DataFrame:
    """Each loss minus ``baseline`` over the same seeds, per cell and ``with_ce``.

    Runs with the same seed share the PK batches and the initialisation, so the difference
    of a pair removes what the seed does to both; its mean and t interval say whether a loss
    beats the baseline (an interval that holds 0 means "no difference shown").

    Args:
        rows (pd.DataFrame): result rows with ``seed``. baseline (str): a ``loss`` value.
        metric (str): the metric. split (str): the split. level (float): interval level.

    Returns:
        pd.DataFrame: ``P, K, memory_size, with_ce, loss, n, diff, low, high`` (``loss`` !=
        ``baseline``; ``n``: the seeds both have).
    """
    part = rows[rows["split"] == split]
    wide = part.pivot_table(
        index=[*CELL, "with_ce", "seed"], columns="loss", values=metric, aggfunc="first"
    )
    out = []
    for key, block in wide.groupby(level=[*CELL, "with_ce"], sort=True):
        for loss in block.columns:
            if loss == baseline or baseline not in block:
                continue
            d = (block[loss] - block[baseline]).dropna()
            mean, low, high = t_interval(d.to_numpy(), level)
            out.append((*key, loss, int(d.size), mean, low, high))
    return pd.DataFrame(out, columns=[*CELL, "with_ce", "loss", "n", "diff", "low", "high"])


def _by_seed(rows: pd.DataFrame, cell: Sequence[int], metric: str, split: str) -> pd.DataFrame:
    P, K, M = cell
    part = rows[(rows["split"] == split) & (rows["P"] == P) & (rows["K"] == K)]
    part = part[part["memory_size"] == M]
    return part.pivot_table(index="seed", columns=VARIANT, values=metric, aggfunc="first")


def cell_effects(
    rows: pd.DataFrame,
    cell: Sequence[int],
    reference: Sequence[int],
    metric: str = "mAP",
    split: str = "test",
    baseline: str | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """The change of ``metric`` from ``reference`` to ``cell`` per loss variant, paired by seed.

    A seed fixes the initialisation and, for cells of one batch shape (16 x 4 with and
    without a memory), the batches too, so the memory is the only difference of a pair.

    Args:
        rows (pd.DataFrame): result rows. cell, reference (Sequence[int]): ``(P, K,
            memory_size)`` of the two cells. metric (str), split (str), level (float): as in
            :func:`paired_differences`.
        baseline (str, optional): a ``loss``; when given, ``diff`` is each loss's change minus
            the baseline's (same ``with_ce``, same seed): how much more the move costs it.

    Returns:
        pd.DataFrame: ``loss, with_ce, n, diff, low, high``.
    """
    change = _by_seed(rows, cell, metric, split) - _by_seed(rows, reference, metric, split)
    out = []
    for loss, ce in change.columns:
        d = change[(loss, ce)]
        if baseline is not None:
            if loss == baseline or (baseline, ce) not in change:
                continue
            d = d - change[(baseline, ce)]
        d = d.dropna()
        mean, low, high = t_interval(d.to_numpy(), level)
        out.append((loss, bool(ce), int(d.size), mean, low, high))
    return pd.DataFrame(out, columns=[*VARIANT, "n", "diff", "low", "high"])


def _cell_label(P: int, K: int, M: int) -> str:
    return f"{P}x{K}" + (f" + memory {M:,}" if M else "")


def markdown_table(
    rows: pd.DataFrame,
    cells: pd.DataFrame,
    *,
    with_ce: bool,
    losses: Sequence[str],
    metric: str = "mAP",
    split: str = "test",
) -> str:
    """A Markdown table of the final runs: one line per cell, one column per loss.

    Args:
        rows (pd.DataFrame): ``imbalance.csv``. cells (pd.DataFrame): ``imbalance_cells.csv``
            (the measured ratio of each cell). with_ce (bool): the variants with CE or alone.
        losses (Sequence[str]): the columns, in order. metric (str), split (str): what to show.

    Returns:
        str: the table: ``mean +- std`` in percent over the seeds (``n`` in the header); the
        last line holds each loss's chosen learning rate.
    """
    final = rows[(rows["phase"] == "final") & (rows["with_ce"].astype(bool) == with_ce)]
    table = summary(final, (metric,), split).set_index([*CELL, "loss"])
    steps = final.groupby(CELL)["steps"].first()
    lrs = final.groupby("loss")["lr"].first()
    seeds = sorted(set(final["seed"]))
    head = "CE + " if with_ce else ""
    out = [
        "| cell (pos:neg per anchor) [steps] | "
        + " | ".join(f"{head}{loss}" for loss in losses)
        + " |",
        "|---" * (len(losses) + 1) + "|",
    ]
    ratio = {(int(c.P), int(c.K), int(c.memory_size)): float(c.ratio) for c in cells.itertuples()}
    for key in sorted(steps.index, key=lambda k: -ratio[tuple(int(x) for x in k)]):
        vals = []
        for loss in losses:
            r = table.loc[(*key, loss)] if (*key, loss) in table.index else None
            vals.append(
                ""
                if r is None
                else f"{100 * r[f'{metric}_mean']:.1f} +- {100 * r[f'{metric}_std']:.1f}"
            )
        k = tuple(int(x) for x in key)
        out.append(
            f"| {_cell_label(*k)} (1:{1 / ratio[k]:.0f}) [{steps[key]}] | "
            + " | ".join(vals)
            + " |"
        )
    out.append(
        "| chosen lr (validation) | " + " | ".join(f"{lrs[loss]:g}" for loss in losses) + " |"
    )
    return f"{split} {metric} %, mean +- std over seeds {seeds}\n\n" + "\n".join(out)


# ------------------------------------------------------------------------------ the verdict
#: how the verdict and the notebooks name each loss of the experiment
LOSS_LABELS = {
    "triplet": "batch-hard triplet",
    "contrastive": "contrastive",
    "smooth_ap": "Smooth-AP",
    "drsl_rank": "DRSL rank only",
    "drsl": "DRSL",
    "triplet_soft": "soft-margin triplet",
    "multi_similarity": "multi-similarity",
    "circle": "circle",
}
#: the two regimes of the experiment, by ``with_ce``
REGIMES = {False: "with the metric loss alone", True: "with cross-entropy and a BNNeck"}


def _label(loss: str) -> str:
    return LOSS_LABELS.get(loss, loss)


def _and(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


@dataclass(frozen=True)
class Verdict:
    """The computed answer to "does ``loss`` resist extreme imbalance better than the others?".

    A baseline is **outlasted** in a regime (``with_ce``) when the move from the reference cell
    to the extreme cell costs it more mAP than it costs ``loss`` (paired interval of the extra
    cost below 0) *and* ``loss`` ends above it in the extreme cell (paired interval above 0).

    Attributes:
        loss (str): the loss the claim is about. reference, extreme (tuple[int, int, int]):
            ``(P, K, memory_size)`` of the two endpoints.
        costs (pd.DataFrame): :func:`cell_effects` of the move, every variant.
        extra (pd.DataFrame): each baseline's cost minus ``loss``'s (same seed).
        gaps (pd.DataFrame): ``loss`` minus each baseline in the extreme cell
            (``baseline, with_ce, n, diff, low, high``).
        outlasted (dict[bool, tuple[str, ...]]): per ``with_ce``, the baselines outlasted.
    """

    loss: str
    reference: tuple[int, int, int]
    extreme: tuple[int, int, int]
    costs: pd.DataFrame
    extra: pd.DataFrame
    gaps: pd.DataFrame
    outlasted: dict

    @property
    def regimes(self) -> tuple[bool, ...]:
        """The ``with_ce`` values where ``loss`` outlasts at least one baseline."""
        return tuple(ce for ce in (False, True) if self.outlasted.get(ce))

    @property
    def headline(self) -> str:
        """The verdict in one sentence (number-free: every mention of the claim quotes it)."""
        me = _label(self.loss)
        if not self.regimes:
            return (
                f"On our data the claim is not shown: under extreme imbalance {me} outlasts no "
                "other loss beyond noise, with or without cross-entropy."
            )
        if len(self.regimes) == 2:
            per = [f"{_and(map(_label, self.outlasted[ce]))} {REGIMES[ce]}" for ce in (False, True)]
            return (
                f"On our data the claim holds in both regimes: under extreme imbalance {me} "
                f"outlasts {_and(per)}, beyond noise."
            )
        (ce,) = self.regimes
        beaten = _and([_label(b) for b in self.outlasted[ce]])
        return (
            f"On our data the claim holds in one regime only: {REGIMES[ce]}, under extreme "
            f"imbalance {beaten} lose more of their mAP than {me} and end below it, beyond "
            f"noise; {REGIMES[not ce]}, {me} outlasts no other loss."
        )


def imbalance_verdict(
    rows: pd.DataFrame,
    *,
    reference: Sequence[int],
    extreme: Sequence[int],
    loss: str = "drsl",
    phase: str = "final",
    metric: str = "mAP",
    level: float = 0.95,
) -> Verdict:
    """The verdict on the imbalance claim from an experiment's result rows.

    Args:
        rows (pd.DataFrame): result rows (``phase, split, seed``, cell and variant columns,
            ``metric``), e.g. ``experiments/results/imbalance.csv``.
        reference, extreme (Sequence[int]): ``(P, K, memory_size)`` of the balanced and the
            extreme endpoint (same batches seed for seed, ideally).
        loss (str): the loss the claim is about. phase (str): the rows to read.
        metric (str), level (float): as in :func:`paired_differences`.

    Returns:
        Verdict: the costs, extra costs, gaps, the outlasted baselines per regime and the
        headline.

    Example:
        >>> rows = pd.DataFrame([dict(phase="final", split="test", P=16, K=4, memory_size=m,
        ...     loss=l, with_ce=False, seed=s, mAP=0.4 + s / 100 - (m > 0) * cost)
        ...     for m in (0, 64) for s in range(3)
        ...     for l, cost in (("drsl", 0.0), ("contrastive", 0.3))])
        >>> v = imbalance_verdict(rows, reference=(16, 4, 0), extreme=(16, 4, 64))
        >>> v.outlasted[False], v.regimes
        (('contrastive',), (False,))
    """
    reference, extreme = tuple(map(int, reference)), tuple(map(int, extreme))
    part = rows[rows["phase"] == phase]
    costs = cell_effects(part, extreme, reference, metric, baseline=None, level=level)
    extra = cell_effects(part, extreme, reference, metric, baseline=loss, level=level)
    at_extreme = part[(part[CELL].astype(int) == pd.Series(extreme, index=CELL)).all(axis=1)]
    gaps = paired_differences(at_extreme, loss, metric, level=level)  # baseline - loss
    gaps = gaps.assign(
        baseline=gaps["loss"], diff=-gaps["diff"], low=-gaps["high"], high=-gaps["low"]
    )[["baseline", "with_ce", "n", "diff", "low", "high"]]
    outlasted = {}
    for ce in (False, True):
        more = extra[(extra["with_ce"] == ce) & (extra["high"] < 0)]["loss"]
        above = gaps[(gaps["with_ce"] == ce) & (gaps["low"] > 0)]["baseline"]
        outlasted[ce] = tuple(b for b in LOSS_LABELS if b in set(more) & set(above)) + tuple(
            sorted((set(more) & set(above)) - set(LOSS_LABELS))
        )
    return Verdict(loss, reference, extreme, costs, extra, gaps.reset_index(drop=True), outlasted)


# ------------------------------------------------------------------ how we got there: the sweep
def sweep_history(sweep: pd.DataFrame, studies: pd.DataFrame) -> dict:
    """What the earlier sweep and sensitivity studies found, as data (no prose).

    The sweep fixed a budget of images and one learning rate, so the batch shape moved the
    number of steps too; the studies varied the learning rate and fixed the steps.
    "Beyond noise": a difference of means larger than two standard errors of the difference.

    Args:
        sweep (pd.DataFrame): ``experiments/results/sweep.csv`` (``P, K, loss, seed, steps,
            lr, mAP``). studies (pd.DataFrame): ``sensitivity_studies.csv`` (``study, value``
            and the same columns).

    Returns:
        dict: ``runs``, ``lr`` (the sweep's one rate), ``steps`` ({(P, K): steps}),
        ``few_steps_lead`` (CE + DRSL ahead of CE + triplet beyond noise in every cell with at
        most the median steps), ``many_steps_level`` (within noise in every other cell),
        ``triplet_best_lr`` ({(P, K): the lr study's best rate for CE + triplet}),
        ``equal_batch`` ({loss: (mAP % of the more balanced, of the more imbalanced)} for the two
        fixed-steps cells of one batch size), ``imbalanced_no_worse`` (bool: for every loss).
    """
    from drsl.data.sampler import pk_pos_neg_ratio  # the one home of the PK ratio (imports torch)

    table = mean_std(sweep, ["P", "K", "loss"], ["mAP"]).set_index(["P", "K", "loss"])
    per_cell = sweep.groupby(["P", "K"])["steps"].first()
    steps = {(int(p), int(k)): int(n) for (p, k), n in per_cell.items()}
    median = float(np.median(list(steps.values())))

    def beyond(pk, a, b):
        ra, rb = table.loc[(*pk, a)], table.loc[(*pk, b)]
        se = np.sqrt(ra.mAP_std**2 / ra.n + rb.mAP_std**2 / rb.n)
        return ra.mAP_mean - rb.mAP_mean, abs(ra.mAP_mean - rb.mAP_mean) > 2 * se

    few = [pk for pk, n in steps.items() if n <= median]
    many = [pk for pk, n in steps.items() if n > median]
    lead = [beyond(pk, "ce+drsl", "ce+triplet") for pk in few]
    level = [beyond(pk, "ce+drsl", "ce+triplet")[1] for pk in many]
    lr = mean_std(studies[studies["study"] == "lr"], ["P", "K", "loss", "value"], ["mAP"])
    trip = lr[lr["loss"] == "ce+triplet"]
    best_lr = {
        (int(p), int(k)): float(g.sort_values("mAP_mean").iloc[-1]["value"])
        for (p, k), g in trip.groupby(["P", "K"])
    }
    fixed = mean_std(studies[studies["study"] == "steps"], ["P", "K", "loss"], ["mAP"])
    fixed["B"] = fixed["P"] * fixed["K"]
    shared = fixed.groupby("B")[["P", "K"]].apply(lambda g: len(g.drop_duplicates()))
    size = int(shared[shared > 1].index.max())
    pair = fixed[fixed["B"] == size].copy()
    pair["ratio"] = [pk_pos_neg_ratio(p, k) for p, k in zip(pair["P"], pair["K"], strict=True)]
    equal = {}
    for loss, g in pair.groupby("loss"):
        g = g.sort_values("ratio", ascending=False)  # more balanced first
        equal[loss] = (100 * float(g["mAP_mean"].iloc[0]), 100 * float(g["mAP_mean"].iloc[-1]))
    return {
        "runs": len(sweep),
        "lr": float(sweep["lr"].iloc[0]),
        "steps": steps,
        "few_steps_lead": all(d > 0 and b for d, b in lead),
        "many_steps_level": not any(level),
        "triplet_best_lr": best_lr,
        "equal_batch": equal,
        "imbalanced_no_worse": all(hi >= lo for lo, hi in equal.values()),
    }


# ------------------------------------------------------ how we got there: the first experiment
def imbalance_history(rows: pd.DataFrame, cells: pd.DataFrame, loss: str = "drsl") -> dict:
    """What the first imbalance experiment showed about its own limits, as data (no prose).

    The decisive experiment (``configs/decisive/plan.toml``) supersedes it; these are the
    reasons, read from ``experiments/results/imbalance.csv`` and ``imbalance_cells.csv``.

    Args:
        rows (pd.DataFrame): ``imbalance.csv``. cells (pd.DataFrame): ``imbalance_cells.csv``
            (``P, K, memory_size, ratio``). loss (str): the loss the claim is about.

    Returns:
        dict: ``seeds`` (final seeds), ``final`` (final runs), ``reused`` (final runs that are a
        tuning run: same cell, loss, rate, seed and images), ``triplet_best`` (the best mean
        test mAP %, over the cells, of batch-hard triplet alone), ``memory`` ({memory size:
        (measured neg per pos, ``loss``'s test-mAP change in points from the same batches without
        memory, alone)}), ``most_extreme`` (the largest measured neg per pos).
    """
    final = rows[(rows["phase"] == "final") & (rows["split"] == "test")]
    key = ["P", "K", "memory_size", "loss", "with_ce", "lr", "seed", "images"]
    tune = rows[rows["phase"] == "tune"][key]
    alone = final[final["with_ce"].astype(str) == "False"]
    trip = alone[alone["loss"] == "triplet"].groupby(CELL)["mAP"].mean()
    memory = {}
    for c in cells[cells["memory_size"] > 0].itertuples():
        ref = (int(c.P), int(c.K), 0)
        cost = cell_effects(alone, (int(c.P), int(c.K), int(c.memory_size)), ref)
        diff = float(cost[cost["loss"] == loss]["diff"].iloc[0])
        memory[int(c.memory_size)] = (1 / float(c.ratio), 100 * diff)
    return {
        "seeds": sorted(int(s) for s in final["seed"].unique()),
        "final": len(final),
        "reused": len(final.merge(tune, on=key)),
        "triplet_best": 100 * float(trip.max()),
        "memory": memory,
        "most_extreme": float((1 / cells["ratio"]).max()),
    }
