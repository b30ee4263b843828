"""A toy data-parallel run for the scale notebook and the tests, and a launcher for it.

Training itself is launched with ``torchrun -m drsl train``. Here :func:`launch` starts ``W``
processes from Python (a free localhost port, ``torch.multiprocessing``), and :func:`toy_run` /
:func:`main` are the few-step check the scale notebook runs under ``torchrun
--nproc_per_node=2 -m drsl.explore.parallel`` (:func:`torchrun_toy` launches it, or forks the
same processes).

Reference: PyTorch ``torch.multiprocessing`` and ``torchrun`` docs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from drsl.train.distributed import (
    DistributedContext,
    data_parallel_loss,
    distributed,
    reduce_means,
    wrap_model,
)

__all__ = ["free_port", "launch", "toy_run", "torchrun_toy", "main"]


def free_port() -> int:
    """A TCP port on localhost that was free a moment ago (for ``MASTER_PORT``).

    Returns:
        int: the port number.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch_worker(
    rank: int,
    fn: Callable,
    world: int,
    port: int,
    backend: str,
    out: str,
    args: tuple,
    limit: float,
) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    device = "cpu" if backend == "gloo" else None
    with distributed(device, backend=backend, timeout_s=limit) as ctx:
        result = fn(ctx, *args)
    torch.save(result, Path(out) / f"rank{rank}.pt")


def launch(
    fn: Callable[..., Any],
    world_size: int = 2,
    args: tuple = (),
    *,
    backend: str = "gloo",
    timeout_s: float = 300.0,
    start_method: str = "spawn",
) -> list[Any]:
    """Run ``fn(ctx, *args)`` in ``world_size`` fresh processes joined in one process group.

    For tests and notebooks (training uses ``torchrun``): processes are spawned with
    ``torch.multiprocessing`` on a free localhost port, one thread each.

    Args:
        fn (Callable): a module-level (picklable) function ``fn(ctx, *args)``.
        world_size (int): processes (>= 1). args (tuple): picklable arguments.
        backend (str): ``"gloo"`` (CPU, default) or ``"nccl"`` (one GPU per process).
        timeout_s (float): the processes are killed after this many seconds.
        start_method (str): ``"spawn"`` (default: fresh interpreters, safe everywhere) or
            ``"fork"`` (Linux, CPU only: the children inherit the parent's imports, which
            saves each one importing torch; never after CUDA is initialised).

    Returns:
        list: each rank's return value (via ``torch.save``), in rank order.

    Raises:
        TimeoutError: the run took longer than ``timeout_s``.
        torch.multiprocessing.ProcessRaisedException: a process failed (its traceback).
    """
    import torch.multiprocessing as mp

    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    with tempfile.TemporaryDirectory(prefix="drsl-launch-") as tmp:
        procs = mp.start_processes(
            _launch_worker,
            args=(fn, world_size, free_port(), backend, tmp, tuple(args), timeout_s),
            nprocs=world_size,
            join=False,
            start_method=start_method,
        )
        deadline = time.monotonic() + timeout_s
        while not procs.join(timeout=1.0):
            if time.monotonic() > deadline:
                for p in procs.processes:
                    if p.is_alive():
                        p.kill()
                raise TimeoutError(f"{world_size}-process run did not finish in {timeout_s} s")
        # the results are plain tensors, numbers and containers: loaded as data
        return [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True) for r in range(world_size)]


def _toy_data(num_ids: int, per_id: int, dim: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_ids, dim, generator=g, dtype=torch.float64)
    labels = torch.arange(num_ids).repeat_interleave(per_id)
    x = centres[labels] + 0.7 * torch.randn(len(labels), dim, generator=g, dtype=torch.float64)
    return x, labels


