"""CMC, mAP and mINP of a query x gallery distance matrix under the Market-1501 protocol.

The gallery roles come from :mod:`drsl.metrics.protocol`; the ranks of the matches are counted
(:mod:`drsl.metrics._count`), never sorted, with ties in gallery order, exactly as
``np.argsort(..., kind="stable")`` would order them, in cache-sized sub-blocks of queries spread
over the torch threads (:mod:`drsl.metrics._blocks`); the results do not depend on the thread
count. :mod:`drsl.metrics.reference` has the same metrics as a short per-query loop.

Reference: Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015 (protocol,
Market AP); Ye et al., "Deep Learning for Person Re-identification: A Survey and Outlook",
TPAMI 2021 (mINP); torchreid ``eval_market1501`` (non-interpolated AP and CMC, on a gallery
from which its loader has dropped the junk; its ``np.argsort`` is not stable, so its ties may
fall in another order than here).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from drsl.config import torch_threads
from drsl.distances import chunked_euclidean, pairwise_cosine
from drsl.metrics._blocks import rank_blocks
from drsl.metrics.protocol import Gallery, as_ids

__all__ = ["AP_MODES", "RankResult", "average_precision", "evaluate_rank", "evaluate_embeddings"]

AP_MODES = ("noninterp", "market")
"""The two AP conventions: torchreid/fast-reid's non-interpolated AP, Market's trapezoid AP."""

_DEFAULT_BLOCK_ELEMENTS = 1 << 22  # query rows per block = this // gallery size (~4M entries)
# (the block is the unit of the scores; the counting cuts it into smaller sub-blocks)

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


def _check_common(max_rank: int, ap_mode: str, chunk_size: int | None) -> None:
    if ap_mode not in AP_MODES:
        raise ValueError(f"ap_mode must be one of {AP_MODES}, got {ap_mode!r}")
    if int(max_rank) != max_rank or max_rank < 1:
        raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")
    if chunk_size is not None and (int(chunk_size) != chunk_size or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size!r}")


def _as_distances(distmat: ArrayLike) -> Tensor:
    if isinstance(distmat, Tensor):
        d = distmat
    else:
        try:
            a = np.asarray(distmat)
        except ValueError:  # rows of different lengths
            a = np.asarray(None)
        if a.dtype.kind not in "biuf":  # str, object (None, ragged lists), dates...
            raise ValueError(
                f"distmat must be a num_query x num_gallery array or tensor of numbers, got "
                f"{type(distmat).__name__}"
                + (f" of dtype {a.dtype}" if a.dtype.kind != "O" else "")
            )
        d = torch.as_tensor(a)
    if d.is_meta:
        raise ValueError("distmat is on the 'meta' device (no values): pass real distances")
    d = d.detach()
    if d.dim() != 2:
        raise ValueError(f"distmat must be 2-D (num_query x num_gallery), got {tuple(d.shape)}")
    if d.dtype == torch.bool or d.is_complex():
        raise ValueError(f"distmat must hold real numbers, got dtype {d.dtype}")
    if d.dtype in (torch.float16, torch.bfloat16):
        d = d.float()  # exact: keeps order and ties
    elif not d.is_floating_point():
        d = d.long()
    return d


def _rows_text(rows: Tensor) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:5])
    return shown + (f" (and {rows.numel() - 5} more)" if rows.numel() > 5 else "")


def _check_finite(
    block: Tensor, start: int, what: str, whole: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The minimum and maximum of a block; ValueError naming the query rows with NaN or inf
    (of the ``whole`` matrix when given, else of the block, whose first row is ``start``).

    One pass: NaN propagates into the minimum and maximum, inf shows in one of them (measured
    here: ``amin`` + ``amax`` take 1/40 of the time of ``isfinite(block).all()``, and
    ``aminmax`` about half of those two).
    """
    if block.numel() == 0:
        zero = torch.zeros((), dtype=block.dtype, device=block.device)
        return zero, zero
    lo, hi = torch.aminmax(block)  # one pass for both
    if block.is_floating_point() and not bool(torch.isfinite(lo) & torch.isfinite(hi)):
        if whole is not None:
            block, start = whole, 0
        nan = torch.isnan(block).any(dim=1)
        bad = nan if bool(nan.any()) else torch.isinf(block).any(dim=1)
        rows = torch.nonzero(bad).reshape(-1) + start
        kind = "NaN" if bool(nan.any()) else "inf"
        raise ValueError(
            f"{what} holds {kind} in query rows {_rows_text(rows)}: distances must be finite "
            "(check the features that produced them)"
        )
    return lo, hi


def _finite_check(what: str, whole: Tensor | None = None, offset: int = 0):
    """``check(block, start)`` for :func:`~drsl.metrics._count.rank_blocks`: the
    :func:`_check_finite` of a block whose first row is query ``offset + start``."""

    def check(block: Tensor, start: int) -> tuple[Tensor, Tensor]:
        return _check_finite(block, offset + start, what, whole)

    return check


