"""DRSL, the Differentiable Retrieval-Sort Loss ("rank-in-rank"), and its baselines.

Everything here takes a mini-batch ``embeddings`` (``B x D``) and identity ``labels`` (``B``) and
returns a 0-d tensor. Labels may come in any order and any counts; anchors without a positive
are skipped; a batch where no anchor has a positive gives 0, still attached to the graph.

**How DRSL is computed without a loop.** For anchor ``a`` and positive ``i`` the spec needs sums
over every other item ``j`` of ``H(s_j - s_i)``. The positives of every anchor are gathered into a
``B x P`` padded index (``P`` = the largest number of positives of any anchor) with a validity
mask. Positive-vs-positive terms are then ``B x P x P`` tensors, and the one big sum, over the
negatives (``N_FP``), is a ``B x P x B`` contraction done by :class:`_StepSums`: it never keeps
the ``B x P x B`` block for the backward pass (it recomputes it there) and, should ``P`` be large,
it walks the anchors in blocks of at most ``2**22`` elements. Memory therefore grows like
``B x P x B`` at most, transiently, never ``B^3`` for a PK batch (``P = K - 1``).

**Precision.** float16/bfloat16 inputs are computed in float32 and the loss is returned in the
input dtype; float64 stays float64.

Reference: spec ``shared/spec/drsl-loss.md`` (the project's reading of "Rank-in-Rank Loss for
Person Re-identification", ACM TOMM, doi:10.1145/3532866); RS Loss (Oksuz et al., ICCV 2021);
AP-Loss (Chen et al., CVPR 2019); Smooth-AP (Brown et al., ECCV 2020).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from drsl.distances import indexed_cosine, pairwise_cosine, pairwise_euclidean

__all__ = [
    "DEFAULT_DELTA",
    "SMOOTHINGS",
    "GRADIENTS",
    "LOSSES",
    "DRSLTerms",
    "IdentityUpdate",
    "step_function",
    "retrieval_scores",
    "angle_targets",
    "drsl_loss",
    "drsl_from_scores",
    "drsl_terms",
    "identity_update",
    "batch_hard_triplet_loss",
    "smooth_ap_loss",
    "contrastive_loss",
    "cross_entropy_label_smooth",
    "DRSLoss",
    "TripletLoss",
    "SmoothAPLoss",
    "ContrastiveLoss",
    "CrossEntropyLabelSmooth",
    "get_loss",
    "gradient_mass",
]

#: Default width ``delta`` of the smoothed step, in units of the embedding distance.
#: It equals the default triplet margin (0.3): with the linear ramp ``H(s_j - s_i) = 0`` exactly
#: when negative ``j`` is at least ``delta`` farther than positive ``i``, so DRSL's ranking term
#: is solved by the same batches as a hinge triplet with margin 0.3 over all (positive, negative)
#: pairs, and both ask the embedding for the same scale.
DEFAULT_DELTA = 0.3
SMOOTHINGS = ("linear", "sigmoid", "hard")
GRADIENTS = ("smooth", "identity")

# at most this many elements in one (anchors x positives x items) block of _StepSums
_BLOCK_ELEMENTS = 1 << 22

# gradient_mass: the pairwise matrices the losses build while a capture is on
_CAPTURE: contextvars.ContextVar[list[Tensor] | None] = contextvars.ContextVar(
    "drsl_losses_capture", default=None
)


# --------------------------------------------------------------------------------------------
# checks and shared pieces
# --------------------------------------------------------------------------------------------


def _check_batch(embeddings: Tensor, labels: Tensor, name: str = "embeddings") -> Tensor:
    """Validate a (B x D float, B labels) pair; return the labels on the embeddings' device."""
    if not isinstance(embeddings, Tensor) or embeddings.dim() != 2:
        shape = tuple(embeddings.shape) if isinstance(embeddings, Tensor) else type(embeddings)
        raise ValueError(f"{name} must be a 2-D tensor (B x D), got {shape}")
    if not embeddings.is_floating_point():
        raise ValueError(f"{name} must be floating point, got dtype {embeddings.dtype}")
    if not isinstance(labels, Tensor):
        labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels must be 1-D with one label per row of {name} ({embeddings.shape[0]}), "
            f"got shape {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    return labels.to(embeddings.device)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # half precision inputs are computed in float32 (the step sums would lose all precision)
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_options(delta: float, smoothing: str, sort_weight: float, gradient: str) -> None:
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"smoothing must be one of {SMOOTHINGS}, got {smoothing!r}")
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    if smoothing != "hard" and not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta!r}")
    if not sort_weight >= 0:
        raise ValueError(f"sort_weight must be >= 0, got {sort_weight!r}")


def _captured(matrix: Tensor) -> Tensor:
    """Register a pairwise matrix for :func:`gradient_mass` while a capture is on."""
    cap = _CAPTURE.get()
    if cap is not None and matrix.requires_grad:
        matrix.retain_grad()
        cap.append(matrix)
    return matrix


class _Pairs:
    """Who is whose positive, found without a ``B x B`` pass.

    Sorting the labels makes every identity a contiguous run; anchor ``a``'s positives are the
    other members of its run, laid out in a ``B x P`` padded index (``P = max_a |P_a|``, padded
    slots point at ``a`` itself and are masked by ``pos_valid``). ``B x B`` masks are built on
    demand.
    """

    def __init__(self, labels: Tensor):
        b = labels.shape[0]
        dev = labels.device
        self.labels = labels
        order = torch.argsort(labels, stable=True)  # identities become contiguous runs
        _, run, counts = torch.unique_consecutive(
            labels[order], return_inverse=True, return_counts=True
        )
        place = torch.empty_like(order)
        place[order] = torch.arange(b, device=dev)  # each item's position in sorted order
        run_of = run[place]
        start = (counts.cumsum(0) - counts)[run_of]
        self.num_pos = counts[run_of] - 1  # |P_a|
        p = int(self.num_pos.max()) if b else 0
        slot = torch.arange(p, device=dev)
        own = (place - start)[:, None]  # the anchor's own place in its run, skipped
        self.pos_valid = slot < self.num_pos[:, None]
        k = torch.where(self.pos_valid, start[:, None] + slot + (slot >= own), place[:, None])
        self.pos_index = order[k]  # B x P, positives in increasing index order
        self.num_anchors = (self.num_pos > 0).sum()

    @functools.cached_property
    def same(self) -> Tensor:
        return self.labels[:, None] == self.labels[None, :]

    @functools.cached_property
    def pos_mask(self) -> Tensor:  # j in P_a
        m = self.same.clone()
        m.fill_diagonal_(False)
        return m

    @functools.cached_property
    def neg_mask(self) -> Tensor:  # j in N_a
        return ~self.same

    def neg_weight(self, dtype: torch.dtype) -> Tensor:
        """``1 x B x B`` float indicator of the negatives (the weights of the step sums)."""
        b = self.labels.shape[0]
        out = torch.empty(1, b, b, dtype=dtype, device=self.labels.device)
        torch.ne(self.labels[:, None], self.labels[None, :], out=out[0])  # no bool pass
        return out


