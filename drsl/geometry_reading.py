"""Two models' embedding geometry compared: the paired table and the reading, as data.

Notebook 06 compares two checkpoints on one test split. What it writes about them (which model
is higher on which statistic, which differences are larger than the noise of the query set)
is computed here from the numbers, so the words always fit the split that was run (the small
fast-mode split gives other numbers than the full one), and the tests check the sentences.

- :func:`geometry_reading`: the retrieval metrics, the pooled statistics of
  :func:`drsl.geometry.overlap_stats`, the feature norms and the per-query
  :func:`drsl.geometry.paired_comparison` of two models, in one :class:`GeometryReading`;
- :meth:`GeometryReading.paired_table`: the paired comparison as a table;
- :meth:`GeometryReading.markdown` (or :meth:`~GeometryReading.bullets`): the reading, one
  bullet per topic.

A comparison's word (higher, equal, lower) is taken on the values rounded to the four
decimals the reading prints. A paired difference is "beyond noise" when it is larger than two
standard errors of the per-query differences (one seed per model: the spread between seeds is
not in it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from drsl.geometry import PairGeometry, paired_comparison

__all__ = ["WORDS", "GeometryReading", "geometry_reading"]

#: the word of a comparison, by the sign of (first model - second model)
WORDS = {1: "higher", 0: "equal", -1: "lower"}
#: decimals of the values a comparison prints (its word is taken on them)
DECIMALS = 4
#: feature norms "vary little" below this std / mean, with a median rho above NEAR_ONE
LITTLE_SPREAD, NEAR_ONE = 0.15, 0.9


@dataclass(frozen=True)
class GeometryReading:
    """What two models' geometry says, as numbers (first model against second).

    Attributes:
        models (tuple[str, str]): the two display names, in the order of every pair below.
        queries, gallery (int): the split's query and gallery sizes.
        negatives_per_query (int): the first model's negative pairs per query (the masks are
            shared).
        compared (dict[str, tuple[float, float]]): each comparison the reading states, in its
            order: ``mAP``, ``rank-1``, ``mINP``, ``the pooled distance AUC``, ``the pooled
            angle AUC``, ``the median rho``.
        overlap, pos_angle_mean, neg_angle_mean (tuple[float, float]): from
            :func:`drsl.geometry.overlap_stats` (overlap share of distances; mean angles of
            positive and negative pairs, degrees).
        norms (dict[str, tuple[float, float]]): per model, mean and std (``ddof=1``) of its
            feature norms.
        paired (dict[str, dict[str, float]]): :func:`drsl.geometry.paired_comparison`.
    """

    models: tuple[str, str]
    queries: int
    gallery: int
    negatives_per_query: int
    compared: dict
    overlap: tuple[float, float]
    pos_angle_mean: tuple[float, float]
    neg_angle_mean: tuple[float, float]
    norms: dict
    paired: dict

    def word(self, what: str) -> str:
        """``"higher"``, ``"equal"`` or ``"lower"``: the first model's ``what`` against the
        second's, at the printed precision."""
        a, b = self.compared[what]
        return WORDS[int(np.sign(round(a, DECIMALS) - round(b, DECIMALS)))]

    def claim(self, what: str) -> str:
        """One comparison as a clause: ``"mAP is higher for A (0.5000 against 0.4000)"``."""
        a, b = self.compared[what]
        return f"{what} is {self.word(what)} for {self.models[0]} ({a:.4f} against {b:.4f})"

    @property
    def beyond_noise(self) -> tuple[str, ...]:
        """The paired statistics whose mean difference exceeds two standard errors."""
        return tuple(k for k, p in self.paired.items() if abs(p["diff"]) > 2 * p["se"])

    @property
    def norm_spread(self) -> dict[str, float]:
        """Per model, std / mean of its feature norms."""
        return {name: std / mean for name, (mean, std) in self.norms.items()}

    def paired_table(self) -> pd.DataFrame:
        """The paired comparison, one row per statistic (``auc_distance``, ``auc_angle``,
        ``spearman``): each model's mean, the difference, its standard error, the shares of
        queries where each model is higher, the number of queries and ``beyond 2 SE``."""
        a, b = self.models
        table = pd.DataFrame(self.paired).T
        table.columns = [a, b, f"{a} - {b}", "std. error", f"{a} higher", f"{b} higher", "queries"]
        table["beyond 2 SE"] = ["yes" if k in self.beyond_noise else "no" for k in table.index]
        return table

    def _norms_sentence(self) -> str:
        listed = ", ".join(f"{n} {m:.1f} ± {s:.1f}" for n, (m, s) in self.norms.items())
        rho = self.compared["the median rho"]
        if max(self.norm_spread.values()) < LITTLE_SPREAD and min(rho) > NEAR_ONE:
            return (
                f"The feature norms vary little ({listed}, under {LITTLE_SPREAD:.0%} of the "
                "mean), so distance nearly follows the angle: for both models the median rho "
                f"is above {NEAR_ONE}."
            )
        return (
            f"The feature norms ({listed}) vary by up to {max(self.norm_spread.values()):.0%} "
            f"of the mean; the median rho is {rho[0]:.2f} and {rho[1]:.2f}."
        )

    def _shares(self) -> str:
        a, b = self.models
        names = {"auc_distance": "distance AUC", "auc_angle": "angle AUC", "spearman": "rho"}
        share = {m: [f"{self.paired[k][m]:.0%}" for k in names] for m in ("a_higher", "b_higher")}
        never = [  # (statistic, the model that is never the higher one)
            (names[k], m) for k in names for m, side in ((a, "a_higher"), (b, "b_higher"))
            if self.paired[k][side] == 0
        ]  # fmt: skip
        tail = "; ".join(f"by {what} {m} is never the higher one" for what, m in never)
        return (
            f"{a} is the higher one on {_and(share['a_higher'])} of the queries "
            f"({_and(list(names.values()))}), {b} on {_and(share['b_higher'])}; "
            + (tail or "neither model wins every query")
        )

    def markdown(self) -> str:
        """The reading as one markdown list: the lines of :meth:`bullets`."""
        return "\n".join(self.bullets())

    def bullets(self) -> list[str]:
        """The reading, one markdown bullet each for retrieval, distances, angles, rank in
        rank, the per-query shares and whether the differences exceed this query set's noise
        (shown one by one, a slide deck can split them)."""
        sp = self.paired["spearman"]
        beyond = ", ".join(self.beyond_noise) or "none"
        lines = [
            f"- **Retrieval** ({self.queries} queries, {self.gallery} gallery images): "
            f"{self.claim('mAP')}; {self.claim('rank-1')}; {self.claim('mINP')}.",
            f"- **Distances**: {self.claim('the pooled distance AUC')}. The overlap share is "
            f"{self.overlap[0]:.0%} and {self.overlap[1]:.0%}: with "
            f"{self.negatives_per_query:,} negatives per query a single hard negative is enough "
            "to count a query, so this share says little about how many negatives intrude "
            "(exercise 2).",
            f"- **Angles**: {self.claim('the pooled angle AUC')}; mean angle of positive pairs "
            f"{self.pos_angle_mean[0]:.0f} and {self.pos_angle_mean[1]:.0f} degrees, of "
            f"negative pairs {self.neg_angle_mean[0]:.0f} and {self.neg_angle_mean[1]:.0f}. "
            + self._norms_sentence(),
            f"- **Rank in rank**: {self.claim('the median rho')}; paired over queries, mean rho "
            f"{sp['mean_a']:.3f} against {sp['mean_b']:.3f}, a difference of {sp['diff']:.3f} "
            f"with a standard error of {sp['se']:.3f}.",
            f"- **Query by query**: {self._shares()}.",
            f"- **Is it the loss?** Differences beyond two standard errors of this query set: "
            f"{beyond}. Each model is one training run with one seed, and the spread between "
            "seeds, which these standard errors do not contain, may be as large: notebook 05's "
            "experiment (several seeds per cell) is the place to judge the loss itself.",
        ]
        return lines


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def geometry_reading(
    geo: Mapping[str, PairGeometry],
    results: Mapping,
    norms: Mapping,
    *,
    stats: Mapping[str, Mapping] | None = None,
    min_positives: int = 3,
) -> GeometryReading:
    """Compare two models on one split: retrieval, pooled overlap statistics, norms, per query.

    Args:
        geo (Mapping[str, PairGeometry]): exactly two models' pairs (same queries, gallery and
            masks), display name -> geometry; the first is the one the reading speaks of.
        results (Mapping[str, RankResult]): per model, :func:`drsl.metrics.evaluate_rank` of
            its distances (``mAP``, ``cmc``, ``mINP``).
        norms (Mapping[str, array-like]): per model, the norms of its query and gallery
            features (1-D).
        stats (Mapping[str, Mapping], optional): per model, :meth:`PairGeometry.stats` when
            already computed (else computed here).
        min_positives (int): as in :func:`drsl.geometry.paired_comparison`. Default 3.

    Returns:
        GeometryReading: the numbers, the paired table and the reading.

    Example:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> from drsl.geometry import batch_geometry
        >>> x = torch.tensor([[0.0, 1.0], [0.1, 1.0], [1.0, 0.0], [1.0, 0.2]])
        >>> g, r = batch_geometry(x, [0, 0, 1, 1]), SimpleNamespace(mAP=1.0, cmc=[1.0], mINP=1.0)
        >>> norms = {"A": [1.0, 2.0], "B": [1.0, 2.0]}
        >>> reading = geometry_reading({"A": g, "B": g}, {"A": r, "B": r}, norms)
        >>> reading.word("mAP"), reading.beyond_noise
        ('equal', ())
    """
    if len(geo) != 2:
        raise ValueError(f"geometry_reading compares two models, got {len(geo)}")
    a, b = names = tuple(geo)
    stats = {
        n: geo[n].stats(min_positives=min_positives) if stats is None else stats[n] for n in names
    }

    def pair(key: str) -> tuple[float, float]:
        return float(stats[a][key]), float(stats[b][key])

    compared = {
        "mAP": tuple(float(results[n].mAP) for n in names),
        "rank-1": tuple(float(results[n].cmc[0]) for n in names),
        "mINP": tuple(float(results[n].mINP) for n in names),
        "the pooled distance AUC": pair("auc_distance"),
        "the pooled angle AUC": pair("auc_angle"),
        "the median rho": pair("spearman_median"),
    }
    queries, gallery = geo[a].dist.shape
    values = {n: np.asarray(norms[n], dtype=np.float64).ravel() for n in names}
    return GeometryReading(
        models=(a, b),
        queries=int(queries),
        gallery=int(gallery),
        negatives_per_query=geo[a].num_neg // queries,
        compared=compared,
        overlap=pair("overlap_distance"),
        pos_angle_mean=pair("pos_angle_mean"),
        neg_angle_mean=pair("neg_angle_mean"),
        norms={n: (float(v.mean()), float(v.std(ddof=1))) for n, v in values.items()},
        paired=paired_comparison(geo[a], geo[b], min_positives=min_positives),
    )
