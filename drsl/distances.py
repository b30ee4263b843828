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

__all__ = [
    "pairwise_euclidean",
    "pairwise_cosine",
    "pairwise_angle",
    "chunked_euclidean",
]


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
    common offset would cause. With ``y=None`` the diagonal is exactly 0. The square root is
    taken of ``max(d^2, eps)`` so that its gradient stays finite for coincident points
    (it is 0 there).

    Args:
        x (Tensor): ``n x D`` embeddings.
        y (Tensor, optional): ``m x D`` embeddings; ``None`` means ``x`` against itself.
        squared (bool): return squared distances (no square root). Default False.
        eps (float, optional): floor under ``d^2`` before the square root; default
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
    centre = x.detach().mean(dim=0, keepdim=True) if x.shape[0] > 0 else 0.0
    xc = x - centre
    yc = xc if y is None else y_ - centre
    x2 = (xc * xc).sum(dim=1, keepdim=True)
    y2 = x2 if y is None else (yc * yc).sum(dim=1, keepdim=True)
    d2 = (x2 + y2.transpose(0, 1) - 2.0 * (xc @ yc.transpose(0, 1))).clamp_min(0.0)
    if y is None:
        # exact zeros on the diagonal, without an in-place write on an autograd tensor
        d2 = d2 * (1.0 - torch.eye(d2.shape[0], dtype=d2.dtype, device=d2.device))
    if squared:
        return d2
    if eps is None:
        eps = math.sqrt(torch.finfo(d2.dtype).tiny)
    return d2.clamp_min(eps).sqrt() * (d2 > 0)


def pairwise_cosine(x: Tensor, y: Tensor | None = None, *, eps: float = 1e-8) -> Tensor:
    """Cosine similarities between the rows of ``x`` and of ``y``.

    A zero row has cosine 0 with everything (its norm is floored at ``eps``).

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
    xn = x / x.norm(dim=1, keepdim=True).clamp_min(eps)
    yn = xn if y is None else y_ / y_.norm(dim=1, keepdim=True).clamp_min(eps)
    return (xn @ yn.transpose(0, 1)).clamp(-1.0, 1.0)


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

    For evaluation over large galleries without holding an ``n x m`` matrix at once.

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
    for start in range(0, x.shape[0], chunk_size):
        yield start, pairwise_euclidean(x[start : start + chunk_size], y)