def toy_run(
    ctx: DistributedContext | None = None,
    *,
    loss: str = "drsl",
    steps: int = 3,
    P: int = 4,
    K: int = 2,
    seed: int = 0,
    lr: float = 0.5,
) -> dict[str, Any]:
    """A few data-parallel SGD steps of a tiny float64 MLP on toy features (no BatchNorm).

    Each rank draws ``P`` identities of a sharded PK batch, so ``W`` processes with ``P``
    each see the same global batches as one process with ``W * P``: both runs give the same
    losses (to rounding), the check the scale notebook makes.

    Args:
        ctx (DistributedContext, optional): default ``DistributedContext.from_env(device="cpu")``.
        loss (str): a name of ``drsl.losses.LOSSES``. steps (int): SGD steps.
        P (int): identities per process. K (int): instances per identity.
        seed (int): data, model and sampler seed. lr (float): SGD learning rate.

    Returns:
        dict: ``{"world_size", "losses": [global loss per step], "weights": final first-layer
        weight (Tensor)}``.

    Example:
        >>> out = toy_run(steps=2, P=4)
        >>> len(out["losses"]), out["world_size"]
        (2, 1)
    """
    from drsl.data.sampler import PKSampler
    from drsl.losses import get_loss
    from drsl.losses.names import record

    ctx = DistributedContext.from_env(device="cpu") if ctx is None else ctx
    x, y = _toy_data(num_ids=4 * P * ctx.world_size, per_id=K + 1, dim=8, seed=seed)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4)).to(torch.float64)
    model = wrap_model(net, ctx)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    sampler = PKSampler(y.tolist(), P, K, seed=seed, **ctx.sampler_kwargs())
    fn, norm = get_loss(loss), record(loss).normaliser
    losses = []
    for idx in sampler.batches(0)[:steps]:
        emb = model(x[idx])
        value = data_parallel_loss(fn, emb, y[idx], normaliser=norm)
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(reduce_means({"loss": value})["loss"])
    return {"world_size": ctx.world_size, "losses": losses, "weights": net[0].weight.detach()}


def torchrun_toy(
    *, steps: int = 3, P: int = 2, K: int = 2, nproc: int = 2, fork: bool = False,
    timeout_s: float = 600.0,
) -> tuple[dict[str, Any], str]:  # fmt: skip
    """:func:`toy_run` in ``nproc`` gloo processes, launched as a shell would: ``torchrun``.

    ``torchrun`` starts ``nproc + 1`` fresh interpreters that each import PyTorch (half a
    minute on a laptop). With ``fork`` the same ``nproc`` processes, with the same environment
    variables, gloo and ``DistributedDataParallel``, are forked from this one instead
    (:func:`launch`, Linux): only the launcher differs.

    Args:
        steps (int): SGD steps. P (int): identities per process. K (int): instances per
            identity. nproc (int): processes. fork (bool): fork instead of ``torchrun``.
        timeout_s (float): the launch fails after this many seconds.

    Returns:
        tuple[dict, str]: rank 0's ``{"world_size", "losses"}`` and the ``torchrun`` command.

    Raises:
        RuntimeError: ``torchrun`` exited with an error (the end of its stderr).
    """
    cmd = ["torchrun", "--standalone", f"--nproc_per_node={nproc}", "-m", "drsl.explore.parallel",
           "--steps", str(steps), "--P", str(P), "--K", str(K)]  # fmt: skip
    if fork:
        run = partial(toy_run, steps=steps, P=P, K=K)
        out = launch(run, nproc, start_method="fork", timeout_s=timeout_s)[0]
        return {"world_size": out["world_size"], "losses": out["losses"]}, " ".join(cmd)
    from drsl.config import repo_root

    with tempfile.TemporaryDirectory(prefix="drsl-torchrun-") as tmp:
        out_file = Path(tmp) / "run.json"
        launcher = [sys.executable, "-m", "torch.distributed.run", *cmd[1:], "--out", str(out_file)]
        proc = subprocess.run(launcher, cwd=repo_root(), capture_output=True, text=True,
                              timeout=timeout_s)  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"torchrun exited with {proc.returncode}: {proc.stderr[-3000:]}")
        return json.loads(out_file.read_text()), " ".join(cmd)


def main(argv: Sequence[str] | None = None) -> int:
    """``torchrun --nproc_per_node=2 -m drsl.explore.parallel --out run.json``: a toy check.

    Runs :func:`toy_run` in every process; rank 0 writes ``{"world_size", "losses"}`` as JSON.

    Args:
        argv (sequence of str, optional): command-line arguments (default ``sys.argv[1:]``).

    Returns:
        int: the exit status (0).
    """
    ap = argparse.ArgumentParser(prog="python -m drsl.explore.parallel", description=main.__doc__)
    ap.add_argument("--loss", default="drsl")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--P", type=int, default=4, help="identities per process")
    ap.add_argument("--K", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="JSON file for rank 0's result")
    a = ap.parse_args(argv)
    with distributed("cpu") as ctx:
        res = toy_run(ctx, loss=a.loss, steps=a.steps, P=a.P, K=a.K, seed=a.seed)
    if ctx.is_main:
        text = json.dumps({"world_size": res["world_size"], "losses": res["losses"]})
        if a.out is not None:
            a.out.write_text(text)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
