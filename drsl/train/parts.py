"""The pieces of a run and its resumable state: build, snapshot, resume (one or several processes).

:func:`build_parts` turns a config into the model (wrapped in ``DistributedDataParallel`` under
torchrun), optimiser, schedule, sharded PK sampler, objective, precision and cross-batch memory;
:func:`snapshot` is what ``last.pt`` holds and :func:`resume_parts` restores it. Under data
parallelism every rank builds the snapshot (the per-rank RNG states are gathered, a
collective), rank 0 writes it; on resume rank 0 reads ``last.pt`` and broadcasts it (so other
machines need no shared file system), and every rank restores its own RNG state.

Reference: Luo et al. 2019 (the recipe); PyTorch DDP notes (build the optimiser after wrapping).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from drsl.data.images import ReIDData
from drsl.data.transforms import build_transforms
from drsl.train.checkpoint import CheckpointError, read_state, rng_state, set_rng_state
from drsl.train.config import TrainConfig
from drsl.train.distributed import (
    DistributedContext,
    all_gather_object,
    broadcast_object,
    unwrap_model,
    wrap_model,
)
from drsl.train.factory import build_criterion, build_model, seed_everything, torch_dtype
from drsl.train.precision import Precision, resolve_precision

__all__ = ["Parts", "State", "build_parts", "main_first", "resume_parts", "snapshot", "lr_lambda"]

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
    inside it (saved, evaluated). ``memory`` is None without ``memory_size``; ``scaler`` None
    unless float16 needs one.
    """

    config: TrainConfig
    data: ReIDData
    ctx: DistributedContext
    device: torch.device
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
    scaler: Any = None
    memory: Any = None

    @property
    def can_eval(self) -> bool:
        return self.data.query is not None and self.data.gallery is not None

    def memory_for(self, step: int) -> Any:
        """The memory a step with ``step`` steps done uses (None during the warm-up)."""
        if self.memory is None or step < self.config.memory_warmup:
            return None
        return self.memory


@dataclass
class State:
    """What changes as the run goes (saved in ``last.pt`` with the model and optimiser)."""

    epoch: int = 0
    step_in_epoch: int = 0
    step: int = 0
    seconds: float = 0.0
    history: dict[str, list[dict[str, float]]] = field(
        default_factory=lambda: {"train": [], "eval": []}
    )
    pending: list[list[int]] | None = None


def main_first(ctx: DistributedContext, fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0, its result (or its exception) broadcast to every rank.

    An error on rank 0 (a damaged checkpoint, a locked folder) is raised on every rank,
    instead of leaving the others waiting at the next collective. In one process: ``fn()``.
    """
    if not ctx.is_distributed:
        return fn()
    outcome: tuple[bool, Any] = (True, None)
    if ctx.is_main:
        try:
            outcome = (True, fn())
        except Exception as err:  # noqa: BLE001 - re-raised on every rank below
            outcome = (False, err)
    ok, value = broadcast_object(outcome)
    if not ok:
        raise value
    return value


def build_parts(
    config: TrainConfig, data: ReIDData, device: torch.device, ctx: DistributedContext
) -> Parts:
    """Model, optimiser, schedule, sampler, objective, precision and memory of a run.

    Args:
        config (TrainConfig): the run. data (ReIDData): preloaded images.
        device (torch.device): where to train. ctx (DistributedContext): this process.

    Returns:
        Parts: the pieces.
    """
    from drsl.data.sampler import PKSampler
    from drsl.losses.memory import CrossBatchMemory

    dtype = torch_dtype(config.dtype)
    precision = resolve_precision(config.amp, device, param_dtype=dtype)
    seed_everything(config.seed)
    net = build_model(config, data.num_classes).to(device=device, dtype=dtype)
    criterion = build_criterion(config)
    # without the CE term the classifier (and BNNeck) get no gradient: DDP must know
    model = wrap_model(net, ctx, find_unused_parameters=not criterion.use_ce)
    net = unwrap_model(model)  # SyncBatchNorm on CUDA: the converted network
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
        config,
        data,
        ctx,
        device,
        dtype,
        model,
        net,
        optimizer,
        scheduler,
        sampler,
        criterion,
        tf,
        total,
        precision,
        precision.grad_scaler() if precision.needs_scaler else None,
        CrossBatchMemory(config.memory_size) if config.memory_size else None,
    )


def _rng(parts: Parts) -> Any:
    if not parts.ctx.is_distributed:
        return rng_state()
    return all_gather_object(rng_state(parts.device))  # per rank, in rank order


def snapshot(parts: Parts, st: State, batches: list[list[int]] | None) -> dict[str, Any]:
    """The resume state (``last.pt``); a collective under data parallelism (every rank calls)."""
    return {
        "config": parts.config.to_dict(),
        "num_classes": parts.data.num_classes,
        "data_fingerprint": parts.data.fingerprint,
        "model": parts.net.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        "rng": _rng(parts),
        "epoch": st.epoch,
        "step_in_epoch": st.step_in_epoch,
        "step": st.step,
        "batches": batches,
        "history": st.history,
        "seconds": st.seconds,
        "world_size": parts.ctx.world_size,
        "memory": parts.memory.state_dict() if parts.memory is not None else None,
        "scaler": parts.scaler.state_dict() if parts.scaler is not None else None,
    }


def _to(value: Any, device: torch.device) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value


def resume_parts(parts: Parts, path: Path | None) -> State | None:
    """Restore ``path`` (a ``last.pt``) into ``parts``; None when there is nothing to resume.

    Rank 0 decides whether the state exists and reads it; every rank gets it by broadcast.

    Raises:
        CheckpointError: a damaged state, another config, other data or another world size
        (on every rank).
    """
    ctx = parts.ctx

    def read() -> dict[str, Any] | None:
        if path is None or not (path.exists() or path.is_symlink()):
            return None
        return read_state(path, parts.config, parts.data.fingerprint, world_size=ctx.world_size)

    s = main_first(ctx, read)
    if s is None:
        return None
    try:
        parts.net.load_state_dict(s["model"])
        parts.optimizer.load_state_dict(s["optimizer"])
        parts.scheduler.load_state_dict(s["scheduler"])
        rng = s["rng"]
        set_rng_state(rng[ctx.rank] if isinstance(rng, list) else rng, parts.device)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
        line = (str(err).strip().splitlines() or [type(err).__name__])[-1].strip()[:200]
        raise CheckpointError(
            f"{path} does not fit this run ({line}); the file is damaged or was edited; start "
            "over with --no-resume (resume=False) or delete it"
        ) from None
    if parts.memory is not None and s.get("memory") is not None:
        parts.memory.load_state_dict({k: _to(v, parts.device) for k, v in s["memory"].items()})
    if parts.scaler is not None and s.get("scaler"):
        parts.scaler.load_state_dict(s["scaler"])
    return State(
        s["epoch"], s["step_in_epoch"], s["step"], s["seconds"], s["history"], s["batches"]
    )
