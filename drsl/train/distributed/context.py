"""Who this process is (:meth:`DistributedContext.from_env`), the one lifecycle (``with
distributed() as ctx:`` joins the process group, gloo on the CPU, nccl on ``cuda:LOCAL_RANK``,
and leaves it), model wrapping and collectives (the identity without a process group).

Reference: PyTorch, "Getting Started with Distributed Data Parallel" and ``torchrun`` docs.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

# a collective waiting longer fails instead of hanging; rank 0 may evaluate meanwhile
_TIMEOUT_S = 1800.0


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name) or ""
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def _world() -> tuple[int, int]:
    """``(rank, world_size)`` of the running process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _pick_device(device: str | torch.device | None, local_rank: int) -> torch.device:
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise ValueError(
                f"LOCAL_RANK={local_rank} but only {count} CUDA device(s): start at most "
                f"{count} processes per machine (torchrun --nproc_per_node={max(count, 1)})"
            )
        dev = torch.device("cuda", local_rank)
    return dev


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a data-parallel run, and the device it computes on.

    Attributes:
        rank (int): this process, ``0 .. world_size - 1``. world_size (int): 1 for a plain run.
        local_rank (int): this process on its machine (its GPU on CUDA).
        device (torch.device): where this process computes.
        backend (str or None): ``"gloo"`` or ``"nccl"``; ``None`` when ``world_size == 1``.

    Example:
        >>> ctx = DistributedContext.from_env({}, device="cpu")
        >>> ctx.rank, ctx.world_size, ctx.is_main, ctx.is_distributed, ctx.backend
        (0, 1, True, False, None)
        >>> DistributedContext.from_env({"RANK": "1", "WORLD_SIZE": "2"}, device="cpu").backend
        'gloo'
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """True on rank 0: the process that writes logs, checkpoints and progress."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """True when several processes take part (``world_size > 1``)."""
        return self.world_size > 1

    def sampler_kwargs(self) -> dict[str, int]:
        """Keywords for ``PKSampler(labels, P, K, **ctx.sampler_kwargs())`` (rank, world_size)."""
        return {"rank": self.rank, "world_size": self.world_size}

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        device: str | torch.device | None = None,
        backend: str | None = None,
    ) -> DistributedContext:
        """This process's context: the running process group's, else torchrun's ``RANK``,
        ``WORLD_SIZE``, ``LOCAL_RANK`` in ``environ`` (default ``os.environ``); starts nothing.

        ``device`` ``None``/``"auto"``: ``cuda:LOCAL_RANK`` with CUDA, else the CPU; ``backend``
        default nccl on CUDA, gloo on the CPU. A non-integer variable, ranks out of range or a
        ``LOCAL_RANK`` without its GPU raise a one-line ValueError.
        """
        env = os.environ if environ is None else environ
        if dist.is_available() and dist.is_initialized():
            rank, world, backend = dist.get_rank(), dist.get_world_size(), dist.get_backend()
        else:
            rank, world = _env_int(env, "RANK", 0), _env_int(env, "WORLD_SIZE", 1)
        local = _env_int(env, "LOCAL_RANK", rank)
        if world < 1 or not 0 <= rank < world or local < 0:
            raise ValueError(
                f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local} "
                "(need 0 <= RANK < WORLD_SIZE)"
            )
        dev = _pick_device(device, local)
        if backend is None and world > 1:
            backend = "nccl" if dev.type == "cuda" else "gloo"
        return cls(rank, world, local, dev, backend if world > 1 else None)


def _join(ctx: DistributedContext, environ: Mapping[str, str] | None, timeout_s: float) -> None:
    if ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)
    if dist.is_initialized():
        return
    env = os.environ if environ is None else environ
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not env.get(k)]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={ctx.world_size} but {', '.join(missing)} unset: launch with "
            "torchrun --nproc_per_node=N (it sets them)"
        )
    # env:// reads os.environ (and, under torchrun, joins the launcher's store)
    url = "env://" if environ is None else f"tcp://{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
    dist.init_process_group(
        ctx.backend,
        init_method=url,
        rank=ctx.rank,
        world_size=ctx.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


@contextmanager
def distributed(
    device: str | torch.device | None = None,
    *,
    backend: str | None = None,
    environ: Mapping[str, str] | None = None,
    timeout_s: float = _TIMEOUT_S,
) -> Iterator[DistributedContext]:
    """``with distributed() as ctx:`` the one lifecycle: read the context, join, leave.

    In a plain run it yields the one-process context and starts nothing; inside an existing
    process group it only reads it. ``device``, ``backend``, ``environ``: as in
    :meth:`DistributedContext.from_env`; a collective waiting over ``timeout_s`` raises.

    Example:
        >>> with distributed("cpu", environ={}) as ctx:
        ...     ctx.world_size
        1
    """
    ctx = DistributedContext.from_env(environ, device=device, backend=backend)
    owner = ctx.is_distributed and not dist.is_initialized()
    if ctx.is_distributed:
        _join(ctx, environ, timeout_s)
    try:
        yield ctx
    finally:
        if owner and dist.is_initialized():
            dist.destroy_process_group()


def main_first(ctx: DistributedContext, fn: Callable[[], Any]) -> Any:
    """``fn()`` on rank 0, its result (or its exception) broadcast to every rank.

    The other ranks wait for rank 0; an error there (a damaged checkpoint, a locked folder) is
    raised on every rank instead of leaving them waiting at the next collective.

    Example:
        >>> main_first(DistributedContext(), lambda: 7)
        7
    """
    if not ctx.is_distributed:
        return fn()
    outcome: list[Any] = [True, None]
    if ctx.is_main:
        try:
            outcome = [True, fn()]
        except Exception as err:  # noqa: BLE001 - re-raised on every rank below
            outcome = [False, err]
    dist.broadcast_object_list(outcome, src=0)
    ok, value = outcome
    if not ok:
        raise value
    return value


def wrap_model(
    model: nn.Module,
    ctx: DistributedContext,
    *,
    find_unused_parameters: bool = False,
    sync_batchnorm: bool = True,
) -> nn.Module:
    """``DistributedDataParallel(model)`` when ``ctx`` is distributed, else ``model`` itself.

    ``find_unused_parameters``: some parameters get no gradient (the classifier without CE).
    ``sync_batchnorm``: on CUDA, BatchNorm becomes ``SyncBatchNorm``; on the CPU BatchNorm keeps
    per-process statistics, so a model with BatchNorm is not bit-equal to one process there.
    """
    if not ctx.is_distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if sync_batchnorm and ctx.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(
        model, device_ids=ids, find_unused_parameters=find_unused_parameters
    )


def sync_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every rank: each holds its own last
    batch's after the last step; then every rank's module is the one rank 0 saves."""
    if _world()[1] > 1:
        for buf in module.buffers():
            dist.broadcast(buf.data, src=0)


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order (e.g. per-rank RNG states).

    Example:
        >>> all_gather_object(3)
        [3]
    """
    world = _world()[1]
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def reduce_means(values: Mapping[str, Tensor | float]) -> dict[str, float]:
    """The means over the ranks of several numbers in one collective (the step's log row).

    Every rank gets the same row, so decisions taken from it (a divergence guard) agree. With
    ``data_parallel_loss``'s scale the mean of the per-process losses is the one-process loss of
    the concatenated batch (spec, property 1). ``values``: 0-d tensors or numbers, same keys.

    Example:
        >>> reduce_means({"loss": torch.tensor(0.5), "ce": 0.25})
        {'loss': 0.5, 'ce': 0.25}
    """
    keys = list(values)
    flat = [float(v.detach()) if isinstance(v, Tensor) else float(v) for v in values.values()]
    world = _world()[1]
    if world == 1:
        return dict(zip(keys, flat, strict=True))
    # nccl reduces CUDA tensors only (the current device, set when joining); gloo CPU ones
    dev = torch.cuda.current_device() if dist.get_backend() == "nccl" else None
    t = torch.tensor(flat, dtype=torch.float64, device=dev)
    dist.all_reduce(t)
    return dict(zip(keys, (t / world).tolist(), strict=True))
