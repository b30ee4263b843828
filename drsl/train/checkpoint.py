"""Checkpoints: atomic saves, the small ``model.pt`` format, and the resumable ``last.pt`` state.

- :func:`atomic_save`: ``torch.save`` through a temporary sibling (``drsl.fsutil.atomic_write``):
  a kill during the save leaves the previous file intact, and the temporary
  ``<name>.tmp-<pid>`` is removed on failure (or, after a ``SIGKILL``, by the next run).
- :func:`save_model` / :func:`load_model`: the final checkpoint (float32 weights, config,
  metrics, history), the format of the shipped checkpoints and of ``python -m drsl eval``.
- :func:`rng_state` / :func:`set_rng_state`, :func:`read_state`: what ``last.pt`` needs so
  that a resumed run replays the exact same steps.
- :class:`State`, :func:`snapshot`, :func:`resume_parts`: the whole life of ``last.pt``. Under
  data parallelism every rank builds the snapshot (the per-rank RNG states are gathered, a
  collective) and rank 0 writes it; on resume rank 0 reads and checks it and broadcasts it
  (other machines need no shared file system), and every rank restores its own RNG state.

Every checkpoint is loaded as data, never run as code: ``torch.load(..., weights_only=True)``
reads tensors and plain containers only, plus the few types of :data:`SAFE_GLOBALS` (numpy's
array, for the RNG state of older ``last.pt`` files). A file whose pickle names anything else
(a function to call, a class to build) is refused with one line naming it, before any of it runs.

Reference: PyTorch ``torch.save``/``torch.load`` (serialization semantics).
"""

from __future__ import annotations

import os
import pickle
import random
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from drsl.fsutil import atomic_write
from drsl.models import ReIDNet
from drsl.train.config import TrainConfig
from drsl.train.distributed import all_gather_object, main_first
from drsl.train.factory import build_model, select_device

if TYPE_CHECKING:
    from drsl.train.parts import Parts

__all__ = [
    "FORMAT",
    "SAFE_GLOBALS",
    "CheckpointError",
    "TrainResult",
    "atomic_save",
    "save_model",
    "load_model",
    "rng_state",
    "set_rng_state",
    "read_state",
    "State",
    "snapshot",
    "resume_parts",
]

FORMAT = "drsl-model-v1"