# --------------------------------------------------------------------------------------------
# the step function and the B x P x B step sums
# --------------------------------------------------------------------------------------------


class _HardStep(torch.autograd.Function):
    """``H(x) = 1 if x > 0 else 0`` with a zero gradient (kept on the graph)."""

    @staticmethod
    def forward(ctx, x):
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return torch.zeros_like(grad)


def step_function(x: Tensor, smoothing: str = "linear", delta: float = DEFAULT_DELTA) -> Tensor:
    """The smoothed step ``H(x)``: "is the item at score difference ``x`` retrieved first?".

    Args:
        x (Tensor): score differences ``s_j - s_i`` (any shape).
        smoothing (str): ``"linear"`` ``clamp(x / (2 delta) + 1/2, 0, 1)`` (AP-Loss, RS Loss),
            ``"sigmoid"`` ``1 / (1 + exp(-x / delta))`` (Smooth-AP) or ``"hard"``
            ``1 if x > 0 else 0`` (its gradient is 0).
        delta (float): the width ``delta > 0`` (ignored by ``"hard"``).

    Returns:
        Tensor: ``H(x)`` in ``[0, 1]``, same shape, dtype and device as ``x``, differentiable.

    Reference: spec "Words", step function ``H``.

    Example:
        >>> x = torch.tensor([-0.5, -0.1, 0.0, 0.1, 0.5])
        >>> step_function(x, "linear", 0.2)
        tensor([0.0000, 0.2500, 0.5000, 0.7500, 1.0000])
        >>> step_function(x, "hard")
        tensor([0., 0., 0., 1., 1.])
    """
    if smoothing == "linear":
        return (x / (2 * delta) + 0.5).clamp(0.0, 1.0)
    if smoothing == "sigmoid":
        return torch.sigmoid(x / delta)
    if smoothing == "hard":
        return _HardStep.apply(x)
    raise ValueError(f"smoothing must be one of {SMOOTHINGS}, got {smoothing!r}")


def _slope(smoothing: str, delta: float) -> float:
    # H(x) = h(k x): k = 1 / (2 delta) for the linear ramp, 1 / delta for the sigmoid
    if smoothing == "linear":
        return 0.5 / delta
    return 1.0 / delta if smoothing == "sigmoid" else 1.0


