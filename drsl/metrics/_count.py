"""The ranks of the matches of a block of queries, counted rather than sorted.

A match's rank needs only how many kept gallery items come before it. For a query whose ``n``
matches are sorted by (distance, gallery index), let ``t_j`` be the number of matches ahead of
a kept non-match ``j``; then ``rank_k = k + #{j : t_j <= k - 1}`` (``k - 1`` matches and the
non-matches ahead of match ``k``). Ties are broken by gallery index, the order of
``np.argsort(..., kind="stable")``: ``j`` is ahead of match ``k`` when
``(d_j, j) < (d_k, col_k)``.

Only items no farther than the query's farthest match can move a rank. Per sub-block of rows
(small enough that its passes stay in the CPU cache), by the share of such candidates:

- **few** (a useful model): the candidates are listed, and each one's ``t`` is a binary search
  of its (row, distance, column) key among the sorted keys of the matches;
- **many** (every match deep, e.g. random features): each distance goes to one of ``B``
  buckets spanning ``[nearest match, farthest match]`` of its row, by steps that are each
  monotone in the distance (subtract, multiply, clamp, add, truncate), and the items are
  counted per bucket with one ``bincount``. The matches' buckets are read from the same array,
  so an item in a lower bucket than a match is ahead of it and one in a higher bucket behind
  it, exactly, whatever the rounding; only the few items sharing a bucket with a match need
  the binary search.

Both are exact: the ranks equal those of a stable sort of every row. Cost per query: a few
passes over the gallery plus O(log m) for each item near a match, i.e. O(ng log m). The
sub-blocks are independent: :func:`rank_blocks` spreads them over a few threads, each taking
the next one when it is done (a descheduled thread holds up one sub-block, not the others).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

from drsl.metrics.protocol import Gallery

_BUCKETS = 2048  # buckets between a row's nearest and farthest match (many path), at most
_MANY_SHARE = 0.05  # candidate share from which counting per bucket beats listing (measured)
_SAMPLE_STEP = 8  # the share is estimated on every 8th row of the sub-block
_SUB_ELEMENTS = 1 << 19  # entries per sub-block: its float, int and bool passes fit the cache
_SUB_ROWS = (1 << 22) // (_BUCKETS + 4)  # at most: bucket numbers stay exact in float32


class Workspace:
    """Scratch buffers reused from block to block (a fresh 16 MB tensor per pass costs page
    faults: measured here, the subtraction into a new tensor took 3x the in-place passes)."""

    def __init__(self) -> None:
        self._buffers: dict = {}

    def get(self, shape: tuple[int, ...], dtype: torch.dtype, device) -> Tensor:
        n = int(np.prod(shape))
        key = (dtype, torch.device(device))
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < n:
            buf = self._buffers[key] = torch.empty(n, dtype=dtype, device=device)
        return buf[:n].view(shape)


def _sub_blocks(nq: int, ng: int, chunk: int) -> list[tuple[int, int]]:
    """``(start, stop)`` row ranges of the sub-blocks, none crossing a block of ``chunk``."""
    step = max(1, min(_SUB_ROWS, _SUB_ELEMENTS // max(ng, 1)))
    return [
        (s, min(s + step, b + chunk, nq))
        for b in range(0, nq, chunk)
        for s in range(b, min(b + chunk, nq), step)
    ]


def _padded(parts: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """The sub-blocks' ``(ranks, npos)`` stacked, ranks padded with zeros to the widest."""
    if len(parts) == 1:
        return parts[0]
    m = max(r.shape[1] for r, _ in parts)
    ranks = [torch.nn.functional.pad(r, (0, m - r.shape[1])) for r, _ in parts]
    return torch.cat(ranks), torch.cat([n for _, n in parts])


class Columns:
    """What the counting needs to know of the gallery columns, prepared once.

    Attributes:
        junk (bool): some column is junk.
        junk_inf (Tensor): ``ng`` float32, ``inf`` at junk columns, 0 elsewhere (added to the
            distances, it sends the junk past every match).
        kept (Tensor): ``ng`` bool, the columns that are not junk.
    """

    def __init__(self, gal: Gallery) -> None:
        self.junk = bool(gal.junk_cols.numel())
        self.kept = ~gal.junk
        inf = torch.tensor(float("inf"), device=gal.junk.device)
        self.junk_inf = torch.where(gal.junk, inf, 0.0)


