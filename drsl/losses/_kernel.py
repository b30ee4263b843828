"""The private blocked step-sum kernel: sums of ``H(s_j - s_i)`` over ``B x P x N`` blocks.

For anchor ``a`` and positive ``i`` the spec needs sums over every other item ``j`` of the
retrieval set (``N = B + R`` items: the batch, then the references) of ``H(s_j - s_i)``.
:class:`StepSums` computes ``out[a, p, m] = sum_j w[m, a, j] H(d_i - d_j)`` for the positive
``i = pos_index[a, p]`` of every anchor, on a distance-like matrix ``d = -s`` (``B x N``). The
``B x P x N`` block is never kept for the backward pass (it is recomputed there) and is walked
in blocks of anchors of at most ``_BLOCK_ELEMENTS`` elements, so memory stays
``O(B x P x N)`` transiently and ``O(B x N)`` held, never ``N^2 x B`` (spec "Beyond the batch").

When the anchors need several blocks, :class:`BlockPlan` walks them in order of decreasing
positive count and trims each block to the largest count among its anchors, so padded slots
(``P`` is the largest count of all) cost nothing: with a cross-batch memory the counts vary a
lot (B = 256, R = 8192 references of earlier PK batches: 14.5 positives on average, 31 at
most; the two sweeps of the smooth gradient went from 96 to 44 ms, with the smaller blocks
below). Every ``(anchor, slot)`` sum is computed by the same operations on the same row
whatever block it falls in, so the plan changes no value (``tests/test_losses_blocks.py``
compares it bit for bit; only the sigmoid's vectorised ``exp`` may differ in the last bit
at the ragged end of a block whose size is not a multiple of the SIMD width, as it does for
any change of the block size).

Reference: spec ``docs/drsl-loss-spec.md``, "Words" (the step function ``H``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._common import autocast_off
from .drsl_options import DEFAULT_DELTA, SMOOTHINGS

__all__ = ["step_function"]

#: Default width ``delta`` of the smoothed step, in units of the embedding distance.
#: It equals the default triplet margin (0.3): with the linear ramp ``H(s_j - s_i) = 0`` exactly
#: when negative ``j`` is at least ``delta`` farther than positive ``i``, so DRSL's ranking term
#: is solved by the same batches as a hinge triplet with margin 0.3 over all (positive, negative)
#: pairs, and both ask the embedding for the same scale.

# at most this many elements in one (anchors x positives x items) block: 2 MiB of float32,
# which stays in a core's L2 cache through the block's 4-6 passes (measured, B = 256,
# R = 8192, 1 thread: the two block sweeps of the smooth gradient take 62 ms with 2^19
# elements against 96 ms with 2^22, where each pass streams from memory)
_BLOCK_ELEMENTS = 1 << 19


class _HardStep(torch.autograd.Function):
    """``H(x) = 1 if x >= 0 else 0`` with a zero gradient (kept on the graph)."""

    @staticmethod
    def forward(ctx, x):
        return (x >= 0).to(x.dtype)  # a tie counts as "retrieved before" (spec, "hard")

    @staticmethod
    def backward(ctx, grad):
        return torch.zeros_like(grad)


def step_function(x: Tensor, smoothing: str = "linear", delta: float = DEFAULT_DELTA) -> Tensor:
    """The smoothed step ``H(x)``: "is the item at score difference ``x`` retrieved first?".

    Args:
        x (Tensor): score differences ``s_j - s_i`` (any shape), for ``j != i``.
        smoothing (str): ``"linear"`` ``clamp(x / (2 delta) + 1/2, 0, 1)`` (AP-Loss, RS Loss),
            ``"sigmoid"`` ``1 / (1 + exp(-x / delta))`` (Smooth-AP) or ``"hard"``
            ``1 if x >= 0 else 0`` (a tie counts as retrieved before; its gradient is 0).
        delta (float): the width ``delta > 0`` (ignored by ``"hard"``).

    Returns:
        Tensor: ``H(x)`` in ``[0, 1]``, same shape, dtype and device as ``x``, differentiable.

    Reference: spec "Words", step function ``H``.

    Example:
        >>> x = torch.tensor([-0.5, -0.1, 0.0, 0.1, 0.5])
        >>> step_function(x, "linear", 0.2)
        tensor([0.0000, 0.2500, 0.5000, 0.7500, 1.0000])
        >>> step_function(x, "hard")
        tensor([0., 0., 1., 1., 1.])
    """
    if smoothing == "linear":
        return (x / (2 * delta) + 0.5).clamp(0.0, 1.0)
    if smoothing == "sigmoid":
        return torch.sigmoid(x / delta)
    if smoothing == "hard":
        return _HardStep.apply(x)
    raise ValueError(f"smoothing must be one of {SMOOTHINGS}, got {smoothing!r}")


def slope(smoothing: str, delta: float) -> float:
    """``k`` in ``H(x) = h(k x)``: ``1 / (2 delta)`` (linear ramp), ``1 / delta`` (sigmoid), 1."""
    if smoothing == "linear":
        return 0.5 / delta
    return 1.0 / delta if smoothing == "sigmoid" else 1.0


def blocks(b: int, p: int, n: int | None = None) -> list[tuple[int, int]]:
    """Row ranges of anchors such that one ``rows x p x n`` block stays under the budget.

    Args:
        b (int): anchors. p (int): positive slots. n (int, optional): items (default ``b``).

    Returns:
        list[tuple[int, int]]: ``(r0, r1)`` ranges covering ``0..b`` (one row at least each).
    """
    n = b if n is None else n
    rows = max(1, _BLOCK_ELEMENTS // max(1, p * n))
    return [(r0, min(b, r0 + rows)) for r0 in range(0, b, rows)]


class BlockPlan:
    """The blocks of anchors that the step sums walk, each trimmed to the slots it needs.

    With one block (everything within the budget) the anchors stay in their order and keep all
    ``P`` slots: the plain :func:`blocks` walk. Otherwise the anchors are taken in order of
    decreasing positive count (``order``), in blocks ``(r0, r1, slots)`` of rows ``r0:r1`` of
    that order, ``slots`` being the largest count in the block and ``rows x slots x n`` within
    the budget (one row at least); anchors without a positive are left out. Slots past an
    anchor's count are padding (positives fill the first slots, see ``_common.Pairs``): the
    walks set their sums to 0 (the losses mask them out anyway).

    Args:
        b (int): anchors. p (int): positive slots. n (int): items.
        num_pos (Tensor, optional): ``B`` long, the positive counts (None: no trimming).

    Attributes:
        order (Tensor or None): ``B`` long, the anchors in walking order (None: ``0..B-1``).
        ranges (list[tuple[int, int, int]]): ``(r0, r1, slots)`` per block.
    """

    def __init__(self, b: int, p: int, n: int, num_pos: Tensor | None = None):
        parts = blocks(b, p, n)
        self.order, self.inverse = None, None
        if num_pos is None or len(parts) == 1 or p == 0:
            self.ranges = [(r0, r1, p) for r0, r1 in parts]
            return
        counts = num_pos.cpu().numpy()
        order = np.argsort(-counts, kind="stable")
        stop = int(np.count_nonzero(counts))  # the anchors with a positive come first
        self.ranges = []
        r0 = 0
        while r0 < stop:
            slots = int(counts[order[r0]])
            r1 = min(stop, r0 + max(1, _BLOCK_ELEMENTS // (slots * n)))
            self.ranges.append((r0, r1, slots))
            r0 = r1
        self.order = torch.from_numpy(order).to(num_pos.device)
        self.inverse = torch.from_numpy(np.argsort(order)).to(num_pos.device)

    def rows(self, x: Tensor, dim: int = 0) -> Tensor:
        """``x`` with its anchor dimension ``dim`` in walking order."""
        return x if self.order is None else x.index_select(dim, self.order)

    def back(self, x: Tensor) -> Tensor:
        """``x`` (anchors in walking order along dim 0) back in the anchors' order."""
        return x if self.inverse is None else x.index_select(0, self.inverse)


