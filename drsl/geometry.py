"""Embedding geometry: positive and negative distances and angles, how much they overlap, and
rank-in-rank consistency, under the Market-1501 protocol.

Pure computations behind :mod:`drsl.plotting.geometry` (and callable from tests and
notebooks). Every distance and angle comes from :mod:`drsl.distances`; every pair's role from
:mod:`drsl.metrics.protocol`, the one implementation of the protocol, which
:func:`drsl.metrics.evaluate_rank` uses too. Results are NumPy arrays on the CPU, ready to plot.
Re-exported here: the per-query rankings (:func:`rank_queries`, :func:`select_queries`, from
:mod:`drsl.metrics.queries`) and the cached t-SNE with its choice of identities
(:func:`tsne`, :func:`select_identities`, from :mod:`drsl.tsne`).

Pairs follow the protocol: for a query, gallery items of the same identity **and** the same
camera are left out, and so are junk items (pid ``-1``); distractors (pid ``0``) stay, as
negatives. A gallery item of the query's identity (another camera) is a **positive**, any
other kept item a **negative**.

Reference: spec ``drsl-loss.md``, "Words" (distance ``||f_a - f_j||``, angle between
embeddings) and "The loss for one anchor" (rank: positives before negatives; in rank: the
positives in the order of their angles); the paper's abstract (inter-class distance
distribution, intra-class angle structure).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import ConstantInputWarning, rankdata, spearmanr

from drsl.distances import pairwise_angle, pairwise_euclidean
from drsl.metrics.protocol import as_ids, as_matrix, pair_masks
from drsl.metrics.queries import (
    QUERY_ORDERS,
    QueryRanking,
    QuerySelection,
    rank_queries,
    select_queries,
)
from drsl.tsne import clear_tsne_cache, select_identities, tsne

__all__ = [
    "PairGeometry",
    "pair_geometry",
    "batch_geometry",
    "protocol_masks",
    "separation_auc",
    "overlap_fraction",
    "spearman_per_query",
    "overlap_stats",
    "per_query_auc",
    "paired_comparison",
    "select_identities",
    "QueryRanking",
    "QuerySelection",
    "rank_queries",
    "select_queries",
    "tsne",
    "clear_tsne_cache",
    "QUERY_ORDERS",
]


# --------------------------------------------------------------------------------------------
# input handling


def _as_features(x, name: str) -> torch.Tensor:
    """A 2-D floating tensor (NumPy arrays become tensors; integer input becomes float32)."""
    t = torch.as_tensor(x)
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D (n x D), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    return t.detach()


def _ids(x, n: int | None, name: str) -> np.ndarray:
    """A 1-D int64 NumPy array of length ``n`` (:func:`drsl.metrics.protocol.as_ids`)."""
    return as_ids(x, name, n, device="cpu").numpy()


#: Positive and negative pairs under the protocol: :func:`drsl.metrics.protocol.pair_masks`.
protocol_masks = pair_masks


# --------------------------------------------------------------------------------------------
# distances and angles of all pairs


@dataclass(frozen=True)
class PairGeometry:
    """Distances and angles of every (query, gallery) pair, with positive/negative masks.

    Attributes:
        dist (np.ndarray): ``nq x ng`` Euclidean distances
            (:func:`drsl.distances.pairwise_euclidean`).
        angle (np.ndarray): ``nq x ng`` angles in degrees
            (:func:`drsl.distances.pairwise_angle`).
        pos_mask (np.ndarray): ``nq x ng`` bool, positive pairs under the protocol.
        neg_mask (np.ndarray): ``nq x ng`` bool, negative pairs under the protocol.
        q_pids (np.ndarray): ``nq`` query identities.
        g_pids (np.ndarray): ``ng`` gallery identities.

    The 1-D views ``pos_dist``, ``neg_dist``, ``pos_angle``, ``neg_angle`` list the pairs in
    row-major order (query by query).
    """

    dist: np.ndarray
    angle: np.ndarray
    pos_mask: np.ndarray
    neg_mask: np.ndarray
    q_pids: np.ndarray
    g_pids: np.ndarray

    @property
    def pos_dist(self) -> np.ndarray:
        """Distances of the positive pairs (1-D)."""
        return self.dist[self.pos_mask]

    @property
    def neg_dist(self) -> np.ndarray:
        """Distances of the negative pairs (1-D)."""
        return self.dist[self.neg_mask]

    @property
    def pos_angle(self) -> np.ndarray:
        """Angles (degrees) of the positive pairs (1-D)."""
        return self.angle[self.pos_mask]

    @property
    def neg_angle(self) -> np.ndarray:
        """Angles (degrees) of the negative pairs (1-D)."""
        return self.angle[self.neg_mask]

    @property
    def num_pos(self) -> int:
        """Number of positive pairs."""
        return int(self.pos_mask.sum())

    @property
    def num_neg(self) -> int:
        """Number of negative pairs."""
        return int(self.neg_mask.sum())

    def values(self, kind: str) -> np.ndarray:
        """The ``nq x ng`` matrix of ``kind`` (``"distance"`` or ``"angle"``)."""
        if kind == "distance":
            return self.dist
        if kind == "angle":
            return self.angle
        raise ValueError(f"kind must be 'distance' or 'angle', got {kind!r}")

    def stats(self, *, min_positives: int = 3) -> dict:
        """:func:`overlap_stats` of this geometry."""
        return overlap_stats(self, min_positives=min_positives)


def pair_geometry(
    q_feats,
    g_feats,
    q_pids,
    g_pids,
    q_camids=None,
    g_camids=None,
    *,
    q_angle_feats=None,
    g_angle_feats=None,
) -> PairGeometry:
    """Distances and angles between queries and gallery, split into positives and negatives.

    Args:
        q_feats (Tensor or np.ndarray, nq x D): query embeddings (any device).
        g_feats (Tensor or np.ndarray, ng x D): gallery embeddings (same device and dtype).
        q_pids, g_pids (array-like, nq / ng): identities (gallery ``-1`` = junk, left out).
        q_camids, g_camids (array-like, optional): cameras; when given, same identity and
            same camera pairs are left out (Market protocol).
        q_angle_feats, g_angle_feats (optional, nq x D' / ng x D'): embeddings for the angles
            (spec: the angle embeddings ``g``); default the same as the distance embeddings.

    Returns:
        PairGeometry: distances, angles (degrees) and masks, as CPU NumPy arrays.

    Reference: spec "Words" (``s_j = -||f_a - f_j||``, angle of ``g_a, g_j``); Market protocol
    as in :func:`drsl.metrics.evaluate_rank`.

    Example:
        >>> q = np.array([[1.0, 0.0]]); g = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> geo = pair_geometry(q, g, [5], [5, 7, 5], [0], [1, 1, 0])  # item 2: same id + cam
        >>> geo.pos_dist.tolist(), geo.neg_dist.round(3).tolist(), geo.neg_angle.round(1).tolist()
        ([1.0], [1.414], [90.0])
    """
    return _pair_geometry(
        q_feats, g_feats, q_pids, g_pids, q_camids, g_camids, q_angle_feats, g_angle_feats, False
    )


def batch_geometry(embeddings, labels, camids=None, *, angle_embeddings=None) -> PairGeometry:
    """:func:`pair_geometry` of a set against itself (every item an anchor, itself left out).

    Each unordered pair appears twice, once per anchor, as in the loss (spec: every item is in
    turn the anchor).

    Args:
        embeddings (Tensor or np.ndarray, B x D): the embeddings.
        labels (array-like, B): identities.
        camids (array-like, B, optional): cameras (same identity + same camera left out).
        angle_embeddings (optional, B x D'): embeddings for the angles; default ``embeddings``.

    Returns:
        PairGeometry: ``B x B`` distances, angles and masks.

    Reference: spec "Words" (anchor, positives ``P_a``, negatives ``N_a``).

    Example:
        >>> geo = batch_geometry(torch.eye(3), [0, 0, 1])
        >>> geo.num_pos, geo.num_neg
        (2, 4)
    """
    return _pair_geometry(
        embeddings, None, labels, None, camids, None, angle_embeddings, None, True
    )


def _pair_geometry(qf, gf, qp, gp, qc, gc, qa, ga, exclude_self) -> PairGeometry:
    q = _as_features(qf, "q_feats")
    g = q if gf is None else _as_features(gf, "g_feats")
    q_pids = _ids(qp, q.shape[0], "q_pids" if gf is not None else "labels")
    g_pids = q_pids if gp is None else _ids(gp, g.shape[0], "g_pids")
    if exclude_self:
        gc = qc
    with torch.no_grad():
        dist = pairwise_euclidean(q, None if gf is None else g)
        qa_t = q if qa is None else _as_features(qa, "q_angle_feats")
        if gf is None:
            ga_t = None
        else:
            ga_t = g if ga is None else _as_features(ga, "g_angle_feats")
        if qa_t.shape[0] != q.shape[0] or (ga_t is not None and ga_t.shape[0] != g.shape[0]):
            raise ValueError("angle embeddings must have one row per query / gallery item")
        angle = pairwise_angle(qa_t, ga_t, degrees=True)
    pos, neg = protocol_masks(q_pids, g_pids, qc, gc, exclude_self=exclude_self)
    return PairGeometry(
        dist=dist.cpu().numpy(),
        angle=angle.cpu().numpy(),
        pos_mask=pos,
        neg_mask=neg,
        q_pids=q_pids,
        g_pids=g_pids,
    )


# --------------------------------------------------------------------------------------------
# overlap statistics


def separation_auc(pos, neg) -> float:
    """ROC-AUC of telling negatives from positives by the value (distance or angle).

    The probability that a random negative pair has a larger value than a random positive
    pair, ties counting one half (the Mann-Whitney U statistic over ``n_pos * n_neg``).
    ``1`` means the two distributions do not overlap, ``0.5`` that they are indistinguishable.
    Exact, in ``O((n_pos + n_neg) log n_neg)`` (sort + binary search, no pair loop).

    Args:
        pos (array-like, n_pos): values of the positive pairs.
        neg (array-like, n_neg): values of the negative pairs.

    Returns:
        float: the AUC in ``[0, 1]``; NaN when either set is empty.

    Reference: Mann & Whitney (1947); Hanley & McNeil (1982), AUC = U / (n_pos n_neg).

    Example:
        >>> separation_auc([1.0, 2.0], [3.0, 4.0]), separation_auc([1.0, 3.0], [2.0, 3.0])
        (1.0, 0.625)
    """
    # by hand, not sklearn.metrics.roc_auc_score (which the tests match): that one labels and
    # sorts all n_pos + n_neg values, 3x slower here (20k positives, 5M negatives: 3.5 s / 1.1 s)
    p = np.asarray(pos, dtype=np.float64).ravel()
    n = np.sort(np.asarray(neg, dtype=np.float64).ravel())
    if p.size == 0 or n.size == 0:
        return float("nan")
    below = np.searchsorted(n, p, side="left")  # negatives < p
    not_above = np.searchsorted(n, p, side="right")  # negatives <= p
    greater = n.size - not_above
    ties = not_above - below
    return float((greater.sum() + 0.5 * ties.sum()) / (p.size * n.size))


def overlap_fraction(values, pos_mask, neg_mask) -> float:
    """Fraction of anchors whose nearest negative is closer than their farthest positive.

    Over the anchors (rows) with at least one positive and one negative: the share with
    ``min(values[negatives]) < max(values[positives])``, i.e. whose positives and negatives
    overlap along this value. ``0`` means every anchor's positives all come first.

    Args:
        values (array-like, nq x ng): distances (or angles) of every pair.
        pos_mask (array-like, nq x ng): bool, positive pairs.
        neg_mask (array-like, nq x ng): bool, negative pairs.

    Returns:
        float: the fraction in ``[0, 1]``; NaN when no anchor has both.

    Reference: spec "The loss for one anchor" (rank: every positive ahead of every negative).

    Example:
        >>> v = np.array([[1.0, 2.0, 3.0], [1.0, 3.0, 2.0]])
        >>> overlap_fraction(v, [[1, 1, 0], [1, 1, 0]], [[0, 0, 1], [0, 0, 1]])
        0.5
    """
    v = as_matrix(values, "values").astype(np.float64, copy=False)
    pos = np.asarray(pos_mask, dtype=bool)
    neg = np.asarray(neg_mask, dtype=bool)
    if pos.shape != v.shape or neg.shape != v.shape:
        raise ValueError(
            f"masks must have the shape of values {v.shape}, got {pos.shape}, {neg.shape}"
        )
    rows = pos.any(axis=1) & neg.any(axis=1)
    if not rows.any():
        return float("nan")
    far_pos = np.where(pos[rows], v[rows], -np.inf).max(axis=1)
    near_neg = np.where(neg[rows], v[rows], np.inf).min(axis=1)
    return float(np.mean(near_neg < far_pos))


def spearman_per_query(dist, angle, pos_mask, *, min_positives: int = 3):
    """Per query, Spearman's rank correlation between its positives' distances and angles.

    For each query with at least ``min_positives`` positives: rank the positives by distance
    and by angle (average ranks for ties) and take the Pearson correlation of the two rank
    vectors (``scipy.stats.spearmanr``). ``1``: the positives' distance order is their angle
    order (the "rank in rank" DRSL asks for); ``0``: unrelated. Queries whose ranks are
    constant (all tied) are dropped.

    Args:
        dist (array-like, nq x ng): distances of every pair.
        angle (array-like, nq x ng): angles of every pair.
        pos_mask (array-like, nq x ng): bool, positive pairs.
        min_positives (int): fewest positives a query needs (>= 2). Default 3: with two
            positives the correlation can only be -1 or 1.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(rho, query_index)``, one entry per kept query.

    Reference: Spearman (1904); spec "The loss for one anchor" (sorting error: positives in
    the order of their angle targets ``t = (1 + cos) / 2``, a decreasing function of the angle).

    Example:
        >>> d = np.array([[1.0, 2.0, 3.0, 9.0]]); a = np.array([[10.0, 30.0, 20.0, 5.0]])
        >>> rho, idx = spearman_per_query(d, a, [[1, 1, 1, 0]])
        >>> rho.round(3).tolist(), idx.tolist()
        ([0.5], [0])
    """
    if min_positives < 2:
        raise ValueError(f"min_positives must be >= 2, got {min_positives}")
    d = as_matrix(dist, "dist").astype(np.float64, copy=False)
    a = as_matrix(angle, "angle").astype(np.float64, copy=False)
    pos = np.asarray(pos_mask, dtype=bool)
    if d.shape != a.shape or pos.shape != d.shape:
        raise ValueError(
            f"dist, angle and pos_mask differ in shape: {d.shape}, {a.shape}, {pos.shape}"
        )
    rows = np.flatnonzero(pos.sum(axis=1) >= min_positives)
    rho = np.full(rows.size, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)  # all tied: NaN, dropped below
        # one scipy call per query: faster than ranking the whole padded matrix at once
        # (measured here, 750 x 10000 pairs: 0.7 s against 1.8 s)
        for i, q in enumerate(rows):
            rho[i] = spearmanr(d[q, pos[q]], a[q, pos[q]]).statistic
    ok = np.isfinite(rho)
    return np.clip(rho[ok], -1.0, 1.0), rows[ok]


def overlap_stats(geom: PairGeometry, *, min_positives: int = 3) -> dict:
    """All overlap statistics of a :class:`PairGeometry` in one dictionary.

    Args:
        geom (PairGeometry): the pairs.
        min_positives (int): passed to :func:`spearman_per_query`. Default 3.

    Returns:
        dict: ``num_pos``, ``num_neg`` (pairs); ``auc_distance``, ``auc_angle``
        (:func:`separation_auc`); ``overlap_distance``, ``overlap_angle``
        (:func:`overlap_fraction`); ``spearman_median``, ``spearman_mean``,
        ``spearman_queries`` (:func:`spearman_per_query`); ``pos_dist_mean``,
        ``neg_dist_mean``, ``pos_angle_mean``, ``neg_angle_mean``.

    Reference: see the functions above.

    Example:
        >>> geo = batch_geometry(torch.tensor([[0.0, 1.0], [0.1, 1.0], [1.0, 0.0]]), [0, 0, 1])
        >>> s = overlap_stats(geo)
        >>> s["auc_distance"], s["overlap_distance"], round(s["pos_angle_mean"], 2)
        (1.0, 0.0, 5.71)
    """
    rho, _ = spearman_per_query(geom.dist, geom.angle, geom.pos_mask, min_positives=min_positives)
    pd_, nd_, pa_, na_ = geom.pos_dist, geom.neg_dist, geom.pos_angle, geom.neg_angle

    def _mean(x):
        return float(x.mean()) if x.size else float("nan")

    return {
        "num_pos": int(pd_.size),
        "num_neg": int(nd_.size),
        "auc_distance": separation_auc(pd_, nd_),
        "auc_angle": separation_auc(pa_, na_),
        "overlap_distance": overlap_fraction(geom.dist, geom.pos_mask, geom.neg_mask),
        "overlap_angle": overlap_fraction(geom.angle, geom.pos_mask, geom.neg_mask),
        "spearman_median": float(np.median(rho)) if rho.size else float("nan"),
        "spearman_mean": _mean(rho),
        "spearman_queries": int(rho.size),
        "pos_dist_mean": _mean(pd_),
        "neg_dist_mean": _mean(nd_),
        "pos_angle_mean": _mean(pa_),
        "neg_angle_mean": _mean(na_),
    }


def per_query_auc(values, pos_mask, neg_mask):
    """Per query, the ROC-AUC of telling its negatives from its positives by the value.

    The per-row version of :func:`separation_auc` (``P(v_neg > v_pos)``, ties one half), for
    the queries with at least one positive and one negative. Vectorised over queries: the
    kept entries of a row are ranked (average ranks, the rest padded after them) and the
    Mann-Whitney U of the positives gives the AUC.

    Args:
        values (array-like, nq x ng): distances (or angles) of every pair.
        pos_mask (array-like, nq x ng): bool, positive pairs.
        neg_mask (array-like, nq x ng): bool, negative pairs.

    Returns:
        tuple[np.ndarray, np.ndarray]: ``(auc, query_index)``, one entry per kept query.

    Reference: Mann & Whitney (1947), ``U = R_pos - n_pos (n_pos + 1) / 2``.

    Example:
        >>> v = np.array([[1.0, 3.0, 2.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
        >>> auc, idx = per_query_auc(v, [[1, 1, 0, 0], [1, 0, 0, 0]], [[0, 0, 1, 1], [0, 0, 0, 0]])
        >>> auc.tolist(), idx.tolist()
        ([0.75], [0])
    """
    v = as_matrix(values, "values").astype(np.float64, copy=False)
    pos = np.asarray(pos_mask, dtype=bool)
    neg = np.asarray(neg_mask, dtype=bool)
    if pos.shape != v.shape or neg.shape != v.shape:
        raise ValueError(
            f"masks must have the shape of values {v.shape}, got {pos.shape}, {neg.shape}"
        )
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    rows = np.flatnonzero((n_pos > 0) & (n_neg > 0))
    if rows.size == 0:
        return np.empty(0), np.empty(0, dtype=np.int64)
    kept = pos[rows] | neg[rows]
    # vectorised over queries rather than one roc_auc_score per query: 2.7x faster here
    # (750 x 10000 pairs: 3.5 s against 9.2 s); unkept entries padded with +inf rank after
    # every kept one: kept ranks are 1..n_kept
    r = rankdata(np.where(kept, v[rows], np.inf), axis=1)
    n_p, n_n = n_pos[rows].astype(np.float64), n_neg[rows].astype(np.float64)
    u_pos = np.where(pos[rows], r, 0.0).sum(axis=1) - n_p * (n_p + 1) / 2  # pairs neg < pos
    return 1.0 - u_pos / (n_p * n_n), rows


def paired_comparison(geom_a: PairGeometry, geom_b: PairGeometry, *, min_positives: int = 3):
    """Compare two models query by query on the same queries and gallery.

    For each per-query statistic (AUC of distances, AUC of angles, Spearman rho of distance
    vs angle order), over the queries where both models have a value: the mean of each
    model, the mean difference ``a - b``, its standard error (``std / sqrt(n)`` of the
    per-query differences) and the shares of queries where ``a``, or ``b``, is higher (ties
    in neither). A difference
    smaller than about two standard errors is within the noise of this query set.

    Args:
        geom_a, geom_b (PairGeometry): the two models' pairs (same queries, gallery and masks).
        min_positives (int): passed to :func:`spearman_per_query`. Default 3.

    Returns:
        dict[str, dict[str, float]]: for ``"auc_distance"``, ``"auc_angle"`` and
        ``"spearman"``: ``mean_a``, ``mean_b``, ``diff``, ``se``, ``a_higher``, ``b_higher``,
        ``queries``.

    Reference: paired comparison over queries (a paired t statistic is ``diff / se``).

    Example:
        >>> geo = batch_geometry(torch.tensor([[0.0, 1.0], [0.1, 1.0], [1.0, 0.0]]), [0, 0, 1])
        >>> paired_comparison(geo, geo)["auc_distance"]["diff"]
        0.0
    """
    if not (
        np.array_equal(geom_a.pos_mask, geom_b.pos_mask)
        and np.array_equal(geom_a.neg_mask, geom_b.neg_mask)
    ):
        raise ValueError("the two geometries must share queries, gallery and protocol masks")
    out = {}
    for key in ("auc_distance", "auc_angle", "spearman"):
        if key == "spearman":
            a, ia = spearman_per_query(geom_a.dist, geom_a.angle, geom_a.pos_mask,
                                       min_positives=min_positives)  # fmt: skip
            b, ib = spearman_per_query(geom_b.dist, geom_b.angle, geom_b.pos_mask,
                                       min_positives=min_positives)  # fmt: skip
        else:
            kind = key.split("_")[1]
            a, ia = per_query_auc(geom_a.values(kind), geom_a.pos_mask, geom_a.neg_mask)
            b, ib = per_query_auc(geom_b.values(kind), geom_b.pos_mask, geom_b.neg_mask)
        common, ka, kb = np.intersect1d(ia, ib, return_indices=True)
        a, b = a[ka], b[kb]
        d = a - b
        n = common.size
        out[key] = {
            "mean_a": float(a.mean()) if n else float("nan"),
            "mean_b": float(b.mean()) if n else float("nan"),
            "diff": float(d.mean()) if n else float("nan"),
            "se": float(d.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
            "a_higher": float(np.mean(d > 0)) if n else float("nan"),
            "b_higher": float(np.mean(d < 0)) if n else float("nan"),
            "queries": int(n),
        }
    return out
