"""Embedding geometry: positive and negative distances and angles, how much they overlap,
rank-in-rank consistency, per-query rankings under the Market protocol, and a cached t-SNE.

Pure computations behind :mod:`drsl.plotting.geometry` (and callable from tests and
notebooks). Every distance and angle comes from :mod:`drsl.distances`; every AP from
:mod:`drsl.metrics`. Results are NumPy arrays on the CPU, ready to plot.

Pairs follow the Market-1501 protocol used by :func:`drsl.metrics.evaluate_rank`: for a query,
gallery items of the same identity **and** the same camera are left out, and so are junk items
(pid ``-1``); distractors (pid ``0``) stay, as negatives. A gallery item of the query's identity
(another camera) is a **positive**, any other kept item a **negative**.

Reference: spec ``drsl-loss.md``, "Words" (distance ``||f_a - f_j||``, angle between
embeddings) and "The loss for one anchor" (rank: positives before negatives; in rank: the
positives in the order of their angles); the paper's abstract (inter-class distance
distribution, intra-class angle structure).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata
from threadpoolctl import threadpool_limits

from drsl import metrics
from drsl.distances import pairwise_angle, pairwise_euclidean

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

#: Query orders understood by :func:`select_queries`.
QUERY_ORDERS = ("random", "best", "worst")


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


def _as_ids(x, n: int, name: str) -> np.ndarray:
    """A 1-D int64 NumPy array of length ``n`` (from NumPy, torch or a list)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"{name} must be 1-D of length {n}, got shape {a.shape}")
    if a.dtype.kind not in "iu":
        if a.dtype.kind == "f" and np.all(np.equal(np.mod(a, 1), 0)):
            a = a.astype(np.int64)
        else:
            raise ValueError(f"{name} must hold integers, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _as_matrix(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (nq x ng), got shape {a.shape}")
    return a


