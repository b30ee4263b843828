"""The evaluation's queries cut into sub-blocks, counted on a few threads, regrouped in blocks.

Behind :func:`drsl.metrics.evaluate_rank` and :func:`drsl.metrics.evaluate_embeddings`. A
sub-block holds few enough queries that its passes over the distances stay in the CPU cache
(:mod:`drsl.metrics._count` counts the ranks of its matches); the sub-blocks go to ``threads``
threads, each taking the next one when it is done, so a thread the system deschedules holds up
one sub-block, not the others. The ranks come back grouped in the caller's blocks of queries,
exactly as if each block had been counted at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

from drsl.metrics._count import MAX_ROWS, Columns, SameId, Workspace, match_ranks
from drsl.metrics.protocol import Gallery

_SUB_ELEMENTS = 1 << 20  # distances per sub-block: its float, int and bool passes fit the cache


def sub_blocks(nq: int, ng: int, chunk: int) -> list[tuple[int, int]]:
    """``(start, stop)`` query ranges of the sub-blocks, none crossing a block of ``chunk``.

    Example:
        >>> sub_blocks(5, 1 << 19, 3)
        [(0, 2), (2, 3), (3, 5)]
    """
    step = max(1, min(MAX_ROWS, _SUB_ELEMENTS // max(ng, 1)))
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


def _lo_hi(block: Tensor, start: int) -> tuple[Tensor, Tensor]:
    """The minimum and maximum of ``block`` (0 and 0 when it is empty)."""
    return torch.aminmax(block) if block.numel() else (block.new_zeros(()), block.new_zeros(()))


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
            counted, returning its minimum and maximum (e.g. the finiteness check, which
            raises); default: ``torch.aminmax`` without checks.

    Yields:
        tuple[int, Tensor, Tensor]: ``(start, ranks, npos)`` per block of ``chunk`` queries:
        ``ranks`` is ``c x m`` int64 (``m`` = most matches of a query of the block; row ``i``
        holds the ranks of its ``npos[i]`` matches ascending, then zeros), ``npos`` is ``c``
        int64. Ranks count only kept gallery items (Market protocol).
    """
    nq, ng = d.shape
    subs = sub_blocks(nq, ng, chunk)
    same, columns = SameId(gal, qp, qc, [s for s, _ in subs]), Columns(gal)
    local = threading.local()

    def count(i: int) -> tuple[Tensor, Tensor]:
        s, e = subs[i]
        block = d[s:e].contiguous()
        lo_hi = (check or _lo_hi)(block, s)
        if not hasattr(local, "ws"):
            local.ws = Workspace()
        return match_ranks(block, same.part(i, s, ng), columns, lo_hi, local.ws)

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
