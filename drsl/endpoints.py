"""The endpoints of a pre-registered experiment: paired differences, Holm-corrected intervals.

A plan (``configs/decisive/plan.toml``) names its endpoints before any final run; each is a
difference of a metric between two cells paired by seed (same seed: same initialisation and
batch order), or a difference of two such differences (does one loss lose less than another?).
:func:`endpoint_table` computes them all from the results table and corrects them together
with Holm's step-down procedure, reporting for each an interval at the level Holm's procedure
tests it at, so that an interval excludes 0 exactly when Holm rejects "no difference".

The reading, as data: :func:`tuned_rates` repeats the runner's learning-rate rule on the tuning
rows (the grid extended past an edge, ``drsl.analysis.select_lr``); :func:`decisive_verdict`
counts the final runs against the plan and, only once all are in, turns the endpoint table
into one line per endpoint and the one headline every mention of the claim quotes.

Reference: Holm, "A Simple Sequentially Rejective Multiple Test Procedure", Scand. J.
Statistics 6 (1979); the paired Student-t interval (e.g. Wasserman, *All of Statistics*,
2004, sec. 10.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "holm",
    "paired_cell_values",
    "endpoint_differences",
    "endpoint_table",
    "endpoint_markdown",
    "tuned_rates",
    "planned_final_runs",
    "final_runs_done",
    "DecisiveVerdict",
    "decisive_verdict",
]


def holm(p_values: Sequence[float], alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down adjusted p-values and the level each hypothesis is tested at.

    Args:
        p_values (Sequence[float]): ``m`` raw p-values (NaN: never rejected, tested last).
        alpha (float): family-wise error rate.

    Returns:
        tuple[np.ndarray, np.ndarray]: adjusted p-values (``p_holm < alpha`` iff rejected) and
        the per-hypothesis test level ``alpha / (m - k)`` where ``k`` is its step (0-based),
        frozen at the first non-rejection for all later ones.

    Example:
        >>> adj, lev = holm([0.01, 0.04, 0.03])
        >>> [round(float(x), 2) for x in adj], [round(float(x), 4) for x in lev]
        ([0.03, 0.06, 0.06], [0.0167, 0.025, 0.025])
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(np.where(np.isnan(p), np.inf, p), kind="stable")
    adj, level = np.empty(m), np.empty(m)
    running, frozen = 0.0, None
    for k, i in enumerate(order):
        step_level = alpha / (m - k)
        raw = p[i] if not np.isnan(p[i]) else 1.0
        running = max(running, min(1.0, (m - k) * raw))
        adj[i] = running
        if frozen is None and not raw < step_level:
            frozen = step_level
        level[i] = step_level if frozen is None else frozen
    return adj, level


def paired_cell_values(rows: pd.DataFrame, metric: str = "mAP", split: str = "test"):
    """The final runs' ``metric`` (in points, x100) as a table ``(cell, loss, with_ce) x seed``.

    A run whose metric is NaN (diverged) is dropped, so the pairs of its seed are too.
    """
    r = rows[(rows["phase"] == "final") & (rows["split"] == split)].copy()
    r["value"] = 100.0 * r[metric].astype(float)
    r["with_ce"] = r["with_ce"].astype(str) == "True"
    r = r.dropna(subset=["value"])
    return r.pivot_table(index=["cell", "loss", "with_ce"], columns="seed", values="value")


def _diff(values: pd.DataFrame, plus: str, minus: str, loss: str, ce: bool) -> pd.Series:
    try:
        return (values.loc[(plus, loss, ce)] - values.loc[(minus, loss, ce)]).dropna()
    except KeyError:
        return pd.Series(dtype=float)


def endpoint_differences(rows: pd.DataFrame, plan: dict, with_ce: bool = False):
    """Every endpoint's per-seed paired differences (points), before any statistics.

    Args:
        rows (pd.DataFrame): the results table (``phase, cell, loss, with_ce, seed, split`` and
            the metric).
        plan (dict): the plan: ``analysis`` (``metric``, ``split``) and ``endpoints``: each
            ``{id, plus, minus, losses}`` (a cell difference per loss: ``plus - minus``) or
            ``{id, of, loss, versus}`` (per earlier endpoint in ``of`` and per ``versus`` loss:
            ``loss``'s difference minus that loss's, seed by seed).
        with_ce (bool): which arm.

    Returns:
        list[dict]: one per comparison: ``endpoint``, ``loss``, ``versus`` (or ""), ``of`` (or
        ""), ``diffs`` (pd.Series indexed by seed).
    """
    analysis = plan.get("analysis", {})
    values = paired_cell_values(rows, analysis.get("metric", "mAP"), analysis.get("split", "test"))
    out, by_id = [], {}
    for ep in plan["endpoints"]:
        if "plus" in ep:
            losses = plan["losses"] if ep.get("losses", "all") == "all" else ep["losses"]
            for loss in losses:
                d = _diff(values, ep["plus"], ep["minus"], loss, with_ce)
                by_id[(ep["id"], loss)] = d
                out.append(dict(endpoint=ep["id"], loss=loss, versus="", of="", diffs=d))
        else:
            for of in ep["of"]:
                for other in ep["versus"]:
                    d = (by_id[(of, ep["loss"])] - by_id[(of, other)]).dropna()
                    out.append(dict(endpoint=ep["id"], loss=ep["loss"], versus=other, of=of,
                                    diffs=d))  # fmt: skip
    return out


def endpoint_table(rows: pd.DataFrame, plan: dict, with_ce: bool = False) -> pd.DataFrame:
    """Each endpoint's mean paired difference with its Holm-corrected interval (points).

    Args:
        rows (pd.DataFrame): the results table. plan (dict): the plan (see
            :func:`endpoint_differences`; ``analysis.level``, default 0.95, is the family-wise
            confidence; ``analysis.equivalence_margin`` in points, default 3).
        with_ce (bool): which arm.

    Returns:
        pd.DataFrame: per comparison ``endpoint, loss, versus, of, n, mean, low, high, p,
        p_holm, level, rejects, within_margin``: ``level`` is the confidence of its interval
        (Holm's step), ``rejects`` whether the interval excludes 0, ``within_margin`` whether it
        lies inside +- the equivalence margin.

    Example:
        >>> rows = pd.DataFrame({"phase": "final", "split": "test", "with_ce": False,
        ...     "cell": ["a"] * 3 + ["b"] * 3, "loss": "x", "seed": [1, 2, 3] * 2,
        ...     "mAP": [0.5, 0.6, 0.7, 0.4, 0.52, 0.6]})
        >>> plan = {"losses": ["x"], "endpoints": [{"id": "E", "plus": "b", "minus": "a"}]}
        >>> t = endpoint_table(rows, plan)
        >>> round(float(t["mean"].iloc[0]), 2), int(t["n"].iloc[0])
        (-9.33, 3)
    """
    from scipy import stats

    analysis = plan.get("analysis", {})
    alpha = 1.0 - float(analysis.get("level", 0.95))
    margin = float(analysis.get("equivalence_margin", 3.0))
    comps = endpoint_differences(rows, plan, with_ce)
    p_raw, means, sems, ns = [], [], [], []
    for c in comps:
        x = c["diffs"].to_numpy(dtype=float)
        n = x.size
        mean = float(x.mean()) if n else float("nan")
        sem = float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        if n < 2:
            p = float("nan")
        elif sem > 0:
            p = float(2 * stats.t.sf(abs(mean / sem), n - 1))
        else:  # every seed gives the same difference
            p = 1.0 if mean == 0.0 else 0.0
        p_raw.append(p), means.append(mean), sems.append(sem), ns.append(n)
    adj, levels = holm(p_raw, alpha)
    out = []
    for c, p, pa, lev, mean, sem, n in zip(comps, p_raw, adj, levels, means, sems, ns,
                                           strict=True):  # fmt: skip
        half = float(stats.t.ppf(1 - lev / 2, n - 1) * sem) if n > 1 else float("nan")
        low, high = mean - half, mean + half
        out.append(dict(endpoint=c["endpoint"], loss=c["loss"], versus=c["versus"], of=c["of"],
                        n=n, mean=mean, low=low, high=high, p=p, p_holm=pa, level=1 - lev,
                        rejects=bool(low > 0 or high < 0),
                        within_margin=bool(-margin < low and high < margin)))  # fmt: skip
    return pd.DataFrame(out)


def endpoint_markdown(table: pd.DataFrame) -> str:
    """The endpoint table as Markdown: one line per comparison, intervals in points.

    Args:
        table (pd.DataFrame): :func:`endpoint_table`'s output.

    Returns:
        str: a Markdown table; "no difference shown" where the interval holds 0.

    Example:
        >>> t = pd.DataFrame([dict(endpoint="E1", loss="drsl", versus="", of="", n=5,
        ...     mean=-1.234, low=-3.0, high=0.5, p=0.1, p_holm=0.4, level=0.99,
        ...     rejects=False, within_margin=True)])
        >>> print(endpoint_markdown(t).splitlines()[2])
        | E1 | drsl |  | 5 | -1.2 | [-3.0, 0.5] | 99.0 % | 0.4 | no difference shown |
    """
    lines = [
        "| endpoint | loss | versus | n | mean (points) | interval | level | p (Holm) | reading |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        versus = f"{r.versus} ({r.of})" if r.versus else ""
        if not r.rejects:
            reading = "no difference shown"
        else:
            reading = "higher" if r.low > 0 else "lower"
        lines.append(
            f"| {r.endpoint} | {r.loss} | {versus} | {r.n} | {r.mean:.1f} | "
            f"[{r.low:.1f}, {r.high:.1f}] | {100 * r.level:.1f} % | {r.p_holm:.2g} | {reading} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------ choices on validation
def _lr_grid(tune: pd.DataFrame, plan: dict, loss: str, ce: bool) -> tuple[list[float], bool]:
    """``experiments/decisive.py``'s ``lr_grid`` on a frame: the grid of ``loss`` (extended by
    ``lr_factor`` past the edge its best rate sits on, at most ``lr_extensions`` times) and
    whether every tuning run of that grid is in."""
    from drsl.analysis import select_lr

    base = sorted(float(x) for x in plan["lrs"])
    extensions = int(plan.get("lr_extensions", 0))
    mine = tune[(tune["loss"] == loss) & (tune["with_ce"].astype(str) == str(ce))]
    have = set(zip(mine["cell"], mine["lr"].astype(float), strict=True))
    lrs = list(base)
    for _ in range(extensions + 1):
        if any((cell, lr) not in have for cell in plan["tune_cells"] for lr in lrs):
            return lrs, False
        best = float(select_lr(mine[mine["lr"].astype(float).isin(lrs)])["lr"].iloc[0])
        if best not in (lrs[0], lrs[-1]) or len(lrs) - len(base) >= extensions:
            return lrs, True
        factor = float(plan["lr_factor"])
        lrs = sorted([*lrs, lrs[-1] * factor if best == lrs[-1] else lrs[0] / factor])
    return lrs, True


def tuned_rates(rows: pd.DataFrame, plan: dict) -> pd.DataFrame:
    """The learning rate of every loss and arm, by the plan's rule, from the tuning rows.

    The same rule as the runner (``experiments/decisive.py``: ``lr_grid`` and ``chosen``):
    the best mean validation mAP over the tuning cells (:func:`drsl.analysis.select_lr`, a
    diverged run the worst), on a grid extended past an edge while the best rate sits there.

    Args:
        rows (pd.DataFrame): the results table (its ``tune`` rows at the plan's tuning seed and
            budget are read: ``cell, loss, with_ce, lr, split, mAP``).
        plan (dict): the plan (``losses, with_ce, lrs, lr_factor, lr_extensions, tune_seed,
            tune_cells, budget``).

    Returns:
        pd.DataFrame: one row per ``(loss, with_ce)``: ``grid`` (the rates, ascending),
        ``runs`` and ``planned`` (tuning runs in and due), ``complete``, ``lr`` and ``val_mAP``
        (NaN until complete), ``on_edge`` (the chosen rate is the lowest or highest tried).

    Example:
        >>> plan = {"losses": ["x"], "with_ce": [False], "lrs": [0.01, 0.1], "lr_factor": 10.0,
        ...         "lr_extensions": 1, "tune_seed": 0, "tune_cells": ["c"], "budget": 8}
        >>> rows = pd.DataFrame({"phase": "tune", "cell": "c", "loss": "x", "with_ce": False,
        ...     "seed": 0, "images": 8, "split": "val", "lr": [0.01, 0.1], "mAP": [0.2, 0.3]})
        >>> tuned_rates(rows, plan)[["grid", "complete"]].to_dict("records")
        [{'grid': (0.01, 0.1, 1.0), 'complete': False}]
    """
    from drsl.analysis import select_lr

    tune = rows[(rows["phase"] == "tune") & (rows["seed"].astype(int) == int(plan["tune_seed"]))]
    tune = tune[tune["images"].astype(int) == int(plan["budget"])]
    out = []
    for ce in (bool(x) for x in plan["with_ce"]):
        for loss in plan["losses"]:
            lrs, complete = _lr_grid(tune, plan, loss, ce)
            mine = tune[(tune["loss"] == loss) & (tune["with_ce"].astype(str) == str(ce))]
            mine = mine[mine["lr"].astype(float).isin(lrs) & mine["cell"].isin(plan["tune_cells"])]
            lr = score = float("nan")
            if complete:
                pick = select_lr(mine).iloc[0]
                lr, score = float(pick["lr"]), float(pick["val_mAP"])
            out.append(dict(loss=loss, with_ce=ce, grid=tuple(lrs), runs=len(mine),
                            planned=len(lrs) * len(plan["tune_cells"]), complete=complete,
                            lr=lr, val_mAP=score,
                            on_edge=bool(complete and lr in (lrs[0], lrs[-1]))))  # fmt: skip
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------- the verdict
def planned_final_runs(plan: dict) -> int:
    """How many final runs the plan names: cells x losses x seeds x arms.

    Example:
        >>> planned_final_runs({"cells": {"a": {}, "b": {}}, "losses": ["x", "y", "z"],
        ...                     "seeds": [1, 2], "with_ce": [False]})
        12
    """
    return len(plan["cells"]) * len(plan["losses"]) * len(plan["seeds"]) * len(plan["with_ce"])


def final_runs_done(rows: pd.DataFrame, plan: dict) -> int:
    """How many of the plan's final runs have their rows in ``rows`` (a diverged run counts:
    it is done, and drops its seed's pairs)."""
    r = rows[(rows["phase"] == "final") & rows["cell"].isin(list(plan["cells"]))]
    r = r[r["loss"].isin(plan["losses"]) & r["seed"].astype(int).isin(plan["seeds"])]
    r = r[r["with_ce"].astype(str).isin([str(bool(x)) for x in plan["with_ce"]])]
    return len(r.drop_duplicates(["cell", "loss", "with_ce", "seed"]))


