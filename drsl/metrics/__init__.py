"""Retrieval metrics for person re-ID: CMC, mAP and mINP under the Market-1501 protocol.

The one home for evaluation metrics in drsl. Everything works on a query x gallery distance
matrix (smaller = more similar) and the identities (pids) and cameras (camids) of both sides.

**Protocol** (Zheng et al., ICCV 2015; the same in torchreid and fast-reid). For each query:

1. drop gallery items with the query's identity *and* camera: the same person seen by the same
   camera is a near duplicate from the same tracklet, which says nothing about re-identifying
   a person across cameras;
2. drop junk items (pid ``-1``): bad detections that count neither way;
3. keep distractors (pid ``0`` in Market-1501) as negatives: they are hard background;
4. skip the query if no valid match is left (it contributes nothing, not a zero).

Ties in distance are broken stably: equal distances keep the gallery order, exactly as
``np.argsort(..., kind="stable")`` would order them.

**How it is fast.** A full sort of every gallery row costs more than computing the distances.
The metrics only need the ranks of the *matches*, and only gallery items ranked no later than
a query's farthest match can move them. So per block of queries: the matches are found from
the gallery grouped by pid (no scan), one comparison pass selects the items no farther than
the farthest match, and only those are sorted (by row, distance, gallery index; for float32
as one packed int64 key). The cost is one pass over the distances plus a sort of the selected
items: small for a useful model, the whole block in the worst case (random features), where it
is about a full sort. Memory is bounded by the block.

Reference: Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015 (Market
protocol and its AP code); Ye et al., "Deep Learning for Person Re-identification: A Survey and
Outlook", TPAMI 2021 (mINP); torchreid ``eval_market1501`` (non-interpolated AP, CMC).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from drsl.distances import chunked_euclidean, pairwise_cosine

__all__ = [
    "AP_MODES",
    "RankResult",
    "average_precision",
    "evaluate_rank",
    "evaluate_embeddings",
    "gallery_roles",
]

AP_MODES = ("noninterp", "market")
"""The two AP conventions: torchreid/fast-reid's non-interpolated AP, Market's trapezoid AP."""

_DEFAULT_BLOCK_ELEMENTS = 1 << 22  # query rows per block = this // gallery size (~4M entries)

ArrayLike = np.ndarray | Tensor | Sequence


@dataclass(frozen=True)
class RankResult:
    """The outcome of :func:`evaluate_rank`.

    Attributes:
        cmc (np.ndarray): ``max_rank`` floats; ``cmc[r]`` is the fraction of valid queries whose
            first match is at rank ``<= r + 1`` (so ``cmc[0]`` is rank-1 accuracy).
        mAP (float): mean average precision over valid queries, in ``[0, 1]``.
        mINP (float): mean inverse negative penalty (``#matches / rank of the last match``).
        all_AP (np.ndarray): AP of each valid query, shape ``(num_valid_q,)``.
        all_INP (np.ndarray): INP of each valid query, shape ``(num_valid_q,)``.
        num_valid_q (int): queries with at least one valid match.
        valid_queries (np.ndarray): indices (into the query list) of the valid queries.
        first_match_rank (np.ndarray): 1-based rank of the first match of each valid query.
        ap_mode (str): the AP convention used.
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    all_AP: np.ndarray
    all_INP: np.ndarray
    num_valid_q: int
    valid_queries: np.ndarray = field(repr=False)
    first_match_rank: np.ndarray = field(repr=False)
    ap_mode: str = "noninterp"

    def __repr__(self) -> str:
        r1 = float(self.cmc[0]) if len(self.cmc) else float("nan")
        return (
            f"RankResult(mAP={self.mAP:.4f}, rank1={r1:.4f}, mINP={self.mINP:.4f}, "
            f"num_valid_q={self.num_valid_q}, ap_mode={self.ap_mode!r})"
        )


# ----------------------------------------------------------------------------- input checks


def _check_mode(ap_mode: str) -> None:
    if ap_mode not in AP_MODES:
        raise ValueError(f"ap_mode must be one of {AP_MODES}, got {ap_mode!r}")


def _as_distances(distmat: ArrayLike) -> Tensor:
    d = distmat if isinstance(distmat, Tensor) else torch.as_tensor(np.asarray(distmat))
    d = d.detach()
    if d.dim() != 2:
        raise ValueError(f"distmat must be 2-D (num_query x num_gallery), got {tuple(d.shape)}")
    if d.dtype == torch.bool or d.is_complex():
        raise ValueError(f"distmat must hold real numbers, got dtype {d.dtype}")
    if d.dtype in (torch.float16, torch.bfloat16):
        d = d.float()  # exact: keeps order and ties; searchsorted wants float32/64
    elif not d.is_floating_point():
        d = d.long()
    return d


def _as_ids(values: ArrayLike, name: str, n: int, device: torch.device) -> Tensor:
    v = values if isinstance(values, Tensor) else torch.as_tensor(np.asarray(values))
    v = v.detach().reshape(-1)
    if v.is_floating_point():
        if not torch.equal(v, v.round()):
            raise ValueError(f"{name} must hold integers, got non-integral values")
    elif v.dtype == torch.bool or v.is_complex():
        raise ValueError(f"{name} must hold integers, got dtype {v.dtype}")
    if v.numel() != n:
        raise ValueError(f"{name} has {v.numel()} entries, expected {n}")
    return v.to(device=device, dtype=torch.long)


@contextmanager
def _one_cpu_thread(device: torch.device):
    """Run the ranking on one CPU thread. Its passes are memory-bound and short: a second
    thread gains little on an idle machine, and on a busy one every parallel pass waits for a
    descheduled thread (measured here: 10x slower with 2 threads under load)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _default_chunk(num_gallery: int) -> int:
    return max(1, _DEFAULT_BLOCK_ELEMENTS // max(num_gallery, 1))


# ----------------------------------------------------------------------------- the kernel


class _Gallery:
    """Gallery ids grouped by pid once per evaluation (CSR), so that each query finds its
    same-id items without scanning the whole gallery."""

    def __init__(self, gp: Tensor, gc: Tensor) -> None:
        self.gp, self.gc = gp, gc
        self.not_junk = (gp != -1).unsqueeze(0)
        self.order = torch.sort(gp, stable=True).indices  # within a pid: gallery order
        self.uniq, self.counts = torch.unique_consecutive(gp[self.order], return_counts=True)
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    def same_pid(self, qp: Tensor, qc: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(rows, cols, other_camera)`` of every gallery item with a query's pid (a junk
        query has none). ``other_camera`` marks the valid matches; the rest (same id AND
        same camera) is dropped by the Market protocol. Rows ascend; cols ascend in a row."""
        if self.uniq.numel() == 0:
            empty = torch.zeros(0, dtype=torch.long, device=qp.device)
            return empty, empty, empty.bool()
        where = torch.searchsorted(self.uniq, qp).clamp_max(self.uniq.numel() - 1)
        found = (self.uniq[where] == qp) & (qp != -1)
        n = torch.where(found, self.counts[where], 0)
        rows = torch.repeat_interleave(torch.arange(qp.numel(), device=qp.device), n)
        offset = torch.arange(rows.numel(), device=qp.device) - (torch.cumsum(n, 0) - n)[rows]
        cols = self.order[self.starts[where][rows] + offset]
        return rows, cols, self.gc[cols] != qc[rows]


def _packed_keys(vals: Tensor, rows: Tensor, cols: Tensor, col_bits: int) -> Tensor:
    """One int64 per float32 entry that orders like (row, value, col).

    IEEE-754: with the magnitude bits of negative floats flipped, the integer order of the
    bits is the float order (``+ 0.0`` first turns -0.0 into +0.0, which compare equal).
    """
    key = (vals + 0.0).view(torch.int32).long()  # sign-extended bits
    key ^= (key >> 63) & 0x7FFFFFFF  # negative floats: flip the magnitude bits
    key += 1 << 31  # now in [0, 2^32), in float order
    key <<= col_bits
    key |= cols
    key |= rows << (32 + col_bits)
    return key


def _sort_values(keys: Tensor) -> Tensor:
    if keys.device.type == "cpu":  # numpy's SIMD sort is several times faster on CPU
        return torch.from_numpy(np.sort(keys.numpy()))
    return torch.sort(keys).values


def _match_ranks(d: Tensor, qp: Tensor, qc: Tensor, gal: _Gallery) -> tuple[Tensor, Tensor]:
    """1-based ranks of the valid matches of a block of queries, in rank order.

    Only the gallery items ranked no later than a query's farthest match can change its
    metrics, so one comparison pass selects them (minus junk and same-camera items); they are
    ordered by (row, distance, gallery index), and a match's rank is its position in its row.

    Args:
        d (Tensor): ``c x ng`` distances (float or int64, no NaN).
        qp, qc (Tensor): ``c`` query pids and camids (int64).
        gal (_Gallery): the gallery pids and camids, grouped.

    Returns:
        tuple[Tensor, Tensor]: ``ranks`` (``c x m`` int64, ``m`` = most matches of any query;
        row ``i`` holds the ranks of its ``npos[i]`` matches ascending, then zeros) and
        ``npos`` (``c`` int64). Ranks count only valid gallery items (Market protocol).
    """
    c, ng = d.shape
    dev = d.device
    rows, cols, other_cam = gal.same_pid(qp, qc)
    prow, pcol = rows[other_cam], cols[other_cam]  # the valid matches
    npos = torch.bincount(prow, minlength=c)
    m = int(npos.max()) if c > 0 else 0
    if m == 0:
        return torch.zeros((c, 0), dtype=torch.long, device=dev), npos
    # the farthest match of each query (a query without one selects only -inf entries)
    low = float("-inf") if d.is_floating_point() else torch.iinfo(d.dtype).min
    far = torch.full((c,), low, dtype=d.dtype, device=dev)
    pval = d[prow, pcol]
    far.scatter_reduce_(0, prow, pval, reduce="amax")
    # candidates: valid items at most as far as the farthest match. Market protocol: junk
    # (pid -1) and same id AND same camera are dropped; distractors stay.
    sel = (d <= far.unsqueeze(1)) & gal.not_junk
    sel[rows[~other_cam], cols[~other_cam]] = False
    srows, scols = sel.nonzero(as_tuple=True)  # row-major: cols ascend within a row
    svals = d[srows, scols]
    del sel
    col_bits = max(1, (ng - 1).bit_length())
    if d.dtype == torch.float32 and max(1, (c - 1).bit_length()) + 32 + col_bits <= 63:
        # one packed key per item; a match's rank = its position in the sorted keys of its row
        keys = _sort_values(_packed_keys(svals, srows, scols, col_bits))
        mkeys = torch.sort(_packed_keys(pval, prow, pcol, col_bits)).values
        mrows = mkeys >> (32 + col_bits)  # ascending rows, ascending ranks within a row
        counts = torch.bincount(srows, minlength=c)
        row_start = torch.cumsum(counts, 0) - counts
        mranks = torch.searchsorted(keys, mkeys) - row_start[mrows] + 1
    else:
        # any dtype: stable sort by distance, then by row -> (row, distance, index) order
        perm = torch.sort(svals, stable=True).indices
        perm = perm[torch.sort(srows[perm], stable=True).indices]
        srows, scols = srows[perm], scols[perm]
        counts = torch.bincount(srows, minlength=c)
        rank = (
            torch.arange(1, srows.numel() + 1, device=dev)
            - (torch.cumsum(counts, 0) - counts)[srows]
        )
        is_match = gal.gp[scols] == qp[srows]  # after the drops: exactly the valid matches
        mrows, mranks = srows[is_match], rank[is_match]
    slot = torch.arange(mrows.numel(), device=dev) - (torch.cumsum(npos, 0) - npos)[mrows]
    ranks = torch.zeros((c, m), dtype=torch.long, device=dev)
    ranks[mrows, slot] = mranks
    return ranks, npos


def _scores(ranks: Tensor, npos: Tensor, ap_mode: str) -> tuple[Tensor, Tensor, Tensor]:
    """AP, INP and first-match rank of queries with ``npos > 0`` (float64 on the same device).

    Reference: non-interpolated AP ``(1/n) sum_k k / r_k``; Market's trapezoid AP
    ``(1/n) sum_k (p_{k-1} + p_k)/2`` with ``p_{k-1} = (k-1)/(r_k-1)`` (1 if ``r_k = 1``);
    INP ``n / r_n`` (Ye et al. 2021).
    """
    r = ranks.double()
    n = npos.double()
    m = ranks.shape[1]
    k = torch.arange(1, m + 1, dtype=torch.float64, device=ranks.device).unsqueeze(0)
    valid = ranks > 0
    precision = torch.where(valid, k / r.clamp_min(1.0), 0.0)
    if ap_mode == "noninterp":
        ap = precision.sum(1) / n
    else:
        old = torch.where(r > 1, (k - 1) / (r - 1).clamp_min(1.0), 1.0)
        ap = torch.where(valid, (old + precision) / 2, 0.0).sum(1) / n
    last = r.gather(1, (npos - 1).unsqueeze(1)).squeeze(1)
    return ap, n / last, ranks[:, 0]


# ----------------------------------------------------------------------------- public API


def average_precision(matches: ArrayLike, *, mode: str = "noninterp") -> float:
    """Average precision of ONE ranked list.

    Args:
        matches (array-like of bool, shape ``(n,)``): ``matches[i]`` is True when the item at
            rank ``i + 1`` is a match; junk items must already be removed.
        mode (str): ``"noninterp"`` (default): ``(1/N) sum_k k / r_k`` over the ``N`` matches at
            ranks ``r_1 < ... < r_N`` (torchreid, fast-reid); ``"market"``: the trapezoid rule of
            the official Market-1501 code, ``(1/N) sum_k ((k-1)/(r_k-1) + k/r_k) / 2`` with the
            first term 1 when ``r_k = 1``.

    Returns:
        float: AP in ``[0, 1]``.

    Reference: Zheng et al., ICCV 2015 (Market ``compute_AP``); torchreid ``eval_market1501``.

    Example:
        >>> round(average_precision([True, False, True]), 4)  # (1/1 + 2/3) / 2
        0.8333
        >>> average_precision([False, True], mode="market")  # ((0/1 + 1/2) / 2) / 1
        0.25
    """
    _check_mode(mode)
    mt = matches if isinstance(matches, Tensor) else torch.as_tensor(np.asarray(matches))
    if mt.dim() != 1:
        raise ValueError(f"matches must be 1-D (one ranked list), got shape {tuple(mt.shape)}")
    ranks = torch.nonzero(mt.detach().cpu().bool()).reshape(1, -1) + 1
    if ranks.numel() == 0:
        raise ValueError("matches holds no True entry: AP is undefined without a match")
    ap, _, _ = _scores(ranks, torch.tensor([ranks.numel()]), mode)
    return float(ap[0])


def gallery_roles(q_pid: int, q_camid: int, g_pids: ArrayLike, g_camids: ArrayLike) -> np.ndarray:
    """The role of each gallery item for one query under the Market protocol.

    Args:
        q_pid (int): the query's identity.
        q_camid (int): the query's camera.
        g_pids (array-like, shape ``(ng,)``): gallery identities (0 distractor, -1 junk).
        g_camids (array-like, shape ``(ng,)``): gallery cameras.

    Returns:
        np.ndarray: ``ng`` strings among ``"match"`` (same id, other camera: counts),
        ``"same_camera"`` (same id and camera: dropped), ``"junk"`` (pid -1: dropped),
        ``"distractor"`` (pid 0: a negative) and ``"negative"``.

    Reference: Zheng et al., ICCV 2015, the Market-1501 evaluation protocol.

    Example:
        >>> gallery_roles(7, 0, [7, 7, -1, 0, 3], [0, 1, 1, 2, 0]).tolist()
        ['same_camera', 'match', 'junk', 'distractor', 'negative']
    """
    gp = np.asarray(g_pids).reshape(-1)
    gc = np.asarray(g_camids).reshape(-1)
    if gp.shape != gc.shape:
        raise ValueError(f"g_pids and g_camids differ in length: {gp.size} vs {gc.size}")
    roles = np.full(gp.shape, "negative", dtype=object)
    roles[gp == 0] = "distractor"
    roles[gp == -1] = "junk"
    same = gp == q_pid
    roles[same & (gc == q_camid)] = "same_camera"
    roles[same & (gc != q_camid)] = "match"
    if q_pid == -1:
        roles[same] = "junk"
    return roles.astype(str)


class _Accumulator:
    """Collects per-block ranks into per-query scores, then the final :class:`RankResult`."""

    def __init__(self, max_rank: int, ap_mode: str) -> None:
        self.max_rank, self.ap_mode = max_rank, ap_mode
        self.ap: list[Tensor] = []
        self.inp: list[Tensor] = []
        self.first: list[Tensor] = []
        self.index: list[Tensor] = []

    def add(self, start: int, ranks: Tensor, npos: Tensor) -> None:
        keep = npos > 0  # queries without a valid match are skipped (Market protocol)
        if not bool(keep.any()):
            return
        ap, inp, first = _scores(ranks[keep], npos[keep], self.ap_mode)
        self.ap.append(ap.cpu())
        self.inp.append(inp.cpu())
        self.first.append(first.cpu())
        self.index.append(torch.nonzero(keep).reshape(-1).cpu() + start)

    def result(self) -> RankResult:
        if not self.ap:
            raise ValueError("no query has a valid match in the gallery (after the protocol)")
        ap = torch.cat(self.ap).numpy()
        inp = torch.cat(self.inp).numpy()
        first = torch.cat(self.first).numpy()
        counts = np.bincount(np.minimum(first, self.max_rank + 1), minlength=self.max_rank + 2)
        cmc = np.cumsum(counts[1 : self.max_rank + 1]) / len(first)
        return RankResult(
            cmc=cmc,
            mAP=float(ap.mean()),
            mINP=float(inp.mean()),
            all_AP=ap,
            all_INP=inp,
            num_valid_q=len(ap),
            valid_queries=torch.cat(self.index).numpy(),
            first_match_rank=first,
            ap_mode=self.ap_mode,
        )


def _check_common(max_rank: int, ap_mode: str, chunk_size: int | None) -> None:
    _check_mode(ap_mode)
    if int(max_rank) != max_rank or max_rank < 1:
        raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")
    if chunk_size is not None and (int(chunk_size) != chunk_size or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")


@torch.no_grad()
def evaluate_rank(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    *,
    ap_mode: str = "noninterp",
    chunk_size: int | None = None,
) -> RankResult:
    """CMC, mAP and mINP of a query x gallery distance matrix under the Market protocol.

    Per query: gallery items with the same pid and camid are dropped, junk (pid -1) is dropped,
    distractors (pid 0) stay as negatives, and a query without any valid match is skipped.
    The gallery is ranked by ascending distance, ties in gallery order (stable).

    Args:
        distmat (np.ndarray or Tensor): ``nq x ng`` distances, float or int, any device (the
            computation runs there). NaN is rejected.
        q_pids (array-like): ``nq`` query identities.
        g_pids (array-like): ``ng`` gallery identities (0 distractor, -1 junk).
        q_camids (array-like): ``nq`` query cameras.
        g_camids (array-like): ``ng`` gallery cameras.
        max_rank (int): length of the CMC curve. Default 50.
        ap_mode (str): ``"noninterp"`` (default; torchreid/fast-reid) or ``"market"`` (the
            official Market-1501 trapezoid AP). See :func:`average_precision`.
        chunk_size (int, optional): queries per block; default keeps a block near 4M entries.

    Returns:
        RankResult: ``.cmc`` (``max_rank`` floats), ``.mAP``, ``.mINP``, ``.all_AP``,
        ``.all_INP``, ``.num_valid_q`` and more.

    Raises:
        ValueError: bad shapes, NaN distances, an unknown ``ap_mode``, or no valid query.

    Reference: Zheng et al., ICCV 2015 (protocol, Market AP); torchreid ``eval_market1501``
    (non-interpolated AP, CMC); Ye et al., TPAMI 2021 (mINP).

    Example:
        >>> import numpy as np
        >>> distmat = np.array([[0.1, 0.2, 0.3, 0.4]])
        >>> r = evaluate_rank(distmat, [1], [1, 2, 1, -1], [0], [0, 1, 1, 1], max_rank=3)
        >>> r.cmc.tolist(), round(r.mAP, 4), r.mINP   # item 0 is same-camera: dropped
        ([0.0, 1.0, 1.0], 0.5, 0.5)
    """
    _check_common(max_rank, ap_mode, chunk_size)
    d = _as_distances(distmat)
    nq, ng = d.shape
    qp = _as_ids(q_pids, "q_pids", nq, d.device)
    gp = _as_ids(g_pids, "g_pids", ng, d.device)
    qc = _as_ids(q_camids, "q_camids", nq, d.device)
    gc = _as_ids(g_camids, "g_camids", ng, d.device)
    chunk = int(chunk_size) if chunk_size is not None else _default_chunk(ng)
    gal = _Gallery(gp, gc)
    acc = _Accumulator(int(max_rank), ap_mode)
    for start in range(0, nq, chunk):
        block = d[start : start + chunk].contiguous()
        sl = slice(start, start + chunk)
        with _one_cpu_thread(block.device):
            if block.is_floating_point() and bool(torch.isnan(block).any()):
                raise ValueError(f"distmat holds NaN (in query rows {start}..{start + chunk - 1})")
            acc.add(start, *_match_ranks(block, qp[sl], qc[sl], gal))
    return acc.result()


@torch.no_grad()
def evaluate_embeddings(
    q_feats: ArrayLike,
    g_feats: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    *,
    metric: str = "euclidean",
    max_rank: int = 50,
    ap_mode: str = "noninterp",
    chunk_size: int | None = None,
) -> RankResult:
    """Evaluate query and gallery embeddings without ever holding the full distance matrix.

    Distances come from :mod:`drsl.distances` block by block (``chunk_size`` queries at a time)
    and each block is ranked as in :func:`evaluate_rank`; the result equals
    ``evaluate_rank`` on those blocks stacked (and on ``pairwise_euclidean(q_feats, g_feats)``
    up to rounding in the last bit, which can only swap near-exact ties).

    Args:
        q_feats (Tensor or np.ndarray): ``nq x D`` query embeddings (the device used).
        g_feats (Tensor or np.ndarray): ``ng x D`` gallery embeddings.
        q_pids, g_pids, q_camids, g_camids (array-like): as in :func:`evaluate_rank`.
        metric (str): ``"euclidean"`` (default) or ``"cosine"`` (rank by decreasing cosine).
        max_rank (int): CMC length. Default 50.
        ap_mode (str): ``"noninterp"`` (default) or ``"market"``.
        chunk_size (int, optional): queries per block; default keeps a block near 16M entries.

    Returns:
        RankResult: as :func:`evaluate_rank`.

    Reference: spec "Words" (retrieval score ``s_j = -||f_a - f_j||_2``); Market protocol.

    Example:
        >>> q = torch.tensor([[0.0, 0.0]]); g = torch.tensor([[0.0, 1.0], [3.0, 0.0]])
        >>> evaluate_embeddings(q, g, [5], [5, 6], [0], [1, 1], max_rank=2).cmc.tolist()
        [1.0, 1.0]
    """
    _check_common(max_rank, ap_mode, chunk_size)
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    q = q_feats if isinstance(q_feats, Tensor) else torch.as_tensor(np.asarray(q_feats))
    g = g_feats if isinstance(g_feats, Tensor) else torch.as_tensor(np.asarray(g_feats))
    q = q.detach()
    if not q.is_floating_point():
        q = q.float()
    g = g.detach().to(device=q.device, dtype=q.dtype)
    if q.dim() != 2 or g.dim() != 2:
        raise ValueError(f"features must be 2-D, got {tuple(q.shape)} and {tuple(g.shape)}")
    nq, ng = q.shape[0], g.shape[0]
    qp = _as_ids(q_pids, "q_pids", nq, q.device)
    gp = _as_ids(g_pids, "g_pids", ng, q.device)
    qc = _as_ids(q_camids, "q_camids", nq, q.device)
    gc = _as_ids(g_camids, "g_camids", ng, q.device)
    # bigger default blocks than evaluate_rank: each distance call redoes gallery-side work
    chunk = int(chunk_size) if chunk_size is not None else 4 * _default_chunk(ng)
    gal = _Gallery(gp, gc)
    acc = _Accumulator(int(max_rank), ap_mode)
    if metric == "euclidean":
        blocks = chunked_euclidean(q, g, chunk_size=chunk)
    else:
        blocks = ((s, -pairwise_cosine(q[s : s + chunk], g)) for s in range(0, nq, chunk))
    for start, block in blocks:
        sl = slice(start, start + chunk)
        with _one_cpu_thread(block.device):
            if bool(torch.isnan(block).any()):
                raise ValueError(f"NaN distances (non-finite features?) in query rows from {start}")
            acc.add(start, *_match_ranks(block, qp[sl], qc[sl], gal))
    return acc.result()
