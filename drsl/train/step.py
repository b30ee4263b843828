"""One optimiser step of a run: forward (autocast), gather, loss with references, update, enqueue.

:func:`train_step` is the step the loop (:mod:`drsl.train.loop`) runs, in one process and in
each process of a data-parallel run alike:

1. forward pass of the model under ``precision.autocast()`` (a no-op without ``--amp``), then
   the outputs in float32 (``drsl.train.precision.to_float32``): the losses never see 16 bits;
2. ``gather_batch``: every process's embeddings (with gradient), labels and angle embeddings
   (in one process: the batch itself, nothing is communicated);
3. the objective (:class:`drsl.train.factory.Objective`) with the other processes' batches
   and the cross-batch memory's contents as reference items, scaled by ``c_r`` (spec, "Beyond
   the batch"); the log row is the mean over processes (the one-process loss of the global
   batch), so every process's divergence guard decides alike;
4. ``zero_grad``, backward (through the grad scaler for float16), optimiser and scheduler;
5. **then** the memory enqueues the global batch in rank order (after the loss: an item is
   never its own reference; the same global batch on every rank keeps every rank's memory the
   memory one process would hold).

Reference: spec ``docs/drsl-loss-spec.md`` ("Beyond the batch"); Wang et al., "Cross-Batch
Memory for Embedding Learning", CVPR 2020 (loss, then enqueue); PyTorch AMP examples.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from drsl.train.distributed import gather_batch, reduce_means
from drsl.train.factory import Objective
from drsl.train.precision import Precision, backward_step, to_float32

__all__ = ["train_step"]


def _plain_scaler(loss: Tensor) -> torch.amp.GradScaler:
    return torch.amp.GradScaler(loss.device.type, enabled=False)


def train_step(
    model: torch.nn.Module,
    criterion: Objective,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    x: Tensor,
    y: Tensor,
    *,
    check: Callable[[float], None] | None = None,
    precision: Precision | None = None,
    scaler: torch.amp.GradScaler | None = None,
    memory: Any = None,
) -> dict[str, float]:
    """One optimiser step: forward, loss, (check), backward, optimiser, scheduler, enqueue.

    Args:
        model (nn.Module): the network (a ``DistributedDataParallel`` wrapper under torchrun)
            returning a :class:`drsl.models.ReIDOutput` in training mode.
        criterion (Objective): ``build_criterion(config)`` (gathered references and the memory
            are used).
        optimizer, scheduler: the run's optimiser and learning-rate schedule.
        x (Tensor): ``B x 3 x H x W`` transformed images (this process's batch).
        y (Tensor): ``B`` labels.
        check (Callable, optional): called with the loss value before the update; raising
            there (e.g. :class:`drsl.train.loop.LossGuard`) leaves the model untouched.
        precision (Precision, optional): the autocast setting (default: off).
        scaler (torch.amp.GradScaler, optional): ``precision.grad_scaler()`` (disabled unless
            float16 needs it); ``None``: a disabled one (plain backward).
        memory (CrossBatchMemory, optional): read as references, then fed the global batch;
            ``None`` during a memory warm-up or without one.

    Returns:
        dict[str, float]: the loss terms (``loss``, ``ce``, ``metric``), averaged over processes.

    Example:
        >>> from drsl.train import TrainConfig, build_criterion, build_model
        >>> torch.manual_seed(0)
        <torch._C.Generator object at ...>
        >>> net = build_model(TrainConfig(base_width=2), num_classes=2)
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
        >>> crit = build_criterion(TrainConfig(loss="ce+triplet"))
        >>> x, y = torch.randn(4, 3, 16, 8), torch.tensor([0, 0, 1, 1])
        >>> sorted(train_step(net, crit, opt, sched, x, y))
        ['ce', 'loss', 'metric']
    """
    model.train()
    if precision is not None and precision.enabled:
        with precision.autocast():
            out = model(x)
        out = to_float32(out)
    else:
        out = model(x)
    gathered = gather_batch(out.features, y, criterion.angle_of(out))
    extra = memory.references() if memory is not None else None
    loss, parts = criterion(out, y, gathered=gathered, extra_references=extra)
    parts = reduce_means(parts)  # the global batch's loss terms (unchanged in one process)
    if check is not None:
        check(parts["loss"])
    optimizer.zero_grad(set_to_none=True)
    backward_step(loss, optimizer, scaler if scaler is not None else _plain_scaler(loss))
    scheduler.step()
    if memory is not None:  # after the loss and the update: never an item's own reference
        memory.enqueue(*gathered.global_batch())
    return parts
