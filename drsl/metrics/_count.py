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
passes over the gallery plus O(log m) for each item near a match, i.e. O(ng log m).
:mod:`drsl.metrics._blocks` cuts the queries into the sub-blocks and spreads them over threads.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from drsl.metrics.protocol import Gallery

_BUCKETS = 2048  # buckets between a row's nearest and farthest match (many path), at most
_MANY_SHARE = 0.07  # candidate share from which counting per bucket beats listing (measured)
_SAMPLE_STEP = 8  # the share is estimated on every 8th row of the sub-block
_SPREAD = 8  # buckets past the farthest match, by column
MAX_ROWS = (1 << 22) // (_BUCKETS + 3 + _SPREAD)  # rows of a sub-block: bucket numbers < 2^22


class Workspace:
    """Scratch buffers reused from sub-block to sub-block (a fresh tensor per pass costs page
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


class Columns:
    """What the counting needs to know of the gallery columns, prepared once.

    Attributes:
        junk (bool): some column is junk.
        kept (Tensor): ``ng`` bool, the columns that are not junk.
    """

    def __init__(self, gal: Gallery) -> None:
        self.junk = bool(gal.junk_cols.numel())
        self.kept = ~gal.junk
        self._bounds: dict[float, tuple[Tensor, Tensor]] = {}

    def bounds(self, past: float) -> tuple[Tensor, Tensor]:
        """``ng`` float32 floors and ceilings of the scaled distances (:func:`_by_buckets`).

        Args:
            past (float): the first value past every match.

        Returns:
            tuple[Tensor, Tensor]: floors (-1, or the ceiling for junk, which so never counts)
            and ceilings ``past + column % _SPREAD`` (by column to one of a few buckets: one
            bucket for all would make each count wait for the previous one; measured,
            ``bincount`` took 2.5x longer).
        """
        if past not in self._bounds:
            dev = self.kept.device
            cap = (torch.arange(self.kept.numel(), device=dev) % _SPREAD + past).float()
            self._bounds[past] = (torch.where(self.kept, -1.0, cap), cap)
        return self._bounds[past]


class SameId:
    """The same-identity (query, gallery) pairs of every query, flat, cut per sub-block.

    Args:
        gal (Gallery): the gallery.
        qp, qc (Tensor): ``nq`` query pids and camids.
        starts (list[int]): the first query of each sub-block, ascending.
    """

    def __init__(self, gal: Gallery, qp: Tensor, qc: Tensor, starts: list[int]) -> None:
        rows, cols, is_match = gal.same_id(qp, qc)
        ng = gal.pids.numel()
        self.rows, self.flat = rows, rows * ng + cols
        self.mrows, self.mflat = rows[is_match], self.flat[is_match]
        ends = torch.tensor([*starts, qp.numel()], device=rows.device)
        self.cut = torch.searchsorted(self.rows, ends).tolist()
        self.mcut = torch.searchsorted(self.mrows, ends).tolist()

    def part(self, i: int, start: int, ng: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Sub-block ``i`` (first query ``start``): ``(mrows, mflat, rows, flat)``, rows and
        flat indices counted from the sub-block, of its matches and of all its pairs."""
        a, b = self.mcut[i : i + 2]
        a2, b2 = self.cut[i : i + 2]
        return (
            self.mrows[a:b] - start,
            self.mflat[a:b] - start * ng,
            self.rows[a2:b2] - start,
            self.flat[a2:b2] - start * ng,
        )


