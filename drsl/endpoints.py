"""The endpoints of a pre-registered experiment: paired differences, Holm-corrected intervals.

A plan (``configs/decisive/plan.toml``) names its endpoints before any final run; each is a
difference of a metric between two cells paired by seed (same seed: same initialisation and
batch order), or a difference of two such differences (does one loss lose less than another?).
:func:`endpoint_table` computes them all from the results table and corrects them together
with Holm's step-down procedure, reporting for each an interval at the level Holm's procedure
tests it at, so that an interval excludes 0 exactly when Holm rejects "no difference".

Reference: Holm, "A Simple Sequentially Rejective Multiple Test Procedure", Scand. J.
Statistics 6 (1979); the paired Student-t interval (e.g. Wasserman, *All of Statistics*,
2004, sec. 10.2).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "holm",
    "paired_cell_values",
    "endpoint_differences",
    "endpoint_table",
    "endpoint_markdown",
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
