"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), memory-bounded.

Re-ranking replaces the query-gallery distance by a mix of the original distance and a
Jaccard distance between *k-reciprocal neighbourhoods*: two images are close when they are in
each other's ``k1`` nearest neighbours (and in those of each other's close neighbours), which
the plain distance cannot see. The steps, over all ``N = nq + ng`` images together:

1. ``d_ij = ||x_i - x_j||^2 / max_k ||x_i - x_k||^2`` (squared, each row divided by its max);
2. ``R(i, k)``: the items ``j`` among the ``k + 1`` nearest of ``i`` that have ``i`` among
   their ``k + 1`` nearest (self included);
3. expansion: ``R*(i) = R(i, k1)`` plus every ``R(c, round(k1 / 2))`` of a ``c`` in
   ``R(i, k1)`` that shares more than 2/3 of its items with ``R(i, k1)``;
4. ``V_ij = exp(-d_ij) / sum_{j' in R*(i)} exp(-d_ij')`` on ``R*(i)``, 0 elsewhere; then
   local query expansion: ``V_i`` <- the mean of ``V`` over the ``k2`` nearest of ``i``;
5. ``jaccard_ij = 1 - sum_k min(V_ik, V_jk) / sum_k max(V_ik, V_jk)``, written
   ``1 - m / (2 - m)`` with ``m = sum_k min`` (rows of ``V`` sum to 1);
6. the result: ``(1 - lambda) jaccard + lambda d`` for queries ``i`` and gallery ``j``.

**Memory.** The usual implementation (the authors' code, torchreid's and fast-reid's
``re_ranking``) holds several dense ``N x N`` float32 matrices (the distances, their argsort,
``V`` and its expansion): about 6 GB at Market-1501 size (N = 19,281). Here step 1 runs
``chunk_size`` rows at a time and keeps only each row's ``k1 + 1`` nearest neighbours and its
maximum; ``V`` is sparse (at most a few hundred non-zeros per row, ``scipy.sparse``); the
Jaccard sums of step 5 visit only the pairs that share a non-zero column, a bounded number of
queries at a time. The one dense array is the ``nq x ng`` result
(``benchmarks/bench_rerank.py`` measures the peak).

The readable per-item loop of the paper's algorithm is
:func:`drsl.metrics.reference.rerank_loop`; the tests check that the two agree.

Reference: Zhong, Zheng, Cao, Li, "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017 (k1 = 20, k2 = 6, lambda = 0.3 on Market-1501), and the authors'
``re_ranking`` code, whose conventions (squared distances, row maxima, neighbour counts
including the item itself) are kept here.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import sparse
from torch import Tensor

from drsl.distances import chunked_euclidean

__all__ = ["rerank_distances"]

_ROW_ELEMENTS = 1 << 22  # distance rows per block in step 1 = this // N (~32 MB in float64)
_PAIR_BUDGET = 1 << 22  # (query, gallery, shared column) triples per block in step 5


def _as_features(x, name: str) -> Tensor:
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    t = t.detach()
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D (n x D), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.float()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} holds NaN or inf: features must be finite")
    return t


def _check_params(k1: int, k2: int, lambda_value: float, n: int) -> None:
    if int(k1) != k1 or k1 < 1:
        raise ValueError(f"k1 must be a positive integer, got {k1!r}")
    if int(k2) != k2 or not 1 <= k2 <= k1 + 1:
        raise ValueError(f"k2 must be an integer in [1, k1 + 1] = [1, {k1 + 1}], got {k2!r}")
    if not 0.0 <= float(lambda_value) <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value!r}")
    if k1 + 1 > n:
        raise ValueError(f"k1 + 1 = {k1 + 1} neighbours asked of only {n} images: lower k1")


def _nearest(d2: Tensor, k: int) -> Tensor:
    """The ``k`` smallest entries of each row, ordered by (value, column): as a stable argsort.

    ``topk`` orders ties arbitrarily; its pick is kept where no tie straddles the k-th value
    (then only the order within needs fixing), else the row is sorted stably."""
    vals, idx = torch.topk(d2, k, dim=1, largest=False, sorted=True)
    order = torch.argsort(idx, dim=1)
    vals, idx = vals.gather(1, order), idx.gather(1, order)
    order = torch.sort(vals, dim=1, stable=True).indices  # by value, then by column
    idx = idx.gather(1, order)
    straddle = torch.nonzero((d2 <= vals.amax(1, keepdim=True)).sum(1) > k).reshape(-1)
    for r in straddle.tolist():
        idx[r] = torch.sort(d2[r], stable=True).indices[:k]
    return idx


