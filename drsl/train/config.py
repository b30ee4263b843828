"""The run configuration :class:`TrainConfig`, its checks and its TOML files.

Every field carries ``metadata={"help": ...}`` (and optionally ``"flag"``, ``"short"``,
``"choices"``): the command line (:mod:`drsl.cli`) generates one option per field from it, so
an option is declared here once. No torch import at module level: ``drsl train --help`` and
argument errors answer without loading torch.

Run configs as files (``configs/*.toml``): a table of :class:`TrainConfig` fields at the top
level, an optional ``inherit = "other.toml"`` (a path relative to the file) whose values come
first, and an optional ``[run]`` table for the options that are not part of the model's
recipe (``out``, ``data``, ``fast``, ``device``, ``threads``). :func:`read_config` reads one,
:func:`config_to_toml` writes the resolved config back (``OUT/config.toml``).

Reference: Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification",
CVPR-W 2019 (the training recipe the defaults follow).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drsl.losses.names import RECORDS as _RECORDS

__all__ = [
    "LOSS_CHOICES",
    "AMP_CHOICES",
    "DTYPES",
    "METRIC_LOSSES",
    "MEMORY_ROLES",
    "RUN_KEYS",
    "TrainConfig",
    "ConfigFileError",
    "parse_loss",
    "read_config",
    "config_to_toml",
]

#: The loss names the course uses (any ``ce+<name>`` or ``<name>`` of ``drsl.losses.LOSSES``,
#: and ``ce`` alone, are accepted too): the ``course`` recipes of ``drsl.losses.names``.
LOSS_CHOICES = tuple(
    prefix + r.name for prefix in ("ce+", "") for r in _RECORDS if prefix in r.course
)
#: the metric losses of ``drsl.losses.LOSSES`` (one record each in ``drsl.losses.names``,
#: which imports no torch, so a loss name is checked without importing torch)
METRIC_LOSSES = tuple(sorted(r.name for r in _RECORDS))
#: values of ``memory_role``: how the cross-batch memory's items serve as references (spec,
#: "Negatives-only references"); ``drsl.losses`` checks the same names.
MEMORY_ROLES = ("all", "negatives")
#: dtype names a config may ask for (mapped to torch dtypes by the loop).
DTYPES = ("float32", "float64")
#: values of ``amp`` (``drsl.train.precision`` maps them to an autocast dtype): ``off``;
#: ``auto`` (bf16 on the CPU, bf16 or fp16 on CUDA); ``bf16``; ``fp16`` (CUDA, grad scaler).
AMP_CHOICES = ("off", "auto", "bf16", "fp16")
#: keys of a config file's ``[run]`` table (how to run, not what to train). ``world_size`` is
#: the number of processes a saved run used (``torchrun --nproc_per_node``), recorded in
#: ``OUT/config.toml``; the command line warns when it differs from the launch.
RUN_KEYS = ("out", "data", "fast", "device", "threads", "world_size")


class ConfigFileError(ValueError):
    """A config file that cannot be read or holds an unknown key (message: one line)."""


def parse_loss(name: str) -> tuple[bool, str | None]:
    """``(use_ce, metric_name or None)`` for a loss name.

    Args:
        name (str): ``"ce"``, ``"<m>"`` or ``"ce+<m>"`` with ``m`` in ``drsl.losses.LOSSES``.

    Returns:
        tuple[bool, str | None]: whether cross-entropy is added, and the metric loss.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).

    Example:
        >>> parse_loss("ce+drsl"), parse_loss("triplet"), parse_loss("ce")
        ((True, 'drsl'), (False, 'triplet'), (True, None))
    """
    if name == "ce":
        return True, None
    valid = sorted(METRIC_LOSSES)
    use_ce, metric = (True, name[3:]) if name.startswith("ce+") else (False, name)
    if metric not in valid:
        raise ValueError(
            f"unknown loss {name!r}; valid: 'ce', and '<m>' or 'ce+<m>' with m in {valid}"
        )
    return use_ce, metric


def _opt(default: Any, help: str, **extra: Any) -> Any:
    """A dataclass field with CLI metadata: ``help``, optional ``flag``/``short``/``choices``,
    and ``omit_default`` (left out of :meth:`TrainConfig.to_dict` while at its default)."""
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint).

    Defaults: a 0.31 M-parameter narrow ResNet on 64 x 32 images (4x fewer pixels than
    Market's usual 128 x 64, enough for the synthetic set and fast on a CPU), PK batches of
    16 x 4, Adam with the strong baseline's lr 3.5e-4 scaled up to 1e-3 for a small net trained
    from scratch, linear warm-up then cosine decay, label smoothing 0.1.

    Attributes:
        loss (str): ``"ce+drsl"`` (default), ``"ce+triplet"``, ``"ce+smooth_ap"``,
            ``"ce+drsl_rank"``, a plain metric loss (``"drsl"``, ``"triplet"``, ...) or ``"ce"``.
        P (int): identities per batch (>= 2). K (int): images per identity (>= 2).
        num_epochs (int): epochs (an epoch is ``len(PKSampler)`` batches). Default 15.
        max_steps (int, optional): stop after this many optimiser steps (caps ``num_epochs``).
        lr (float): peak learning rate. weight_decay (float): Adam's L2 weight decay.
        warmup_steps (int): linear warm-up steps, then cosine decay to 0 at the last step.
        ce_weight, metric_weight (float): weights of the two terms.
        label_smoothing (float): epsilon of the label-smoothed cross-entropy.
        loss_kwargs (dict): keywords for ``drsl.losses.get_loss`` (e.g. ``{"delta": 0.5}``).
        angle_source (str): ``"bn"`` (post-BN features give DRSL's angle targets) or
            ``"features"`` (the pre-BN features themselves).
        backbone, base_width, blocks, embedding_dim: see :class:`drsl.models.ReIDNet`.
        height, width (int): image size fed to the network.
        seed (int): seeds torch, numpy, random and the PK sampler.
        dtype (str): ``"float32"`` or ``"float64"``.
        eval_every (int): evaluate every this many epochs (0: only at the end).
        checkpoint_every (int): also save ``last.pt`` every this many steps (0: epoch ends only).
        eval_batch_size (int): batch size when embedding query and gallery.
        memory_size (int): rows of the cross-batch memory (``drsl.losses.memory``): the
            detached embeddings of earlier batches, passed to the metric loss as reference
            items and enqueued after each step's loss (0: no memory). memory_warmup (int):
            steps before the memory is read or filled. memory_role (str): ``"all"`` or
            ``"negatives"`` (:data:`MEMORY_ROLES`; the losses' ``ref_role`` for the memory
            items, spec "Negatives-only references"; gathered batches always ``"all"``).
        amp (str): mixed precision of the forward pass, one of :data:`AMP_CHOICES`
            (``drsl.train.precision``); the losses stay float32.

    The scale fields (``memory_size``, ``memory_warmup``, ``memory_role``, ``amp``) came
    after the shipped checkpoints: :meth:`to_dict` leaves them out while at their defaults,
    so the configs stored in older checkpoints and resume states still equal today's.

    Example:
        >>> cfg = TrainConfig(P=8, loss_kwargs={"delta": 0.5}).validate()
        >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    loss: str = _opt(
        "ce+drsl",
        "training loss: one of " + ", ".join(LOSS_CHOICES) + " ('ce+X' adds label-smoothed "
        "cross-entropy on the BNNeck logits to metric loss X; X alone trains without it)",
    )
    P: int = _opt(16, "identities per batch (>= 2)", short="-P")
    K: int = _opt(4, "images per identity (>= 2)", short="-K")
    num_epochs: int = _opt(15, "number of epochs", flag="--epochs")
    max_steps: int | None = _opt(None, "stop after this many steps (none: run all epochs)")
    lr: float = _opt(1e-3, "peak learning rate (Adam)")
    weight_decay: float = _opt(5e-4, "Adam's L2 weight decay")
    warmup_steps: int = _opt(50, "linear warm-up steps, then cosine decay")
    ce_weight: float = _opt(1.0, "weight of the cross-entropy term")
    metric_weight: float = _opt(1.0, "weight of the metric-loss term")
    label_smoothing: float = _opt(0.1, "epsilon of the label-smoothed cross-entropy")
    loss_kwargs: dict[str, Any] = _opt(
        {},
        "keyword for the metric loss, repeatable (e.g. delta=0.5, margin=0.3)",
        flag="--loss-arg",
    )
    angle_source: str = _opt(
        "bn",
        "where DRSL's angle targets come from: post-BN features or the pre-BN ones",
        choices=("bn", "features"),
    )
    backbone: str = _opt(
        "resnet_narrow", "network trunk", choices=("resnet_narrow", "mobilenet_v3_small")
    )
    base_width: int = _opt(16, "narrow-ResNet width of the first stage")
    blocks: int = _opt(1, "BasicBlocks per ResNet stage")
    embedding_dim: int | None = _opt(
        None, "embedding size (none: the trunk's width, no projection)"
    )
    height: int = _opt(64, "input image height")
    width: int = _opt(32, "input image width")
    seed: int = _opt(0, "random seed (torch, numpy, random, PK sampler)")
    dtype: str = _opt("float32", "training dtype", choices=DTYPES)
    eval_every: int = _opt(3, "epochs between evaluations (0: only at the end)")
    checkpoint_every: int = _opt(0, "steps between extra checkpoints (0: at epoch ends only)")
    eval_batch_size: int = _opt(256, "batch size when embedding query and gallery")
    memory_size: int = _opt(
        0,
        "cross-batch memory: the last N detached embeddings become reference items of the "
        "metric loss (0: off)",
        omit_default=True,
    )
    memory_warmup: int = _opt(
        0, "steps before the cross-batch memory is read or filled", omit_default=True
    )
    memory_role: str = _opt(
        "all",
        "how memory items serve the metric loss: 'all' (positives and negatives by label) or "
        "'negatives' (an item sharing the anchor's label is left out: the ratio alone moves)",
        choices=MEMORY_ROLES,
        omit_default=True,
    )
    amp: str = _opt(
        "off",
        "mixed precision of the forward pass: bf16 autocast on the CPU; fp16 (grad scaler) "
        "or bf16 on CUDA; auto picks; the losses stay float32",
        choices=AMP_CHOICES,
        omit_default=True,
    )

    def validate(self) -> TrainConfig:
        """Check every value; raise ValueError naming the first bad one. Returns self."""
        if self.P < 2:
            raise ValueError(f"P must be >= 2 (an anchor needs negatives), got {self.P}")
        if self.K < 2:
            raise ValueError(f"K must be >= 2 (an anchor needs a positive), got {self.K}")
        if self.num_epochs < 1:
            raise ValueError(f"num_epochs must be >= 1, got {self.num_epochs}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.seed >= 2**32:
            raise ValueError(f"seed must be < 2**32 (numpy's seeds), got {self.seed}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        for name in ("weight_decay", "warmup_steps", "ce_weight", "metric_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if self.angle_source not in ("bn", "features"):
            raise ValueError(f"angle_source must be 'bn' or 'features', got {self.angle_source!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.height < 4 or self.width < 4:
            raise ValueError(f"height and width must be >= 4, got {self.height} x {self.width}")
        if self.eval_every < 0 or self.checkpoint_every < 0 or self.eval_batch_size < 1:
            raise ValueError(
                "eval_every and checkpoint_every must be >= 0 and eval_batch_size >= 1, got "
                f"{self.eval_every}, {self.checkpoint_every}, {self.eval_batch_size}"
            )
        _, metric = parse_loss(self.loss)
        self._validate_scale(metric)
        return self

    def _validate_scale(self, metric: str | None) -> None:
        for name in ("memory_size", "memory_warmup"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        if self.memory_role not in MEMORY_ROLES:
            raise ValueError(
                f"memory_role must be one of {list(MEMORY_ROLES)}, got {self.memory_role!r}"
            )
        if self.memory_size and metric is None:
            raise ValueError(
                f"memory_size {self.memory_size} needs a metric loss (the memory holds "
                f"reference items for it); loss {self.loss!r} has none: set memory_size 0"
            )
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"amp must be one of {list(AMP_CHOICES)}, got {self.amp!r}")
        if self.amp != "off" and self.dtype != "float32":
            raise ValueError(
                f"amp {self.amp!r} needs float32 weights, got dtype {self.dtype!r}; "
                "set dtype float32 or amp 'off'"
            )

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-friendly dict (``omit_default`` fields only when set)."""
        d = dataclasses.asdict(self)
        for f in dataclasses.fields(self):
            if f.metadata.get("omit_default") and d[f.name] == f.default:
                del d[f.name]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build a config from :meth:`to_dict`'s output (unknown keys raise ValueError)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**d)


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise ConfigFileError("config files need Python >= 3.11 (tomllib)") from None
    if path.is_dir():
        raise ConfigFileError(f"config {path} is a directory; pass a .toml file")
    if not path.is_file():
        raise ConfigFileError(f"config file not found: {path} (see configs/ for examples)")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigFileError(f"config {path} is not valid TOML: {err}") from None