def block(dk, dpk, pos_index, r0, r1, smoothing, derivative, exclude_self, slots=None):
    """``[a, p, j] = h(k (d_i - d_j))`` for anchors ``r0:r1`` and ``i = pos_index[a, p]``.

    ``dk = k d`` (``B x N``) and ``dpk = k d_pos`` (``B x P``) are distance-like matrices
    (lower = retrieved earlier), so ``d_i - d_j = s_j - s_i``: this is the spec's
    ``H(s_j - s_i)``, or with ``derivative`` ``H'(s_j - s_i) / k``. Only the first ``slots``
    positive slots (default all). In-place, one allocation.
    """
    slots = dpk.shape[1] if slots is None else slots
    dp = dpk[r0:r1, :slots]
    lin_fwd = smoothing == "linear" and not derivative
    # the ramp's +1/2 is added on the small B x P side
    v = (dp + 0.5 if lin_fwd else dp)[:, :, None] - dk[r0:r1, None, :]
    if smoothing == "linear":
        # clamp(x/(2 delta) + 1/2, 0, 1); its slope is 1 on |k x| <= 1/2 (ends included)
        h = v.abs_().le_(0.5) if derivative else v.clamp_(0.0, 1.0)
    elif smoothing == "sigmoid":
        h = v.sigmoid_()
        if derivative:
            h = h.mul_(1.0 - h)  # sigma (1 - sigma)
    else:
        h = v.ge_(0.0)  # hard: a tie counts as retrieved before
    if exclude_self:  # the sums run over j != i
        h.scatter_(2, pos_index[r0:r1, :slots, None], 0.0)
    return h


def slot_mask(num_pos: Tensor, p: int) -> Tensor:
    """``B x P`` bool: slot ``p`` of anchor ``a`` holds a positive (``p < num_pos[a]``)."""
    return torch.arange(p, device=num_pos.device) < num_pos[:, None]


def _in_order(plan: BlockPlan, dk, dpk, pos_index, weights):
    """The inputs of a block walk with their anchors in the plan's order."""
    return plan.rows(dk), plan.rows(dpk), plan.rows(pos_index), plan.rows(weights, 1)