def match_ranks(
    d: Tensor,
    pairs: tuple[Tensor, Tensor, Tensor, Tensor],
    columns: Columns,
    lo_hi: tuple[Tensor, Tensor],
    ws: Workspace | None = None,
) -> tuple[Tensor, Tensor]:
    """1-based ranks of the valid matches of a sub-block of queries, in rank order.

    Args:
        d (Tensor): ``c x ng`` finite distances (float32, float64 or int64), contiguous.
        pairs (tuple[Tensor, ...]): :meth:`SameId.part`, the same-identity pairs of these rows.
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
    mrows, mflat, rows, flat = pairs
    mt = _Matches(d, mrows, mflat, c)
    if mt.m == 0:
        return torch.zeros((c, 0), dtype=torch.long, device=d.device), mt.npos
    found = None
    if _share_no_farther(d, mt.far) >= _MANY_SHARE:
        found = _by_buckets(d, (rows, flat), columns, lo_hi, mt, ws)
    if found is None:  # few candidates, or a span beyond float32: list them
        found = None, _by_listing(d, flat, columns, mt, ws)
    ahead, hist = found
    # rank_k = k + (non-matches in buckets below the match's) + (listed ones with t <= k - 1)
    listed = torch.cumsum(hist.view(c, mt.m + 1), dim=1)[:, : mt.m]
    k = torch.arange(1, mt.m + 1, device=d.device)
    ranks = torch.where(k <= mt.npos[:, None], k + listed, 0)
    if ahead is not None:
        ranks.view(-1).index_add_(0, mt.pr * mt.m + mt.slot, ahead)
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
    """The matches of a sub-block, sorted by (row, distance, column), and how to search them.

    An item's search key packs (row, value code, column) into one int64: the value code is a
    float32's ordered bits, or, for other dtypes, ``2 i + (v == u_i)`` with ``i`` the place of
    ``v`` among the sorted distinct match distances ``u`` (the order of the values, exactly).

    Attributes: ``pv, pr, pflat`` (value, row, flat index, sorted), ``npos`` and ``m``
    (matches per row and their maximum), ``near`` and ``far`` (each row's nearest and farthest
    match; the dtype's lowest value in a row without any), ``start`` (first match of each row),
    ``slot`` (each match's position within its row).
    """

    def __init__(self, d: Tensor, mrows: Tensor, mflat: Tensor, c: int) -> None:
        self.ng = ng = d.shape[1]
        self.npos = torch.bincount(mrows, minlength=c)
        self.m = int(self.npos.max()) if c > 0 else 0
        self.col_bits = max(1, (ng - 1).bit_length())
        pv = d.view(-1).index_select(0, mflat)
        self.uniq = None if d.dtype == torch.float32 else torch.unique(pv)
        self.val_bits = 32 if self.uniq is None else (2 * self.uniq.numel() + 1).bit_length()
        self.packed = (c - 1).bit_length() + self.val_bits + self.col_bits < 63
        if self.packed:
            self.keys, order = torch.sort(self._keys(pv, mrows, mflat - mrows * ng))
        else:  # stable sorts: by distance, then by row (columns already ascend within a row)
            order = torch.sort(pv, stable=True).indices
            order = order.index_select(0, torch.sort(mrows[order], stable=True).indices)
        self.pv, self.pr = pv.index_select(0, order), mrows.index_select(0, order)
        self.pflat = mflat.index_select(0, order)
        self.start = torch.cumsum(self.npos, 0) - self.npos
        self.slot = torch.arange(pv.numel(), device=d.device) - self.start.index_select(0, self.pr)
        self.near, self.far = self._ends(d.dtype, c)

    def _ends(self, dtype: torch.dtype, c: int) -> tuple[Tensor, Tensor]:
        low = float("-inf") if dtype.is_floating_point else torch.iinfo(dtype).min
        if self.pv.numel() == 0:
            far = torch.full((c,), low, dtype=dtype, device=self.pv.device)
            return far, far
        top = self.pv.numel() - 1
        some = self.npos > 0
        first = self.pv.index_select(0, self.start.clamp(max=top))
        last = self.pv.index_select(0, (self.start + self.npos - 1).clamp(min=0))
        return torch.where(some, first, low), torch.where(some, last, low)

    def _keys(self, v: Tensor, r: Tensor, col: Tensor) -> Tensor:
        if self.uniq is None:
            code = _float_bits(v)
        else:
            i = torch.searchsorted(self.uniq, v)
            code = 2 * i + (self.uniq.index_select(0, i.clamp(max=self.uniq.numel() - 1)) == v)
        return ((r << self.val_bits) | code) << self.col_bits | col

    def ahead(self, ev: Tensor, er: Tensor, ec: Tensor) -> Tensor:
        """``t`` of the non-matches ``(ev, er, ec)`` (value, row, column): how many matches of
        their row are ahead of them in (distance, column) order."""
        if self.packed:
            place = torch.searchsorted(self.keys, self._keys(ev, er, ec))
            return place - self.start.index_select(0, er)
        # any size: items and matches together, stably sorted by column, distance, row; t =
        # the matches before an item in that order, minus those of earlier rows
        pc = self.pflat - self.pr * self.ng
        vals, rws = torch.cat([ev, self.pv]), torch.cat([er, self.pr])
        is_m = torch.cat([torch.zeros_like(er), torch.ones_like(self.pr)])
        order = torch.sort(torch.cat([ec, pc]), stable=True).indices
        order = order[torch.sort(vals[order], stable=True).indices]
        order = order[torch.sort(rws[order], stable=True).indices]
        before = torch.cumsum(is_m[order], 0) - is_m[order]
        t = torch.empty_like(before)
        t[order] = before - self.start[rws[order]]
        return t[: ev.numel()]

    def histogram(self, flat: Tensor, d: Tensor) -> Tensor:
        """``c * (m + 1)`` counts of ``t`` over the non-matches at flat indices ``flat``."""
        er = flat // self.ng
        t = self.ahead(d.view(-1).index_select(0, flat), er, flat - er * self.ng)
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


def _by_listing(d: Tensor, flat: Tensor, columns: Columns, mt: _Matches, ws: Workspace) -> Tensor:
    """List the candidates (no farther than the farthest match, not junk, not of the query's
    identity: ``flat`` holds those) and search each; returns the histogram of ``t``."""
    sel = ws.get(d.shape, torch.bool, d.device)
    if d.device.type == "cpu":  # NumPy: 2.4x faster than torch.le here
        np.less_equal(d.numpy(), mt.far.numpy()[:, None], out=sel.numpy())
        if columns.junk:
            np.logical_and(sel.numpy(), columns.kept.numpy(), out=sel.numpy())
    else:
        torch.le(d, mt.far[:, None], out=sel)
        if columns.junk:
            sel.logical_and_(columns.kept)
    sel.view(-1).index_fill_(0, flat, False)  # matches and same-id same-camera items
    return mt.histogram(_flatnonzero(sel), d)


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
    matches' range, ``nbk + 2`` the items just beyond it and ``nbk + 3 ..`` the rest, the junk
    and the query's identity (never counted). Up to ``nbk + 2`` every step is monotone in the
    distance (a subtraction rounded to float32, a product, a clamp, a sum of exact integers, a
    truncation); past it lie only items farther than every match.
    """
    c, ng = d.shape
    nbk = min(_BUCKETS, 1 << max(4, (ng - 1).bit_length()))
    nb = nbk + 3 + _SPREAD
    found = _bucket_scale(d, lo_hi, mt, nbk)
    if found is None:
        return None
    near, scale = found
    u = ws.get(d.shape, torch.float32, d.device)
    torch.sub(d, near[:, None], out=u)  # finite: |d - near| <= max - min < float32 max
    u.mul_(scale[:, None])  # no NaN: a finite scale, never 0 * inf
    floor, cap = columns.bounds(nbk + 2.0)
    torch.maximum(u, floor, out=u)  # -1, or past every match for the junk
    torch.minimum(u, cap, out=u)  # past every match: by column, see Columns.bounds
    u.add_((torch.arange(c, device=d.device, dtype=torch.float32) * nb + 1)[:, None])
    # int32: bincount and index_select are twice as fast as with int64 (measured here)
    b = ws.get(d.shape, torch.int32, d.device).copy_(u).view(-1)
    match_bucket = b.index_select(0, mt.pflat).long()
    rows, flat = pairs
    b.index_put_((flat,), (rows * nb + nbk + 3).to(torch.int32))  # same-id items: past all
    shared = torch.zeros(c * nb, dtype=torch.bool, device=d.device)
    shared.index_fill_(0, match_bucket, True)  # buckets with a match: exact comparisons there
    counts = torch.bincount(b, minlength=c * nb).masked_fill_(shared, 0)
    upto = torch.cumsum(counts.view(c, nb), dim=1).view(-1)
    # per match: the items in lower plain buckets of its row (its own bucket holds none)
    below = upto.index_select(0, match_bucket)
    found = _flatnonzero(shared.index_select(0, b))
    return below, mt.histogram(found, d)
