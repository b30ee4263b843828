"""DRSL's terms on a distance-like matrix ``d = -s`` (``B x N``), in both gradient modes.

``d[a, j]`` is anchor ``a``'s distance to item ``j`` of its retrieval set (the batch, then the
reference items). The positives of every anchor come as a ``B x P`` padded index
(:class:`~drsl.losses._common.Pairs`); positive-vs-positive terms are ``B x P x P`` tensors and
the one big sum, over the negatives (``N_FP``), is the ``B x P x N`` step sum of
:mod:`drsl.losses._kernel`.

Reference: spec ``docs/drsl-loss-spec.md``, "The loss for one anchor" and "Two ways to get a
gradient"; RS Loss (Oksuz et al., ICCV 2021), Eq. 7-8 and Alg. 1.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from drsl.distances import indexed_cosine, unit_rows

from ._common import Pairs, check_batch, compute_dtype
from ._kernel import (
    BlockPlan,
    StepSums,
    block,
    slope,
    step_function,
    step_sums,
)

__all__: list[str] = []  # private module

SLOT_TERMS = ("rank", "rank_pos", "n_fp", "l_rank", "l_sort", "l_sort_target")


def pos_steps(d_pos: Tensor, valid: Tensor, smoothing: str, delta: float) -> Tensor:
    """``h_pp[a, i, j] = H(s_j - s_i) = H(d_i - d_j)`` over positives ``i, j != i`` (B x P x P)."""
    p = valid.shape[1]
    mask = valid[:, None, :] & valid[:, :, None]
    mask &= ~torch.eye(p, dtype=torch.bool, device=valid.device)
    return step_function(d_pos[:, :, None] - d_pos[:, None, :], smoothing, delta) * mask


def assemble(n_fp, h_pp, t_pos, pairs: Pairs, sort_weight, want_sort):
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


def drsl_smooth(d, t_pos, pairs: Pairs, smoothing, delta, sort_weight, want_sort):
    """DRSL by autograd (``gradient="smooth"``) on a distance-like matrix ``d = -s``."""
    d_pos = d.gather(1, pairs.pos_index)  # d_i for i in P_a
    # N_FP(i) = sum_{j in N_a} H(s_j - s_i): the B x P x N sum, never stored
    neg_w = pairs.neg_weight(d.dtype)
    n_fp = StepSums.apply(d, d_pos, pairs.pos_index, neg_w, smoothing, delta, False, pairs.num_pos)[
        ..., 0
    ]
    h_pp = pos_steps(d_pos, pairs.pos_valid, smoothing, delta)
    return assemble(n_fp, h_pp, t_pos, pairs, sort_weight, want_sort)


def _ranking_pass(dk, dpk, neg_w, pairs: Pairs, n_pos, norm, smoothing):
    """One pass over the ``B x P x N`` blocks: ``N_FP`` and what each negative receives.

    The blocks follow :class:`~drsl.losses._kernel.BlockPlan` (trimmed to the slots they
    need); padded slots hold ``N_FP = 0``.
    """
    b, p = dpk.shape
    plan = BlockPlan(b, p, dk.shape[1], pairs.num_pos)
    dk, dpk, pos_index = plan.rows(dk), plan.rows(dpk), plan.rows(pairs.pos_index)
    valid, neg_w = plan.rows(pairs.pos_valid), plan.rows(neg_w, 1)
    n_pos, norm = plan.rows(n_pos), plan.rows(norm)
    whole = plan.order is None and len(plan.ranges) == 1  # one block (0, B, P): no copies
    n_fp, to_neg = (None, None) if whole else (dk.new_zeros(b, p), dk.new_zeros(b, dk.shape[1]))
    for r0, r1, q in plan.ranges:
        # H(s_j - s_i) on the negatives only (the weights are 0/1, so masking h in place gives
        # the same numbers as weighting the sums and the spread, with one block less)
        h = block(dk, dpk, pos_index, r0, r1, smoothing, False, False, q)
        h = h.mul_(neg_w[0, r0:r1, None, :])
        nf = h.sum(dim=2)
        # ranking: negative j receives l_R(i) H(s_j - s_i) / N_FP(i) = H(s_j - s_i) / rank(i)
        coef = norm[r0:r1, None] * valid[r0:r1, :q] / (1.0 + n_pos[r0:r1, :q] + nf)
        got = torch.bmm(coef[:, None, :], h)[:, 0, :]
        if whole:
            n_fp, to_neg = nf, got
        else:
            n_fp[r0:r1, :q], to_neg[r0:r1] = nf, got
    return plan.back(n_fp).masked_fill_(~pairs.pos_valid, 0.0), plan.back(to_neg)


def drsl_identity(d, t_pos, pairs: Pairs, smoothing, delta, sort_weight, want_update):
    """DRSL's terms and, with ``want_update``, the identity update ``dL/ds`` in two pieces.

    No autograd: one pass over the ``B x P x N`` blocks gives both ``N_FP`` and what each
    negative receives. The update comes as ``(to_negatives, ranking_slots, sorting_slots)``:
    a ``B x N`` matrix (the negatives' share of the ranking part) and two ``B x P`` matrices of
    what each positive slot receives minus what it owes, in the ranking and sorting parts
    (scatter them into columns ``pairs.pos_index``).
    """
    valid, pos_index = pairs.pos_valid, pairs.pos_index
    d_pos = d.gather(1, pos_index)
    h_pp = pos_steps(d_pos, valid, smoothing, delta)
    neg_w = pairs.neg_weight(d.dtype)
    k = slope(smoothing, delta)
    dk, dpk = d * k, d_pos * k
    if not want_update:
        n_fp = step_sums(dk, dpk, pos_index, neg_w, smoothing, False, pairs.num_pos)[..., 0]
        return assemble(n_fp, h_pp, t_pos, pairs, sort_weight, sort_weight != 0), None
    # 1/|P_a| and the batch mean over anchors with a positive
    norm = 1.0 / (pairs.num_pos.clamp_min(1) * pairs.num_anchors.clamp_min(1)).to(d.dtype)
    n_fp, to_neg = _ranking_pass(dk, dpk, neg_w, pairs, h_pp.sum(dim=2), norm, smoothing)
    terms = assemble(n_fp, h_pp, t_pos, pairs, sort_weight, True)
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


class DRSLIdentity(torch.autograd.Function):
    """DRSL's value on ``d = -s``, back-propagating the identity update instead of a gradient."""

    @staticmethod
    def forward(ctx, d, t_pos, pairs, smoothing, delta, sort_weight):
        terms, update = drsl_identity(
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


def drsl_core(d, t_pos, pairs: Pairs, delta, smoothing, sort_weight, gradient) -> Tensor:
    """The DRSL batch loss on ``d`` (``B x N`` distances) in the chosen gradient mode."""
    if gradient == "identity":
        return DRSLIdentity.apply(d, t_pos, pairs, smoothing, delta, sort_weight)
    return drsl_smooth(d, t_pos, pairs, smoothing, delta, sort_weight, sort_weight != 0)["loss"]


def positive_targets(g: Tensor, g_ref: Tensor | None, pairs: Pairs) -> Tensor:
    """``t[a, p] = (1 + cos(g_a, g_i)) / 2`` for the positives ``i = pos_index[a, p]`` (B x P)."""
    with torch.no_grad():
        if g_ref is None:
            cos = indexed_cosine(g, pairs.pos_index)
        else:  # the items are [batch; references]: index their unit rows
            b, index = g.shape[0], pairs.pos_index
            # only the references that are some anchor's positive are normalised (of a memory
            # of earlier PK batches about 1 in 10; rows are normalised independently, so the
            # values are those of normalising all: measured 13 -> 3 ms at R = 8192)
            used = torch.unique(index[index >= b])  # sorted item indices
            un = unit_rows(torch.cat([g, g_ref.index_select(0, used - b)]))
            row = torch.where(index < b, index, b + torch.searchsorted(used, index))
            # (the width named, not -1: with no positive at all P = 0 and -1 is ambiguous)
            picked = un.index_select(0, row.reshape(-1)).view(*index.shape, un.shape[1])
            cos = (picked * un[:b, None, :]).sum(dim=2).clamp(-1.0, 1.0)
        return (1.0 + cos) / 2.0


def angle_inputs(x, z, angle_embeddings, ref_angle_embeddings):
    """The (detached, compute-dtype) angle embeddings of the batch and of the references."""
    g = x if angle_embeddings is None else angle_embeddings
    if not isinstance(g, Tensor) or g.dim() != 2 or g.shape[0] != x.shape[0]:
        got = tuple(g.shape) if isinstance(g, Tensor) else type(g).__name__
        raise ValueError(f"angle_embeddings must be B x D' with B = {x.shape[0]}, got {got}")
    g = g.detach().to(device=x.device, dtype=x.dtype)
    if z is None:
        if ref_angle_embeddings is not None and len(ref_angle_embeddings) > 0:
            raise ValueError("ref_angle_embeddings given without ref_embeddings and ref_labels")
        return g, None
    gr = z if ref_angle_embeddings is None else ref_angle_embeddings
    if not isinstance(gr, Tensor):
        raise ValueError(f"ref_angle_embeddings must be a tensor, got {type(gr).__name__}")
    if gr.dim() != 2 or gr.shape[0] != z.shape[0] or gr.shape[1] != g.shape[1]:
        raise ValueError(
            f"ref_angle_embeddings must be R x D' with R = {z.shape[0]}, D' = {g.shape[1]}, "
            f"got {tuple(gr.shape)}"
        )
    return g, gr.detach().to(device=x.device, dtype=x.dtype)


def prepare_scores(scores: Tensor, labels: Tensor, targets: Tensor, ref_labels):
    """(d = -scores in the compute dtype, the positives' targets B x P, the pairs)."""
    if not isinstance(scores, Tensor) or scores.dim() != 2:
        raise ValueError(f"scores must be a 2-D B x (B + R) matrix, got {tuple(scores.shape)}")
    labels = check_batch(scores, labels, "scores")
    if ref_labels is not None:
        ref_labels = torch.as_tensor(ref_labels).to(scores.device)
        if ref_labels.dim() != 1 or ref_labels.is_floating_point():
            raise ValueError(f"ref_labels must be 1-D integers, got {tuple(ref_labels.shape)}")
    r = 0 if ref_labels is None else ref_labels.shape[0]
    if scores.shape[1] != scores.shape[0] + r:
        kind = "a square B x B matrix" if r == 0 else f"B x (B + R) with R = {r}"
        raise ValueError(f"scores must be {kind}, got {tuple(scores.shape)}")
    if targets.shape != scores.shape:
        raise ValueError(
            f"targets must have the shape of scores {tuple(scores.shape)}, "
            f"got {tuple(targets.shape)}"
        )
    dtype = compute_dtype(scores.dtype)
    d = -scores.to(dtype)
    pairs = Pairs(labels, ref_labels if r else None)
    t_pos = targets.detach().to(device=d.device, dtype=dtype).gather(1, pairs.pos_index)
    return d, t_pos, pairs