def read_config(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a run config file: ``{"train": {TrainConfig fields}, "run": {RUN_KEYS}}``.

    ``inherit = "base.toml"`` (relative to the file) is read first and overlaid; a relative
    ``[run] data``/``out`` stays relative to the working directory, as on the command line.

    Args:
        path (str | PathLike): the ``.toml`` file.

    Returns:
        dict: ``{"train": dict, "run": dict}``; only the keys the files set.

    Raises:
        ConfigFileError: missing file, invalid TOML, an unknown key or an ``inherit`` cycle.

    Example:
        >>> import pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "base.toml").write_text('lr = 0.002\\nP = 8\\n[run]\\nthreads = 1\\n')
        >>> _ = (d / "cell.toml").write_text('inherit = "base.toml"\\nP = 32\\n')
        >>> read_config(d / "cell.toml")
        {'train': {'lr': 0.002, 'P': 32}, 'run': {'threads': 1}}
    """
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigFileError(f"config {path} inherits itself (cycle through {_seen[-1].name})")
    raw = _load_toml(path)
    out: dict[str, Any] = {"train": {}, "run": {}}
    base = raw.pop("inherit", None)
    if base is not None:
        parent = read_config(path.parent / str(base), (*_seen, path))
        out["train"].update(parent["train"])
        out["run"].update(parent["run"])
    run = raw.pop("run", {})
    if not isinstance(run, dict):
        raise ConfigFileError(f"config {path.name}: run must be a table ([run]), got {run!r}")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(raw) - names) + sorted(f"run.{k}" for k in set(run) - set(RUN_KEYS))
    if bad:
        raise ConfigFileError(
            f"config {path.name}: unknown key(s) {bad}; valid: TrainConfig fields, inherit, "
            f"and [run] {list(RUN_KEYS)}"
        )
    _check_types(raw, path)
    _check_run(run, path)
    out["train"].update(raw)
    out["run"].update(run)
    return out


#: the type of each ``[run]`` key (a bool is never taken for an int, nor a string for a bool)
RUN_TYPES = {
    "out": str,
    "data": str,
    "fast": bool,
    "device": str,
    "threads": int,
    "world_size": int,
}


def _check_run(run: dict[str, Any], path: Path) -> None:
    """ConfigFileError for a ``[run]`` value of the wrong type (``fast = "no"``, ``threads = 2.5``).

    Booleans are TOML booleans: a quoted ``"no"`` would otherwise be read as true.
    """
    for key, v in run.items():
        want = RUN_TYPES[key]
        if isinstance(v, bool) != (want is bool) or not isinstance(v, want):
            hint = " (true or false, without quotes)" if want is bool else ""
            raise ConfigFileError(
                f"config {path.name}: [run] {key} must be {want.__name__}{hint}, got {v!r}"
            )
        if want is int and v < 1:
            raise ConfigFileError(f"config {path.name}: [run] {key} must be >= 1, got {v!r}")
        if want is str and not v.strip():
            raise ConfigFileError(f"config {path.name}: [run] {key} must not be empty")


def _check_types(values: dict[str, Any], path: Path) -> None:
    """ConfigFileError for a value of the wrong type (an int is a valid float)."""
    import types
    import typing

    hints = typing.get_type_hints(TrainConfig)
    for name, v in values.items():
        hint = hints[name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        members = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
        allowed = tuple(typing.get_origin(a) or a for a in members)
        if float in allowed:
            allowed += (int,)
        if isinstance(v, bool) and bool not in allowed or not isinstance(v, allowed):
            want = " or ".join(a.__name__ for a in allowed)
            raise ConfigFileError(f"config {path.name}: {name} must be {want}, got {v!r}")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return (
            "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
        )
    raise TypeError(f"cannot write {type(v).__name__} to TOML: {v!r}")


def config_to_toml(config: TrainConfig, run: dict[str, Any] | None = None, header: str = "") -> str:
    """The resolved config as TOML text that :func:`read_config` reads back.

    Fields left at ``None`` (``max_steps``, ``embedding_dim``) are written as comments (TOML
    has no null; their default is None).

    Args:
        config (TrainConfig): the run. run (dict, optional): ``[run]`` values (None skipped).
        header (str): comment lines to start with (without ``#``).

    Returns:
        str: the TOML text.

    Example:
        >>> text = config_to_toml(TrainConfig(loss_kwargs={"delta": 0.5}))
        >>> 'loss_kwargs = {"delta" = 0.5}' in text, "# max_steps = (none)" in text
        (True, True)
    """
    lines = [f"# {h}" for h in header.splitlines()]
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        lines.append(f"# {f.name} = (none)" if v is None else f"{f.name} = {_toml_value(v)}")
    items = {k: v for k, v in (run or {}).items() if v is not None}
    if items:
        lines += ["", "[run]"] + [f"{k} = {_toml_value(v)}" for k, v in items.items()]
    return "\n".join(lines) + "\n"