def rank_blocks(
    d: Tensor,
    qp: Tensor,
    qc: Tensor,
    gal: Gallery,
    chunk: int,
    *,
    threads: int = 1,
    check: Callable[[Tensor, int], tuple[Tensor, Tensor]] | None = None,
) -> Iterator[tuple[int, Tensor, Tensor]]:
    """The ranks of the valid matches of every query, block by block.

    Args:
        d (Tensor): ``nq x ng`` finite distances (float32, float64 or int64).
        qp, qc (Tensor): ``nq`` query pids and camids (int64).
        gal (Gallery): the gallery, grouped by pid.
        chunk (int): queries per yielded block.
        threads (int): CPU threads counting sub-blocks at once (each runs torch on one thread).
        check (callable, optional): ``check(rows, start)`` on each sub-block before it is
            counted: its minimum and maximum (e.g. the finiteness check, which raises);
            default ``torch.aminmax`` without checks.

    Yields:
        tuple[int, Tensor, Tensor]: ``(start, ranks, npos)`` per block of ``chunk`` queries:
        ``ranks`` is ``c x m`` int64 (``m`` = most matches of a query of the block; row ``i``
        holds the ranks of its ``npos[i]`` matches ascending, then zeros), ``npos`` is ``c``
        int64. Ranks count only kept gallery items (Market protocol).
    """
    nq, ng = d.shape
    rows, cols, is_match = gal.same_id(qp, qc)
    subs, columns = _sub_blocks(nq, ng, chunk), Columns(gal)
    bounds = torch.tensor([s for s, _ in subs] + [nq], device=rows.device)
    cuts = torch.searchsorted(rows, bounds).tolist()  # rows ascend
    local = threading.local()

    def count(i: int) -> tuple[Tensor, Tensor]:
        (s, e), (a, b) = subs[i], cuts[i : i + 2]
        block = d[s:e].contiguous()
        lo_hi = (check or _lo_hi)(block, s)
        if not hasattr(local, "ws"):
            local.ws = Workspace()
        pairs = (rows[a:b] - s, cols[a:b], is_match[a:b])
        return match_ranks(block, pairs, columns, lo_hi, local.ws)

    if threads > 1 and len(subs) > 1 and d.device.type == "cpu":
        pool = ThreadPoolExecutor(min(threads, len(subs)), thread_name_prefix="drsl-rank")
        results = pool.map(count, range(len(subs)))
    else:
        pool, results = None, map(count, range(len(subs)))
    try:
        parts: list[tuple[Tensor, Tensor]] = []
        for (_, e), part in zip(subs, results, strict=True):
            parts.append(part)
            if e == nq or e % chunk == 0:  # the end of a block
                yield e - sum(p[1].numel() for p in parts), *_padded(parts)
                parts = []
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _lo_hi(block: Tensor, start: int) -> tuple[Tensor, Tensor]:
    """The minimum and maximum of a non-empty ``block``."""
    return torch.aminmax(block) if block.numel() else (block.new_zeros(()), block.new_zeros(()))


def match_ranks(
    d: Tensor,
    pairs: tuple[Tensor, Tensor, Tensor],
    columns: Columns,
    lo_hi: tuple[Tensor, Tensor],
    ws: Workspace | None = None,
) -> tuple[Tensor, Tensor]:
    """1-based ranks of the valid matches of a sub-block of queries, in rank order.

    Args:
        d (Tensor): ``c x ng`` finite distances (float32, float64 or int64), contiguous.
        pairs (tuple[Tensor, Tensor, Tensor]): ``(rows, cols, is_match)``, the same-identity
            pairs of these rows (:meth:`Gallery.same_id`, rows counted from 0).
        columns (Columns): the gallery's junk.
        lo_hi (tuple[Tensor, Tensor]): the minimum and maximum of ``d``.
        ws (Workspace, optional): scratch buffers to reuse across sub-blocks.

    Returns:
        tuple[Tensor, Tensor]: ``ranks`` (``c x m`` int64, ``m`` = most matches of any query;
        row ``i`` holds the ranks of its ``npos[i]`` matches ascending, then zeros) and
        ``npos`` (``c`` int64).
    """
    ws = ws or Workspace()
    c = d.shape[0]
    rows, cols, is_match = pairs
    mt = _Matches(d, rows[is_match], cols[is_match], c)
    if mt.m == 0:
        return torch.zeros((c, 0), dtype=torch.long, device=d.device), mt.npos
    found = None
    if _share_no_farther(d, mt.far) >= _MANY_SHARE:
        found = _by_buckets(d, (rows, cols), columns, lo_hi, mt, ws)
    if found is None:  # few candidates, or a span beyond float32: list them
        found = _by_listing(d, (rows, cols), columns, mt, ws)
    ahead, hist = found
    # rank_k = k + (non-matches in buckets below the match's) + (listed ones with t <= k - 1)
    listed = torch.cumsum(hist.view(c, mt.m + 1), dim=1)[:, : mt.m]
    k = torch.arange(1, mt.m + 1, device=d.device)
    ranks = torch.where(k <= mt.npos[:, None], k + listed, 0)
    ranks[mt.pr, mt.slot] += ahead
    return ranks, mt.npos


