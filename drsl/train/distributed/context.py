"""The torchrun context of a data-parallel run, model wrapping and small collectives.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and ``MASTER_ADDR`` /
``MASTER_PORT``) in every process it starts; :func:`init_distributed` reads them and joins the
process group (``gloo`` on the CPU, ``nccl`` on CUDA, device ``cuda:LOCAL_RANK``). Without a
process group every function here is the one-process identity.

Reference: PyTorch, "Getting Started with Distributed Data Parallel" and ``torchrun`` (Elastic
Launch) docs.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DistributedContext",
    "init_distributed",
    "teardown",
    "distributed",
    "current_context",
    "wrap_model",
    "unwrap_model",
    "barrier",
    "broadcast_object",
    "all_gather_object",
    "reduce_mean",
    "reduce_means",
    "sync_buffers",
]

# a collective that waits longer fails instead of hanging; long enough for rank 0 to evaluate
# while the others wait at the next collective (torch's own default for gloo is 30 min too)
DEFAULT_TIMEOUT_S = 1800.0


# --------------------------------------------------------------------------------------------
# the context: who am I, where do I compute
# --------------------------------------------------------------------------------------------


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a data-parallel run.

    Attributes:
        rank (int): this process, ``0 .. world_size - 1`` (``RANK``).
        world_size (int): number of processes (``WORLD_SIZE``); 1 for a plain run.
        local_rank (int): this process on its machine (``LOCAL_RANK``): its GPU on CUDA.
        device (torch.device): where this process computes.
        backend (str or None): ``"gloo"`` (CPU) or ``"nccl"`` (CUDA); ``None`` when
            ``world_size == 1`` (no process group).

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
        """Keywords for the sharded sampler: ``PKSampler(labels, P, K, **ctx.sampler_kwargs())``.

        Returns:
            dict[str, int]: ``{"rank": ..., "world_size": ...}``.
        """
        return {"rank": self.rank, "world_size": self.world_size}

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        device: str | torch.device | None = None,
        backend: str | None = None,
    ) -> DistributedContext:
        """Read the context from torchrun's variables (nothing is initialised).

        Args:
            environ (Mapping, optional): default ``os.environ``.
            device (str | torch.device, optional): ``None``/``"auto"``: ``cuda:LOCAL_RANK``
                when CUDA is present, else the CPU; ``"cuda"`` means ``cuda:LOCAL_RANK``.
            backend (str, optional): default ``nccl`` on CUDA, ``gloo`` on the CPU.

        Returns:
            DistributedContext: the context.

        Raises:
            ValueError: a variable is not an integer, ranks are out of range, or
                ``LOCAL_RANK`` names a GPU that does not exist.
        """
        env = os.environ if environ is None else environ
        world = _env_int(env, "WORLD_SIZE", 1)
        rank = _env_int(env, "RANK", 0)
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


def init_distributed(
    device: str | torch.device | None = None,
    *,
    backend: str | None = None,
    environ: Mapping[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> DistributedContext:
    """Read torchrun's environment and join the process group (when ``WORLD_SIZE > 1``).

    Safe to call when the group already exists (then it only reads it) and in a plain run
    (then it returns the one-process context). On CUDA it selects ``cuda:LOCAL_RANK`` as the
    current device before ``nccl`` starts.

    Args:
        device (str | torch.device, optional): see :meth:`DistributedContext.from_env`.
        backend (str, optional): default ``nccl`` on CUDA, ``gloo`` on the CPU.
        environ (Mapping, optional): default ``os.environ`` (needs ``MASTER_ADDR`` and
            ``MASTER_PORT`` besides the ranks; torchrun sets them).
        timeout_s (float): a collective waiting longer than this raises instead of hanging
            (default 1800 s: rank 0 may evaluate while the others wait).

    Returns:
        DistributedContext: this process's context.

    Example:
        >>> init_distributed("cpu", environ={}).world_size
        1
    """
    ctx = DistributedContext.from_env(environ, device=device, backend=backend)
    if not ctx.is_distributed:
        return ctx
    if ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)
    if not dist.is_initialized():
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
    return ctx


def teardown() -> None:
    """Leave the process group if this process is in one (no-op otherwise)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed(
    device: str | torch.device | None = None,
    *,
    backend: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Iterator[DistributedContext]:
    """``with distributed() as ctx:`` :func:`init_distributed`, then :func:`teardown`.

    Args:
        device, backend, timeout_s: see :func:`init_distributed`.

    Yields:
        DistributedContext: this process's context.
    """
    ctx = init_distributed(device, backend=backend, timeout_s=timeout_s)
    try:
        yield ctx
    finally:
        if ctx.is_distributed:
            teardown()


def current_context(device: str | torch.device | None = None) -> DistributedContext:
    """The context of the running process group (or the one-process context).

    Args:
        device (str | torch.device, optional): as in :meth:`DistributedContext.from_env`.

    Returns:
        DistributedContext: ranks from ``torch.distributed`` when it is initialised.

    Example:
        >>> current_context("cpu").world_size
        1
    """
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext(device=_pick_device(device, 0))
    rank, world = dist.get_rank(), dist.get_world_size()
    local = _env_int(os.environ, "LOCAL_RANK", rank)
    return DistributedContext(rank, world, local, _pick_device(device, local), dist.get_backend())


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# --------------------------------------------------------------------------------------------
# model wrapping and small collectives
# --------------------------------------------------------------------------------------------


def wrap_model(
    model: nn.Module,
    ctx: DistributedContext,
    *,
    find_unused_parameters: bool = False,
    sync_batchnorm: bool = True,
) -> nn.Module:
    """``DistributedDataParallel(model)`` when ``ctx`` is distributed, else ``model`` itself.

    DDP broadcasts rank 0's parameters and buffers when it is built (every rank starts from
    the same weights) and averages the gradients over the ranks in ``backward()``.

    Args:
        model (nn.Module): already on ``ctx.device``.
        ctx (DistributedContext): the run's context.
        find_unused_parameters (bool): set it when some parameters get no gradient in a step
            (e.g. the identity classifier of :class:`drsl.models.ReIDNet` when the loss has no
            CE term), or DDP stops with "Expected to have finished reduction".
        sync_batchnorm (bool): on CUDA, convert BatchNorm layers to ``SyncBatchNorm`` so the
            batch statistics are those of the whole (concatenated) batch. PyTorch's
            SyncBatchNorm runs on GPUs only: on the CPU (gloo) BatchNorm keeps per-process
            statistics, so a model with BatchNorm is not bit-equal to one process there.

    Returns:
        nn.Module: the wrapped (or unchanged) model.
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


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (for ``state_dict()``, evaluation and saving).

    Args:
        model (nn.Module): wrapped or not.

    Returns:
        nn.Module: ``model.module`` for DDP, else ``model``.

    Example:
        >>> lin = nn.Linear(2, 2)
        >>> unwrap_model(lin) is lin
        True
    """
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def sync_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (e.g. BatchNorm running statistics) to every rank.

    DDP broadcasts rank 0's buffers before each forward pass, so after the last step each rank
    holds the statistics of its own last batch; calling this then makes every rank's module
    equal to the one rank 0 saves (no-op in one process).

    Args:
        module (nn.Module): the unwrapped network (same structure on every rank).
        src (int): the rank whose buffers win.

    Example:
        >>> sync_buffers(nn.BatchNorm1d(2))
    """
    if _world()[1] == 1:
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=src)


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if _world()[1] > 1:
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (picklable objects; no-op in one process).

    Args:
        obj (Any): the object (ignored on the other ranks). src (int): the sender.

    Returns:
        Any: rank ``src``'s object.

    Example:
        >>> broadcast_object({"a": 1})
        {'a': 1}
    """
    if _world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (e.g. per-rank RNG states).

    Args:
        obj (Any): a picklable object.

    Returns:
        list: ``world_size`` objects.

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


def reduce_mean(value: Tensor | float) -> float:
    """The mean of ``value`` over the ranks, as a float (for logs; every rank must call it).

    With the scale of :func:`data_parallel_loss`, the mean of the scaled per-process losses is
    the one-process loss of the concatenated batch (spec, property 1).

    Args:
        value (Tensor | float): a 0-d tensor (detached here) or a number.

    Returns:
        float: the mean over ranks (``value`` itself in one process).

    Example:
        >>> reduce_mean(torch.tensor(0.25))
        0.25
    """
    return reduce_means({"value": value})["value"]


def reduce_means(values: Mapping[str, Tensor | float]) -> dict[str, float]:
    """The means over the ranks of several numbers in one collective (the step's log row).

    Every rank gets the same row, so decisions taken from it (a divergence guard, early
    stopping) agree on all ranks; every rank must call it with the same keys.

    Args:
        values (Mapping[str, Tensor | float]): 0-d tensors or numbers, e.g. the loss terms.

    Returns:
        dict[str, float]: the same keys, averaged over ranks (unchanged in one process).

    Example:
        >>> reduce_means({"loss": torch.tensor(0.5), "ce": 0.25})
        {'loss': 0.5, 'ce': 0.25}
    """
    keys = list(values)
    flat = [float(v.detach()) if isinstance(v, Tensor) else float(v) for v in values.values()]
    world = _world()[1]
    if world == 1:
        return dict(zip(keys, flat, strict=True))
    # nccl reduces CUDA tensors only (the current device, set by init_distributed); gloo CPU ones
    dev = (
        torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    )
    t = torch.tensor(flat, dtype=torch.float64, device=dev)
    dist.all_reduce(t)
    return dict(zip(keys, (t / world).tolist(), strict=True))