#: the only classes and functions a checkpoint's pickle may name besides tensors and plain data:
#: numpy's array reconstruction, for the numpy RNG state that ``last.pt`` files of earlier
#: versions stored as a numpy array (it is a plain tensor now, see :func:`rng_state`)
SAFE_GLOBALS = [
    np._core.multiarray._reconstruct,
    np.ndarray,
    np.dtype,
    np.dtypes.UInt32DType,
]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, a folder, damaged, other config or data)."""


@dataclass
class TrainResult:
    """What :func:`drsl.train.train` and :func:`drsl.train.load_or_train` return.

    Attributes:
        model (ReIDNet): the trained model (eval mode). config (TrainConfig): its config.
        history (dict): ``{"train": [row per step], "eval": [row per evaluation]}``.
        metrics (dict): the last evaluation (``mAP``, ``R1``, ``R5``, ``R10``, ``mINP``) or {}.
        seconds (float): wall time of the loop, periodic evaluations included (summed over
            resumed pieces).
        out_dir (Path, optional): the run folder. loaded (bool): read from a checkpoint.
        data_fingerprint (str): the training data's version (see ``ReIDData``).
        world_size (int): processes of the data-parallel run (1: one process).
    """

    model: ReIDNet
    config: TrainConfig
    history: dict[str, list[dict[str, float]]]
    metrics: dict[str, float]
    seconds: float
    out_dir: Path | None = None
    loaded: bool = False
    data_fingerprint: str = ""
    world_size: int = 1


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary sibling in the same folder, then ``os.replace`` it.

    Args:
        obj: anything ``torch.save`` accepts. path (str | PathLike): the destination.

    Returns:
        pathlib.Path: the destination.

    Example:
        >>> import pathlib, tempfile
        >>> p = atomic_save({"a": 1}, pathlib.Path(tempfile.mkdtemp()) / "x.pt")
        >>> torch.load(p, weights_only=True), [q.name for q in p.parent.iterdir()]
        ({'a': 1}, ['x.pt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
        os.chmod(tmp, 0o644)  # a checkpoint is meant to be shared

    return atomic_write(path, write)


def _metrics_of(history: dict[str, list[dict]]) -> dict[str, float]:
    rows = history.get("eval", [])
    return {k: v for k, v in rows[-1].items() if k not in ("step", "epoch")} if rows else {}


def save_model(
    result: TrainResult, path: str | os.PathLike, *, dataset: str = "", fingerprint: str = ""
) -> Path:
    """Write the small checkpoint: float32 weights, config, metrics and history.

    Args:
        result (TrainResult): a finished run. path (str | PathLike): the file.
        dataset (str): the dataset's name, stored for reference.
        fingerprint (str): the data version (``ReIDData.fingerprint``), stored to detect
            a checkpoint evaluated on other data than it was trained on.

    Returns:
        pathlib.Path: the file.
    """
    sd = {
        k: (v.float() if v.is_floating_point() else v).cpu()
        for k, v in result.model.state_dict().items()
    }
    return atomic_save(
        {
            "format": FORMAT,
            "config": result.config.to_dict(),
            "num_classes": result.model.num_classes,
            "state_dict": sd,
            "metrics": result.metrics,
            "history": result.history,
            "seconds": result.seconds,
            "dataset": dataset,
            "data_fingerprint": fingerprint,
            "world_size": result.world_size,
        },
        path,
    )


def _refusal(path: Path, err: Exception, fix: str) -> CheckpointError:
    """The one line for a checkpoint that ``weights_only`` loading refused (it names code)."""
    found = re.search(r"GLOBAL (\S+)", str(err)) or re.search(r"got <class '([^']+)'>", str(err))
    culprit = f" ({found.group(1)})" if found else ""
    return CheckpointError(
        f"{path} was refused: it asks to run code{culprit}, and a checkpoint is loaded as data "
        f"only (tensors, numbers, text); use a file written by drsl{fix}"
    )


def _torch_load(path: Path, what: str, fix: str) -> Any:
    """``torch.load`` as data (``weights_only=True``) with one-line errors: a folder, a missing
    file, a file that asks to run code, a damaged file."""
    if path.is_dir():
        inside = path / "model.pt"
        hint = f"; did you mean {inside}?" if inside.is_file() else "; pass a .pt file"
        raise CheckpointError(f"{what} {path} is a directory, not a checkpoint file{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS), warnings.catch_warnings():
            # a file that is no torch checkpoint makes torch warn about its pickle protocol
            # before it fails: the one line below says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        if "Unsupported global" in text or "Can only build" in text:
            raise _refusal(path, err, fix) from None
        why = text.split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler" in text else text
        why = _first(ValueError(why))
        raise CheckpointError(f"{path} is not a readable checkpoint ({why}){fix}") from None
    except Exception as err:  # noqa: BLE001 - any other reading failure means "damaged"
        raise CheckpointError(f"{path} is not a readable checkpoint ({_first(err)}){fix}") from None


def _first(err: BaseException) -> str:
    """The informative line of an error (for ``load_state_dict``: the first mismatch)."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    keyed = [ln for ln in lines if ln.startswith(("size mismatch", "Missing key", "Unexpected"))]
    line = (keyed or lines or [type(err).__name__])[0]
    return line if len(line) <= 200 else line[:197] + "..."


def _missing(ck: Any, keys: tuple[str, ...]) -> list[str]:
    return [k for k in keys if k not in ck] if isinstance(ck, dict) else list(keys)


def load_model(
    path: str | os.PathLike, *, device: str | torch.device | None = "cpu"
) -> TrainResult:
    """Read a checkpoint written by :func:`save_model` (or a ``last.pt``).

    Args:
        path (str | PathLike): the file. device: where to put the model (default CPU).

    Returns:
        TrainResult: with ``loaded=True``; the model in eval mode.

    Raises:
        FileNotFoundError: no such file. ValueError (``CheckpointError``): a directory, a
        damaged file or not a drsl checkpoint.
    """
    path = Path(path)
    ck = _torch_load(path, "checkpoint", "")
    fix = "; pass a model.pt or last.pt written by drsl train"
    weights = "state_dict" if isinstance(ck, dict) and "state_dict" in ck else "model"
    missing = _missing(ck, ("config", "num_classes", weights))
    if missing:
        raise CheckpointError(f"{path} is not a drsl checkpoint (no {', '.join(missing)}){fix}")
    try:
        config = TrainConfig.from_dict(ck["config"]).validate()
        model = build_model(config, int(ck["num_classes"]))
        model.load_state_dict(ck[weights])
    except (TypeError, ValueError, KeyError, RuntimeError, AttributeError) as err:
        raise CheckpointError(
            f"{path}: its weights do not fit its config ({_first(err)}); the file is damaged or "
            f"was edited{fix}"
        ) from None
    model = model.to(device=select_device(device), dtype=torch.float32).eval()
    hist = ck.get("history", {"train": [], "eval": []})
    metrics = ck.get("metrics")
    if metrics is None:
        metrics = _metrics_of(hist)
    return TrainResult(
        model,
        config,
        hist,
        metrics,
        ck.get("seconds", 0.0),
        path.parent,
        True,
        ck.get("data_fingerprint", ""),
        int(ck.get("world_size", 1)),
    )


