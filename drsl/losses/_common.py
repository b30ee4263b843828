"""Shared pieces of the losses: input checks, who is whose positive, the matrix form of a loss.

Every loss reads one ``B x N`` pairwise matrix: row ``a`` is anchor ``a`` (a batch row), column
``j`` an item of the retrieval set, the ``B`` batch rows followed by the ``R`` reference items
(``N = B + R``; spec "Beyond the batch"). :class:`Pairs` finds each anchor's positives over
that set; :class:`MatrixForm` is a loss split into its matrix and a core that maps the matrix
to the loss, so that :func:`drsl.losses.gradient_mass` can differentiate w.r.t. the matrix.

Reference: spec ``docs/drsl-loss-spec.md``, "Words" and "Beyond the batch".
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__: list[str] = []  # private module: drsl.losses re-exports what is public


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else (half precision included) computes in float32.

    It is also the dtype of the loss returned (see :func:`full_precision`).
    """
    # half precision inputs are computed in float32 (the step sums would lose all precision)
    return torch.float64 if dtype == torch.float64 else torch.float32


def autocast_off(x) -> AbstractContextManager:
    """A context with autocast off on tensor ``x``'s device; a no-op where it is not on.

    Inside a :func:`torch.autocast` region PyTorch would run the losses' matrix products (the
    pairwise distances, the sums of the sorting term) in bfloat16 or float16, 8 or 11
    significant bits; with it off every operation runs in its compute dtype
    (:func:`compute_dtype`). Checking the flag costs about 1 us.

    Reference: PyTorch, "Automatic Mixed Precision" (``torch.autocast(..., enabled=False)``
    for regions that must run in float32).
    """
    device = x.device.type if isinstance(x, Tensor) else None
    if (
        device is None
        or not torch.amp.is_autocast_available(device)
        or not torch.is_autocast_enabled(device)
    ):
        return contextlib.nullcontext()
    return torch.autocast(device, enabled=False)


def full_precision(loss_fn: Callable) -> Callable:
    """Decorate ``loss_fn(x, ...)`` to run under :func:`autocast_off` of ``x``.

    So a loss gives the same value inside and outside an autocast region; half-precision
    inputs are upcast exactly and the gradient flows back to them in their own dtype.
    """

    @functools.wraps(loss_fn)
    def wrapped(x, *args, **kwargs):
        with autocast_off(x):
            return loss_fn(x, *args, **kwargs)

    return wrapped


def _shape(x) -> object:
    return tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__


def check_batch(embeddings: Tensor, labels, name: str = "embeddings") -> Tensor:
    """Validate a (``B x D`` float, ``B`` integer labels) pair; return the labels on its device.

    Raises:
        ValueError: not 2-D, not floating point, an empty feature dimension (``B x 0``) or
            labels of the wrong shape or kind (one line naming the culprit).
    """
    if not isinstance(embeddings, Tensor) or embeddings.dim() != 2:
        raise ValueError(f"{name} must be a 2-D tensor (B x D), got {_shape(embeddings)}")
    if not embeddings.is_floating_point():
        raise ValueError(f"{name} must be floating point, got dtype {embeddings.dtype}")
    if embeddings.is_meta:
        raise ValueError(
            f"{name} are on the 'meta' device (shapes without values): move them to a real "
            "device (cpu, cuda) first"
        )
    if embeddings.shape[1] == 0:
        raise ValueError(
            f"{name} have an empty feature dimension ({embeddings.shape[0]} x 0): "
            "pass at least one feature per row"
        )
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


