"""The pieces of a run: :func:`build_parts` turns a config into them.

The model (wrapped in ``DistributedDataParallel`` under torchrun), optimiser, schedule, sharded
PK sampler, objective, precision with its grad scaler, and the cross-batch memory. Their state
is saved and restored by :mod:`drsl.train.checkpoint` (``last.pt``).

Reference: Luo et al. 2019 (the recipe); PyTorch DDP notes (build the optimiser after wrapping).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from drsl.data.images import ReIDData
from drsl.data.transforms import build_transforms
from drsl.train.config import TrainConfig
from drsl.train.distributed import DistributedContext, wrap_model
from drsl.train.factory import build_criterion, build_model, seed_everything, torch_dtype
from drsl.train.precision import Precision, resolve_precision

__all__ = ["Parts", "build_parts", "lr_lambda"]

#: added to the seed of rank r > 0 after the model is built, so that the processes draw
#: different augmentations (rank 0, and a one-process run, keep the config's stream)
_RANK_SEED_STRIDE = 1_000_003


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at step ``total``."""
    import math

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        span = max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))

    return f


@dataclass
class Parts:
    """The built pieces of a run (their state is saved by :func:`snapshot`).

    ``model`` is what the step calls (the DDP wrapper under torchrun), ``net`` the network
    inside it (saved, evaluated); ``ctx.device`` is where this process trains. ``scaler`` is
    always a grad scaler (disabled unless float16 on CUDA needs it); ``memory`` is None without
    ``memory_size``.
    """

    config: TrainConfig
    data: ReIDData
    ctx: DistributedContext
    dtype: torch.dtype
    model: Any
    net: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    sampler: Any
    criterion: Callable
    transform: Callable
    total: int
    precision: Precision
    scaler: torch.amp.GradScaler
    memory: Any = None


def build_parts(config: TrainConfig, data: ReIDData, ctx: DistributedContext) -> Parts:
    """Model, optimiser, schedule, sampler, objective, precision and memory of a run.

    Args:
        config (TrainConfig): the run. data (ReIDData): preloaded images.
        ctx (DistributedContext): this process, and the device it trains on.

    Returns:
        Parts: the pieces.
    """
    from drsl.data.sampler import PKSampler
    from drsl.losses.memory import CrossBatchMemory

    device, dtype = ctx.device, torch_dtype(config.dtype)
    precision = resolve_precision(config.amp, device, param_dtype=dtype)
    seed_everything(config.seed)
    net = build_model(config, data.num_classes).to(device=device, dtype=dtype)
    criterion = build_criterion(config)
    # without the CE term the classifier (and BNNeck) get no gradient: DDP must know
    model = wrap_model(net, ctx, find_unused_parameters=not criterion.use_ce)
    net = model.module if ctx.is_distributed else model  # on CUDA: with SyncBatchNorm
    if ctx.rank > 0:
        torch.manual_seed(config.seed + _RANK_SEED_STRIDE * ctx.rank)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    sampler = PKSampler(
        data.train.pids.tolist(), config.P, config.K, seed=config.seed, **ctx.sampler_kwargs()
    )
    if len(sampler) < 1:
        raise ValueError(f"the training set cannot fill one P x K = {config.P} x {config.K} batch")
    total = config.num_epochs * len(sampler)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config.warmup_steps, total))
    h, w = data.train.images.shape[-2:]
    tf = build_transforms(train=True, height=h, width=w)
    return Parts(
        config=config,
        data=data,
        ctx=ctx,
        dtype=dtype,
        model=model,
        net=net,
        optimizer=optimizer,
        scheduler=scheduler,
        sampler=sampler,
        criterion=criterion,
        transform=tf,
        total=total,
        precision=precision,
        scaler=precision.grad_scaler(),
        memory=CrossBatchMemory(config.memory_size) if config.memory_size else None,
    )