def step_sums(dk, dpk, pos_index, weights, smoothing, exclude_self, num_pos=None):
    """``out[a, p, m] = sum_j weights[m, a, j] H(d_i - d_j)`` (``B x P x M``).

    With ``num_pos`` (``B``), slots past an anchor's count are skipped and hold 0.
    """
    b, p = dpk.shape
    n_w = weights.shape[0]
    plan = BlockPlan(b, p, dk.shape[1], num_pos)
    dk, dpk, pos_index, weights = _in_order(plan, dk, dpk, pos_index, weights)
    out = dk.new_zeros(b, p, n_w)
    for r0, r1, q in plan.ranges:
        h = block(dk, dpk, pos_index, r0, r1, smoothing, False, exclude_self, q)
        for m in range(n_w):  # M <= 2 weight matrices
            w = weights[m, r0:r1, None, :]
            # (a mat-vec product: multiply-and-sum beats bmm here by ~5x on CPU)
            out[r0:r1, :q, m] = (h.mul_(w) if n_w == 1 else h * w).sum(dim=2)
    out = plan.back(out)
    if num_pos is not None:  # padded slots hold 0 (also those inside a trimmed block)
        out.masked_fill_(~slot_mask(num_pos, p)[:, :, None], 0.0)
    return out


def step_spread(
    dk, dpk, pos_index, weights, coef, smoothing, derivative, exclude_self, num_pos=None
):
    """Spread ``coef`` (``B x P x M``) along ``phi[a, p, j]`` (the block of :func:`block`).

    Returns ``to_items[a, j] = sum_m weights[m, a, j] sum_p coef[a, p, m] phi[a, p, j]`` and
    ``to_slots[a, p] = sum_m coef[a, p, m] sum_j weights[m, a, j] phi[a, p, j]``. With
    ``num_pos`` (``B``), slots past an anchor's count are skipped (their ``coef`` must be 0).
    """
    b, p = dpk.shape
    plan = BlockPlan(b, p, dk.shape[1], num_pos)
    dk, dpk, pos_index, weights = _in_order(plan, dk, dpk, pos_index, weights)
    coef = plan.rows(coef)
    to_items = dk.new_zeros(b, dk.shape[1])
    to_slots = dk.new_zeros(b, p)
    for r0, r1, q in plan.ranges:
        h = block(dk, dpk, pos_index, r0, r1, smoothing, derivative, exclude_self, q)
        if weights.shape[0] == 1:  # 0/1 weights: mask h in place, the same numbers, faster
            c = coef[r0:r1, :q, 0]
            h = h.mul_(weights[0, r0:r1, None, :])
            to_items[r0:r1] += torch.bmm(c[:, None, :], h)[:, 0, :]
            to_slots[r0:r1, :q] += h.sum(dim=2) * c
            continue
        for m in range(weights.shape[0]):  # M = 2 weight matrices (Smooth-AP)
            c, w = coef[r0:r1, :q, m], weights[m, r0:r1]
            to_items[r0:r1] += torch.bmm(c[:, None, :], h)[:, 0, :] * w
            to_slots[r0:r1, :q] += (h * w[:, None, :]).sum(dim=2) * c
    return plan.back(to_items), plan.back(to_slots)


class StepSums(torch.autograd.Function):
    """``out[a, p, m] = sum_j w[m, a, j] H(d[a, pos_index[a, p]] - d[a, j])``, differentiable.

    ``d`` is ``B x N``, ``d_pos`` its ``B x P`` positive columns, ``weights`` ``M x B x N``,
    ``num_pos`` the ``B`` positive counts (slots past them are padding: their sums are 0 and
    no gradient reaches them). The ``B x P x N`` block is never kept: the backward pass
    recomputes it (block by block).
    """

    @staticmethod
    def forward(ctx, d, d_pos, pos_index, weights, smoothing, delta, exclude_self, num_pos):
        k = slope(smoothing, delta)
        dk, dpk = d * k, d_pos * k
        ctx.save_for_backward(dk, dpk, pos_index, weights, num_pos)
        ctx.conf = (smoothing, k, exclude_self)
        return step_sums(dk, dpk, pos_index, weights, smoothing, exclude_self, num_pos)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        dk, dpk, pos_index, weights, num_pos = ctx.saved_tensors
        smoothing, k, exclude_self = ctx.conf
        none = (None,) * 6
        if smoothing == "hard":  # the exact step has a zero gradient
            return torch.zeros_like(dk), torch.zeros_like(dpk), *none
        # padded slots get no gradient (their sums are constants 0)
        coef = torch.where(slot_mask(num_pos, dpk.shape[1])[:, :, None], grad_out * k, 0.0)
        with autocast_off(dk):  # as in the forward, should backward() run inside autocast
            to_items, to_slots = step_spread(
                dk, dpk, pos_index, weights, coef, smoothing, True, exclude_self, num_pos
            )
        # H'(d_i - d_j): + for d_i (the slot), - for d_j (the item)
        return to_items.neg_(), to_slots, *none