def check_refs(
    embeddings: Tensor, ref_embeddings: Tensor | None, ref_labels, name: str = "ref_embeddings"
) -> tuple[Tensor | None, Tensor | None]:
    """Validate the reference items; ``(None, None)`` when there are none (``R = 0``).

    Returns ``(ref_embeddings in the compute dtype of the embeddings and on their device,
    ref_labels on that device)``: half-precision references are upcast, never rounded to the
    embeddings' dtype first.
    """
    if ref_embeddings is None and ref_labels is None:
        return None, None
    if ref_embeddings is None or ref_labels is None:
        raise ValueError(f"pass {name} and ref_labels together (got only one of them)")
    ref_labels = check_batch(ref_embeddings, ref_labels, name)
    if ref_embeddings.shape[1] != embeddings.shape[1]:
        raise ValueError(
            f"{name} must have D = {embeddings.shape[1]} columns like the embeddings, "
            f"got {tuple(ref_embeddings.shape)}"
        )
    if ref_embeddings.shape[0] == 0:
        return None, None
    ref = ref_embeddings.to(device=embeddings.device, dtype=compute_dtype(embeddings.dtype))
    return ref, ref_labels.to(embeddings.device)


def check_finite(matrix: Tensor, what: str = "the pairwise distances", **inputs) -> None:
    """Raise a one-line ValueError when ``matrix`` holds NaN or inf, naming the culprit input.

    Any NaN or inf in the embeddings or the references reaches the pairwise matrix (the
    distances centre on the batch mean), so one pass over the ``B x N`` matrix guards all the
    inputs; only when it fails are the ``inputs`` (name -> tensor or None) scanned to name the
    culprit. It costs a small share of one DRSL forward + backward (``benchmarks/bench_losses.py
    --check-cost``; the figure is in ``benchmarks/results/losses.md``), so the check is always on.
    """
    # fast path: NaN and inf always make the sum non-finite (NaN + x = NaN, inf + x = inf or
    # NaN); only a non-finite sum, rare, pays for the exact element-wise test
    if bool(torch.isfinite(matrix.sum())) or bool(torch.isfinite(matrix).all()):
        return
    for name, x in inputs.items():
        if x is not None and not bool(torch.isfinite(x).all()):
            bad = (~torch.isfinite(x)).reshape(x.shape[0], -1).any(dim=1).nonzero()[:, 0]
            rows = ", ".join(str(int(r)) for r in bad[:5]) + (", ..." if len(bad) > 5 else "")
            raise ValueError(
                f"{name} hold NaN or inf in {len(bad)} row(s) ({rows}): fix what produces "
                "them (e.g. a diverging model, too large a learning rate) before the loss"
            )
    raise ValueError(
        f"{what} overflow (the inputs are finite but too large for their dtype): "
        "rescale the embeddings"
    )


def attached_zero(x: Tensor) -> Tensor:
    """A 0-d zero that is still attached to ``x``'s graph (its gradient is all zeros)."""
    return x.sum() * 0.0 if x.numel() == 0 else (x.flatten()[:1] * 0.0).sum()


def with_refs(batch_block: Tensor, ref_block_fn: Callable[[], Tensor], has_refs: bool) -> Tensor:
    """The ``B x N`` matrix: the ``B x B`` block alone when ``R = 0`` (today's exact values),
    else ``[batch block | B x R reference block]``."""
    return torch.cat([batch_block, ref_block_fn()], dim=1) if has_refs else batch_block


def _positives(items, b: int, xp):
    """``(num_pos (B), pos_valid (B x P), pos_index (B x P))`` of the first ``b`` items.

    Sorting the labels makes every identity a contiguous run; anchor ``a``'s positives are the
    other members of its run. ``xp`` is numpy for numpy arrays, None for torch tensors.
    """
    n = items.shape[0]
    if xp is None:
        order = torch.argsort(items, stable=True)
        _, run, counts = torch.unique_consecutive(
            items[order], return_inverse=True, return_counts=True
        )
        arange, where = functools.partial(torch.arange, device=items.device), torch.where
        place = torch.empty_like(order)
    else:
        order = xp.argsort(items, kind="stable")
        _, run, counts = _unique_runs(items[order], xp)
        arange, where = xp.arange, xp.where
        place = xp.empty_like(order)
    place[order] = arange(n)  # each item's position in sorted order
    place = place[:b]  # the anchors' positions
    run_of = run[place]
    start = (counts.cumsum(0) - counts)[run_of]
    num_pos = counts[run_of] - 1  # |P_a|
    p = int(num_pos.max()) if b else 0
    slot = arange(p)
    own = (place - start)[:, None]  # the anchor's own place in its run, skipped
    valid = slot < num_pos[:, None]
    k = where(valid, start[:, None] + slot + (slot >= own), place[:, None])
    return num_pos, valid, order[k]  # positives in increasing item order