def _blocks(b: int, p: int):
    """Row ranges of anchors such that one rows x p x b block stays under _BLOCK_ELEMENTS."""
    rows = max(1, _BLOCK_ELEMENTS // max(1, p * b))
    return [(r0, min(b, r0 + rows)) for r0 in range(0, b, rows)]


def _block(dk, dpk, pos_index, r0, r1, smoothing, derivative, exclude_self):
    """``[a, p, j] = h(k (d_i - d_j))`` for anchors ``r0:r1`` and ``i = pos_index[a, p]``.

    ``dk = k d`` (``B x B``) and ``dpk = k d_pos`` (``B x P``) are distance-like matrices
    (lower = retrieved earlier), so ``d_i - d_j = s_j - s_i``: this is the spec's
    ``H(s_j - s_i)``, or with ``derivative`` ``H'(s_j - s_i) / k``. In-place, one allocation.
    """
    lin_fwd = smoothing == "linear" and not derivative
    # the ramp's +1/2 is added on the small B x P side
    v = (dpk[r0:r1] + 0.5 if lin_fwd else dpk[r0:r1])[:, :, None] - dk[r0:r1, None, :]
    if smoothing == "linear":
        # clamp(x/(2 delta) + 1/2, 0, 1); its slope is 1 on |k x| <= 1/2 (ends included)
        h = v.abs_().le_(0.5) if derivative else v.clamp_(0.0, 1.0)
    elif smoothing == "sigmoid":
        h = v.sigmoid_()
        if derivative:
            h = h.mul_(1.0 - h)  # sigma (1 - sigma)
    else:
        h = v.gt_(0.0)
    if exclude_self:  # the sums run over j != i
        h.scatter_(2, pos_index[r0:r1, :, None], 0.0)
    return h


def _step_sums(dk, dpk, pos_index, weights, smoothing, exclude_self):
    """``out[a, p, m] = sum_j weights[m, a, j] H(d_i - d_j)`` (``B x P x M``)."""
    b, p = dpk.shape
    n_w = weights.shape[0]
    out = dk.new_zeros(b, p, n_w)
    for r0, r1 in _blocks(b, p):
        h = _block(dk, dpk, pos_index, r0, r1, smoothing, False, exclude_self)
        for m in range(n_w):  # M <= 2 weight matrices
            w = weights[m, r0:r1, None, :]
            # (a mat-vec product: multiply-and-sum beats bmm here by ~5x on CPU)
            out[r0:r1, :, m] = (h.mul_(w) if n_w == 1 else h * w).sum(dim=2)
    return out


def _step_spread(dk, dpk, pos_index, weights, coef, smoothing, derivative, exclude_self):
    """Spread ``coef`` (``B x P x M``) along ``phi[a, p, j]`` (the block of :func:`_block`).

    Returns ``to_items[a, j] = sum_m weights[m, a, j] sum_p coef[a, p, m] phi[a, p, j]`` and
    ``to_slots[a, p] = sum_m coef[a, p, m] sum_j weights[m, a, j] phi[a, p, j]``.
    """
    b, p = dpk.shape
    to_items = dk.new_zeros(b, b)
    to_slots = dk.new_zeros(b, p)
    for r0, r1 in _blocks(b, p):
        h = _block(dk, dpk, pos_index, r0, r1, smoothing, derivative, exclude_self)
        for m in range(weights.shape[0]):  # M <= 2 weight matrices
            c, w = coef[r0:r1, :, m], weights[m, r0:r1]
            to_items[r0:r1] += torch.bmm(c[:, None, :], h)[:, 0, :] * w
            to_slots[r0:r1] += (h * w[:, None, :]).sum(dim=2) * c
    return to_items, to_slots


class _StepSums(torch.autograd.Function):
    """``out[a, p, m] = sum_j w[m, a, j] H(d[a, pos_index[a, p]] - d[a, j])``, differentiable.

    The ``B x P x B`` block is never kept: the backward pass recomputes it (block by block).
    """

    @staticmethod
    def forward(ctx, d, d_pos, pos_index, weights, smoothing, delta, exclude_self):
        k = _slope(smoothing, delta)
        dk, dpk = d * k, d_pos * k
        ctx.save_for_backward(dk, dpk, pos_index, weights)
        ctx.conf = (smoothing, k, exclude_self)
        return _step_sums(dk, dpk, pos_index, weights, smoothing, exclude_self)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        dk, dpk, pos_index, weights = ctx.saved_tensors
        smoothing, k, exclude_self = ctx.conf
        if smoothing == "hard":  # the exact step has a zero gradient
            return torch.zeros_like(dk), torch.zeros_like(dpk), None, None, None, None, None
        to_items, to_slots = _step_spread(
            dk, dpk, pos_index, weights, grad_out * k, smoothing, True, exclude_self
        )
        # H'(d_i - d_j): + for d_i (the slot), - for d_j (the item)
        return to_items.neg_(), to_slots, None, None, None, None, None


# --------------------------------------------------------------------------------------------
# DRSL
# --------------------------------------------------------------------------------------------


def retrieval_scores(embeddings: Tensor) -> Tensor:
    """Retrieval scores ``s[a, j] = -||f_a - f_j||_2`` (higher = retrieved earlier).

    Args:
        embeddings (Tensor): ``B x D`` embeddings (not normalised).

    Returns:
        Tensor: ``B x B`` scores, same dtype and device, differentiable.

    Reference: spec "Words", retrieval score.

    Example:
        >>> retrieval_scores(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
        tensor([[-0., -5.],
                [-5., -0.]])
    """
    return -pairwise_euclidean(embeddings)


def angle_targets(angle_embeddings: Tensor) -> Tensor:
    """Angle targets ``t[a, j] = (1 + cos(g_a, g_j)) / 2`` in ``[0, 1]``, detached.

    Args:
        angle_embeddings (Tensor): ``B x D'`` angle embeddings ``g``.

    Returns:
        Tensor: ``B x B`` targets (no gradient flows through them).

    Reference: spec "Words", angle target.

    Example:
        >>> angle_targets(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
        tensor([[1.0000, 0.5000, 0.0000],
                [0.5000, 1.0000, 0.5000],
                [0.0000, 0.5000, 1.0000]])
    """
    return ((1.0 + pairwise_cosine(angle_embeddings.detach())) / 2.0).detach()


@dataclass(frozen=True)
class DRSLTerms:
    """Every term of the spec, per anchor ``a`` (row) and positive slot ``p`` (column).

    Slot ``p`` of anchor ``a`` holds positive ``i = pos_index[a, p]`` when ``pos_valid[a, p]``;
    padded slots hold 0 in every ``B x P`` term.

    Attributes:
        pos_index (Tensor): ``B x P`` long, the positives of each anchor in increasing order.
        pos_valid (Tensor): ``B x P`` bool.
        num_pos (Tensor): ``B`` long, ``|P_a|``.
        rank (Tensor): ``B x P``, ``rank(i)``.
        rank_pos (Tensor): ``B x P``, ``rank+(i)``.
        n_fp (Tensor): ``B x P``, ``N_FP(i)``.
        l_rank (Tensor): ``B x P``, ranking error ``l_R(i)``.
        l_sort (Tensor): ``B x P``, sorting error ``l_S(i)``.
        l_sort_target (Tensor): ``B x P``, target sorting error ``l*_S(i)``.
        anchor_loss (Tensor): ``B``, ``L_a`` (0 for anchors without positives).
        loss (Tensor): 0-d, the batch loss (mean of ``L_a`` over anchors with a positive).
    """

    pos_index: Tensor
    pos_valid: Tensor
    num_pos: Tensor
    rank: Tensor
    rank_pos: Tensor
    n_fp: Tensor
    l_rank: Tensor
    l_sort: Tensor
    l_sort_target: Tensor
    anchor_loss: Tensor
    loss: Tensor


_SLOT_TERMS = ("rank", "rank_pos", "n_fp", "l_rank", "l_sort", "l_sort_target")


@dataclass(frozen=True)
class IdentityUpdate:
    """The identity update ``dL/ds`` (``B x B``, row = anchor) split into its two parts.

    Attributes:
        ranking (Tensor): the part driven by the ranking errors ``l_R``.
        sorting (Tensor): the part driven by the sorting errors ``lambda (l_S - l*_S)``.
    """

    ranking: Tensor
    sorting: Tensor

    @property
    def total(self) -> Tensor:
        """Tensor: ``ranking + sorting``, what ``gradient="identity"`` back-propagates."""
        return self.ranking + self.sorting


def _pos_steps(d_pos: Tensor, valid: Tensor, smoothing: str, delta: float) -> Tensor:
    """``h_pp[a, i, j] = H(s_j - s_i) = H(d_i - d_j)`` over positives ``i, j != i`` (B x P x P)."""
    p = valid.shape[1]
    mask = valid[:, None, :] & valid[:, :, None]
    mask &= ~torch.eye(p, dtype=torch.bool, device=valid.device)
    return step_function(d_pos[:, :, None] - d_pos[:, None, :], smoothing, delta) * mask


def _assemble(n_fp, h_pp, t_pos, pairs, sort_weight, want_sort):
    """The spec's terms per (anchor, positive slot) and the batch loss (padded slots not zeroed)."""
    n_pos = h_pp.sum(dim=2)
    rank_pos = 1.0 + n_pos  # rank+(i) = 1 + sum_{j in P_a} H(s_j - s_i)
    rank = rank_pos + n_fp  # rank(i) = 1 + sum_{j in P_a u N_a} H(s_j - s_i)
    l_rank = n_fp / rank  # l_R(i) = N_FP(i) / rank(i)
    per = l_rank
    l_sort = l_sort_t = None
    if want_sort:
        w = 1.0 - t_pos  # (1 - t_j)
        hi = (t_pos[:, None, :] >= t_pos[:, :, None]).to(h_pp.dtype)  # [a, i, j]: t_j >= t_i
        h_hi = h_pp * hi
        # l_S(i) = [(1 - t_i) + sum_{j in P_a} H(s_j - s_i)(1 - t_j)] / rank+(i)
        l_sort = (w + torch.bmm(h_pp, w[:, :, None])[:, :, 0]) / rank_pos
        # l*_S(i): the same mean over the positives with t_j >= t_i only
        l_sort_t = (w + torch.bmm(h_hi, w[:, :, None])[:, :, 0]) / (1.0 + h_hi.sum(dim=2))
        per = per + sort_weight * (l_sort - l_sort_t)
    # L_a = 1/|P_a| sum_{i in P_a} [...]; the loss is the mean over anchors with |P_a| > 0
    anchor_loss = (per * pairs.pos_valid).sum(dim=1) / pairs.num_pos.clamp_min(1)
    loss = anchor_loss.sum() / pairs.num_anchors.clamp_min(1)
    return {
        "rank": rank,
        "rank_pos": rank_pos,
        "n_fp": n_fp,
        "l_rank": l_rank,
        "l_sort": l_sort,
        "l_sort_target": l_sort_t,
        "anchor_loss": anchor_loss,
        "loss": loss,
    }


def _drsl_smooth(d, t_pos, pairs, smoothing, delta, sort_weight, want_sort):
    """DRSL by autograd (``gradient="smooth"``) on a distance-like matrix ``d = -s``."""
    d_pos = d.gather(1, pairs.pos_index)  # d_i for i in P_a
    # N_FP(i) = sum_{j in N_a} H(s_j - s_i): the B x P x B sum, never stored
    neg_w = pairs.neg_weight(d.dtype)
    n_fp = _StepSums.apply(d, d_pos, pairs.pos_index, neg_w, smoothing, delta, False)[..., 0]
    h_pp = _pos_steps(d_pos, pairs.pos_valid, smoothing, delta)
    return _assemble(n_fp, h_pp, t_pos, pairs, sort_weight, want_sort)


def _drsl_identity(d, t_pos, pairs, smoothing, delta, sort_weight, want_update):
    """DRSL's terms and, with ``want_update``, the identity update ``dL/ds`` in two pieces.

    No autograd: one pass over the ``B x P x B`` blocks gives both ``N_FP`` and what each
    negative receives. The update comes as ``(to_negatives, ranking_slots, sorting_slots)``:
    a ``B x B`` matrix (the negatives' share of the ranking part) and two ``B x P`` matrices of
    what each positive slot receives minus what it owes, in the ranking and sorting parts
    (scatter them into columns ``pairs.pos_index``).
    """
    valid, pos_index = pairs.pos_valid, pairs.pos_index
    d_pos = d.gather(1, pos_index)
    h_pp = _pos_steps(d_pos, valid, smoothing, delta)
    neg_w = pairs.neg_weight(d.dtype)
    k = _slope(smoothing, delta)
    dk, dpk = d * k, d_pos * k
    if not want_update:
        n_fp = _step_sums(dk, dpk, pos_index, neg_w, smoothing, False)[..., 0]
        return _assemble(n_fp, h_pp, t_pos, pairs, sort_weight, sort_weight != 0), None
    # 1/|P_a| and the batch mean over anchors with a positive
    norm = 1.0 / (pairs.num_pos.clamp_min(1) * pairs.num_anchors.clamp_min(1)).to(d.dtype)
    n_pos = h_pp.sum(dim=2)
    b, p = d_pos.shape
    blocks = _blocks(b, p)
    n_fp = d.new_empty(b, p)
    to_neg = d.new_empty(b, b) if len(blocks) > 1 else None
    for r0, r1 in blocks:
        h = _block(dk, dpk, pos_index, r0, r1, smoothing, False, False)
        w = neg_w[0, r0:r1]
        nf = (h * w[:, None, :]).sum(dim=2)
        n_fp[r0:r1] = nf
        # ranking: negative j receives l_R(i) H(s_j - s_i) / N_FP(i) = H(s_j - s_i) / rank(i)
        coef = norm[r0:r1, None] * valid[r0:r1] / (1.0 + n_pos[r0:r1] + nf)
        got = torch.bmm(coef[:, None, :], h)[:, 0, :].mul_(w)
        if to_neg is None:
            to_neg = got
        else:
            to_neg[r0:r1] = got
    if to_neg is None:  # an empty batch
        to_neg = d.new_zeros(b, b)
    terms = _assemble(n_fp, h_pp, t_pos, pairs, sort_weight, True)
    # ... and positive i owes its ranking error l_R(i)
    zero = d.new_zeros(())
    owe_r = torch.where(valid, terms["l_rank"], zero) * norm[:, None]
    # sorting: positive i owes lambda (l_S(i) - l*_S(i)) to the positives j with t_j < t_i
    # ranked before it, in proportion to H(s_j - s_i); nothing moves without such a j
    h_low = h_pp * (t_pos[:, None, :] < t_pos[:, :, None])  # [a, i, j]: t_j < t_i
    den = h_low.sum(dim=2)
    moves = valid & (den > 0)
    owe_s = sort_weight * (terms["l_sort"] - terms["l_sort_target"]) * norm[:, None]
    owe_s = torch.where(moves, owe_s, zero)
    share = owe_s / torch.where(moves, den, 1.0)
    received_s = torch.bmm(share[:, None, :], h_low)[:, 0, :]  # what each slot j receives
    return terms, (to_neg, -owe_r, received_s - owe_s)


class _DRSLIdentity(torch.autograd.Function):
    """DRSL's value on ``d = -s``, back-propagating the identity update instead of a gradient."""

    @staticmethod
    def forward(ctx, d, t_pos, pairs, smoothing, delta, sort_weight):
        terms, update = _drsl_identity(
            d, t_pos, pairs, smoothing, delta, sort_weight, ctx.needs_input_grad[0]
        )
        if update is not None:
            to_neg, rank_slots, sort_slots = update
            total = to_neg.scatter_add_(1, pairs.pos_index, rank_slots + sort_slots)
            ctx.save_for_backward(total.neg_())  # dL/dd = -dL/ds
        return terms["loss"]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (update,) = ctx.saved_tensors
        return grad * update, None, None, None, None, None


def _drsl(d, t_pos, pairs, delta, smoothing, sort_weight, gradient) -> Tensor:
    if gradient == "identity":
        return _DRSLIdentity.apply(d, t_pos, pairs, smoothing, delta, sort_weight)
    return _drsl_smooth(d, t_pos, pairs, smoothing, delta, sort_weight, sort_weight != 0)["loss"]


def _prepare_scores(scores: Tensor, labels: Tensor, targets: Tensor):
    """(d = -scores in the compute dtype, the positives' targets B x P, the pairs)."""
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores must be a square B x B matrix, got {tuple(scores.shape)}")
    labels = _check_batch(scores, labels, "scores")
    if targets.shape != scores.shape:
        raise ValueError(
            f"targets must have the shape of scores {tuple(scores.shape)}, "
            f"got {tuple(targets.shape)}"
        )
    dtype = _compute_dtype(scores.dtype)
    d = -scores.to(dtype)
    pairs = _Pairs(labels)
    t_pos = targets.detach().to(device=d.device, dtype=dtype).gather(1, pairs.pos_index)
    return d, t_pos, pairs


def drsl_from_scores(
    scores: Tensor,
    labels: Tensor,
    targets: Tensor,
    *,
    delta: float = DEFAULT_DELTA,
    smoothing: str = "linear",
    sort_weight: float = 1.0,
    gradient: str = "smooth",
) -> Tensor:
    """DRSL on a given score matrix and angle-target matrix (the core of :func:`drsl_loss`).

    Args:
        scores (Tensor): ``B x B`` scores, row ``a`` = anchor ``a``'s ``s_j`` (higher = earlier;
            the diagonal is never used).
        labels (Tensor): ``B`` integer identity labels.
        targets (Tensor): ``B x B`` angle targets ``t[a, j]`` in ``[0, 1]`` (detached).
        delta (float): step width (see :data:`DEFAULT_DELTA`).
        smoothing (str): ``"linear"``, ``"sigmoid"`` or ``"hard"``.
        sort_weight (float): ``lambda >= 0``.
        gradient (str): ``"smooth"`` (autograd) or ``"identity"`` (the identity update).

    Returns:
        Tensor: 0-d loss in the scores' dtype.

    Reference: spec "The loss for one anchor", "Two ways to get a gradient".

    Example:
        >>> s = torch.tensor([[0.0, -1.0, -2.0], [-1.0, 0.0, -0.5], [-2.0, -0.5, 0.0]])
        >>> t = torch.ones(3, 3)
        >>> round(drsl_from_scores(s, torch.tensor([0, 0, 1]), t, smoothing="hard").item(), 4)
        0.25
    """
    _check_options(delta, smoothing, sort_weight, gradient)
    d, t_pos, pairs = _prepare_scores(scores, labels, targets)
    return _drsl(d, t_pos, pairs, delta, smoothing, sort_weight, gradient).to(scores.dtype)


def drsl_terms(
    scores: Tensor,
    labels: Tensor,
    targets: Tensor,
    *,
    delta: float = DEFAULT_DELTA,
    smoothing: str = "linear",
    sort_weight: float = 1.0,
) -> DRSLTerms:
    """Every term of the spec for every anchor and positive (for teaching and checking).

    Args:
        scores (Tensor): ``B x B`` scores (see :func:`drsl_from_scores`).
        labels (Tensor): ``B`` integer labels.
        targets (Tensor): ``B x B`` angle targets.
        delta (float): step width. smoothing (str): step kind. sort_weight (float): ``lambda``.

    Returns:
        DRSLTerms: ``rank``, ``rank_pos``, ``n_fp``, ``l_rank``, ``l_sort``, ``l_sort_target``
        per (anchor, positive slot), ``anchor_loss`` and ``loss`` (differentiable w.r.t. scores,
        computed in float32 or float64).

    Reference: spec "The loss for one anchor".

    Example:
        >>> s = torch.tensor([[0.0, -1.0, -2.0], [-1.0, 0.0, -0.5], [-2.0, -0.5, 0.0]])
        >>> terms = drsl_terms(s, torch.tensor([0, 0, 1]), torch.ones(3, 3), smoothing="hard")
        >>> terms.rank[:2, 0].tolist(), terms.l_rank[:2, 0].tolist()
        ([1.0, 2.0], [0.0, 0.5])
    """
    _check_options(delta, smoothing, sort_weight, "smooth")
    d, t_pos, pairs = _prepare_scores(scores, labels, targets)
    t = _drsl_smooth(d, t_pos, pairs, smoothing, delta, sort_weight, True)
    valid = pairs.pos_valid
    zero = d.new_zeros(())
    per_slot = {k: torch.where(valid, t[k], zero) for k in _SLOT_TERMS}
    return DRSLTerms(
        pairs.pos_index,
        valid,
        pairs.num_pos,
        **per_slot,
        anchor_loss=t["anchor_loss"],
        loss=t["loss"],
    )


def identity_update(
    scores: Tensor,
    labels: Tensor,
    targets: Tensor,
    *,
    delta: float = DEFAULT_DELTA,
    smoothing: str = "linear",
    sort_weight: float = 1.0,
) -> IdentityUpdate:
    """The identity update ``dL/ds`` that ``gradient="identity"`` back-propagates, in two parts.

    For anchor ``a``, positive ``i`` owes its ranking error ``l_R(i)`` to the negatives ranked
    before it and its sorting error ``lambda (l_S(i) - l*_S(i))`` to the positives of lower
    target ranked before it, split in proportion to ``H(s_j - s_i)``;
    ``dL_a/ds_k = (received - owed) / |P_a|``, divided once more by the number of anchors with a
    positive. Each row sums to 0 in each part; in the ranking part the positives' total push
    (``-sum`` over positives) equals the negatives' (``sum`` over negatives).

    Args:
        scores (Tensor): ``B x B`` scores. labels (Tensor): ``B`` labels.
        targets (Tensor): ``B x B`` angle targets.
        delta (float): step width. smoothing (str): step kind. sort_weight (float): ``lambda``.

    Returns:
        IdentityUpdate: ``ranking`` and ``sorting`` ``B x B`` matrices (``total`` = their sum),
        detached, in float32 or float64.

    Reference: spec "Two ways to get a gradient", 2; RS Loss (Oksuz et al. 2021), Alg. 1.

    Example:
        >>> s = torch.tensor([[0.0, -1.0, -0.5], [-1.0, 0.0, -2.0], [-0.5, -2.0, 0.0]])
        >>> upd = identity_update(s, torch.tensor([0, 0, 1]), torch.ones(3, 3), smoothing="hard")
        >>> upd.ranking
        tensor([[ 0.0000, -0.2500,  0.2500],
                [ 0.0000,  0.0000,  0.0000],
                [ 0.0000,  0.0000,  0.0000]])
    """
    _check_options(delta, smoothing, sort_weight, "identity")
    d, t_pos, pairs = _prepare_scores(scores.detach(), labels, targets)
    with torch.no_grad():
        _, (to_neg, rank_slots, sort_slots) = _drsl_identity(
            d, t_pos, pairs, smoothing, delta, sort_weight, True
        )
    ranking = to_neg.scatter_add_(1, pairs.pos_index, rank_slots)
    sorting = torch.zeros_like(d).scatter_add_(1, pairs.pos_index, sort_slots)
    return IdentityUpdate(ranking, sorting)


def drsl_loss(
    embeddings: Tensor,
    labels: Tensor,
    *,
    delta: float = DEFAULT_DELTA,
    smoothing: str = "linear",
    sort_weight: float = 1.0,
    gradient: str = "smooth",
    angle_embeddings: Tensor | None = None,
) -> Tensor:
    """DRSL: rank every positive ahead of the negatives by distance, sort positives by angle.

    For each anchor ``a`` and positive ``i`` (spec, "The loss for one anchor")::

        l_R(i) = N_FP(i) / rank(i),   L_a = mean_i [ l_R(i) + lambda (l_S(i) - l*_S(i)) ]

    with scores ``s_j = -||f_a - f_j||`` and targets ``t_j = (1 + cos(g_a, g_j)) / 2``; the
    loss is the mean of ``L_a`` over anchors with a positive.

    **Default delta = 0.3** (:data:`DEFAULT_DELTA`), in the units of the Euclidean distance
    between the (not normalised) embeddings. With the linear ramp a (positive ``i``, negative
    ``j``) pair stops contributing once ``d_j >= d_i + delta``: ``delta`` is a margin, and 0.3 is
    the triplet margin that the re-ID strong baseline uses on the same kind of un-normalised
    BNNeck features, so DRSL's ranking term is satisfied exactly when an all-pairs hinge triplet
    with that margin is. The smooth gradient only flows for pairs within ``delta`` of each other,
    so the scale matters: if your distances are much larger than ~1-10 (or much smaller, e.g.
    L2-normalised features, distances in ``[0, 2]``) scale ``delta`` with them (multiplying all
    embeddings by ``c`` and ``delta`` by ``c`` leaves the loss unchanged). The identity update
    is far less sensitive (at ``delta -> 0`` it is RS Loss's update).

    Args:
        embeddings (Tensor): ``B x D`` embeddings ``f`` (float16/bfloat16/float32/float64).
        labels (Tensor): ``B`` integer identity labels, any order and counts.
        delta (float): step width ``delta > 0`` (unused by ``"hard"``). Default 0.3.
        smoothing (str): ``"linear"`` (default), ``"sigmoid"`` or ``"hard"``.
        sort_weight (float): ``lambda >= 0``, weight of the in-rank sort. Default 1.
        gradient (str): ``"smooth"`` (default: autograd through ``H``) or ``"identity"`` (RS
            Loss's error-driven update on the scores, chained to the embeddings by autograd).
            Both give the same loss value.
        angle_embeddings (Tensor, optional): ``B x D'`` tensor ``g`` for the angle targets
            (e.g. BNNeck's post-BN features); default ``embeddings``. Detached.

    Returns:
        Tensor: 0-d loss in the embeddings' dtype; 0 (attached, zero gradient) when no anchor
        has a positive.

    Reference: spec ``drsl-loss.md``; RS Loss (Oksuz et al., ICCV 2021) Eq. 7-8 and Alg. 1.

    Example:
        >>> f = torch.tensor([[0.0, 0.0], [0.1, 0.0], [2.0, 0.0], [2.0, 0.2]])
        >>> drsl_loss(f, torch.tensor([0, 0, 1, 1]))
        tensor(0.)
        >>> # l_R = 1/2, 2/3, 2/3, 1/2 for the four anchors (one positive each: no sorting)
        >>> round(drsl_loss(f, torch.tensor([0, 1, 0, 1]), smoothing="hard").item(), 4)
        0.5833
    """
    _check_options(delta, smoothing, sort_weight, gradient)
    labels = _check_batch(embeddings, labels)
    dtype = _compute_dtype(embeddings.dtype)
    x = embeddings.to(dtype)
    pairs = _Pairs(labels)
    d = _captured(pairwise_euclidean(x))  # s_j = -d[a, j] = -||f_a - f_j||
    if sort_weight != 0:
        g = x if angle_embeddings is None else angle_embeddings
        if g.dim() != 2 or g.shape[0] != x.shape[0]:
            raise ValueError(
                f"angle_embeddings must be B x D' with B = {x.shape[0]}, got {tuple(g.shape)}"
            )
        g = g.detach().to(device=x.device, dtype=dtype)
        with torch.no_grad():  # t_j = (1 + cos(g_a, g_j)) / 2, positives only: B x P
            t_pos = (1.0 + indexed_cosine(g, pairs.pos_index)) / 2.0
    else:
        t_pos = x.new_ones(pairs.pos_index.shape)
    loss = _drsl(d, t_pos, pairs, delta, smoothing, sort_weight, gradient)
    return loss.to(embeddings.dtype)


class DRSLoss(nn.Module):
    """Module form of :func:`drsl_loss` (same keywords).

    Args:
        delta (float): step width. Default :data:`DEFAULT_DELTA` (0.3).
        smoothing (str): ``"linear"``, ``"sigmoid"`` or ``"hard"``.
        sort_weight (float): ``lambda``. gradient (str): ``"smooth"`` or ``"identity"``.
        angle_embeddings: not used here; pass it to :meth:`forward`.

    Reference: spec ``drsl-loss.md``.

    Example:
        >>> crit = DRSLoss(gradient="identity")
        >>> f = torch.tensor([[0.0, 0.0], [0.1, 0.0], [2.0, 0.0], [2.0, 0.2]])
        >>> crit(f, torch.tensor([0, 0, 1, 1]))
        tensor(0.)
    """

    def __init__(
        self,
        delta: float = DEFAULT_DELTA,
        smoothing: str = "linear",
        sort_weight: float = 1.0,
        gradient: str = "smooth",
        angle_embeddings: Tensor | None = None,
    ):
        super().__init__()
        _check_options(delta, smoothing, sort_weight, gradient)
        if angle_embeddings is not None:
            raise ValueError("pass angle_embeddings to forward(), not to the constructor")
        self.delta, self.smoothing = delta, smoothing
        self.sort_weight, self.gradient = sort_weight, gradient

    def forward(
        self, embeddings: Tensor, labels: Tensor, angle_embeddings: Tensor | None = None
    ) -> Tensor:
        """Args: embeddings (B x D), labels (B), angle_embeddings (B x D', optional).

        Returns: Tensor, the 0-d loss.
        """
        return drsl_loss(
            embeddings,
            labels,
            delta=self.delta,
            smoothing=self.smoothing,
            sort_weight=self.sort_weight,
            gradient=self.gradient,
            angle_embeddings=angle_embeddings,
        )

    def extra_repr(self) -> str:
        return (
            f"delta={self.delta}, smoothing={self.smoothing!r}, "
            f"sort_weight={self.sort_weight}, gradient={self.gradient!r}"
        )


# --------------------------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------------------------


def _attached_zero(x: Tensor) -> Tensor:
    return x.sum() * 0.0 if x.numel() == 0 else (x.flatten()[:1] * 0.0).sum()


def batch_hard_triplet_loss(
    embeddings: Tensor, labels: Tensor, *, margin: float | None = 0.3
) -> Tensor:
    """Batch-hard triplet loss: per anchor, its farthest positive against its nearest negative.

    ``mean_a max(0, max_{p in P_a} d_ap - min_{n in N_a} d_an + margin)`` over the anchors with
    at least one positive and one negative; ``margin=None`` uses the soft margin
    ``softplus(d_ap - d_an)``. Distances are Euclidean on the embeddings as given.

    Args:
        embeddings (Tensor): ``B x D`` embeddings.
        labels (Tensor): ``B`` integer labels.
        margin (float or None): hinge margin ``>= 0`` (default 0.3, the strong baseline's) or
            ``None`` for the soft margin.

    Returns:
        Tensor: 0-d loss in the embeddings' dtype (0, attached, without a valid anchor).

    Reference: Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person
    Re-Identification", arXiv:1703.07737, 2017 (Eq. 5, soft margin Sec. 3.3); Luo et al. 2019.

    Example:
        >>> f = torch.tensor([[0.0], [1.0], [1.5], [3.0]])
        >>> batch_hard_triplet_loss(f, torch.tensor([0, 0, 1, 1]))  # (0 + 0.8 + 1.3 + 0) / 4
        tensor(0.5250)
    """
    labels = _check_batch(embeddings, labels)
    if margin is not None and not margin >= 0:
        raise ValueError(f"margin must be >= 0 or None, got {margin!r}")
    x = embeddings.to(_compute_dtype(embeddings.dtype))
    pairs = _Pairs(labels)
    dist = _captured(pairwise_euclidean(x))
    if x.shape[0] == 0:
        return _attached_zero(dist).to(embeddings.dtype)
    inf = torch.tensor(float("inf"), dtype=x.dtype, device=x.device)
    d_ap = torch.where(pairs.pos_mask, dist, -inf).amax(dim=1)  # hardest positive
    d_an = torch.where(pairs.neg_mask, dist, inf).amin(dim=1)  # hardest negative
    ok = pairs.pos_mask.any(dim=1) & pairs.neg_mask.any(dim=1)
    gap = torch.where(ok, d_ap - d_an, x.new_zeros(()))
    per = F.softplus(gap) if margin is None else F.relu(gap + margin)
    loss = (per * ok).sum() / ok.sum().clamp_min(1)
    return loss.to(embeddings.dtype)


def smooth_ap_loss(embeddings: Tensor, labels: Tensor, *, temperature: float = 0.01) -> Tensor:
    """Smooth-AP: 1 - the mean over anchors of a sigmoid-smoothed average precision.

    For anchor ``a`` (the query, excluded from its own retrieval set), cosine similarities
    ``s_j = cos(f_a, f_j)`` and ``G(x) = sigmoid(x / temperature)``::

        AP_a = 1/|P_a| sum_{i in P_a} (1 + sum_{j in P_a, j != i} G(s_j - s_i))
                                      / (1 + sum_{j != a, i} G(s_j - s_i))

    Any number of identities and instances per identity: the positives are gathered per anchor
    (``B x P``) and the sum over all items runs in ``B x P x B`` blocks that are recomputed in
    the backward pass, so memory stays ``O(B^2)`` plus one bounded block (the reference code
    builds ``B x B x B`` and assumes equal class sizes).

    Args:
        embeddings (Tensor): ``B x D`` embeddings (normalised inside, through the cosine).
        labels (Tensor): ``B`` integer labels.
        temperature (float): sigmoid temperature ``tau > 0``. Default 0.01 (the paper's).

    Returns:
        Tensor: 0-d loss in ``[0, 1]``, in the embeddings' dtype (0, attached, without positives).

    Reference: Brown, Xie, Kalogeiton, Zisserman, "Smooth-AP: Smoothing the Path Towards
    Large-Scale Image Retrieval", ECCV 2020, Eq. 6-7.

    Example:
        >>> f = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> smooth_ap_loss(f, torch.tensor([0, 0, 1, 1]))
        tensor(0.)
    """
    labels = _check_batch(embeddings, labels)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    x = embeddings.to(_compute_dtype(embeddings.dtype))
    pairs = _Pairs(labels)
    sim = _captured(pairwise_cosine(x))
    d = -sim  # distance-like: G(s_j - s_i) = G(d_i - d_j)
    d_pos = d.gather(1, pairs.pos_index)
    weights = torch.stack([pairs.pos_mask, pairs.neg_mask]).to(x.dtype)
    # sums over j != i of G(s_j - s_i), positives and negatives: B x P x 2, in bounded blocks
    sums = _StepSums.apply(d, d_pos, pairs.pos_index, weights, "sigmoid", temperature, True)
    rank_pos = 1.0 + sums[..., 0]  # R(i, P)
    rank_all = rank_pos + sums[..., 1]  # R(i, Omega)
    ratio = torch.where(pairs.pos_valid, rank_pos / rank_all, x.new_zeros(()))
    ap = ratio.sum(dim=1) / pairs.num_pos.clamp_min(1)
    loss = ((1.0 - ap) * (pairs.num_pos > 0)).sum() / pairs.num_anchors.clamp_min(1)
    return loss.to(embeddings.dtype)


def contrastive_loss(embeddings: Tensor, labels: Tensor, *, margin: float = 1.0) -> Tensor:
    """Contrastive pair loss over every ordered pair ``(a, j)``, ``a != j``.

    ``1/2 d^2`` for a positive pair, ``1/2 max(0, margin - d)^2`` for a negative pair, averaged
    over all ``B (B - 1)`` pairs: summed over pairs, the negatives dominate as the number of
    identities in the batch grows (the imbalance DRSL addresses).

    Args:
        embeddings (Tensor): ``B x D`` embeddings.
        labels (Tensor): ``B`` integer labels.
        margin (float): ``> 0``, the distance beyond which negatives stop pushing. Default 1.0
            (pytorch-metric-learning's ``neg_margin`` default).

    Returns:
        Tensor: 0-d loss in the embeddings' dtype (0, attached, for ``B < 2``).

    Reference: Hadsell, Chopra, LeCun, "Dimensionality Reduction by Learning an Invariant
    Mapping", CVPR 2006, Eq. 4.

    Example:
        >>> f = torch.tensor([[0.0], [1.0], [0.5]])
        >>> contrastive_loss(f, torch.tensor([0, 0, 1]))
        tensor(0.2500)
    """
    labels = _check_batch(embeddings, labels)
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin!r}")
    x = embeddings.to(_compute_dtype(embeddings.dtype))
    pairs = _Pairs(labels)
    dist = _captured(pairwise_euclidean(x))
    zero = x.new_zeros(())
    per = torch.where(pairs.pos_mask, dist.square(), zero)
    per = per + torch.where(pairs.neg_mask, F.relu(margin - dist).square(), zero)
    b = x.shape[0]
    loss = 0.5 * per.sum() / max(b * (b - 1), 1)
    return loss.to(embeddings.dtype)


