"""Checking gradients: central finite differences, step sweeps, and comparing gradient fields.

Finite differences estimate a derivative from function values alone:
``(f(x + h v) - f(x - h v)) / (2 h)`` has a truncation error ``O(h^2)`` (the Taylor terms it
ignores) and a round-off error ``O(eps / h)`` (the difference of two nearly equal numbers,
divided by a small one). Their sum is V-shaped in ``h`` on a log-log plot, with its bottom
near ``h ~ eps^(1/3)`` (about 6e-6 in float64, 5e-3 in float32). A kink of the function
within ``h`` of ``x`` (the linear ramp has one wherever a score difference equals
``+-delta``) breaks the ``O(h^2)`` law: the estimate then mixes two slopes.

The identity update of DRSL is not the gradient of any function: finite differences cannot
check it. :func:`identity_vs_smooth` compares it with the smooth gradient instead (cosine,
relative norm), and :func:`push_totals` measures its balance.

Reference: spec ``drsl-loss.md``, "Two ways to get a gradient"; Nocedal & Wright, "Numerical
Optimization", 2nd ed., Sec. 8.1 (finite-difference derivative approximations).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .losses import (
    DEFAULT_DELTA,
    angle_targets,
    drsl_from_scores,
    identity_update,
    retrieval_scores,
)

__all__ = [
    "autograd_gradient",
    "numerical_gradient",
    "directional_derivative",
    "StepSweep",
    "step_sweep",
    "line_profile",
    "GradientComparison",
    "compare_gradients",
    "IdentityVsSmooth",
    "identity_vs_smooth",
    "push_totals",
    "score_row_loss",
]

Scalar = Callable[[Tensor], Tensor]


def _check_x(x: Tensor) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {type(x).__name__}")


def autograd_gradient(fn: Scalar, x: Tensor) -> Tensor:
    """The gradient of a scalar function by autograd, at a detached copy of ``x``.

    Args:
        fn (Callable[[Tensor], Tensor]): maps a tensor shaped like ``x`` to a 0-d tensor.
        x (Tensor): the point (not modified).

    Returns:
        Tensor: ``d fn / d x``, shaped like ``x`` (zeros where ``fn`` does not depend on it).

    Reference: PyTorch ``torch.autograd.grad``.

    Example:
        >>> autograd_gradient(lambda v: (v**2).sum(), torch.tensor([1.0, -2.0]))
        tensor([ 2., -4.])
    """
    _check_x(x)
    xr = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = fn(xr)
        if out.dim() != 0:
            raise ValueError(f"fn must return a 0-d tensor, got shape {tuple(out.shape)}")
        (g,) = torch.autograd.grad(out, xr, allow_unused=True)
    return torch.zeros_like(xr) if g is None else g.detach()


def numerical_gradient(fn: Scalar, x: Tensor, *, step: float = 1e-6) -> Tensor:
    """Central finite-difference gradient, one coordinate at a time.

    ``g_k = (f(x + h e_k) - f(x - h e_k)) / (2 h)``: ``2 numel(x)`` evaluations, so meant for
    small inputs (a teaching and checking tool, not a hot path). Use float64.

    Args:
        fn (Callable[[Tensor], Tensor]): scalar function.
        x (Tensor): the point (not modified).
        step (float): ``h > 0``. Default 1e-6 (near the float64 optimum).

    Returns:
        Tensor: the estimate, shaped like ``x``.

    Reference: Nocedal & Wright, Sec. 8.1, Eq. 8.7.

    Example:
        >>> x = torch.tensor([1.0, -2.0], dtype=torch.float64)
        >>> numerical_gradient(lambda v: (v**3).sum(), x, step=1e-5)
        tensor([ 3.0000, 12.0000], dtype=torch.float64)
    """
    _check_x(x)
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step!r}")
    base = x.detach().clone()
    flat = base.view(-1)
    out = torch.empty_like(flat)
    with torch.no_grad():
        for k in range(flat.numel()):  # one coordinate at a time: the definition
            old = flat[k].item()
            flat[k] = old + step
            up = float(fn(base))
            flat[k] = old - step
            down = float(fn(base))
            flat[k] = old
            out[k] = (up - down) / (2 * step)
    return out.view_as(x)


def directional_derivative(fn: Scalar, x: Tensor, direction: Tensor, step: float) -> float:
    """Central difference along a direction: ``(f(x + h v) - f(x - h v)) / (2 h)``.

    Args:
        fn (Callable[[Tensor], Tensor]): scalar function.
        x (Tensor): the point.
        direction (Tensor): ``v``, shaped like ``x``.
        step (float): ``h > 0``.

    Returns:
        float: the estimate of ``<grad f(x), v>``.

    Reference: Nocedal & Wright, Sec. 8.1.

    Example:
        >>> x = torch.tensor([1.0, 2.0], dtype=torch.float64)
        >>> round(directional_derivative(lambda v: (v**2).sum(), x, torch.ones(2, dtype=torch.float64), 1e-3), 6)
        6.0
    """  # noqa: E501
    _check_x(x)
    if direction.shape != x.shape:
        raise ValueError(f"direction must have x's shape {tuple(x.shape)}")
    if not step > 0:
        raise ValueError(f"step must be > 0, got {step!r}")
    v = direction.to(x.dtype)
    with torch.no_grad():
        return (float(fn(x + step * v)) - float(fn(x - step * v))) / (2 * step)


@dataclass(frozen=True)
class StepSweep:
    """Finite differences along one direction for many steps ``h``, against autograd.

    Attributes:
        steps (np.ndarray): the steps ``h``.
        estimates (np.ndarray): the central differences, one per step.
        exact (float): autograd's ``<grad f(x), v>``.
        errors (np.ndarray): ``|estimate - exact| / max(|exact|, tiny)``.
    """

    steps: np.ndarray
    estimates: np.ndarray
    exact: float
    errors: np.ndarray

    @property
    def best_step(self) -> float:
        """float: the step with the smallest error (the bottom of the V)."""
        return float(self.steps[int(np.argmin(self.errors))])


def _unit_direction(x: Tensor, direction: Tensor | None, seed: int) -> Tensor:
    if direction is None:
        g = torch.Generator().manual_seed(seed)
        direction = torch.randn(x.shape, generator=g, dtype=torch.float64)
    v = direction.detach().to(device=x.device, dtype=x.dtype)
    norm = v.norm()
    if not norm > 0:
        raise ValueError("direction must be non-zero")
    return v / norm


def step_sweep(
    fn: Scalar,
    x: Tensor,
    steps: Sequence[float] | None = None,
    *,
    direction: Tensor | None = None,
    seed: int = 0,
) -> StepSweep:
    """Relative error of the central difference against autograd, for each step ``h``.

    Plotted on log-log axes this is the V: truncation error ``~h^2`` on the right, round-off
    ``~eps/h`` on the left.

    Args:
        fn (Callable[[Tensor], Tensor]): scalar function.
        x (Tensor): the point (its dtype sets the round-off).
        steps (Sequence[float], optional): the steps; default ``logspace(-12, 0, 49)``
            (float64) or ``logspace(-7, 0, 29)`` (others).
        direction (Tensor, optional): the direction ``v`` (normalised); default a seeded random
            unit vector.
        seed (int): seed of the random direction. Default 0.

    Returns:
        StepSweep: steps, estimates, autograd's value and the relative errors.

    Reference: Nocedal & Wright, Sec. 8.1 (error of the central difference).

    Example:
        >>> sw = step_sweep(lambda v: torch.sin(v).sum(), torch.ones(3, dtype=torch.float64))
        >>> 1e-7 < sw.best_step < 1e-3 and float(sw.errors.min()) < 1e-9
        True
    """
    _check_x(x)
    if steps is None:
        steps = np.logspace(-12, 0, 49) if x.dtype == torch.float64 else np.logspace(-7, 0, 29)
    steps = np.asarray(steps, dtype=float)
    if steps.ndim != 1 or len(steps) == 0 or np.any(steps <= 0):
        raise ValueError("steps must be a non-empty 1-D sequence of positive numbers")
    v = _unit_direction(x, direction, seed)
    exact = float((autograd_gradient(fn, x) * v).sum())
    est = np.array([directional_derivative(fn, x, v, float(h)) for h in steps])
    errors = np.abs(est - exact) / max(abs(exact), np.finfo(float).tiny)
    return StepSweep(steps, est, exact, errors)


def line_profile(
    fn: Scalar, x: Tensor, direction: Tensor, ts: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """``fn`` and its autograd slope along the line ``x + t v``.

    Where the function has a kink (the linear ramp's ``+-delta`` corners) the slope jumps;
    finite differences straddling it average the two sides.

    Args:
        fn (Callable[[Tensor], Tensor]): scalar function.
        x (Tensor): the point at ``t = 0``.
        direction (Tensor): ``v`` (used as given, not normalised).
        ts (Sequence[float]): positions ``t``.

    Returns:
        tuple[np.ndarray, np.ndarray]: values ``fn(x + t v)`` and slopes ``<grad, v>``.

    Reference: spec "Words", the linear step ``H`` (kinks at ``x = +-delta``).

    Example:
        >>> vals, slopes = line_profile(lambda v: v.abs().sum(), torch.zeros(1), torch.ones(1), [-1, 1])
        >>> vals.tolist(), slopes.tolist()
        ([1.0, 1.0], [-1.0, 1.0])
    """  # noqa: E501
    _check_x(x)
    v = direction.detach().to(x.dtype)
    vals, slopes = [], []
    for t in ts:  # positions along one line: a plot's worth of points
        xt = x.detach() + float(t) * v
        with torch.no_grad():
            vals.append(float(fn(xt)))
        slopes.append(float((autograd_gradient(fn, xt) * v).sum()))
    return np.array(vals), np.array(slopes)


@dataclass(frozen=True)
class GradientComparison:
    """How two gradient fields ``a`` and ``b`` agree (``b`` is the reference).

    Attributes:
        cosine (float): ``<a, b> / (|a| |b|)`` (1 = same direction; 0 if either is zero).
        relative_norm (float): ``|a| / |b|`` (``inf`` if only ``b`` is zero, 1 if both are).
        relative_error (float): ``|a - b| / |b|`` (``inf`` / 0 likewise).
        max_abs_diff (float): ``max |a - b|``.
    """

    cosine: float
    relative_norm: float
    relative_error: float
    max_abs_diff: float


def _ratio(num: float, den: float) -> float:
    if den > 0:
        return num / den
    return 0.0 if num == 0 else float("inf")


def compare_gradients(a: Tensor, b: Tensor) -> GradientComparison:
    """Cosine, relative norm and relative error of gradient field ``a`` against ``b``.

    Args:
        a (Tensor): a gradient (any shape).
        b (Tensor): the reference, same shape.

    Returns:
        GradientComparison: the four numbers (computed in float64).

    Reference: standard gradient-checking measures (e.g. ``torch.autograd.gradcheck``'s
    ``|a - b| <= atol + rtol |b|``).

    Example:
        >>> c = compare_gradients(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 0.0]))
        >>> round(c.cosine, 4), round(c.relative_norm, 4), round(c.relative_error, 4)
        (0.7071, 0.7071, 0.7071)
    """
    if a.shape != b.shape:
        raise ValueError(f"a and b must have one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a64 = a.detach().to(torch.float64).flatten()
    b64 = b.detach().to(torch.float64).flatten().to(a64.device)
    na, nb = float(a64.norm()), float(b64.norm())
    cos = float(a64 @ b64) / (na * nb) if na > 0 and nb > 0 else 0.0
    diff = a64 - b64
    return GradientComparison(
        cosine=cos,
        relative_norm=1.0 if na == nb == 0 else _ratio(na, nb),
        relative_error=_ratio(float(diff.norm()), nb),
        max_abs_diff=float(diff.abs().max()) if diff.numel() else 0.0,
    )


@dataclass(frozen=True)
class IdentityVsSmooth:
    """DRSL's identity update and smooth gradient on the same batch, both as ``dL/ds``.

    Attributes:
        identity (Tensor): ``B x B`` identity update (ranking + sorting).
        smooth (Tensor): ``B x B`` autograd gradient of the smooth loss w.r.t. the scores.
        overall (GradientComparison): identity against smooth, all entries.
        per_anchor_cosine (np.ndarray): cosine per anchor row (NaN for rows where either is 0).
    """

    identity: Tensor
    smooth: Tensor
    overall: GradientComparison
    per_anchor_cosine: np.ndarray


def identity_vs_smooth(
    embeddings: Tensor,
    labels: Tensor,
    *,
    delta: float = DEFAULT_DELTA,
    smoothing: str = "sigmoid",
    sort_weight: float = 1.0,
    angle_embeddings: Tensor | None = None,
) -> IdentityVsSmooth:
    """Compare the identity update with the smooth gradient, on the score matrix.

    Args:
        embeddings (Tensor): ``B x D`` embeddings.
        labels (Tensor): ``B`` integer labels.
        delta (float): step width. smoothing (str): step kind (default ``"sigmoid"``).
        sort_weight (float): ``lambda``.
        angle_embeddings (Tensor, optional): for the angle targets; default ``embeddings``.

    Returns:
        IdentityVsSmooth: both ``B x B`` fields and their agreement.

    Reference: spec "Two ways to get a gradient".

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> f = torch.randn(12, 4, generator=g, dtype=torch.float64)
        >>> r = identity_vs_smooth(f, torch.arange(4).repeat_interleave(3), delta=1.0)
        >>> r.overall.cosine > 0.5
        True
    """
    x = embeddings.detach()
    s = retrieval_scores(x)
    t = angle_targets(x if angle_embeddings is None else angle_embeddings)
    kw = dict(delta=delta, smoothing=smoothing, sort_weight=sort_weight)
    ident = identity_update(s, labels, t, **kw).total
    smooth = autograd_gradient(lambda sc: drsl_from_scores(sc, labels, t, **kw), s)
    smooth = smooth.to(ident.dtype)
    num = (ident * smooth).sum(dim=1)
    den = ident.norm(dim=1) * smooth.norm(dim=1)
    per_anchor = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), torch.nan)
    return IdentityVsSmooth(
        ident, smooth, compare_gradients(ident, smooth), per_anchor.cpu().numpy()
    )


def push_totals(update: Tensor, labels: Tensor) -> dict[str, np.ndarray]:
    """Per anchor, how hard an update on the scores pushes positives up and negatives down.

    With ``G = dL/ds`` (row = anchor; gradient descent moves ``s`` by ``-G``):
    ``pos_push = -sum_{j in P_a} G[a, j]``, ``neg_push = sum_{j in N_a} G[a, j]``, and the
    absolute masses ``pos_abs``, ``neg_abs``. For DRSL's identity update (ranking part)
    ``pos_push == neg_push == pos_abs == neg_abs``: the balance property.

    Args:
        update (Tensor): ``B x B`` ``dL/ds``.
        labels (Tensor): ``B`` integer labels.

    Returns:
        dict[str, np.ndarray]: ``"pos_push"``, ``"neg_push"``, ``"pos_abs"``, ``"neg_abs"``,
        each of length ``B``.

    Reference: spec "Two ways to get a gradient", 2 (RS Loss's balance property).

    Example:
        >>> G = torch.tensor([[0.0, -0.5, 0.5], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        >>> push_totals(G, torch.tensor([0, 0, 1]))["pos_push"].tolist()
        [0.5, 0.0, 0.0]
    """
    b = labels.shape[0]
    if update.shape != (b, b):
        raise ValueError(f"update must be B x B with B = {b}, got {tuple(update.shape)}")
    y = labels.to(update.device)
    same = y[:, None] == y[None, :]
    pos = same & ~torch.eye(b, dtype=torch.bool, device=update.device)
    g = update.detach().to(torch.float64)
    return {
        "pos_push": (0.0 - (g * pos).sum(dim=1)).cpu().numpy(),  # 0.0 - x: no "-0.0"
        "neg_push": (g * ~same).sum(dim=1).cpu().numpy(),
        "pos_abs": (g.abs() * pos).sum(dim=1).cpu().numpy(),
        "neg_abs": (g.abs() * ~same).sum(dim=1).cpu().numpy(),
    }


def _row_loss(row: Tensor, *, scores: Tensor, anchor: int, labels: Tensor, targets: Tensor, kw):
    s = torch.cat([scores[:anchor], row[None], scores[anchor + 1 :]])
    return drsl_from_scores(s, labels, targets, **kw)


def score_row_loss(
    scores: Tensor, labels: Tensor, targets: Tensor, *, anchor: int = 0, **drsl_kwargs
) -> Scalar:
    """DRSL of a batch as a function of one anchor's score row, all else held fixed.

    Moving one entry of the row moves one item up or down that anchor's list: the simplest
    line along which to see the linear ramp's corners.

    Args:
        scores (Tensor): ``B x B`` scores (the fixed rows).
        labels (Tensor): ``B`` integer labels.
        targets (Tensor): ``B x B`` angle targets.
        anchor (int): the row that varies. Default 0.
        **drsl_kwargs: ``delta``, ``smoothing``, ``sort_weight``, ``gradient`` of
            :func:`drsl.losses.drsl_from_scores`.

    Returns:
        Callable[[Tensor], Tensor]: ``row (B,) -> loss`` (0-d).

    Reference: spec "The loss for one anchor".

    Example:
        >>> s = torch.tensor([[0.0, -1.0, -2.0], [-1.0, 0.0, -3.0], [-2.0, -3.0, 0.0]])
        >>> fn = score_row_loss(s, torch.tensor([0, 0, 1]), torch.ones(3, 3), smoothing="hard")
        >>> fn(s[0]).item(), fn(torch.tensor([0.0, -1.0, -0.5])).item()
        (0.0, 0.25)
    """
    b = scores.shape[0]
    if not 0 <= anchor < b:
        raise ValueError(f"anchor must be in [0, {b}), got {anchor}")
    return functools.partial(
        _row_loss,
        scores=scores.detach(),
        anchor=anchor,
        labels=labels,
        targets=targets,
        kw=drsl_kwargs,
    )