def _unique_runs(sorted_items, xp):
    """numpy's ``unique_consecutive``: (values, run of each element, run lengths)."""
    n = sorted_items.shape[0]
    new_run = xp.ones(n, dtype=bool)
    new_run[1:] = sorted_items[1:] != sorted_items[:-1]
    run = xp.cumsum(new_run) - 1
    starts = xp.flatnonzero(new_run)
    counts = xp.diff(xp.append(starts, n))
    return sorted_items[starts], run, counts


#: values of every loss's ``ref_role`` (spec, "Negatives-only references")
REF_ROLES = ("all", "negatives")


def negatives_only(ref_role, ref_labels: Tensor | None) -> Tensor | None:
    """Which references are negatives only: ``None`` (all play both roles) or an ``R`` bool.

    Args:
        ref_role (str or Tensor): ``"all"``, ``"negatives"``, or an ``R`` bool tensor marking
            the negatives-only references (the data-parallel path: gathered batches ``"all"``,
            the memory ``"negatives"``).
        ref_labels (Tensor or None): the ``R`` reference labels (None: no references).

    Returns:
        Tensor or None: ``R`` bool on the labels' device, None when no reference is
        negatives-only (then every loss takes its ``"all"`` path exactly).

    Raises:
        ValueError: an unknown role or a mask of the wrong shape (one line).
    """
    if isinstance(ref_role, Tensor):
        r = 0 if ref_labels is None else ref_labels.shape[0]
        if ref_role.dtype != torch.bool or tuple(ref_role.shape) != (r,):
            raise ValueError(
                f"ref_role as a tensor must be a bool mask of the {r} references, got "
                f"{ref_role.dtype} {tuple(ref_role.shape)}"
            )
        if ref_labels is None or not bool(ref_role.any()):
            return None
        return ref_role.to(ref_labels.device)
    if ref_role not in REF_ROLES:
        raise ValueError(f"ref_role must be one of {REF_ROLES} (or a bool mask), got {ref_role!r}")
    if ref_role == "all" or ref_labels is None:
        return None
    return torch.ones(ref_labels.shape[0], dtype=torch.bool, device=ref_labels.device)


def positive_items(items: Tensor, b: int, excluded: Tensor | None) -> Tensor:
    """The item labels that define positives: ``items`` with the negatives-only references
    given labels of their own (distinct, below every real label), so they are nobody's
    positive; without any, ``items`` itself."""
    if excluded is None:
        return items
    out = items.to(torch.int64).clone()
    idx = b + excluded.nonzero()[:, 0]
    out[idx] = int(items.min()) - 1 - torch.arange(idx.shape[0], device=items.device)
    return out