def cross_entropy_label_smooth(logits: Tensor, labels: Tensor, *, epsilon: float = 0.1) -> Tensor:
    """Cross-entropy with label smoothing, for an identity-classification head.

    Targets ``q = (1 - epsilon) onehot(y) + epsilon / C``; loss ``mean_b -sum_c q_c log p_c``.

    Args:
        logits (Tensor): ``B x C`` class scores.
        labels (Tensor): ``B`` integer class indices in ``[0, C)``.
        epsilon (float): smoothing in ``[0, 1]``. Default 0.1.

    Returns:
        Tensor: 0-d loss in the logits' dtype (0, attached, for ``B = 0``).

    Reference: Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016, Sec. 7;
    Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-ID", CVPR-W 2019.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
        >>> round(cross_entropy_label_smooth(logits, torch.tensor([0, 1])).item(), 4)
        0.2269
    """
    labels = _check_batch(logits, labels, "logits")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
    b, c = logits.shape
    if b and (int(labels.min()) < 0 or int(labels.max()) >= c):
        raise ValueError(
            f"labels must lie in [0, {c}), got min {int(labels.min())}, max {int(labels.max())}"
        )
    logp = F.log_softmax(logits.to(_compute_dtype(logits.dtype)), dim=1)
    if b == 0:
        return _attached_zero(logp).to(logits.dtype)
    nll = -logp.gather(1, labels[:, None].long()).squeeze(1)
    uniform = -logp.mean(dim=1)
    return ((1.0 - epsilon) * nll + epsilon * uniform).mean().to(logits.dtype)


