"""The ranks of the matches of a block of queries, counted rather than sorted.

A match's rank needs only how many kept gallery items come before it. For a query whose ``n``
matches are sorted by (distance, gallery index), let ``t_j`` be the number of matches ahead of
a kept non-match ``j``; then ``rank_k = k + #{j : t_j <= k - 1}`` (``k - 1`` matches and the
non-matches ahead of match ``k``). Ties are broken by gallery index, the order of
``np.argsort(..., kind="stable")``: ``j`` is ahead of match ``k`` when
``(d_j, j) < (d_k, col_k)``.

Only items no farther than the query's farthest match can move a rank. Per block, by the share
of such candidates:

- **few** (a useful model): the candidates are listed, and each one's ``t`` is a binary search
  of its (row, distance, column) key among the sorted keys of the matches;
- **many** (every match deep, e.g. random features): each distance goes to one of ``B`` buckets
  spanning ``[block minimum, farthest match]``, by steps that are each monotone in the distance
  (subtract, multiply, clamp, add, truncate), and the items are counted per bucket with one
  ``bincount``. The matches' buckets are read from the same array, so an item in a lower bucket
  than a match is ahead of it and one in a higher bucket behind it, exactly, whatever the
  rounding; only the few items sharing a bucket with a match need the binary search.

Both are exact: the ranks equal those of a stable sort of every row. Cost per query: a few
passes over the gallery plus O(log m) for each item near a match, i.e. O(ng log m).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from drsl.metrics.protocol import Gallery

_BUCKETS = 1024  # buckets between the block minimum and a row's farthest match (many path)
_MANY_SHARE = 0.15  # candidate share from which counting per bucket beats listing (measured)
_SAMPLE_STEP = 8  # the share is estimated on every 8th row of the block


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


def match_ranks(
    d: Tensor, qp: Tensor, qc: Tensor, gal: Gallery, low: Tensor, ws: Workspace | None = None
) -> tuple[Tensor, Tensor]:
    """1-based ranks of the valid matches of a block of queries, in rank order.

    Args:
        d (Tensor): ``c x ng`` finite distances (float32, float64 or int64), contiguous.
        qp, qc (Tensor): ``c`` query pids and camids (int64).
        gal (Gallery): the gallery, grouped by pid.
        low (Tensor): a scalar no larger than any entry of ``d`` (e.g. its minimum).
        ws (Workspace, optional): scratch buffers to reuse across blocks.

    Returns:
        tuple[Tensor, Tensor]: ``ranks`` (``c x m`` int64, ``m`` = most matches of any query;
        row ``i`` holds the ranks of its ``npos[i]`` matches ascending, then zeros) and
        ``npos`` (``c`` int64). Ranks count only kept gallery items (Market protocol).
    """
    ws = ws or Workspace()
    c = d.shape[0]
    rows, cols, is_match = gal.same_id(qp, qc)
    mt = _Matches(d, rows[is_match], cols[is_match], c)
    if mt.m == 0:
        return torch.zeros((c, 0), dtype=torch.long, device=d.device), mt.npos
    sample = d[::_SAMPLE_STEP] <= mt.far[::_SAMPLE_STEP, None]
    if int(sample.sum()) < _MANY_SHARE * sample.numel():
        ahead, hist = _by_listing(d, rows, cols, gal, mt, ws)
    else:
        ahead, hist = _by_buckets(d, low, rows, cols, gal, mt, ws)
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

    Attributes: ``pv, pr, pc`` (value, row, column, sorted), ``npos`` and ``m`` (matches per
    row and their maximum), ``far`` (each row's farthest match), ``start`` (first match of each
    row), ``slot`` (each match's position within its row).
    """

    def __init__(self, d: Tensor, pr: Tensor, pc: Tensor, c: int) -> None:
        ng = d.shape[1]
        self.npos = torch.bincount(pr, minlength=c)
        self.m = int(self.npos.max()) if c > 0 else 0
        self.col_bits = max(1, (ng - 1).bit_length())
        self.packed = d.dtype == torch.float32 and (c - 1).bit_length() + 32 + self.col_bits < 64
        pv = d.view(-1)[pr * ng + pc]
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
        self.far.scatter_reduce_(0, self.pr, self.pv, reduce="amax")

    def _keys(self, v: Tensor, r: Tensor, col: Tensor) -> Tensor:
        return ((r << 32) | _float_bits(v)) << self.col_bits | col

    def ahead(self, ev: Tensor, er: Tensor, ec: Tensor) -> Tensor:
        """``t`` of the non-matches ``(ev, er, ec)`` (value, row, column): how many matches of
        their row are ahead of them in (distance, column) order."""
        if self.packed:
            return torch.searchsorted(self.keys, self._keys(ev, er, ec)) - self.start[er]
        # any dtype: items and matches together, stably sorted by column, distance, row; t =
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


