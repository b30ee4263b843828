"""The Market-1501 evaluation as a short per-query loop, to read next to the fast version.

:func:`evaluate_market` gives the same CMC, mAP (non-interpolated) and mINP as
:func:`drsl.metrics.evaluate_rank`, one query at a time, by sorting each row: clear, and slow
on a large gallery (the tests check that the two agree).

Reference: Zheng et al., ICCV 2015 (protocol); torchreid ``eval_market1501`` (the loop it
follows, with junk dropped here and a stable sort); Ye et al., TPAMI 2021 (mINP).
"""

from __future__ import annotations

import numpy as np

__all__ = ["evaluate_market", "rerank_loop"]


def evaluate_market(distmat, q_pids, g_pids, q_camids, g_camids, *, max_rank: int = 50) -> dict:
    """CMC, mAP and mINP under the Market-1501 protocol, one query at a time.

    Args:
        distmat (array-like, nq x ng): distances, smaller = more similar.
        q_pids, q_camids (array-like, nq): query identities and cameras.
        g_pids, g_camids (array-like, ng): gallery identities (-1 junk, 0 distractor), cameras.
        max_rank (int): length of the CMC curve. Default 50.

    Returns:
        dict: ``cmc`` (np.ndarray, ``max_rank``), ``mAP`` (float) and ``mINP`` (float), over the
        queries with at least one valid match.

    Example:
        >>> d = [[0.1, 0.2, 0.3, 0.4]]  # item 0: same id and camera, dropped; item 3: junk
        >>> r = evaluate_market(d, [1], [1, 2, 1, -1], [0], [0, 1, 1, 1], max_rank=3)
        >>> r["cmc"].tolist(), r["mAP"], r["mINP"]
        ([0.0, 1.0, 1.0], 0.5, 0.5)
    """
    distmat = np.asarray(distmat)
    q_pids, q_camids = np.asarray(q_pids), np.asarray(q_camids)
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    cmcs, aps, inps = [], [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")  # ties keep the gallery order
        pids, cams = g_pids[order], g_camids[order]
        same_camera = (pids == q_pids[i]) & (cams == q_camids[i])
        keep = ~same_camera & (pids != -1)  # distractors (pid 0) stay: they are negatives
        matches = pids[keep] == q_pids[i]
        if q_pids[i] == -1 or not matches.any():
            continue  # no valid match: the query is skipped
        ranks = np.flatnonzero(matches) + 1  # 1-based ranks of the matches
        hits = np.arange(1, len(ranks) + 1)  # matches found up to each of them
        aps.append(np.mean(hits / ranks))  # precision at each match, averaged
        inps.append(len(ranks) / ranks[-1])  # precision at the last match
        cmcs.append(np.arange(1, max_rank + 1) >= ranks[0])  # found by rank r?
    if not aps:
        raise ValueError("no valid query: no query has a valid match in the gallery")
    return {"cmc": np.mean(cmcs, axis=0), "mAP": float(np.mean(aps)), "mINP": float(np.mean(inps))}


def _k_reciprocal(rank: np.ndarray, i: int, k: int) -> np.ndarray:
    forward = rank[i, : k + 1]  # the k + 1 nearest, i itself included
    backward = rank[forward, : k + 1]
    return forward[np.where(backward == i)[0]]


def rerank_loop(distmat_all, num_query: int, *, k1: int = 20, k2: int = 6, lambda_value=0.3):
    """k-reciprocal re-ranking as the paper's per-item loop (the authors' ``re_ranking``).

    Args:
        distmat_all (array-like, N x N): Euclidean distances among all ``N`` images, the
            ``num_query`` queries first, then the gallery.
        num_query (int): how many of the ``N`` are queries.
        k1, k2, lambda_value: as :func:`drsl.metrics.rerank.rerank_distances`.

    Returns:
        np.ndarray: ``num_query x (N - num_query)`` re-ranked distances (float64).

    Reference: Zhong et al., CVPR 2017, and their ``re_ranking`` code (kept: squared distances
    divided by each row's maximum, a stable argsort here).
    """
    d2 = np.asarray(distmat_all, dtype=np.float64) ** 2
    dist = d2 / d2.max(axis=1, keepdims=True)
    n = len(dist)
    rank = np.argsort(dist, axis=1, kind="stable")
    V = np.zeros((n, n))
    for i in range(n):
        r1 = _k_reciprocal(rank, i, k1)
        expansion = r1
        for c in r1:  # add a neighbour's own neighbourhood when it mostly agrees with ours
            rc = _k_reciprocal(rank, c, int(np.around(k1 / 2.0)))
            if len(np.intersect1d(rc, r1)) > 2.0 / 3 * len(rc):
                expansion = np.append(expansion, rc)
        expansion = np.unique(expansion)
        weight = np.exp(-dist[i, expansion])
        V[i, expansion] = weight / np.sum(weight)
    if k2 != 1:  # local query expansion
        V = np.stack([V[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jaccard = np.zeros((num_query, n))
    for i in range(num_query):
        shared = np.minimum(V[i], V).sum(axis=1)  # sum_k min(V_ik, V_jk) for every j
        jaccard[i] = 1 - shared / (2.0 - shared)
    final = jaccard * (1 - lambda_value) + dist[:num_query] * lambda_value
    return final[:, num_query:]