class Pairs:
    """Who is whose positive among the ``N = B + R`` items, found without a ``B x N`` pass.

    Sorting the item labels makes every identity a contiguous run; anchor ``a``'s positives are
    the other members of its run, laid out in a ``B x P`` padded index (``P = max_a |P_a|``;
    padded slots point at ``a`` itself and are masked by ``pos_valid``). The batch rows come
    first in the item order, so with ``R = 0`` this is exactly the batch-only layout. ``B x N``
    masks are built on demand.

    Args:
        labels (Tensor): ``B`` labels of the anchors (the batch rows).
        ref_labels (Tensor, optional): ``R`` labels of the reference items.
        ref_role (str or Tensor): ``"all"`` (default) or ``"negatives"``: a reference sharing
            an anchor's label is then left out of that anchor's set (neither positive nor
            negative); or an ``R`` bool mask of such references (:func:`negatives_only`).
    """

    def __init__(self, labels: Tensor, ref_labels: Tensor | None = None, ref_role="all"):
        items = item_labels(labels, ref_labels)
        self.labels, self.items, self.num_items = labels, items, items.shape[0]
        b = labels.shape[0]
        self.excluded = negatives_only(ref_role, ref_labels)
        self.pos_items = pos_items = positive_items(items, b, self.excluded)
        if items.device.type == "cpu":
            # the same integer steps in numpy: ~20 tiny operations cost ~5 us each in torch,
            # ~1 us in numpy (measured: 0.28 ms -> 0.05 ms per call at B = 256)
            out = _positives(pos_items.numpy(), b, np)
            self.num_pos, self.pos_valid, self.pos_index = (torch.from_numpy(v) for v in out)
        else:
            self.num_pos, self.pos_valid, self.pos_index = _positives(pos_items, b, None)
        self.num_anchors = (self.num_pos > 0).sum()

    @functools.cached_property
    def same(self) -> Tensor:
        """``B x N`` bool: item ``j`` has anchor ``a``'s label (``a`` itself included)."""
        return self.labels[:, None] == self.items[None, :]

    @functools.cached_property
    def pos_mask(self) -> Tensor:
        """``B x N`` bool: ``j in P_a``."""
        return pair_masks(self.labels, self.items, self.same, self.pos_items)[0]

    @functools.cached_property
    def neg_mask(self) -> Tensor:
        """``B x N`` bool: ``j in N_a``."""
        return ~self.same

    def neg_weight(self, dtype: torch.dtype) -> Tensor:
        """``1 x B x N`` float indicator of the negatives (the weights of the step sums)."""
        b = self.labels.shape[0]
        out = torch.empty(1, b, self.num_items, dtype=dtype, device=self.labels.device)
        torch.ne(self.labels[:, None], self.items[None, :], out=out[0])  # no bool pass
        return out


def item_labels(labels: Tensor, ref_labels: Tensor | None) -> Tensor:
    """The ``N = B + R`` labels of the retrieval set: the batch, then the references."""
    return labels if ref_labels is None else torch.cat([labels, ref_labels.to(labels.dtype)])


def pair_masks(
    labels: Tensor, items: Tensor, same: Tensor | None = None, pos_items: Tensor | None = None
):
    """``(pos_mask, neg_mask)``, ``B x N`` bool: ``j in P_a`` and ``j in N_a``.

    ``pos_items`` (:func:`positive_items`): the labels that define positives when some
    references are negatives only; the negatives always follow the true ``items``.
    """
    same = labels[:, None] == items[None, :] if same is None else same
    if pos_items is None or pos_items is items:
        pos = same.clone()
    else:
        pos = labels.to(pos_items.dtype)[:, None] == pos_items[None, :]
    pos.fill_diagonal_(False)  # (a, a): the anchor is its own item a, in neither set
    return pos, ~same


@dataclass(frozen=True)
class MatrixForm:
    """A loss split at its pairwise matrix: ``loss = core(matrix)``.

    Attributes:
        matrix (Tensor): the ``B x N`` matrix the loss reads (a distance or a similarity),
            attached to the embeddings (and references).
        core (Callable[[Tensor], Tensor]): the rest of the loss, ``B x N`` matrix -> 0-d loss in
            the compute dtype (float32 or float64).
        labels (Tensor): ``B`` labels of the anchors.
        items (Tensor): ``N`` labels of the retrieval set (the batch, then the references).
        pos_items (Tensor or None): the labels defining positives when some references are
            negatives only (:func:`positive_items`); None: ``items``.
    """

    matrix: Tensor
    core: Callable[[Tensor], Tensor]
    labels: Tensor
    items: Tensor
    pos_items: Tensor | None = None

    def masks(self) -> tuple[Tensor, Tensor]:
        """``(pos_mask, neg_mask)`` of the retrieval sets (negatives-only references
        excluded from their own identity's positives)."""
        return pair_masks(self.labels, self.items, pos_items=self.pos_items)

    def loss(self) -> Tensor:
        """The loss ``core(matrix)``, 0-d, in the compute dtype."""
        return self.core(self.matrix)