class TripletLoss(nn.Module):
    """Module form of :func:`batch_hard_triplet_loss`.

    Args:
        margin (float or None): 0.3 by default; ``None`` = soft margin.

    Reference: Hermans et al. 2017.

    Example:
        >>> TripletLoss(margin=None)(torch.zeros(2, 3), torch.tensor([0, 1]))
        tensor(0.)
    """

    def __init__(self, margin: float | None = 0.3):
        super().__init__()
        if margin is not None and not margin >= 0:
            raise ValueError(f"margin must be >= 0 or None, got {margin!r}")
        self.margin = margin

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Args: embeddings (B x D), labels (B). Returns: Tensor, the 0-d loss."""
        return batch_hard_triplet_loss(embeddings, labels, margin=self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


class SmoothAPLoss(nn.Module):
    """Module form of :func:`smooth_ap_loss`.

    Args:
        temperature (float): sigmoid temperature. Default 0.01.

    Reference: Brown et al. 2020.

    Example:
        >>> SmoothAPLoss()(torch.eye(2), torch.tensor([0, 1]))
        tensor(0.)
    """

    def __init__(self, temperature: float = 0.01):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = temperature

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Args: embeddings (B x D), labels (B). Returns: Tensor, the 0-d loss."""
        return smooth_ap_loss(embeddings, labels, temperature=self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class ContrastiveLoss(nn.Module):
    """Module form of :func:`contrastive_loss`.

    Args:
        margin (float): negative margin. Default 1.0.

    Reference: Hadsell et al. 2006.

    Example:
        >>> ContrastiveLoss()(torch.tensor([[0.0], [2.0]]), torch.tensor([0, 1]))
        tensor(0.)
    """

    def __init__(self, margin: float = 1.0):
        super().__init__()
        if not margin > 0:
            raise ValueError(f"margin must be > 0, got {margin!r}")
        self.margin = margin

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Args: embeddings (B x D), labels (B). Returns: Tensor, the 0-d loss."""
        return contrastive_loss(embeddings, labels, margin=self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


class CrossEntropyLabelSmooth(nn.Module):
    """Module form of :func:`cross_entropy_label_smooth`.

    Args:
        epsilon (float): label smoothing. Default 0.1.

    Reference: Szegedy et al. 2016; Luo et al. 2019.

    Example:
        >>> CrossEntropyLabelSmooth(epsilon=0.0)(torch.zeros(1, 4), torch.tensor([2]))
        tensor(1.3863)
    """

    def __init__(self, epsilon: float = 0.1):
        super().__init__()
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
        self.epsilon = epsilon

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Args: logits (B x C), labels (B). Returns: Tensor, the 0-d loss."""
        return cross_entropy_label_smooth(logits, labels, epsilon=self.epsilon)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}"


