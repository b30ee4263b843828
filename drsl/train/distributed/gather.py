"""References gathered with gradient, their per-process scale, and the data-parallel loss.

Reference: spec ``docs/drsl-loss-spec.md`` ("Beyond the batch"); the scale's derivation is in
:meth:`GatheredBatch.scale`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from drsl.losses.names import NORMALISER_KINDS
from drsl.train.distributed.context import _world


class _AllGatherWithGrad(torch.autograd.Function):
    """``all_gather`` whose backward sends every rank the gradient of *all* ranks' losses.

    Process ``v`` computes ``dL_v / dx_r`` for every gathered copy ``x_r``; the gradient of
    ``sum_v L_v`` w.r.t. ``x_r`` is their sum over ``v``: an ``all_reduce(SUM)`` of the stacked
    copies' gradients, of which rank ``r`` keeps its slot (``torch.distributed.nn.all_gather``
    does the same, but is deprecated).
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> tuple[Tensor, ...]:
        rank, world = _world()
        ctx.rank = rank
        out = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(out, x.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: Tensor) -> Tensor:
        g = torch.stack(grads).contiguous()
        dist.all_reduce(g)  # sum over processes of d(their loss)/d(each copy)
        return g[ctx.rank]


def _gather_sizes(n: int, device: torch.device) -> list[int]:
    t = torch.tensor([n], dtype=torch.long, device=device)
    out = [torch.empty_like(t) for _ in range(_world()[1])]
    dist.all_gather(out, t)
    return [int(s) for s in out]


def _gather_rows(x: Tensor, sizes: list[int], *, grad: bool) -> list[Tensor]:
    """Every rank's ``x`` (``sizes[r]`` rows each), padded for the collective and cut back."""
    pad = max(sizes) - x.shape[0]
    padded = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))]) if pad else x
    if grad:
        parts = _AllGatherWithGrad.apply(padded)
    else:
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
    return [p[:n] for p, n in zip(parts, sizes, strict=True)]