def _no_farther(d: Tensor, far: Tensor, out: Tensor) -> Tensor:
    """``d <= far[:, None]`` into ``out`` (on the CPU through NumPy: 2.4x faster here)."""
    if d.device.type == "cpu":
        np.less_equal(d.numpy(), far.numpy()[:, None], out=out.numpy())
        return out
    return torch.le(d, far[:, None], out=out)


def _by_listing(d, rows, cols, gal, mt: _Matches, ws: Workspace) -> tuple[Tensor, Tensor]:
    """List the candidates (no farther than the farthest match, not junk, not of the query's
    identity) and search each; returns ``(0, histogram of t)``."""
    sel = _no_farther(d, mt.far, ws.get(d.shape, torch.bool, d.device))
    if gal.junk_cols.numel():
        sel.index_fill_(1, gal.junk_cols, False)
    sel[rows, cols] = False  # matches and same-id same-camera items
    return torch.zeros((), dtype=torch.long, device=d.device), mt.histogram(_flatnonzero(sel), d)


def _by_buckets(d, low, rows, cols, gal, mt: _Matches, ws: Workspace) -> tuple[Tensor, Tensor]:
    """Count the items per bucket (see the module); returns ``(ahead, histogram of t)``:
    per match (sorted order) the non-matches in lower buckets of its row, and the histogram
    of ``t`` over the items that share a bucket with a match."""
    c, ng = d.shape
    nb = _BUCKETS + 2  # per row: buckets 0..B, then B + 1 (beyond the farthest match, dropped)
    work = d.dtype if d.dtype == torch.float32 else torch.float64
    span = mt.far.to(work) - low.to(work)
    if work == torch.float32 and (not bool(torch.isfinite(span).all()) or c * nb >= 1 << 24):
        work = torch.float64  # float32 would overflow, or lose the integer row offsets
        span = mt.far.double() - low.double()
    # each step monotone in d; the scale is finite and positive (a span of 0 or -0.0 gets the
    # largest float), so never 0 * inf
    big = torch.finfo(work).max
    scale = torch.where(span > 0, _BUCKETS / span, big).clamp_(max=big)
    u = ws.get(d.shape, work, d.device)
    torch.sub(d.to(work), low.to(work), out=u)  # >= 0: low is no larger than any entry
    u.mul_(scale[:, None]).clamp_(max=_BUCKETS + 1)
    if gal.junk_cols.numel():
        u.index_fill_(1, gal.junk_cols, _BUCKETS + 1)
    offset = torch.arange(c, device=d.device, dtype=work) * nb
    u.add_(offset[:, None])
    # int32: bincount and index_select are twice as fast as with int64 (measured here)
    b = ws.get(d.shape, torch.int32, d.device).copy_(u)
    match_bucket = b[mt.pr, mt.pc].long()
    b[rows, cols] = (offset[rows] + _BUCKETS + 1).to(torch.int32)  # same-id items: dropped
    b = b.view(-1)
    per_bucket = torch.bincount(match_bucket, minlength=c * nb)
    shared = per_bucket > 0  # buckets holding a match: exact comparisons there
    counts = torch.bincount(b, minlength=c * nb).masked_fill_(shared, 0).view(c, nb)
    below = (torch.cumsum(counts, dim=1) - counts).view(-1)  # items in lower plain buckets
    flat = _flatnonzero(shared.index_select(0, b))
    return below[match_bucket], mt.histogram(flat, d)