# --------------------------------------------------------------------------------------------
# registry and gradient mass
# --------------------------------------------------------------------------------------------

#: Metric losses by name: each a ``functools.partial`` taking ``(embeddings, labels)``.
LOSSES = MappingProxyType(
    {
        "drsl": functools.partial(drsl_loss, gradient="identity"),
        "drsl_smooth": functools.partial(drsl_loss, gradient="smooth"),
        "drsl_rank": functools.partial(drsl_loss, sort_weight=0.0, gradient="identity"),
        "triplet": functools.partial(batch_hard_triplet_loss),
        "triplet_soft": functools.partial(batch_hard_triplet_loss, margin=None),
        "smooth_ap": functools.partial(smooth_ap_loss),
        "contrastive": functools.partial(contrastive_loss),
    }
)


def get_loss(name: str, **kwargs) -> Callable[[Tensor, Tensor], Tensor]:
    """A metric loss of :data:`LOSSES` by name, with its keywords overridden by ``kwargs``.

    Names: ``"drsl"`` (identity gradient), ``"drsl_smooth"`` (smooth gradient), ``"drsl_rank"``
    (``sort_weight=0``, identity gradient), ``"triplet"``, ``"triplet_soft"`` (``margin=None``),
    ``"smooth_ap"``, ``"contrastive"``.

    Args:
        name (str): a key of :data:`LOSSES`.
        **kwargs: keyword arguments of the underlying function (e.g. ``delta=0.1``).

    Returns:
        Callable[[Tensor, Tensor], Tensor]: ``loss(embeddings, labels)`` (a functools.partial).

    Raises:
        ValueError: unknown name (the message lists the valid ones) or unknown keyword.

    Reference: the cross-module contract (``drsl.losses``).

    Example:
        >>> fn = get_loss("drsl", delta=0.1)
        >>> fn.keywords
        {'gradient': 'identity', 'delta': 0.1}
        >>> get_loss("nope")
        Traceback (most recent call last):
        ...
        ValueError: unknown loss 'nope'; valid names: drsl, drsl_smooth, drsl_rank, triplet, triplet_soft, smooth_ap, contrastive
    """  # noqa: E501
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSSES)}")
    base = LOSSES[name]
    keywords = {**base.keywords, **kwargs}
    params = inspect.signature(base.func).parameters
    bad = [k for k in keywords if k not in params or k in ("embeddings", "labels")]
    if bad:
        valid = [k for k in params if k not in ("embeddings", "labels")]
        raise ValueError(f"unknown keyword(s) {bad} for loss {name!r}; valid: {valid}")
    return functools.partial(base.func, **keywords)


