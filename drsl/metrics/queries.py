"""Per-query ranked lists for display, and the choice of queries to show, under the protocol.

Behind :func:`drsl.plotting.plot_ranking` (re-exported by :mod:`drsl.geometry`). The roles come
from :mod:`drsl.metrics.protocol` and every AP from :mod:`drsl.metrics.rank`, so a displayed
list agrees with the reported mAP.

Reference: Zheng et al., ICCV 2015 (the Market-1501 protocol).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from drsl.metrics.protocol import DISTRACTOR, MATCH, NEGATIVE, as_ids, as_matrix, role_codes
from drsl.metrics.rank import average_precision, evaluate_rank

__all__ = ["QUERY_ORDERS", "QueryRanking", "QuerySelection", "rank_queries", "select_queries"]

#: Query orders understood by :func:`select_queries`.
QUERY_ORDERS = ("random", "best", "worst")


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
    dm = as_matrix(distmat, "distmat")
    nq, ng = dm.shape
    idx = np.asarray([int(i) for i in query_indices], dtype=np.int64)
    bad = idx[(idx < 0) | (idx >= nq)]
    if bad.size:
        raise ValueError(f"query index {int(bad[0])} out of range [0, {nq})")
    pick = torch.from_numpy(idx)
    qp = as_ids(q_pids, "q_pids", nq, device="cpu")[pick]
    qc = as_ids(q_camids, "q_camids", nq, device="cpu")[pick]
    codes = role_codes(qp, as_ids(g_pids, "g_pids", ng), qc, as_ids(g_camids, "g_camids", ng))
    out = []
    for q, code in zip(idx.tolist(), codes, strict=True):  # a handful of queries to show
        order = np.argsort(dm[q], kind="stable")
        gallery = order[np.isin(code[order], (MATCH, NEGATIVE, DISTRACTOR))]
        matches = code[gallery] == MATCH
        ap = average_precision(matches, mode=ap_mode) if matches.any() else float("nan")
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

    The valid queries (at least one true match under the protocol) and their AP come from
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
    dm = as_matrix(distmat, "distmat")
    res = evaluate_rank(
        dm,
        q_pids,
        g_pids,
        q_camids,
        g_camids,
        max_rank=max(1, min(50, dm.shape[1])),
        ap_mode=ap_mode,
    )
    valid, ap = res.valid_queries, np.asarray(res.all_AP, dtype=np.float64)
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