@dataclass
class GatheredBatch:
    """Every process's batch as this process sees it after :func:`gather_batch`.

    Attributes:
        rank (int): this process; ``embeddings[rank]`` is the caller's own tensor, the others
            are gathered copies carrying gradient back to their owners.
        embeddings (list[Tensor]): per rank, ``B_r x D``. labels (list[Tensor]): ``B_r``.
        angle_embeddings (list[Tensor] or None): per rank, ``B_r x D'``, detached.
    """

    rank: int
    embeddings: list[Tensor]
    labels: list[Tensor]
    angle_embeddings: list[Tensor] | None = None

    @property
    def world_size(self) -> int:
        """Number of processes."""
        return len(self.embeddings)

    def _others(self, seq: Sequence[Tensor]) -> list[Tensor]:
        return [t for r, t in enumerate(seq) if r != self.rank]

    def references(
        self, extra: tuple[Tensor | None, Tensor | None, Tensor | None] | None = None
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """The other processes' batches (rank order), then ``extra``, as loss references.

        Args:
            extra (tuple, optional): ``CrossBatchMemory.references()`` ``(emb, labels, angle)``
                appended after the gathered ones; ``(None, ...)`` adds nothing.

        Returns:
            tuple: ``(ref_embeddings (R x D), ref_labels (R), ref_angle_embeddings (R x D'))``,
            or ``(None, None, None)`` (one process, no extra: every loss's batch-only path).
        """
        emb, lab = self._others(self.embeddings), self._others(self.labels)
        ang = self._others(self.angle_embeddings) if self.angle_embeddings is not None else None
        if extra is not None and extra[0] is not None:
            emb.append(extra[0])
            lab.append(extra[1])
            if ang is not None:
                ang.append((extra[2] if extra[2] is not None else extra[0]).detach())
        if not emb:
            return None, None, None
        return torch.cat(emb), torch.cat(lab), (torch.cat(ang) if ang is not None else None)

    def counts(
        self, normaliser: str, extra_labels: Tensor | None = None, extra_role: str = "all"
    ) -> Tensor:
        """Per rank, the count ``n_r`` its loss divides by (its record's ``normaliser``).

        Every rank's retrieval set is its own batch, the others' batches and ``extra_labels``
        (the same memory on every rank), so each rank counts for all without a collective.

        Args:
            normaliser (str): one of ``NORMALISER_KINDS``. extra_labels (Tensor, optional):
                the memory's labels. extra_role (str): ``"negatives"`` leaves the memory items
                of an anchor's label out of its retrieval set (the batches play both roles).

        Returns:
            Tensor: ``world_size`` float64 counts, on the labels' device.
        """
        if normaliser not in NORMALISER_KINDS:
            valid = ", ".join(NORMALISER_KINDS)
            raise ValueError(f"unknown normaliser {normaliser!r}; valid: {valid}")
        device = self.labels[0].device
        batches = torch.cat(self.labels)
        extra = extra_labels.to(device) if extra_labels is not None else batches[:0]
        out = []
        for lab in self.labels:
            same_batch = (lab[:, None] == batches[None, :]).sum(dim=1) - 1  # minus the anchor
            same_extra = (lab[:, None] == extra[None, :]).sum(dim=1)
            pos = same_batch + (0 if extra_role == "negatives" else same_extra)
            neg = (batches.shape[0] - 1 - same_batch) + (extra.shape[0] - same_extra)
            if normaliser == "items":
                n = lab.new_tensor(lab.shape[0], dtype=torch.float64)
            elif normaliser == "pairs":  # every item of every anchor's retrieval set
                n = (pos + neg).sum().to(torch.float64)
            else:
                ok = pos > 0
                if normaliser == "anchors_pos_neg":
                    ok = ok & (neg > 0)
                n = ok.sum().to(torch.float64)
            out.append(n)
        return torch.stack(out)

    def scale(
        self, normaliser: str, extra_labels: Tensor | None = None, extra_role: str = "all"
    ) -> Tensor:
        """The factor ``c_r = W n_r / sum_v n_v`` for this rank's loss (a 0-d float64 tensor).

        Derivation. The one-process loss of the concatenated batch is a mean of per-anchor
        terms ``l_a`` over ``N = sum_v n_v`` counted anchors, and each anchor's ``l_a`` is the
        same whether computed in one process or in the process that owns ``a`` (its retrieval
        set is the whole concatenated batch either way: its own batch plus the references).
        So with ``L_v = (1 / n_v) sum_{a in v} l_a`` (the loss process ``v`` computes),

            L = (1 / N) sum_a l_a = sum_v (n_v / N) L_v.                        (i)

        Backward: process ``v``'s graph reaches every process's embeddings ``f_r`` (its own
        directly, the others' through the gathered references); the gather's backward sums
        ``d(c_v L_v)/df_r`` over ``v`` into rank ``r`` (:class:`_AllGatherWithGrad`), which
        chains it through its own forward to the parameters. DDP then averages over ranks:

            g_DDP = (1 / W) sum_r sum_v c_v dL_v/df_r df_r/dtheta
                  = (1 / W) sum_v c_v dL_v/dtheta.                              (ii)

        Equating (ii) with the gradient of (i), ``sum_v (n_v / N) dL_v/dtheta``, gives
        ``c_v = W n_v / N``; with equal counts (a sharded PK batch) ``c_v = 1``. The spec's
        property 1 is (i) and property 2 is (ii) = ``dL/dtheta``; for logs, ``mean_v c_v L_v =
        L`` (``reduce_means``).

        Args:
            normaliser (str): see :meth:`counts`. extra_labels (Tensor, optional): memory labels.
            extra_role (str): the memory's role (see :meth:`counts`).

        Returns:
            Tensor: 0-d float64 (1 in one process; 0 when no rank counts anything).
        """
        n = self.counts(normaliser, extra_labels, extra_role)
        return self.world_size * n[self.rank] / n.sum().clamp_min(1)

    def global_batch(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """The concatenated batch in rank order, detached: what every rank's memory enqueues
        (so every rank holds the memory one process would hold)."""
        emb = torch.cat([e.detach() for e in self.embeddings])
        ang = torch.cat(self.angle_embeddings) if self.angle_embeddings is not None else None
        return emb, torch.cat(self.labels), ang


def gather_batch(
    embeddings: Tensor, labels: Tensor, angle_embeddings: Tensor | None = None
) -> GatheredBatch:
    """Gather every process's batch; the embeddings keep their gradient path to their owner.

    Every rank must call it (same width and dtype; batch sizes may differ). Without a
    process group it returns the caller's batch alone.

    Args:
        embeddings (Tensor): ``B x D`` (with grad). labels (Tensor): ``B``.
        angle_embeddings (Tensor, optional): ``B x D'`` (gathered detached).

    Returns:
        GatheredBatch: per-rank lists; ``embeddings[rank]`` is ``embeddings`` itself.

    Example:
        >>> gb = gather_batch(torch.zeros(4, 2), torch.tensor([0, 0, 1, 1]))
        >>> gb.world_size, gb.references(), float(gb.scale("anchors"))
        (1, (None, None, None), 1.0)
    """
    if embeddings.dim() != 2 or labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"need embeddings B x D and labels B, got {tuple(embeddings.shape)} and "
            f"{tuple(labels.shape)}"
        )
    rank, world = _world()
    ang = angle_embeddings.detach() if angle_embeddings is not None else None
    if world == 1:
        return GatheredBatch(0, [embeddings], [labels], None if ang is None else [ang])
    sizes = _gather_sizes(embeddings.shape[0], embeddings.device)
    emb = _gather_rows(embeddings, sizes, grad=True)
    lab = _gather_rows(labels, sizes, grad=False)
    angs = _gather_rows(ang, sizes, grad=False) if ang is not None else None
    emb[rank], lab[rank] = embeddings, labels  # own rows: the direct path (copies stay unused)
    if angs is not None:
        angs[rank] = ang
    return GatheredBatch(rank, emb, lab, angs)


def data_parallel_loss(
    loss_fn: Callable[..., Tensor],
    embeddings: Tensor,
    labels: Tensor,
    *,
    angle_embeddings: Tensor | None = None,
    normaliser: str = "anchors",
    extra_references: tuple[Tensor | None, Tensor | None, Tensor | None] | None = None,
    gathered: GatheredBatch | None = None,
    extra_role: str = "all",
) -> Tensor:
    """This process's share of the data-parallel loss: references gathered, scaled for DDP.

    ``c_r * loss_fn(embeddings, labels, ref_embeddings=others (+ extra), ...)``, ``c_r`` from
    :meth:`GatheredBatch.scale`: DDP's gradient average is then the one-process gradient of the
    concatenated batch (spec, property 2). In one process: ``loss_fn`` (plus ``extra``).

    Args:
        loss_fn (Callable): a loss of ``drsl.losses`` taking ``ref_embeddings``/``ref_labels``.
        embeddings (Tensor): ``B x D``, the anchors. labels (Tensor): ``B``.
        angle_embeddings (Tensor, optional): ``B x D'`` for DRSL's angle targets.
        normaliser (str): how ``loss_fn`` averages: ``record(name).normaliser`` of
            ``drsl.losses.names``; default ``"anchors"``.
        extra_references (tuple, optional): ``(emb, labels, angle)`` appended on every rank,
            e.g. a cross-batch memory's ``references()``.
        gathered (GatheredBatch, optional): reuse one gather for several loss terms.
        extra_role (str): ``"all"`` or ``"negatives"``: the ``ref_role`` of the extra
            references only (spec, "Negatives-only references"; the batches play both roles).

    Returns:
        Tensor: 0-d scaled loss, in the loss's dtype, attached to the graph.

    Example:
        >>> from drsl.losses import drsl_loss
        >>> f, y = torch.tensor([[0.0, 0.0], [0.1, 0.0], [2.0, 0.0]]), torch.tensor([0, 0, 1])
        >>> bool(data_parallel_loss(drsl_loss, f, y) == drsl_loss(f, y))
        True
    """
    if extra_role not in ("all", "negatives"):
        raise ValueError(f"extra_role must be 'all' or 'negatives', got {extra_role!r}")
    gb = gathered if gathered is not None else gather_batch(embeddings, labels, angle_embeddings)
    ref, ref_lab, ref_ang = gb.references(extra_references)
    kw: dict[str, Any] = {}
    if ref is not None:
        kw.update(ref_embeddings=ref, ref_labels=ref_lab)
        if extra_role != "all" and extra_references is not None and extra_references[0] is not None:
            role = torch.zeros(ref.shape[0], dtype=torch.bool, device=ref_lab.device)
            role[ref.shape[0] - extra_references[0].shape[0] :] = True  # the memory's rows
            kw["ref_role"] = role
    if angle_embeddings is not None:
        kw["angle_embeddings"] = angle_embeddings
        if ref is not None:
            kw["ref_angle_embeddings"] = ref_ang
    loss = loss_fn(embeddings, labels, **kw)
    if gb.world_size == 1:
        return loss
    extra_labels = extra_references[1] if extra_references is not None else None
    scale = gb.scale(normaliser, extra_labels, extra_role).to(loss)  # its device and dtype
    # + 0 * sum(references): every rank's graph reaches the gather, so every rank joins its
    # collective in backward() even when the loss ignores the references (no positive at all)
    return loss * scale + 0.0 * ref.sum()
