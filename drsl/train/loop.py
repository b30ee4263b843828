"""The training loop: PK batches through a DataLoader, one step at a time, exact resume.

One run: a :class:`~drsl.train.config.TrainConfig`, a :class:`~drsl.data.images.ReIDData`
(images preloaded as uint8 tensors) and :func:`train`, which draws PK batches
(``drsl.data.sampler.PKSampler``), augments them (``drsl.data.transforms.build_transforms``),
minimises an identity loss plus a metric loss (``drsl.losses``) on a ``drsl.models.ReIDNet``,
evaluates with ``drsl.metrics`` and writes into ``out_dir`` (see :class:`RunFolder`):

- ``last.pt``: the full training state (model, optimizer, scheduler, RNG states, epoch, step,
  the current epoch's batch order, history), saved atomically; a run started again with the
  same config resumes from it and ends with the same weights as an uninterrupted run;
- ``model.pt``: the final, small checkpoint (``drsl.train.checkpoint.save_model``);
- ``train_log.csv``, ``eval_log.csv``, ``metrics.json`` (with ``metrics_step``, the step the
  final metrics belong to) and ``config.toml`` (the resolved config).

Scale (spec "Beyond the batch"): ``config.memory_size`` adds a cross-batch memory whose rows are
reference items of the metric loss, ``config.amp`` runs the forward pass under autocast, and
under ``torchrun`` each process trains on its shard of a global PK batch with the other
processes' embeddings as references (:mod:`drsl.train.step`, :mod:`drsl.train.parts`,
:mod:`drsl.train.distributed`). Every file write goes through :class:`RunFolder`, whose
``writer`` flag is the rank-0 switch. Without them a run computes exactly what it computed
before they existed (tests compare weights bit for bit).

Losses: ``"ce+<metric>"`` adds the label-smoothed cross-entropy on the BNNeck logits to a metric
loss of the ``drsl.losses`` registry applied to the pre-BN features; ``"<metric>"`` alone trains
with the metric loss only; ``"ce"`` with cross-entropy only. For the DRSL family the angle
targets come from the post-BN features by default (``angle_source="bn"``).

Reference: Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification",
CVPR-W 2019 (BNNeck, label smoothing, Adam, warm-up); spec ``drsl-loss.md``.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from drsl.data.images import ImageSet, ReIDData
from drsl.train.checkpoint import State, TrainResult, resume_parts, snapshot
from drsl.train.config import TrainConfig
from drsl.train.distributed import DistributedContext, main_first, sync_buffers
from drsl.train.evaluation import evaluate
from drsl.train.factory import select_device
from drsl.train.parts import Parts, build_parts
from drsl.train.run_folder import RunFolder
from drsl.train.step import train_step

# train_step lives in drsl.train.step; it stays importable from here
__all__ = ["DivergenceError", "LossGuard", "train", "train_step", "make_loader"]


class DivergenceError(RuntimeError):
    """The loss became non-finite or exploded; the run stopped before applying that step."""


@dataclass
class LossGuard:
    """Stops a run whose loss is non-finite or explodes by orders of magnitude.

    The level is an exponential moving average (``beta``) of the finite losses seen, never
    below the median of the first ``warmup`` losses (the loss's natural scale, so a loss that
    has fallen near 0 does not make an ordinary batch look like an explosion). A loss above
    ``factor`` times the level, or NaN/inf, raises :class:`DivergenceError`. The guard holds
    no state of its own beyond the losses, so a resumed run rebuilds it from the history.

    Args:
        factor (float): how many times the level counts as an explosion. Default 1e3.
        beta (float): EMA weight of the past. warmup (int): losses that set the scale.

    Example:
        >>> g = LossGuard()
        >>> for s, v in enumerate([5.0, 4.0, 4.5], 1):
        ...     g.check(s, v)
        >>> try:
        ...     g.check(4, 2e13)
        ... except DivergenceError as err:
        ...     print(err)
        loss exploded at step 4: 2e+13, 4.1e+12x its running level 4.86
    """

    factor: float = 1e3
    beta: float = 0.9
    warmup: int = 10
    first: list[float] = field(default_factory=list)
    level: float | None = None

    def check(self, step: int, loss: float) -> None:
        """Raise :class:`DivergenceError` if ``loss`` (of step ``step``) is bad, else record it."""
        if not math.isfinite(loss):
            raise DivergenceError(f"loss is {loss} at step {step}")
        ref = self.reference()
        if ref is not None and loss > self.factor * ref:
            raise DivergenceError(
                f"loss exploded at step {step}: {loss:.3g}, {loss / ref:.2g}x its running "
                f"level {ref:.3g}"
            )
        self.update(loss)

    def reference(self) -> float | None:
        """The level a loss is compared with (None before the first loss)."""
        if self.level is None:
            return None
        scale = sorted(self.first)[len(self.first) // 2]
        return max(self.level, scale, 1e-12)

    def update(self, loss: float) -> None:
        """Record a finite loss."""
        if len(self.first) < self.warmup:
            self.first.append(loss)
        self.level = loss if self.level is None else self.beta * self.level + (1 - self.beta) * loss

    @classmethod
    def from_history(cls, rows: Sequence[dict[str, float]], **kw: Any) -> LossGuard:
        """The guard after the steps of ``rows`` (``history["train"]``)."""
        g = cls(**kw)
        for r in rows:
            g.update(r["loss"])
        return g


class _TrainImages(torch.utils.data.Dataset):
    """``(transformed image, pid)`` of an :class:`ImageSet`, one item at a time."""

    def __init__(self, images: ImageSet, transform: Callable[[Tensor], Tensor]) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.transform(self.images.images[i]), self.images.pids[i]


def make_loader(
    images: ImageSet, batches: Sequence[Sequence[int]], transform: Callable[[Tensor], Tensor]
) -> torch.utils.data.DataLoader:
    """A DataLoader yielding ``(x (B x 3 x H x W), pids (B))`` for the given index batches.

    ``batch_sampler`` is the epoch's remaining PK batches (from ``PKSampler.batches``), so a
    resumed run starts mid-epoch without drawing the skipped batches. In the main process
    (``num_workers=0``): the per-image augmentations then draw from the global torch RNG in
    the same order as a plain loop, which keeps resume exact and the shipped checkpoints
    reproducible; the loader's own seed draw uses a private generator for the same reason.
    (Its speed against the former hand-written loop: ``benchmarks/results/loader.md``.)

    Args:
        images (ImageSet): the training images. batches: lists of indices into it.
        transform (Callable): per-image training transform (uint8 in, float out).

    Returns:
        torch.utils.data.DataLoader: the loader.
    """
    return torch.utils.data.DataLoader(
        _TrainImages(images, transform),
        batch_sampler=[list(b) for b in batches],
        num_workers=0,
        generator=torch.Generator(),
    )


class _Clock:
    """Adds wall time to ``state.seconds`` at every checkpoint (so resumed pieces sum)."""

    def __init__(self, st: State) -> None:
        self.st, self.t0 = st, time.perf_counter()

    def tick(self) -> None:
        now = time.perf_counter()
        self.st.seconds += now - self.t0
        self.t0 = now


def _save(parts: Parts, st: State, batches, folder: RunFolder) -> None:
    """``last.pt`` and the logs (the snapshot is built on every rank: it is a collective)."""
    folder.save_state(snapshot(parts, st, batches), st.history, _extra(parts, st))


def _run_epoch(parts, st, batches, folder, clock, bar, guard, on_step) -> None:
    """The remaining steps of the current epoch (``batches[st.step_in_epoch:]``)."""
    cfg, device = parts.config, parts.ctx.device
    loader = make_loader(parts.data.train, batches[st.step_in_epoch :], parts.transform)
    for x, y in loader:
        x, y = x.to(device=device, dtype=parts.dtype), y.to(device)
        step = st.step + 1
        # the memory is off (neither read nor filled) for the first memory_warmup steps
        memory = parts.memory if st.step >= cfg.memory_warmup else None
        parts_ = train_step(
            parts.model,
            parts.criterion,
            parts.optimizer,
            parts.scheduler,
            x,
            y,
            check=lambda v, s=step: guard.check(s, v),
            precision=parts.precision,
            scaler=parts.scaler,
            memory=memory,
        )
        st.step, st.step_in_epoch = step, st.step_in_epoch + 1
        lr = parts.optimizer.param_groups[0]["lr"]
        st.history["train"].append({"step": step, "epoch": st.epoch, **parts_, "lr": lr})
        bar.update(1)
        bar.set_postfix(loss=f"{parts_['loss']:.3f}", refresh=False)
        if on_step is not None:
            on_step(step, parts_)
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
            clock.tick()
            _save(parts, st, batches, folder)
        if st.step >= parts.total:
            break


def _extra(parts: Parts, st: State) -> dict[str, Any]:
    cfg, world = parts.config, parts.ctx.world_size
    return {
        "config": cfg.to_dict(),
        "dataset": parts.data.name,
        "step": st.step,
        "seconds": st.seconds,
        "world_size": world,
        "global_batch": world * cfg.P * cfg.K,
        "amp": parts.precision.name,
    }


def _can_eval(data: ReIDData) -> bool:
    return data.query is not None and data.gallery is not None


def _evaluate_into(parts: Parts, st: State, bar) -> None:
    """Evaluate once (rank 0, on the network itself, never the DDP wrapper); broadcast."""

    def run() -> dict[str, float]:
        return evaluate(parts.net, parts.data, batch_size=parts.config.eval_batch_size)

    m = main_first(parts.ctx, run)
    st.history["eval"].append({"step": st.step, "epoch": st.epoch, **m})
    bar.set_postfix(mAP=f"{m['mAP']:.3f}")


def _end_epoch(parts, st, batches, folder, clock, bar) -> None:
    """After the steps of an epoch (or of the run): count it, evaluate if due, checkpoint."""
    cfg = parts.config
    finished = st.step_in_epoch >= len(batches)
    last = st.step >= parts.total or (finished and st.epoch + 1 >= cfg.num_epochs)
    if finished:
        st.epoch, st.step_in_epoch = st.epoch + 1, 0
    periodic = finished and cfg.eval_every and st.epoch % cfg.eval_every == 0
    if _can_eval(parts.data) and (last or periodic):
        _evaluate_into(parts, st, bar)
    clock.tick()
    _save(parts, st, None if finished else batches, folder)


def _loop(parts, st, folder, bar, on_step) -> None:
    guard = LossGuard.from_history(st.history["train"])
    clock = _Clock(st)
    while st.epoch < parts.config.num_epochs and st.step < parts.total:
        if st.pending is None:
            batches = parts.sampler.batches(st.epoch)
        else:
            batches, st.pending = st.pending, None
        _run_epoch(parts, st, batches, folder, clock, bar, guard, on_step)
        _end_epoch(parts, st, batches, folder, clock, bar)
    # a run stopped between its last step's checkpoint and the end of its epoch (the final
    # evaluation) has no step left to do: finish that epoch's bookkeeping as the uninterrupted
    # run did, so the final model's metrics are never stale
    evals = st.history["eval"]
    if _can_eval(parts.data) and (not evals or evals[-1]["step"] != st.step):
        if st.pending is None:  # stopped after an epoch-end checkpoint
            _evaluate_into(parts, st, bar)
            clock.tick()
            _save(parts, st, None, folder)
        else:
            batches, st.pending = st.pending, None
            _end_epoch(parts, st, batches, folder, clock, bar)


@contextlib.contextmanager
def _locked(folder: RunFolder, ctx: DistributedContext) -> Iterator[None]:
    """Rank 0 creates and locks the run folder; a failure there is raised on every rank."""
    if not ctx.is_distributed:
        with folder.locked():
            yield
        return
    with contextlib.ExitStack() as stack:
        main_first(ctx, lambda: stack.enter_context(folder.locked()) and None)
        yield


def _start(parts: Parts, folder: RunFolder, resume: bool) -> State:
    """The state to start from: ``last.pt`` when resuming, else a fresh one."""
    st = resume_parts(parts, folder.state_path) if resume else None
    if st is None:
        return State()
    folder.saved_step = st.step
    # a kill between last.pt and its logs leaves older logs: rewrite them from it
    folder.write_logs(st.history, _extra(parts, st))
    return st


def train(
    config: TrainConfig,
    data: ReIDData,
    *,
    out_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    resume: bool = True,
    progress: bool = True,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    ctx: DistributedContext | None = None,
) -> TrainResult:
    """Train a ``ReIDNet`` on ``data`` as ``config`` says; resume from ``out_dir/last.pt``.

    Each step: a PK batch (the sampler's order for the epoch) through :func:`make_loader`,
    per-image training transforms, :func:`drsl.train.step.train_step` (forward, under
    autocast with ``config.amp``; ``build_criterion(config)`` with the cross-batch memory and
    the other processes' batches as reference items; a :class:`LossGuard` check; backward,
    Adam, scheduler; then the memory enqueues the batch). ``last.pt`` is written atomically
    every ``checkpoint_every`` steps and at every epoch end; it holds the epoch's remaining
    batch order, all RNG states and the memory, so a resumed run replays the exact same
    steps. The run folder is locked (``drsl.fsutil.lock_folder``) while training.

    Data parallelism (``torchrun --nproc_per_node=W -m drsl train``, or ``ctx`` from
    ``drsl.train.distributed.distributed``): each process draws ``P`` identities of a
    sharded PK batch (global batch ``W x P x K``), the model is wrapped in
    ``DistributedDataParallel``, the loss gets the other processes' embeddings as references
    and the scale ``c_r`` (``drsl.train.distributed``); rank 0 alone writes files and
    evaluates (the metrics are broadcast); ``world_size`` is recorded in ``metrics.json``,
    ``config.toml``, ``last.pt`` and ``model.pt``, and a resume with another world size is
    refused. Every process must call :func:`train` with the same arguments.

    Args:
        config (TrainConfig): the run. data (ReIDData): preloaded images.
        out_dir (str | PathLike, optional): run folder (checkpoints and logs); ``None`` keeps
            everything in memory (no resume).
        device (str | torch.device, optional): ``None``/``"auto"``: CUDA if present, else CPU;
            used only without ``ctx`` (a context brings its device).
        resume (bool): continue from ``out_dir/last.pt`` when it exists (its config must equal
            ``config``). Default True.
        progress (bool): show a tqdm bar (``tqdm.auto``: notebook widget or terminal; rank 0).
        on_step (Callable, optional): called as ``on_step(step, parts)`` after every step
            (``parts``: the loss terms); raising there stops training (tests use it to
            simulate a kill).
        ctx (DistributedContext, optional): this process in a data-parallel run; default
            ``DistributedContext.from_env(device=device)`` (the running process group's).

    Returns:
        TrainResult: the model (eval mode), history, last metrics and the wall time.

    Raises:
        DivergenceError: the loss became non-finite or exploded (``last.pt`` keeps the last
            good checkpoint). FolderLockedError: another process trains in ``out_dir``.
        ValueError: a bad config, a resume state of another config/data/world size, or a
            damaged one.

    Reference: Luo et al. 2019 (training recipe); spec ``drsl-loss.md`` (the losses, "Beyond
    the batch").

    Example:
        >>> from drsl.data.images import make_random_data
        >>> cfg = TrainConfig(loss="ce+triplet", P=2, K=2, num_epochs=1, base_width=2,
        ...                   height=16, width=8, warmup_steps=0)
        >>> res = train(cfg, make_random_data(4, 2), progress=False)
        >>> len(res.history["train"]) == 2 and set(res.metrics) >= {"mAP", "R1", "mINP"}
        True
    """
    config.validate()
    if ctx is None:  # the one place the device is resolved; the context owns it from here
        ctx = DistributedContext.from_env(device=select_device(device))  # one-line errors
    folder = RunFolder(out_dir, writer=ctx.is_main)
    with _locked(folder, ctx):
        parts = build_parts(config, data, ctx)
        st = _start(parts, folder, resume)
        folder.write_config(config, run={"world_size": ctx.world_size})
        bar = tqdm(
            total=parts.total,
            initial=st.step,
            disable=not (progress and ctx.is_main),
            desc=config.loss,
        )
        try:
            _loop(parts, st, folder, bar, on_step)
        except DivergenceError as err:
            raise DivergenceError(
                f"training stopped: {err}; {folder.kept_message()}; lower the learning rate "
                f"(lr {config.lr:g}) or check the data"
            ) from None
        finally:
            bar.close()
        sync_buffers(parts.net)  # every rank's network = the one rank 0 saves
        parts.net.eval()
        evals = st.history["eval"]
        metrics = (
            {k: v for k, v in evals[-1].items() if k not in ("step", "epoch")} if evals else {}
        )
        result = TrainResult(
            model=parts.net,
            config=config,
            history=st.history,
            metrics=metrics,
            seconds=st.seconds,
            out_dir=folder.path,
            data_fingerprint=data.fingerprint,
            world_size=ctx.world_size,
        )
        # every rank returns once rank 0 has written model.pt (its failure raised on every rank)
        main_first(ctx, lambda: folder.save_final(result, data))
    return result
