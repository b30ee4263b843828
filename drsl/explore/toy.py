"""A toy embedding trained directly (no network): the points of a toy batch, moved N steps.

Reference: ``docs/drsl-loss-spec.md``, "Two ways to get a gradient" (the identity update moves
the points).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from drsl.config import torch_threads

from .batch import _check_pk, toy_batch
from .menu import make_loss

__all__ = ["ToyRun", "train_toy"]


@dataclass
class ToyRun:
    """A toy embedding's trajectory under one loss (see :func:`train_toy`).

    Attributes:
        loss (str): the loss name.
        positions (Tensor): ``(steps+1) x B x D`` point positions, step 0 the start.
        labels (Tensor): ``B`` identity labels.
        losses (Tensor): ``steps+1`` loss values at those positions.
        sphere (bool): whether the points live on the unit sphere (D = 3) or the plane (D = 2).
    """

    loss: str
    positions: Tensor
    labels: Tensor
    losses: Tensor
    sphere: bool

    @property
    def steps(self) -> int:
        """Number of training steps (``positions`` holds one more frame)."""
        return self.positions.shape[0] - 1


def train_toy(
    loss: str = "drsl",
    P: int = 4,
    K: int = 4,
    *,
    steps: int = 60,
    lr: float = 0.05,
    sphere: bool = False,
    separation: float = 1.0,
    noise: float = 1.0,
    delta: float | None = None,
    sort_weight: float = 1.0,
    seed: int = 0,
) -> ToyRun:
    """Train the points of a toy batch directly (no network) for ``steps`` steps.

    Each step moves every point against its gradient (for ``"drsl"``: the identity update),
    scaled so that the point with the largest gradient moves exactly ``lr``: every loss then
    moves at the same speed while the relative push between points is kept as the loss gives
    it. On the sphere the loss sees the L2-normalised points and they are normalised again
    after each step.

    Args:
        loss (str): a registry name (see :func:`make_loss`). Default ``"drsl"``.
        P (int): identities (>= 2). K (int): points per identity (>= 2).
        steps (int): training steps (>= 0). Default 60.
        lr (float): distance moved per step by the most-pushed point (> 0). Default 0.05.
        sphere (bool): 3-D unit sphere instead of the 2-D plane. Default False.
        separation, noise (float): start geometry (see :func:`toy_batch`).
        delta, sort_weight: DRSL's parameters (see :func:`make_loss`).
        seed (int): seed of the start positions.

    Returns:
        ToyRun: positions ``(steps+1) x P*K x D`` and the loss at each frame.

    Reference: spec "Two ways to get a gradient" (the identity update moves the points).

    Example:
        >>> run = train_toy("triplet", 2, 2, steps=3)
        >>> tuple(run.positions.shape), tuple(run.losses.shape)
        ((4, 4, 2), (4,))
    """
    _check_pk(P, K, min_p=2, min_k=2)
    if not isinstance(steps, int | np.integer) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    fn = make_loss(loss, delta=delta, sort_weight=sort_weight)
    dim = 3 if sphere else 2
    x, labels = toy_batch(
        P, K, dim=dim, separation=separation, noise=noise, sphere=sphere, seed=seed
    )
    with torch_threads(1):
        return _train_points(fn, x, labels, int(steps), float(lr), bool(sphere), loss)


def _train_points(fn, x: Tensor, labels: Tensor, steps: int, lr: float, sphere: bool, loss: str):
    """The loop of :func:`train_toy` (normalised steps; on the sphere, renormalised)."""
    frames = [x]
    values = []
    for _ in range(steps):  # optimisation steps: sequential by nature
        xr = x.detach().requires_grad_(True)
        value = fn(F.normalize(xr, dim=1) if sphere else xr, labels)
        (grad,) = torch.autograd.grad(value, xr, allow_unused=True)
        values.append(float(value.detach()))
        if grad is None:
            grad = torch.zeros_like(x)
        top = grad.norm(dim=1).max()
        x = x - lr * grad / top if top > 0 else x.clone()
        if sphere:
            x = F.normalize(x, dim=1)
        frames.append(x.detach())
    with torch.no_grad():
        values.append(float(fn(F.normalize(x, dim=1) if sphere else x, labels)))
    return ToyRun(
        loss=loss,
        positions=torch.stack(frames),
        labels=labels,
        losses=torch.tensor(values, dtype=x.dtype),
        sphere=bool(sphere),
    )
