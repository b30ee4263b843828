"""Pairwise distances, cosine similarities and angles: the one home for them in drsl.

Every function follows the input's device and dtype and is differentiable. The losses,
the metrics and the plots all call these, so "distance" means the same thing everywhere.

Reference: spec ``drsl-loss.md``, "Words": retrieval score ``s_j = -||f_a - f_j||_2`` and
angle target ``t_j = (1 + cos(g_a, g_j)) / 2``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "pairwise_euclidean",
    "pairwise_cosine",
    "indexed_cosine",
    "unit_rows",
    "pairwise_angle",
    "chunked_euclidean",
]


def _pow2_scale(x: Tensor, dim: int | None = None) -> Tensor:
    """A power of two close to ``max |x|`` (over ``dim``, or all of ``x``), detached; 1 where 0.

    Dividing by a power of two is exact in floating point, so ``x / scale`` loses nothing while
    keeping squares and sums far from overflow (huge norms) and underflow (tiny ones).
    """
    a = x.detach().abs()
    if a.numel() == 0:
        return torch.ones((), dtype=x.dtype, device=x.device)
    m = a.amax() if dim is None else a.amax(dim=dim, keepdim=True)
    ok = torch.isfinite(m) & (m > 0)
    exponent = torch.frexp(torch.where(ok, m, torch.ones_like(m))).exponent
    # 2^exponent overflows for |x| >= 2^(max exponent - 1): the largest finite power instead
    exponent.clamp_(max=math.frexp(torch.finfo(x.dtype).max)[1] - 1)
    return torch.ldexp(torch.ones_like(m), exponent)


def _check_pair(x: Tensor, y: Tensor | None) -> Tensor:
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D (n x D), got shape {tuple(x.shape)}")
    if y is None:
        return x
    if y.dim() != 2:
        raise ValueError(f"y must be 2-D (m x D), got shape {tuple(y.shape)}")
    if y.shape[1] != x.shape[1]:
        raise ValueError(f"x and y differ in dimension: {x.shape[1]} vs {y.shape[1]}")
    if y.device != x.device or y.dtype != x.dtype:
        raise ValueError(
            "x and y must share device and dtype, got "
            f"{x.device}/{x.dtype} and {y.device}/{y.dtype}"
        )
    return y


def pairwise_euclidean(
    x: Tensor, y: Tensor | None = None, *, squared: bool = False, eps: float | None = None
) -> Tensor:
    """Euclidean distances between the rows of ``x`` and the rows of ``y``.

    Uses ``||x||^2 + ||y||^2 - 2 x y^T`` (one matrix product) after subtracting the mean of
    ``x``, which leaves distances unchanged but removes the cancellation error that a large
    common offset would cause, and after dividing by a power of two near the largest entry
    (exact in floating point), so that huge or tiny embeddings neither overflow nor underflow
    ``d^2``. With ``y=None`` the diagonal is exactly 0. The gradient is written by hand (one
    matrix product instead of autograd's two, first-order only); it is 0 for coincident points,
    where the direction is undefined, and damped (``1/d`` replaced by ``d/eps``) for pairs
    closer than ``sqrt(eps)``.

    Args:
        x (Tensor): ``n x D`` embeddings.
        y (Tensor, optional): ``m x D`` embeddings; ``None`` means ``x`` against itself.
        squared (bool): return squared distances (no square root). Default False.
        eps (float, optional): pairs with (rescaled) ``d^2 < eps`` get a damped gradient; default
            ``finfo(dtype).tiny ** 0.5`` (about 1e-19 in float32, 1e-154 in float64).

    Returns:
        Tensor: ``n x m`` distances, same device and dtype as ``x``.

    Reference: spec "Words", retrieval score ``s_j = -||f_a - f_j||_2``.

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
        >>> pairwise_euclidean(x)
        tensor([[0., 5.],
                [5., 0.]])
        >>> pairwise_euclidean(x, torch.tensor([[0.0, 1.0]]), squared=True)
        tensor([[ 1.],
                [18.]])
    """
    y_ = _check_pair(x, y)
    if not (torch.is_grad_enabled() and (x.requires_grad or (y is not None and y_.requires_grad))):
        # inference: the same values, in place, with nothing saved for a backward pass (as
        # fast as torch.cdist here; building the saved tensors made it 1.7x slower)
        _, _, c, d2 = _scaled_squares(x, y)
        return d2.mul_(c * c) if squared else d2.sqrt_().mul_(c)
    if eps is None:
        eps = math.sqrt(torch.finfo(x.dtype).tiny)
    return _Euclidean.apply(x, y_ if y is not None else None, squared, eps)


def _scaled_squares(x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(xs, ys, c, d2)``: the centred rows divided by the power of two ``c``, and their
    squared distances ``d2`` (``c^2 d2`` is the squared distance of ``x`` and ``y``)."""
    centre = x.mean(dim=0, keepdim=True) if x.shape[0] > 0 else 0.0
    xc = x - centre
    yc = xc if y is None else y - centre
    # exact power-of-two rescaling: d(x, y) = c * d(x / c, y / c) without overflow of d^2
    c = _pow2_scale(xc) if y is None else torch.maximum(_pow2_scale(xc), _pow2_scale(yc))
    xs = xc / c
    ys = xs if y is None else yc / c
    x2 = (xs * xs).sum(dim=1, keepdim=True)
    y2 = x2 if y is None else (ys * ys).sum(dim=1, keepdim=True)
    # in place into the n x m sum (the same gemm call as torch.addmm, so the same values,
    # without a second n x m tensor)
    d2 = (x2 + y2.transpose(0, 1)).addmm_(xs, ys.transpose(0, 1), alpha=-2.0)
    d2.clamp_(min=0.0)
    if y is None:
        d2.fill_diagonal_(0.0)  # exact zeros on the diagonal
    return xs, ys, c, d2


class _Euclidean(torch.autograd.Function):
    """The distance matrix with a hand-written backward: a few in-place ``n x m`` passes and one
    matrix product (two for ``y``), where autograd through the expansion needs about four times
    as many passes. First-order only (``once_differentiable``)."""

    @staticmethod
    def forward(ctx, x, y, squared, eps):
        xs, ys, c, d2 = _scaled_squares(x, y)
        ctx.squared, ctx.self_pairs = squared, y is None
        if squared:
            ctx.save_for_backward(xs, ys, c)
            return d2 * (c * c)
        ds = d2.sqrt()
        # 1 / ds, damped to ds / eps for pairs closer than sqrt(eps) (0 at coincident points)
        ctx.save_for_backward(xs, ys, c, ds / d2.clamp_(min=eps))
        return ds.mul_(c)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        xs, ys, c = ctx.saved_tensors[:3]
        # dd_ij/dx_i = w_ij (xs_i - ys_j) with w = g / ds, or w = 2 c g for squared distances;
        # the scale c cancels out
        w = grad * (2.0 * c) if ctx.squared else grad * ctx.saved_tensors[3]
        if ctx.self_pairs:  # x against itself: both ends of every pair are rows of x
            row = w.sum(dim=1, keepdim=True) + w.sum(dim=0).unsqueeze(1)
            return row * xs - (w + w.transpose(0, 1)) @ xs, None, None, None
        gx = gy = None
        if ctx.needs_input_grad[0]:
            gx = w.sum(dim=1, keepdim=True) * xs - w @ ys
        if ctx.needs_input_grad[1]:
            gy = w.sum(dim=0).unsqueeze(1) * ys - w.transpose(0, 1) @ xs
        return gx, gy, None, None


def pairwise_cosine(x: Tensor, y: Tensor | None = None, *, eps: float = 1e-8) -> Tensor:
    """Cosine similarities between the rows of ``x`` and of ``y``.

    A zero row has cosine 0 with everything (its norm is floored at ``eps``). Rows are divided
    by a power of two near their largest entry first (exact), so huge or tiny rows are fine.

    Args:
        x (Tensor): ``n x D`` embeddings.
        y (Tensor, optional): ``m x D`` embeddings; ``None`` means ``x`` against itself.
        eps (float): floor under each row norm. Default 1e-8.

    Returns:
        Tensor: ``n x m`` cosines in ``[-1, 1]``, same device and dtype as ``x``.

    Reference: spec "Words", angle target ``t_j = (1 + cos(g_a, g_j)) / 2``.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
        >>> pairwise_cosine(x)
        tensor([[ 1.,  0., -1.],
                [ 0.,  1.,  0.],
                [-1.,  0.,  1.]])
    """
    y_ = _check_pair(x, y)
    xn = unit_rows(x, eps)
    yn = xn if y is None else unit_rows(y_, eps)
    return (xn @ yn.transpose(0, 1)).clamp(-1.0, 1.0)


def unit_rows(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Rows (last dimension) scaled to unit length, without overflow or underflow.

    Each row is first divided by a power of two near its largest entry (exact), so its norm
    neither overflows for huge rows nor vanishes for tiny ones; a zero row stays zero.

    Args:
        x (Tensor): ``... x D``. eps (float): floor under each norm. Default 1e-8.

    Returns:
        Tensor: same shape, device and dtype.

    Example:
        >>> unit_rows(torch.tensor([[3e30, 4e30], [0.0, 0.0]]))
        tensor([[0.6000, 0.8000],
                [0.0000, 0.0000]])
    """
    xs = x / _pow2_scale(x, dim=-1)
    return xs / xs.norm(dim=-1, keepdim=True).clamp_min(eps)


def indexed_cosine(x: Tensor, index: Tensor, *, eps: float = 1e-8) -> Tensor:
    """Cosines ``cos(x[a], x[index[a, p]])`` of selected pairs, without the ``n x n`` matrix.

    Args:
        x (Tensor): ``n x D`` vectors.
        index (Tensor): ``n x P`` long, row indices into ``x``.
        eps (float): floor under each row norm (a zero row has cosine 0). Default 1e-8.

    Returns:
        Tensor: ``n x P`` cosines in ``[-1, 1]``, same device and dtype as ``x``.

    Reference: spec "Words", angle target ``t_j = (1 + cos(g_a, g_j)) / 2`` for the positives.

    Example:
        >>> x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]])
        >>> indexed_cosine(x, torch.tensor([[1, 2], [0, 0], [2, 0]]))
        tensor([[ 0., -1.],
                [ 0.,  0.],
                [ 1., -1.]])
    """
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D (n x D), got shape {tuple(x.shape)}")
    if index.dim() != 2 or index.shape[0] != x.shape[0]:
        raise ValueError(f"index must be n x P with n = {x.shape[0]}, got {tuple(index.shape)}")
    xn = unit_rows(x, eps)
    picked = xn.index_select(0, index.reshape(-1)).view(*index.shape, x.shape[1])
    return (picked * xn[:, None, :]).sum(dim=2).clamp(-1.0, 1.0)


def pairwise_angle(x: Tensor, y: Tensor | None = None, *, degrees: bool = True) -> Tensor:
    """Angles between the rows of ``x`` and of ``y`` (``arccos`` of the cosine).

    Args:
        x (Tensor): ``n x D`` embeddings.
        y (Tensor, optional): ``m x D`` embeddings; ``None`` means ``x`` against itself.
        degrees (bool): degrees (default) or radians.

    Returns:
        Tensor: ``n x m`` angles in ``[0, 180]`` degrees (or ``[0, pi]``).

    Reference: the paper's "angle" between embeddings (abstract); spec "Words".

    Example:
        >>> pairwise_angle(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        tensor([[ 0., 45.],
                [45.,  0.]])
    """
    ang = torch.arccos(pairwise_cosine(x, y))
    if y is None:
        ang = ang * (1.0 - torch.eye(ang.shape[0], dtype=ang.dtype, device=ang.device))
    return torch.rad2deg(ang) if degrees else ang


def chunked_euclidean(x: Tensor, y: Tensor, *, chunk_size: int = 1024):
    """Yield ``(start, block)`` with the Euclidean distances of ``x[start:start+c]`` to ``y``.

    For evaluation over large galleries without holding an ``n x m`` matrix at once. The
    gallery side (centring on the mean of ``x``, the power-of-two scale, the squared norms) is
    prepared once for all blocks, and every block is centred and scaled the same way, so the
    blocks stacked equal one :func:`pairwise_euclidean` up to rounding. No gradient flows
    (evaluation); use :func:`pairwise_euclidean` to differentiate.

    Args:
        x (Tensor): ``n x D`` queries.
        y (Tensor): ``m x D`` gallery.
        chunk_size (int): rows of ``x`` per block (> 0). Default 1024.

    Yields:
        tuple[int, Tensor]: the first row index and the ``c x m`` block of distances.

    Reference: spec "Words"; same distance as :func:`pairwise_euclidean`.

    Example:
        >>> x = torch.zeros(3, 2); y = torch.tensor([[3.0, 4.0]])
        >>> [(s, b.flatten().tolist()) for s, b in chunked_euclidean(x, y, chunk_size=2)]
        [(0, [5.0, 5.0]), (2, [5.0])]
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    _check_pair(x, y)
    with torch.no_grad():
        centre = x.mean(dim=0, keepdim=True) if x.shape[0] > 0 else 0.0
        yc = y - centre
        # one exact power-of-two scale for every block (the largest entry of x or y)
        c = torch.maximum(_pow2_scale(yc), _pow2_scale(x - centre)) if x.shape[0] else 1.0
        ys = yc / c
        y2t = (ys * ys).sum(dim=1).unsqueeze(0)
    for start in range(0, x.shape[0], chunk_size):
        with torch.no_grad():  # closed before the yield: the caller's grad mode is untouched
            xs = (x[start : start + chunk_size] - centre) / c
            d2 = ((xs * xs).sum(dim=1, keepdim=True) + y2t).addmm_(xs, ys.T, alpha=-2.0)
            block = d2.clamp_(min=0.0).sqrt_().mul_(c)
        yield start, block