def gradient_mass(
    loss_fn: Callable[[Tensor, Tensor], Tensor], embeddings: Tensor, labels: Tensor
) -> dict[str, float]:
    """Total absolute gradient of a loss w.r.t. its pairwise matrix, on positive vs negative pairs.

    Runs ``loss_fn(embeddings, labels)`` once with a fresh leaf copy of ``embeddings`` and reads
    ``dL/dM`` for the ``B x B`` pairwise matrix ``M`` the loss builds (Euclidean distance for
    DRSL, triplet and contrastive, cosine similarity for Smooth-AP; ``|dL/dd| = |dL/ds|`` for
    ``s = -d``). Row ``a`` is anchor ``a``'s view, so every ordered pair counts once.

    Args:
        loss_fn (Callable): a loss of this module, e.g. ``get_loss("drsl")``.
        embeddings (Tensor): ``B x D`` embeddings (not modified).
        labels (Tensor): ``B`` integer labels.

    Returns:
        dict[str, float]: ``"pos"`` and ``"neg"`` (sums of ``|dL/dM[a, j]|`` over positive pairs
        ``j in P_a`` and negative pairs ``j in N_a``), ``"pos_per_pair"``, ``"neg_per_pair"``
        (the same divided by the number of such pairs, 0 when none), ``"num_pos_pairs"``,
        ``"num_neg_pairs"``.

    Raises:
        ValueError: ``loss_fn`` built no pairwise matrix through :mod:`drsl.losses`.

    Reference: spec "Why it suits imbalance"; RS Loss's balance property (Oksuz et al. 2021).

    Example:
        >>> f = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 0.1], [3.0, 0.0]])
        >>> m = gradient_mass(get_loss("drsl", smoothing="hard"), f, torch.tensor([0, 0, 1, 1]))
        >>> round(m["pos"], 4) == round(m["neg"], 4)
        True
    """
    labels = _check_batch(embeddings, labels)
    x = embeddings.detach().clone().requires_grad_(True)
    token = _CAPTURE.set([])
    try:
        with torch.enable_grad():
            loss = loss_fn(x, labels)
            captured = list(_CAPTURE.get())
            if len(captured) != 1:
                raise ValueError(
                    "gradient_mass needs a loss from drsl.losses that builds one pairwise matrix; "
                    f"this one built {len(captured)}"
                )
            matrix = captured[0]
            loss.backward()
    finally:
        _CAPTURE.reset(token)
    grad = matrix.grad if matrix.grad is not None else torch.zeros_like(matrix)
    pairs = _Pairs(labels)
    g = grad.abs()
    n_pos = int(pairs.pos_mask.sum())
    n_neg = int(pairs.neg_mask.sum())
    pos = float((g * pairs.pos_mask).sum())
    neg = float((g * pairs.neg_mask).sum())
    return {
        "pos": pos,
        "neg": neg,
        "pos_per_pair": pos / n_pos if n_pos else 0.0,
        "neg_per_pair": neg / n_neg if n_neg else 0.0,
        "num_pos_pairs": n_pos,
        "num_neg_pairs": n_neg,
    }