def _reading(r) -> str:
    """One comparison in words: a cost, a gain, or no difference, with its interval."""
    if r.n < 2:
        return f"too few pairs (n = {r.n})"
    interval = f"[{r.low:+.1f}, {r.high:+.1f}]"
    if not r.rejects:
        return f"no difference shown {interval}"
    word = "costs" if r.mean < 0 else "gains"
    return f"{word} {abs(r.mean):.1f} points {interval}"


def _label(loss: str) -> str:
    from drsl.analysis import LOSS_LABELS

    return LOSS_LABELS.get(loss, loss)


def _and(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _cell_line(ep: dict, part: pd.DataFrame) -> str:
    per = "; ".join(f"{_label(r.loss)}: {_reading(r)}" for r in part.itertuples())
    return f"{ep['id']} ({ep['plus']} minus {ep['minus']}): {per}."


def _e3_line(ep: dict, table: pd.DataFrame, margin: float) -> str:
    me, parts = _label(ep["loss"]), []
    for of in ep["of"]:
        own = table[(table["endpoint"] == of) & (table["loss"] == ep["loss"])]
        own = own[own["versus"] == ""].iloc[0]
        within = "within" if own["within_margin"] else "not shown within"
        vs = []
        for r in table[(table["endpoint"] == ep["id"]) & (table["of"] == of)].itertuples():
            interval = f"[{r.low:+.1f}, {r.high:+.1f}]"
            if not r.rejects:
                vs.append(f"no difference shown from {_label(r.versus)}'s {interval}")
            else:
                word = "smaller" if r.mean > 0 else "larger"
                vs.append(f"{abs(r.mean):.1f} points {word} than {_label(r.versus)}'s {interval}")
        parts.append(
            f"in {of} {me}'s cost is {within} ±{margin:g} points "
            f"[{own['low']:+.1f}, {own['high']:+.1f}] and " + ", ".join(vs)
        )
    return f"{ep['id']}: " + "; ".join(parts) + "."


@dataclass(frozen=True)
class DecisiveVerdict:
    """The decisive experiment's reading, as data.

    Attributes:
        done, planned (int): final runs in the results table, and named by the plan.
        table (pd.DataFrame or None): :func:`endpoint_table` once every final run is in, else
            None (no endpoint is read from a partial table).
        lines (dict[str, str]): per endpoint id, its one-line verdict (empty until complete).
        outlasted, outlasted_by (tuple[str, ...]): the baselines whose cost (E3) is larger than
            the loss's beyond noise in some endpoint and smaller in none; those whose cost is
            smaller in some.
        within (tuple[str, ...]): the endpoints where the loss's cost lies inside the margin.
        headline (str): the verdict in one sentence; while runs are missing it says so and
            makes no claim.
    """

    done: int
    planned: int
    table: pd.DataFrame | None
    lines: dict
    outlasted: tuple
    outlasted_by: tuple
    within: tuple
    headline: str

    @property
    def complete(self) -> bool:
        """Every final run of the plan is in."""
        return self.done >= self.planned


def _headline(me: str, regime: str, e3: dict, baselines, within, outlasted, by) -> str:
    if len(within) == len(e3["of"]) and set(outlasted) == set(baselines):
        status = "holds"
    elif not within and not outlasted:
        status = "is not shown"
    else:
        status = "holds in part"
    if len(within) == len(e3["of"]):
        margin = f"within the plan's equivalence margin in {_and(within)}"
    elif within:
        margin = f"within the plan's equivalence margin in {_and(within)} only"
    else:
        margin = "not shown within the plan's equivalence margin"
    beaten = _and([_label(b) for b in outlasted]) if outlasted else "no baseline"
    rest = [_label(b) for b in baselines if b not in outlasted and b not in by]
    text = (
        f"On our data the claim {status}: {regime}, {me}'s cost of the extreme ratio is "
        f"{margin}, and {me} loses less than {beaten} beyond noise"
    )
    if rest and outlasted:
        text += f", but not less than {_and(rest)}"
    if by:
        verb = "loses" if len(by) == 1 else "lose"
        text += f"; {_and([_label(b) for b in by])} {verb} less than {me}"
    return text + "."


def decisive_verdict(rows: pd.DataFrame, plan: dict) -> DecisiveVerdict:
    """The verdict of the decisive experiment, computed from its results table and plan.

    Until every final run the plan names is in, it reads nothing: the headline says how many
    are in and makes no claim. Then each endpoint gets one line: per loss what the more
    imbalanced cell costs (``costs X points [low, high]``, Holm-corrected) or "no difference
    shown" where the interval holds 0; E3 says whether the loss's cost lies within the plan's
    equivalence margin and how it compares with each baseline's.

    Args:
        rows (pd.DataFrame): ``experiments/results/decisive.csv``.
        plan (dict): ``configs/decisive/plan.toml`` (its E3-style endpoint, ``of``/``versus``,
            names the loss the claim is about).

    Returns:
        DecisiveVerdict: counts, the endpoint table, the lines and the headline.

    Example:
        >>> plan = {"cells": {"a": {}, "b": {}}, "losses": ["drsl"], "seeds": [1, 2],
        ...         "with_ce": [False], "endpoints": []}
        >>> rows = pd.DataFrame({"phase": "final", "cell": "a", "loss": "drsl",
        ...                      "with_ce": False, "seed": [1, 2], "split": "test"})
        >>> v = decisive_verdict(rows, plan)
        >>> v.complete, v.headline.split(":")[0]
        (False, 'The decisive imbalance experiment is in progress (2 of 4 final runs)')
    """
    from drsl.analysis import REGIMES

    done, planned = final_runs_done(rows, plan), planned_final_runs(plan)
    if done < planned:
        head = (
            f"The decisive imbalance experiment is in progress ({done} of {planned} final "
            "runs): it makes no claim yet."
        )
        return DecisiveVerdict(done, planned, None, {}, (), (), (), head)
    arms = [bool(x) for x in plan["with_ce"]]
    table = endpoint_table(rows, plan, with_ce=arms[0])
    margin = float(plan.get("analysis", {}).get("equivalence_margin", 3.0))
    lines = {}
    for ep in plan["endpoints"]:
        part = table[table["endpoint"] == ep["id"]]
        lines[ep["id"]] = (_cell_line(ep, part) if "plus" in ep
                           else _e3_line(ep, table, margin))  # fmt: skip
    e3 = next(ep for ep in plan["endpoints"] if "of" in ep)
    comps = table[table["endpoint"] == e3["id"]]
    smaller = set(comps[comps["rejects"] & (comps["mean"] > 0)]["versus"])
    larger = set(comps[comps["rejects"] & (comps["mean"] < 0)]["versus"])
    outlasted = tuple(b for b in e3["versus"] if b in smaller - larger)
    by = tuple(b for b in e3["versus"] if b in larger)
    own = table[(table["loss"] == e3["loss"]) & (table["versus"] == "")]
    within = tuple(of for of in e3["of"]
                   if own[own["endpoint"] == of]["within_margin"].all())  # fmt: skip
    head = _headline(_label(e3["loss"]), REGIMES[arms[0]], e3, e3["versus"], within, outlasted,
                     by)  # fmt: skip
    return DecisiveVerdict(done, planned, table, lines, outlasted, by, within, head)