def rng_state(cuda_device: torch.device | None = None) -> dict[str, Any]:
    """Every global RNG state a training step draws from (torch, numpy, random, CUDA).

    Args:
        cuda_device (torch.device, optional): save only this GPU's state (a data-parallel
            process owns one GPU; reading the others would open a context on each). Default:
            every GPU's.

    Returns:
        dict: the states, for :func:`set_rng_state`.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 - the global one
    state = {
        "torch": torch.get_rng_state(),
        # plain data (a tensor, not a numpy array): the file loads with weights_only=True
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }
    if cuda_device is not None and cuda_device.type == "cuda":
        state["cuda_device"] = torch.cuda.get_rng_state(cuda_device)
    elif torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], cuda_device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` returned (``cuda_device``: where a one-GPU state goes)."""
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]  # keys: a tensor (or a numpy array before it was one)
    keys = np.asarray(keys.numpy() if isinstance(keys, torch.Tensor) else keys, dtype=np.uint32)
    np.random.set_state((kind, keys, *rest))  # noqa: NPY002 - restores the global state
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "cuda_device" in state and cuda_device is not None and cuda_device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_device"], cuda_device)


#: what a ``last.pt`` must hold (:func:`snapshot` writes them)
STATE_KEYS = (
    "config", "model", "optimizer", "scheduler", "rng", "epoch", "step_in_epoch", "step",
    "seconds", "history", "batches",
)  # fmt: skip


def read_state(
    path: Path, config: TrainConfig, fingerprint: str, *, world_size: int = 1
) -> dict[str, Any]:
    """Read a ``last.pt`` for resuming and check it belongs to this run.

    Args:
        path (Path): the ``last.pt``. config (TrainConfig): the run's config.
        fingerprint (str): the data version the run trains on.
        world_size (int): processes of this run; a state of another number is refused (the
            global batch ``W x P x K`` and the per-process random states would differ).

    Returns:
        dict: the saved state (model, optimizer, scheduler, rng, counters, history).

    Raises:
        CheckpointError: damaged file, other config, other data or another number of
        processes (each message says how to launch, to start over with ``--no-resume`` /
        ``resume=False`` or to use another folder).
    """
    fix = "; start over with --no-resume (resume=False) or delete it"
    state = _torch_load(path, "resume state", fix)
    missing = _missing(state, STATE_KEYS)
    if missing:
        raise CheckpointError(f"{path} is not a drsl resume state (no {', '.join(missing)}){fix}")
    # from_dict fills the fields a state of an older version lacks with their defaults
    try:
        same = TrainConfig.from_dict(state["config"]).to_dict() == config.to_dict()
    except (TypeError, ValueError):
        same = False
    if not same:
        raise CheckpointError(
            f"{path} was written by a different config; use another out_dir or resume=False"
        )
    if state.get("data_fingerprint", "") != fingerprint:
        raise CheckpointError(
            f"{path} was written on other data ({state.get('data_fingerprint')!r}, "
            f"now {fingerprint!r}); use another out_dir or resume=False"
        )
    saved = int(state.get("world_size", 1))
    if saved != world_size:
        raise CheckpointError(
            f"{path} was written by a run of {saved} process(es), this one has {world_size}: "
            f"launch with torchrun --nproc_per_node={saved} (world_size {saved}), or use "
            "another out_dir or --no-resume"
        )
    return state


# --------------------------------------------------------------------------------------------
# the resume state of a run: what last.pt holds, and its restoration
# --------------------------------------------------------------------------------------------


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


def _rng(parts: Parts) -> Any:
    if not parts.ctx.is_distributed:
        return rng_state()
    return all_gather_object(rng_state(parts.ctx.device))  # per rank, in rank order


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
        "scaler": parts.scaler.state_dict(),  # {} for a disabled scaler
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
        set_rng_state(rng[ctx.rank] if isinstance(rng, list) else rng, ctx.device)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
        line = (str(err).strip().splitlines() or [type(err).__name__])[-1].strip()[:200]
        raise CheckpointError(
            f"{path} does not fit this run ({line}); the file is damaged or was edited; start "
            "over with --no-resume (resume=False) or delete it"
        ) from None
    if parts.memory is not None and s.get("memory") is not None:
        parts.memory.load_state_dict({k: _to(v, ctx.device) for k, v in s["memory"].items()})
    if s.get("scaler"):
        parts.scaler.load_state_dict(s["scaler"])
    return State(
        epoch=s["epoch"],
        step_in_epoch=s["step_in_epoch"],
        step=s["step"],
        seconds=s["seconds"],
        history=s["history"],
        pending=s["batches"],
    )