def protocol_masks(
    q_pids,
    g_pids,
    q_camids=None,
    g_camids=None,
    *,
    exclude_self: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative (query, gallery) pairs under the Market-1501 protocol.

    A pair is kept unless the gallery item is junk (pid ``-1``), or has the query's identity
    and camera (only when camera ids are given), or is the query itself (``exclude_self``,
    for a set ranked against itself). Queries with pid ``-1`` keep no pair.

    Args:
        q_pids (array-like, nq): query identities.
        g_pids (array-like, ng): gallery identities.
        q_camids (array-like, nq, optional): query cameras; ``None`` keeps same-camera pairs.
        g_camids (array-like, ng, optional): gallery cameras (given with ``q_camids``).
        exclude_self (bool): drop the diagonal (requires ``nq == ng``). Default False.

    Returns:
        tuple[np.ndarray, np.ndarray]: boolean ``nq x ng`` masks ``(positive, negative)``.

    Reference: Market-1501 evaluation protocol (Zheng et al., ICCV 2015), as in
    :func:`drsl.metrics.evaluate_rank`.

    Example:
        >>> pos, neg = protocol_masks([1, 2], [1, 1, 2, -1], [0, 0], [0, 1, 1, 1])
        >>> pos.astype(int)
        array([[0, 1, 0, 0],
               [0, 0, 1, 0]])
        >>> neg.astype(int)
        array([[0, 0, 1, 0],
               [1, 1, 0, 0]])
    """
    qp = _as_ids(q_pids, len(q_pids), "q_pids")
    gp = _as_ids(g_pids, len(g_pids), "g_pids")
    same = qp[:, None] == gp[None, :]
    keep = (gp != -1)[None, :] & (qp != -1)[:, None]
    if (q_camids is None) != (g_camids is None):
        raise ValueError("give both q_camids and g_camids, or neither")
    if q_camids is not None:
        qc = _as_ids(q_camids, qp.shape[0], "q_camids")
        gc = _as_ids(g_camids, gp.shape[0], "g_camids")
        keep &= ~(same & (qc[:, None] == gc[None, :]))
    if exclude_self:
        if qp.shape[0] != gp.shape[0]:
            raise ValueError(
                f"exclude_self needs as many queries as gallery items, got {qp.shape[0]} "
                f"and {gp.shape[0]}"
            )
        keep &= ~np.eye(qp.shape[0], dtype=bool)
    return keep & same, keep & ~same


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
    q_pids = _as_ids(qp, q.shape[0], "q_pids")
    g_pids = q_pids if gp is None else _as_ids(gp, g.shape[0], "g_pids")
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
    v = _as_matrix(values, "values").astype(np.float64, copy=False)
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
    vectors. ``1``: the positives' distance order is their angle order (the "rank in rank"
    DRSL asks for); ``0``: unrelated. Queries whose ranks are constant (all tied) are dropped.
    Vectorised over queries (padded rows, no loop).

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
    d = _as_matrix(dist, "dist").astype(np.float64, copy=False)
    a = _as_matrix(angle, "angle").astype(np.float64, copy=False)
    pos = np.asarray(pos_mask, dtype=bool)
    if d.shape != a.shape or pos.shape != d.shape:
        raise ValueError(
            f"dist, angle and pos_mask differ in shape: {d.shape}, {a.shape}, {pos.shape}"
        )
    n = pos.sum(axis=1)
    rows = np.flatnonzero(n >= min_positives)
    if rows.size == 0:
        return np.empty(0), np.empty(0, dtype=np.int64)
    m = pos[rows]
    # non-positives padded with +inf: they rank after every positive, so the positives of a
    # row get the ranks 1..n_i (averaged over ties) whatever the padding
    rd = rankdata(np.where(m, d[rows], np.inf), axis=1)
    ra = rankdata(np.where(m, a[rows], np.inf), axis=1)
    centre = ((n[rows] + 1) / 2.0)[:, None]  # mean of the ranks 1..n_i, ties included
    xd = np.where(m, rd - centre, 0.0)
    xa = np.where(m, ra - centre, 0.0)
    cov = (xd * xa).sum(axis=1)
    var = (xd * xd).sum(axis=1) * (xa * xa).sum(axis=1)
    ok = var > 0
    rho = np.clip(cov[ok] / np.sqrt(var[ok]), -1.0, 1.0)
    return rho, rows[ok]


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
    v = _as_matrix(values, "values").astype(np.float64, copy=False)
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
    # unkept entries padded with +inf rank after every kept one: kept ranks are 1..n_kept
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


# --------------------------------------------------------------------------------------------
# identities and queries to show


def select_identities(
    pids, *, num_ids: int = 8, ids: Sequence[int] | None = None, seed: int = 0
) -> np.ndarray:
    """Identities to show: the given ``ids``, else ``num_ids`` drawn at random (seeded).

    Junk (``-1``) and distractors (``0``) are never drawn.

    Args:
        pids (array-like, n): identities of the items.
        num_ids (int): how many to draw when ``ids`` is None (capped at the number present).
        ids (sequence of int, optional): explicit identities (each must occur in ``pids``).
        seed (int): random seed. Default 0.

    Returns:
        np.ndarray: the chosen identities, sorted.

    Reference: none (a display choice).

    Example:
        >>> select_identities([3, 3, 5, 0, -1, 7], ids=[7, 3]).tolist()
        [3, 7]
        >>> len(select_identities([3, 3, 5, 0, -1, 7], num_ids=10))
        3
    """
    p = _as_ids(pids, len(pids), "pids")
    present = np.unique(p)
    if ids is not None:
        chosen = np.unique(np.asarray(list(ids), dtype=np.int64))
        missing = np.setdiff1d(chosen, present)
        if missing.size:
            raise ValueError(f"ids not present in pids: {missing.tolist()}")
        return chosen
    if num_ids < 1:
        raise ValueError(f"num_ids must be >= 1, got {num_ids}")
    pool = present[present > 0]
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, size=min(num_ids, pool.size), replace=False))


@dataclass(frozen=True)
class QueryRanking:
    """One query's ranked gallery under the protocol.

    Attributes:
        query (int): the query's index.
        gallery (np.ndarray): gallery indices in rank order, excluded items (junk, same
            identity and camera) left out.
        matches (np.ndarray): bool, same length: the item has the query's identity.
        ap (float): average precision of ``matches`` (:func:`drsl.metrics.average_precision`).
    """

    query: int
    gallery: np.ndarray
    matches: np.ndarray
    ap: float

    @property
    def match_ranks(self) -> np.ndarray:
        """1-based ranks of all true matches."""
        return np.flatnonzero(self.matches) + 1


@dataclass(frozen=True)
class QuerySelection:
    """Queries chosen for display, and the AP of every valid query.

    Attributes:
        indices (np.ndarray): the chosen query indices, in display order.
        order (str): ``"random"``, ``"best"``, ``"worst"`` or ``"given"``.
        valid (np.ndarray): indices of the valid queries (at least one match).
        ap (np.ndarray): AP of each valid query (from :func:`drsl.metrics.evaluate_rank`).
        mAP (float): mean of ``ap``.
    """

    indices: np.ndarray
    order: str
    valid: np.ndarray
    ap: np.ndarray
    mAP: float


def rank_queries(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    query_indices: Sequence[int],
    *,
    ap_mode: str = "noninterp",
) -> list[QueryRanking]:
    """Ranked gallery lists of a few queries (for display), Market protocol applied.

    Args:
        distmat (array-like, nq x ng): query-gallery distances.
        q_pids, g_pids (array-like): identities (gallery ``-1`` = junk, left out).
        q_camids, g_camids (array-like): cameras (same identity and camera left out).
        query_indices (sequence of int): the queries to rank.
        ap_mode (str): passed to :func:`drsl.metrics.average_precision`.

    Returns:
        list[QueryRanking]: one per query, in the given order.

    Reference: Market-1501 protocol, as in :func:`drsl.metrics.evaluate_rank` (stable sort of
    the distances, ascending).

    Example:
        >>> d = np.array([[0.5, 0.1, 0.3, 0.2]])
        >>> r = rank_queries(d, [1], [1, 1, 2, -1], [0], [1, 0, 0, 0], [0])[0]
        >>> r.gallery.tolist(), r.matches.tolist(), r.match_ranks.tolist()
        ([2, 0], [False, True], [2])
    """
    dm = _as_matrix(distmat, "distmat")
    pos, neg = protocol_masks(q_pids, g_pids, q_camids, g_camids)
    if pos.shape != dm.shape:
        raise ValueError(f"distmat has shape {dm.shape}, pids/camids give {pos.shape}")
    out = []
    for q in query_indices:  # a handful of displayed queries, not a hot path
        q = int(q)
        if not 0 <= q < dm.shape[0]:
            raise ValueError(f"query index {q} out of range [0, {dm.shape[0]})")
        order = np.argsort(dm[q], kind="stable")
        keep = (pos[q] | neg[q])[order]
        gallery = order[keep]
        matches = pos[q][gallery]
        ap = metrics.average_precision(matches, mode=ap_mode) if matches.any() else float("nan")
        out.append(QueryRanking(query=q, gallery=gallery, matches=matches, ap=float(ap)))
    return out


def select_queries(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    *,
    order: str = "random",
    num: int = 4,
    query_indices: Sequence[int] | None = None,
    seed: int = 0,
    ap_mode: str = "noninterp",
) -> QuerySelection:
    """Choose queries to display: at random, best AP first, or worst AP first.

    The AP of every valid query (at least one true match under the protocol) comes from
    :func:`drsl.metrics.evaluate_rank`, so the order agrees with the reported mAP.

    Args:
        distmat (array-like, nq x ng): query-gallery distances.
        q_pids, g_pids, q_camids, g_camids (array-like): identities and cameras.
        order (str): one of :data:`QUERY_ORDERS` (``"random"``, ``"best"``, ``"worst"``).
        num (int): how many queries (capped at the number of valid queries).
        query_indices (sequence of int, optional): explicit queries (``order`` becomes ``"given"``).
        seed (int): seed for ``"random"``.
        ap_mode (str): passed to :func:`drsl.metrics.evaluate_rank`.

    Returns:
        QuerySelection: the chosen indices and the AP of all valid queries.

    Reference: Market-1501 protocol; AP as in :mod:`drsl.metrics`.

    Example:
        >>> d = np.array([[0.1, 0.9, 0.5], [0.2, 0.9, 0.5]])  # query 1's match comes last
        >>> sel = select_queries(d, [1, 2], [1, 2, 3], [0, 0], [1, 1, 1], order="worst", num=1)
        >>> sel.indices.tolist(), sel.valid.tolist(), sel.ap.round(3).tolist()
        ([1], [0, 1], [1.0, 0.333])
    """
    if order not in QUERY_ORDERS:
        raise ValueError(f"order must be one of {QUERY_ORDERS}, got {order!r}")
    if num < 1:
        raise ValueError(f"num must be >= 1, got {num}")
    dm = _as_matrix(distmat, "distmat")
    pos, _ = protocol_masks(q_pids, g_pids, q_camids, g_camids)
    if pos.shape != dm.shape:
        raise ValueError(f"distmat has shape {dm.shape}, pids/camids give {pos.shape}")
    valid = np.flatnonzero(pos.any(axis=1))
    if valid.size == 0:
        raise ValueError("no valid query: no query has a true match in the gallery")
    res = metrics.evaluate_rank(
        dm,
        _as_ids(q_pids, dm.shape[0], "q_pids"),
        _as_ids(g_pids, dm.shape[1], "g_pids"),
        _as_ids(q_camids, dm.shape[0], "q_camids"),
        _as_ids(g_camids, dm.shape[1], "g_camids"),
        max_rank=min(50, dm.shape[1]),
        ap_mode=ap_mode,
    )
    ap = np.asarray(res.all_AP, dtype=np.float64)
    if not np.array_equal(np.asarray(res.valid_queries), valid):
        raise RuntimeError(
            f"drsl.metrics.evaluate_rank finds {res.num_valid_q} valid queries, the protocol "
            f"masks {valid.size}: the two disagree on the protocol"
        )
    if query_indices is not None:
        chosen = np.asarray(list(query_indices), dtype=np.int64)
        order = "given"
    elif order == "random":
        rng = np.random.default_rng(seed)
        chosen = rng.choice(valid, size=min(num, valid.size), replace=False)
    else:
        # stable sort: ties keep query order; "best" = highest AP first
        idx = np.argsort(-ap if order == "best" else ap, kind="stable")[:num]
        chosen = valid[idx]
    return QuerySelection(indices=chosen, order=order, valid=valid, ap=ap, mAP=float(ap.mean()))


# --------------------------------------------------------------------------------------------
# t-SNE with a cache

_TSNE_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()
_TSNE_CACHE_SIZE = 32


def clear_tsne_cache() -> None:
    """Empty the in-memory t-SNE cache.

    Example:
        >>> clear_tsne_cache()
    """
    _TSNE_CACHE.clear()


def _tsne_key(x: np.ndarray, params: dict) -> str:
    import sklearn

    h = hashlib.sha256()
    h.update(str(x.shape).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(json.dumps({**params, "sklearn": sklearn.__version__}, sort_keys=True).encode())
    return h.hexdigest()[:32]


def tsne(
    features,
    *,
    perplexity: float = 30.0,
    pca_dim: int | None = 50,
    seed: int = 0,
    max_iter: int = 1000,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    num_threads: int | None = 1,
) -> np.ndarray:
    """2-D t-SNE of the rows of ``features``, after a PCA down to ``pca_dim`` dimensions.

    Results are cached under a hash of the features (as float32) and of every parameter:
    in memory (the last 32 results) and, when ``cache_dir`` is given, as ``tsne-<hash>.npy``
    files in that folder (created if missing); nothing is written otherwise. The perplexity
    is capped at ``(n - 1) / 3`` so that small sets work; the capped value is the one hashed.

    Args:
        features (Tensor or np.ndarray, n x D): the embeddings (n >= 4).
        perplexity (float): t-SNE perplexity (> 0). Default 30.
        pca_dim (int, optional): PCA dimensions before t-SNE; ``None`` skips the PCA, as
            does ``pca_dim >= min(n, D)``. Default 50.
        seed (int): random state of PCA and t-SNE. Default 0.
        max_iter (int): t-SNE iterations (>= 250). Default 1000.
        cache_dir (str or Path, optional): folder of the on-disk cache.
        use_cache (bool): read and write the caches. Default True.
        num_threads (int, optional): OpenMP threads of the Barnes-Hut gradient; ``None``
            leaves scikit-learn's default (all cores). Default 1: on a shared or small machine
            the threads' contention made t-SNE 6 to 35 times slower here (e.g. 1000 points:
            7 s with one thread, 43 s with all), and one thread is fast enough for the few
            hundred points of a plot.

    Returns:
        np.ndarray: ``n x 2`` float32 coordinates (a copy: editing it leaves the cache alone).

    Reference: van der Maaten & Hinton, "Visualizing Data using t-SNE", JMLR 2008;
    ``sklearn.manifold.TSNE``.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (n x D), got shape {x.shape}")
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {n}")
    if perplexity <= 0:
        raise ValueError(f"perplexity must be > 0, got {perplexity}")
    if max_iter < 250:
        raise ValueError(f"max_iter must be >= 250, got {max_iter}")
    perplexity = float(min(perplexity, (n - 1) / 3.0))
    use_pca = pca_dim is not None and pca_dim < min(x.shape)
    params = {
        "perplexity": perplexity,
        "pca_dim": int(pca_dim) if use_pca else None,
        "seed": int(seed),
        "max_iter": int(max_iter),
    }
    key = _tsne_key(x, params)
    path = Path(cache_dir) / f"tsne-{key}.npy" if cache_dir is not None else None
    if use_cache:
        if key in _TSNE_CACHE:
            _TSNE_CACHE.move_to_end(key)
            return _TSNE_CACHE[key].copy()
        if path is not None and path.is_file():
            coords = np.load(path)
            _remember(key, coords)
            return coords.copy()
    z = PCA(n_components=pca_dim, random_state=seed).fit_transform(x) if use_pca else x
    model = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        max_iter=max_iter,
        random_state=seed,
    )
    with threadpool_limits(limits=num_threads):
        coords = model.fit_transform(z).astype(np.float32)
    if use_cache:
        _remember(key, coords)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, coords)
    return coords.copy()


def _remember(key: str, coords: np.ndarray) -> None:
    _TSNE_CACHE[key] = coords
    _TSNE_CACHE.move_to_end(key)
    while len(_TSNE_CACHE) > _TSNE_CACHE_SIZE:
        _TSNE_CACHE.popitem(last=False)