def _neighbours(x: Tensor, nq: int, k: int, lam: float, chunk: int, out: Tensor):
    """Step 1: each row's ``k`` nearest (``N x k`` int64, stable order) and squared maximum;
    writes ``lam * d`` of the query rows' gallery columns into ``out``."""
    n = x.shape[0]
    nn = np.empty((n, k), dtype=np.int64)
    row_max = torch.empty(n, dtype=torch.float64)
    for start, block in chunked_euclidean(x, x, chunk_size=chunk):
        rows = torch.arange(start, start + block.shape[0])
        d2 = block.double().square_()
        d2[rows - start, rows] = 0.0  # an item is at distance 0 from itself
        row_max[rows] = d2.amax(1)
        nn[start : start + block.shape[0]] = _nearest(d2, k).numpy()
        q = rows < nq
        if bool(q.any()):
            d = d2[q, nq:] / row_max[rows[q], None]
            out[rows[q]] = (d * lam).to(out.dtype)
    return nn, row_max


def _reciprocal(nn: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Step 2 for every item: ``(members, mask)``, both ``N x (k + 1)``: the ``k + 1`` nearest
    of ``i`` and whether each has ``i`` among its own ``k + 1`` nearest."""
    fwd = nn[:, : k + 1]
    me = np.arange(len(nn))[:, None, None]
    mask = np.empty(fwd.shape, dtype=bool)
    step = max(1, (1 << 20) // ((k + 1) ** 2))
    for s in range(0, len(nn), step):
        mask[s : s + step] = (fwd[fwd[s : s + step]] == me[s : s + step]).any(axis=2)
    return fwd, mask


def _expanded_pairs(nn: np.ndarray, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """Step 3: the ``(i, j)`` pairs with ``j`` in ``R*(i)``, sorted and unique."""
    n = len(nn)
    r1, m1 = _reciprocal(nn, k1)
    rh, mh = _reciprocal(nn, int(np.around(k1 / 2.0)))
    size_h = mh.sum(1)
    rows, cols = [np.nonzero(m1)[0]], [r1[m1]]
    step = max(1, (1 << 22) // (r1.shape[1] ** 2 * rh.shape[1]))
    for s in range(0, n, step):
        a, am = r1[s : s + step], m1[s : s + step]  # c x K1: R(i, k1)
        cand, cm = rh[a], mh[a]  # c x K1 x Kh: R(cand, k1/2)
        inside = (cand[..., None] == np.where(am, a, -1)[:, None, None, :]).any(-1)
        shared = (inside & cm).sum(-1)
        # the authors' test, in their floating-point form: |R_h(c) & R(i)| > 2/3 |R_h(c)|
        take = am & (shared > 2.0 / 3 * size_h[a])
        keep = take[..., None] & cm
        rows.append(np.broadcast_to(np.arange(s, s + len(a))[:, None, None], keep.shape)[keep])
        cols.append(cand[keep])
    key = np.unique(np.concatenate(rows) * n + np.concatenate(cols))
    return key // n, key % n


def _pair_d2(x: Tensor, i: np.ndarray, j: np.ndarray, row_max: Tensor) -> np.ndarray:
    """``d_ij`` of step 1 for the given pairs (direct differences, float64)."""
    xd = x.double()
    out = np.empty(len(i))
    step = max(1, _ROW_ELEMENTS // (8 * x.shape[1]))  # pairs per block (~32 MB each side)
    for s in range(0, len(i), step):
        a, b = torch.from_numpy(i[s : s + step]), torch.from_numpy(j[s : s + step])
        out[s : s + len(a)] = ((xd[a] - xd[b]).square().sum(1) / row_max[a]).numpy()
    return out


def _encode(x: Tensor, nn: np.ndarray, row_max: Tensor, k1: int, k2: int) -> sparse.csr_matrix:
    """Step 4: the sparse ``V`` after local query expansion (``N x N`` CSR, float64)."""
    n = len(nn)
    i, j = _expanded_pairs(nn, k1)
    w = np.exp(-_pair_d2(x, i, j, row_max))
    w /= np.bincount(i, weights=w, minlength=n)[i]
    v = sparse.csr_matrix((w, (i, j)), shape=(n, n))
    if k2 == 1:
        return v
    qe = sparse.csr_matrix(
        (np.ones(n * k2), nn[:, :k2].reshape(-1), np.arange(0, n * k2 + 1, k2)), shape=(n, n)
    )
    v = qe @ v
    v.data /= k2
    v.sort_indices()
    return v


def _blocks(work: np.ndarray, max_rows: int):
    """``(start, end)`` row blocks of at most ``max_rows`` rows and about ``_PAIR_BUDGET`` work."""
    start, total = 0, np.cumsum(work)
    while start < len(work):
        done = total[start - 1] if start else 0
        end = int(np.searchsorted(total, done + _PAIR_BUDGET, side="right"))
        end = min(max(end, start + 1), start + max_rows, len(work))
        yield start, end
        start = end


def _jaccard_into(out: Tensor, v: sparse.csr_matrix, nq: int, lam: float) -> None:
    """Steps 5-6: ``out[i] = (1 - lam) jaccard_i + out[i]`` for every query ``i``."""
    ng = v.shape[0] - nq
    vg = sparse.csc_matrix(v[nq:])  # per column: the gallery rows holding it
    col_nnz = np.diff(vg.indptr)
    work = np.add.reduceat(col_nnz[v.indices], v.indptr[:-1]) if v.nnz else np.zeros(nq)
    work = np.where(np.diff(v.indptr)[:nq] > 0, work[:nq], 0)
    for s, e in _blocks(work, max(1, _ROW_ELEMENTS // ng)):
        lo, hi = v.indptr[s], v.indptr[e]
        cols, vals = v.indices[lo:hi], v.data[lo:hi]
        rows = np.repeat(np.arange(e - s), np.diff(v.indptr[s : e + 1]))
        counts = col_nnz[cols]
        rep = np.repeat(np.arange(len(cols)), counts)
        # the gallery entries of each (query, column) triple's column, in column order
        pos = vg.indptr[cols][rep] + np.arange(counts.sum())
        pos -= np.repeat(np.cumsum(counts) - counts, counts)
        mins = np.minimum(vals[rep], vg.data[pos])
        m = np.bincount(rows[rep] * ng + vg.indices[pos], weights=mins, minlength=(e - s) * ng)
        jac = torch.from_numpy(1.0 - m / (2.0 - m)).view(e - s, ng)
        out[s:e] = (jac * (1.0 - lam)).to(out.dtype) + out[s:e]


@torch.no_grad()
def rerank_distances(
    q_feats,
    g_feats,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk_size: int | None = None,
) -> Tensor:
    """k-reciprocal re-ranked query x gallery distances (Zhong et al., CVPR 2017).

    Feed the result to :func:`drsl.metrics.evaluate_rank` in place of the plain distances.

    Args:
        q_feats (Tensor or np.ndarray): ``nq x D`` finite query embeddings.
        g_feats (Tensor or np.ndarray): ``ng x D`` finite gallery embeddings.
        k1 (int): neighbourhood size of the k-reciprocal sets. Default 20.
        k2 (int): neighbours averaged in the local query expansion, in ``[1, k1 + 1]``
            (1: none). Default 6.
        lambda_value (float): weight of the original distance, in ``[0, 1]``. Default 0.3.
        chunk_size (int, optional): distance rows per block in step 1 (default: ~4M entries).

    Returns:
        Tensor: ``nq x ng`` re-ranked distances on the CPU, float64 for float64 features,
        else float32 (computed in float64); in ``[0, 1]``, smaller = more similar.

    Reference: Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
    Encoding", CVPR 2017; the module docstring lists the steps.

    Example:
        >>> g = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
        >>> d = rerank_distances(g[:1] + 0.05, g, k1=2, k2=1)
        >>> d.argmin().item() in (0, 1), bool(d[0, 2] > d[0, 1])
        (True, True)
    """
    q = _as_features(q_feats, "q_feats").cpu()
    g = _as_features(g_feats, "g_feats").cpu()
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"q_feats and g_feats differ in dimension: {q.shape[1]} vs {g.shape[1]}")
    nq, ng = q.shape[0], g.shape[0]
    if nq == 0 or ng == 0:
        raise ValueError(f"need at least one query and one gallery item, got {nq} and {ng}")
    _check_params(k1, k2, lambda_value, nq + ng)
    x = torch.cat([q, g.to(q.dtype)])
    out_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    out = torch.empty(nq, ng, dtype=out_dtype)
    chunk = int(chunk_size) if chunk_size else max(1, _ROW_ELEMENTS // (nq + ng))
    nn, row_max = _neighbours(x, nq, k1 + 1, float(lambda_value), chunk, out)
    v = _encode(x, nn, row_max, int(k1), int(k2))
    _jaccard_into(out, v, nq, float(lambda_value))
    return out