def _default_chunk(num_gallery: int) -> int:
    return max(1, _DEFAULT_BLOCK_ELEMENTS // max(num_gallery, 1))


# ----------------------------------------------------------------------------- scores


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
    _check_common(1, mode, None)
    mt = matches if isinstance(matches, Tensor) else torch.as_tensor(np.asarray(matches))
    if mt.dim() != 1:
        raise ValueError(f"matches must be 1-D (one ranked list), got shape {tuple(mt.shape)}")
    ranks = torch.nonzero(mt.detach().cpu().bool()).reshape(1, -1) + 1
    if ranks.numel() == 0:
        raise ValueError("matches holds no True entry: AP is undefined without a match")
    ap, _, _ = _scores(ranks, torch.tensor([ranks.numel()]), mode)
    return float(ap[0])


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
            raise ValueError(
                "no valid query: no query has a valid match in the gallery (after the protocol "
                "drops junk and same-identity same-camera items); check q_pids against g_pids"
            )
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


def _ids(q_pids, g_pids, q_camids, g_camids, nq: int, ng: int, device) -> tuple:
    qp = as_ids(q_pids, "q_pids", nq, device=device)
    gp = as_ids(g_pids, "g_pids", ng, device=device)
    qc = as_ids(q_camids, "q_camids", nq, device=device)
    gc = as_ids(g_camids, "g_camids", ng, device=device)
    return qp, qc, Gallery(gp, gc)


# ----------------------------------------------------------------------------- public API


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

    Per query (:mod:`drsl.metrics.protocol`): gallery items with the same pid and camid are
    dropped, junk (pid -1) is dropped, distractors (pid 0) stay as negatives, and a query
    without any valid match is skipped. The gallery is ranked by ascending distance, ties in
    gallery order (stable).

    Args:
        distmat (np.ndarray or Tensor): ``nq x ng`` finite distances, float or int, any device
            (the computation runs there; on the CPU on ``torch.get_num_threads()`` threads).
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
        ValueError: bad shapes or ids, NaN or infinite distances (naming the query rows), an
        unknown ``ap_mode``, or no valid query.

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
    qp, qc, gal = _ids(q_pids, g_pids, q_camids, g_camids, nq, ng, d.device)
    chunk = int(chunk_size) if chunk_size is not None else _default_chunk(ng)
    acc, threads = _Accumulator(int(max_rank), ap_mode), torch.get_num_threads()
    check = _finite_check("distmat", d)
    # torch on one thread per sub-block: the passes are memory-bound and short, and on a busy
    # machine a parallel pass waits for a descheduled thread (see drsl.config.torch_threads);
    # the sub-blocks themselves go to `threads` threads, each taking the next one when free
    with torch_threads(1, device=d.device):
        for start, ranks, npos in rank_blocks(d, qp, qc, gal, chunk, threads=threads, check=check):
            acc.add(start, ranks, npos)
    return acc.result()


def _as_features(x: ArrayLike, name: str) -> Tensor:
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    t = t.detach()
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D (n x D), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    bad = ~torch.isfinite(t).all(dim=1)
    if bool(bad.any()):
        rows = _rows_text(torch.nonzero(bad).reshape(-1))
        raise ValueError(f"{name} holds NaN or inf in rows {rows}: features must be finite")
    return t


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

    Distances come from :mod:`drsl.distances` block by block (``chunk_size`` queries at a time),
    to the gallery items that are not junk (junk never counts), and each block is ranked as in
    :func:`evaluate_rank`; the result equals
    ``evaluate_rank`` on those blocks stacked (and on ``pairwise_euclidean(q_feats, g_feats)``
    up to rounding in the last bit, which can only swap near-exact ties).

    Args:
        q_feats (Tensor or np.ndarray): ``nq x D`` finite query embeddings (the device used).
        g_feats (Tensor or np.ndarray): ``ng x D`` finite gallery embeddings.
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
    q = _as_features(q_feats, "q_feats")
    g = _as_features(g_feats, "g_feats").to(device=q.device, dtype=q.dtype)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"q_feats and g_feats differ in dimension: {q.shape[1]} vs {g.shape[1]}")
    nq, ng = q.shape[0], g.shape[0]
    qp, qc, gal = _ids(q_pids, g_pids, q_camids, g_camids, nq, ng, q.device)
    if gal.junk_cols.numel():  # junk never counts: no distances for it (the order of the
        keep = ~gal.junk  # rest, and so every rank and tie, is unchanged)
        g, gal = g[keep], Gallery(gal.pids[keep], gal.camids[keep])
    # bigger default blocks than evaluate_rank: each distance call redoes gallery-side work
    chunk = int(chunk_size) if chunk_size is not None else 4 * _default_chunk(ng)
    acc, threads = _Accumulator(int(max_rank), ap_mode), torch.get_num_threads()
    if metric == "euclidean":
        blocks = chunked_euclidean(q, g, chunk_size=chunk)
    else:
        blocks = ((s, -pairwise_cosine(q[s : s + chunk], g)) for s in range(0, nq, chunk))
    what = "the distance matrix (from finite features)"
    for start, block in blocks:
        sl, c = slice(start, start + chunk), block.shape[0]
        check = _finite_check(what, offset=start)
        with torch_threads(1, device=block.device):
            for _, ranks, npos in rank_blocks(
                block, qp[sl], qc[sl], gal, c, threads=threads, check=check
            ):
                acc.add(start, ranks, npos)
    return acc.result()