def _flatnonzero(mask: Tensor) -> Tensor:
    """Flat indices of the True entries (on the CPU through NumPy: 10x faster here)."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return torch.nonzero(mask.reshape(-1)).reshape(-1)


def _float_bits(vals: Tensor) -> Tensor:
    """float32 values as int64 in ``[0, 2^32)`` ordered like the floats (IEEE-754: flip the
    magnitude bits of negatives; ``+ 0.0`` first turns -0.0 into +0.0, which compare equal)."""
    key = (vals + 0.0).view(torch.int32).long()  # sign-extended bits
    key ^= (key >> 63) & 0x7FFFFFFF
    return key + (1 << 31)


class _Matches:
    """The matches of a block, sorted by (row, distance, column), and how to search them.

    An item's search key packs (row, value code, column) into one int64: the value code is a
    float32's ordered bits, or, for other dtypes, ``2 i + (v == u_i)`` with ``i`` the place of
    ``v`` among the sorted distinct match distances ``u`` (the order of the values, exactly).

    Attributes: ``pv, pr, pc`` (value, row, column, sorted), ``npos`` and ``m`` (matches per
    row and their maximum), ``near`` and ``far`` (each row's nearest and farthest match; the
    lowest value of the dtype in a row without any), ``start`` (first match of each row),
    ``slot`` (each match's position within its row).
    """

    def __init__(self, d: Tensor, pr: Tensor, pc: Tensor, c: int) -> None:
        ng = d.shape[1]
        self.npos = torch.bincount(pr, minlength=c)
        self.m = int(self.npos.max()) if c > 0 else 0
        self.col_bits = max(1, (ng - 1).bit_length())
        pv = d.view(-1)[pr * ng + pc]
        self.uniq = None if d.dtype == torch.float32 else torch.unique(pv)
        val_bits = 32 if self.uniq is None else (2 * self.uniq.numel() + 1).bit_length()
        self.packed = (c - 1).bit_length() + val_bits + self.col_bits < 63
        self.val_bits = val_bits
        if self.packed:
            self.keys, order = torch.sort(self._keys(pv, pr, pc))
        else:  # stable sorts: by distance, then by row (columns already ascend within a row)
            order = torch.sort(pv, stable=True).indices
            order = order[torch.sort(pr[order], stable=True).indices]
        self.pv, self.pr, self.pc = pv[order], pr[order], pc[order]
        self.start = torch.cumsum(self.npos, 0) - self.npos
        self.slot = torch.arange(pr.numel(), device=pr.device) - self.start[self.pr]
        low = float("-inf") if d.dtype.is_floating_point else torch.iinfo(d.dtype).min
        self.far = torch.full((c,), low, dtype=d.dtype, device=d.device)
        self.near = self.far.clone()
        if pv.numel():
            some = self.npos > 0
            self.near[some] = self.pv[self.start[some]]
            self.far[some] = self.pv[(self.start + self.npos - 1)[some]]

    def _keys(self, v: Tensor, r: Tensor, col: Tensor) -> Tensor:
        if self.uniq is None:
            code = _float_bits(v)
        else:
            i = torch.searchsorted(self.uniq, v)
            code = 2 * i + (self.uniq[i.clamp(max=self.uniq.numel() - 1)] == v)
        return ((r << self.val_bits) | code) << self.col_bits | col

    def ahead(self, ev: Tensor, er: Tensor, ec: Tensor) -> Tensor:
        """``t`` of the non-matches ``(ev, er, ec)`` (value, row, column): how many matches of
        their row are ahead of them in (distance, column) order."""
        if self.packed:
            return torch.searchsorted(self.keys, self._keys(ev, er, ec)) - self.start[er]
        # any size: items and matches together, stably sorted by column, distance, row; t =
        # the matches before an item in that order, minus those of earlier rows
        vals, rws = torch.cat([ev, self.pv]), torch.cat([er, self.pr])
        is_m = torch.cat([torch.zeros_like(er), torch.ones_like(self.pr)])
        order = torch.sort(torch.cat([ec, self.pc]), stable=True).indices
        order = order[torch.sort(vals[order], stable=True).indices]
        order = order[torch.sort(rws[order], stable=True).indices]
        before = torch.cumsum(is_m[order], 0) - is_m[order]
        t = torch.empty_like(before)
        t[order] = before - self.start[rws[order]]
        return t[: ev.numel()]

    def histogram(self, flat: Tensor, d: Tensor) -> Tensor:
        """``c * (m + 1)`` counts of ``t`` over the non-matches at flat indices ``flat``."""
        ng = d.shape[1]
        er = flat // ng
        t = self.ahead(d.view(-1)[flat], er, flat - er * ng)
        return torch.bincount(er * (self.m + 1) + t, minlength=d.shape[0] * (self.m + 1))


def _share_no_farther(d: Tensor, far: Tensor) -> float:
    """The share of the entries of every ``_SAMPLE_STEP``-th row no farther than its row's
    farthest match."""
    rows, far = d[::_SAMPLE_STEP], far[::_SAMPLE_STEP]
    if d.device.type == "cpu":
        hits = np.count_nonzero(rows.numpy() <= far.numpy()[:, None])
    else:
        hits = int((rows <= far[:, None]).sum())
    return hits / max(rows.numel(), 1)


def _by_listing(d, pairs, columns: Columns, mt: _Matches, ws: Workspace):
    """List the candidates (no farther than the farthest match, not junk, not of the query's
    identity) and search each; returns ``(0, histogram of t)``."""
    sel = ws.get(d.shape, torch.bool, d.device)
    if d.device.type == "cpu":  # NumPy: 2.4x faster than torch.le here
        np.less_equal(d.numpy(), mt.far.numpy()[:, None], out=sel.numpy())
        if columns.junk:
            np.logical_and(sel.numpy(), columns.kept.numpy(), out=sel.numpy())
    else:
        torch.le(d, mt.far[:, None], out=sel)
        if columns.junk:
            sel.logical_and_(columns.kept)
    sel[pairs] = False  # matches and same-id same-camera items
    return torch.zeros((), dtype=torch.long, device=d.device), mt.histogram(_flatnonzero(sel), d)


def _bucket_scale(d: Tensor, lo_hi, mt: _Matches, nbk: int) -> tuple[Tensor, Tensor] | None:
    """Per row, the nearest match in the dtype to subtract from ``d`` (float64 for integers)
    and ``nbk / (far - near)`` in float32 (the largest float for a zero span); None when the
    distances' own span overflows float32."""
    lo, hi = lo_hi
    wide = d.dtype if d.is_floating_point() else torch.float64
    f32 = torch.float32
    if not bool(torch.isfinite(torch.sub(hi.to(wide), lo.to(wide)).to(f32))):
        return None
    some = mt.npos > 0  # rows without a match: any finite value will do
    near = torch.where(some, mt.near.to(wide), 0.0)
    span = torch.empty(near.shape, dtype=f32, device=d.device)
    torch.sub(torch.where(some, mt.far.to(wide), 0.0), near, out=span)  # as the passes round
    big = torch.finfo(f32).max
    return near, torch.where(span > 0, nbk / span, big).clamp_(max=big)


def _by_buckets(d, pairs, columns: Columns, lo_hi, mt: _Matches, ws: Workspace):
    """Count the items per bucket (see the module); returns ``(ahead, histogram of t)``:
    per match (sorted order) the non-matches in lower buckets of its row, and the histogram
    of ``t`` over the items that share a bucket with a match; None when the distances' span
    overflows float32.

    Per row, bucket 0 holds the items nearer than the nearest match, ``1 .. nbk + 1`` the
    matches' range, ``nbk + 2`` the items just beyond it and ``nbk + 3`` the rest, the junk
    and the query's identity (dropped). Every step is monotone in the distance (a subtraction
    rounded to float32, a product, a clamp, a sum of exact integers, a truncation).
    """
    c, ng = d.shape
    nbk = min(_BUCKETS, 1 << max(4, (ng - 1).bit_length()))
    nb = nbk + 4
    found = _bucket_scale(d, lo_hi, mt, nbk)
    if found is None:
        return None
    near, scale = found
    u = ws.get(d.shape, torch.float32, d.device)
    torch.sub(d, near[:, None], out=u)  # finite: |d - near| <= max - min < float32 max
    if columns.junk:
        u.add_(columns.junk_inf)  # inf: past every match
    u.mul_(scale[:, None]).clamp_(-1.0, nbk + 2.0)  # no NaN: finite scale, no 0 * inf
    u.add_((torch.arange(c, device=d.device, dtype=torch.float32) * nb + 1)[:, None])
    # int32: bincount and index_select are twice as fast as with int64 (measured here)
    b = ws.get(d.shape, torch.int32, d.device).copy_(u)
    match_bucket = b[mt.pr, mt.pc].long()
    rows, cols = pairs
    b[rows, cols] = (rows * nb + nbk + 3).to(torch.int32)  # same-id items: dropped
    b = b.view(-1)
    shared = torch.bincount(match_bucket, minlength=c * nb) > 0  # exact comparisons there
    counts = torch.bincount(b, minlength=c * nb).masked_fill_(shared, 0).view(c, nb)
    below = (torch.cumsum(counts, dim=1) - counts).view(-1)  # items in lower plain buckets
    flat = _flatnonzero(shared.index_select(0, b))
    return below[match_bucket], mt.histogram(flat, d)
