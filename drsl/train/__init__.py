"""Training loop, checkpoints with exact resume, evaluation and a load-or-train helper.

One run: a :class:`TrainConfig`, a :class:`ReIDData` (images preloaded as uint8 tensors), and
:func:`train`, which draws PK batches (``drsl.data.sampler.PKSampler``), augments them
(:func:`drsl.data.transforms.build_transforms`), minimises an identity loss plus a metric loss
(``drsl.losses``) on a :class:`drsl.models.ReIDNet`, evaluates with ``drsl.metrics`` and writes
into ``out_dir``:

- ``last.pt``: the full training state (model, optimizer, scheduler, RNG states, epoch, step,
  the current epoch's batch order, history), saved atomically (temporary file + ``os.replace``);
  a run started again with the same config resumes from it and ends with the same weights as an
  uninterrupted run;
- ``model.pt``: the final, small checkpoint (weights, config, metrics, history), the format of the
  shipped checkpoints and of ``python -m drsl eval``;
- ``train_log.csv``, ``eval_log.csv`` and ``metrics.json``: the metrics log.

Losses (``TrainConfig.loss``): ``"ce+<metric>"`` adds the label-smoothed cross-entropy on the
BNNeck logits to a metric loss of the ``drsl.losses`` registry applied to the pre-BN features;
``"<metric>"`` alone trains with the metric loss only; ``"ce"`` with cross-entropy only.
For the DRSL family the angle targets come from the post-BN features by default
(``angle_source="bn"``): those are the features the classifier and retrieval see, whose
directions cross-entropy shapes; ``angle_source="features"`` uses the pre-BN features themselves.

Reference: Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification",
CVPR-W 2019 (BNNeck, label smoothing, Adam, warm-up); spec ``drsl-loss.md`` ("Words": angle
embeddings may be BNNeck's post-BN features).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from drsl.data.transforms import build_transforms
from drsl.models import ReIDNet, ReIDOutput

__all__ = [
    "LOSS_CHOICES",
    "TrainConfig",
    "ImageSet",
    "ReIDData",
    "TrainResult",
    "select_device",
    "seed_everything",
    "load_data",
    "make_random_data",
    "build_model",
    "build_criterion",
    "embed",
    "evaluate",
    "train",
    "save_model",
    "load_model",
    "load_or_train",
    "atomic_save",
]

#: The loss names the course uses (any ``ce+<name>`` or ``<name>`` of ``drsl.losses.LOSSES``,
#: and ``ce`` alone, are accepted too).
LOSS_CHOICES = (
    "ce+triplet",
    "ce+smooth_ap",
    "ce+drsl_rank",
    "ce+drsl",
    "triplet",
    "smooth_ap",
    "drsl",
    "drsl_rank",
    "contrastive",
)
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_FORMAT = "drsl-model-v1"


def _metric_names() -> list[str]:
    from drsl.losses import LOSSES

    return sorted(LOSSES)


def _parse_loss(name: str) -> tuple[bool, str | None]:
    """``(use_ce, metric_name or None)`` for a loss name; ValueError if unknown."""
    valid = _metric_names()
    if name == "ce":
        return True, None
    use_ce, metric = (True, name[3:]) if name.startswith("ce+") else (False, name)
    if metric not in valid:
        raise ValueError(
            f"unknown loss {name!r}; valid: 'ce', and '<m>' or 'ce+<m>' with m in {valid}"
        )
    return use_ce, metric


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
    """

    loss: str = "ce+drsl"
    P: int = 16
    K: int = 4
    num_epochs: int = 15
    max_steps: int | None = None
    lr: float = 1e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 50
    ce_weight: float = 1.0
    metric_weight: float = 1.0
    label_smoothing: float = 0.1
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    angle_source: str = "bn"
    backbone: str = "resnet_narrow"
    base_width: int = 16
    blocks: int = 1
    embedding_dim: int | None = None
    height: int = 64
    width: int = 32
    seed: int = 0
    dtype: str = "float32"
    eval_every: int = 3
    checkpoint_every: int = 0
    eval_batch_size: int = 256

    def validate(self) -> TrainConfig:
        """Check every value; raise ValueError naming the first bad one. Returns self."""
        if self.P < 2:
            raise ValueError(f"P must be >= 2 (an anchor needs negatives), got {self.P}")
        if self.K < 2:
            raise ValueError(f"K must be >= 2 (an anchor needs a positive), got {self.K}")
        if self.num_epochs < 1:
            raise ValueError(f"num_epochs must be >= 1, got {self.num_epochs}")
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
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if self.height < 4 or self.width < 4:
            raise ValueError(f"height and width must be >= 4, got {self.height} x {self.width}")
        if self.eval_every < 0 or self.checkpoint_every < 0 or self.eval_batch_size < 1:
            raise ValueError(
                "eval_every and checkpoint_every must be >= 0 and eval_batch_size >= 1, got "
                f"{self.eval_every}, {self.checkpoint_every}, {self.eval_batch_size}"
            )
        _parse_loss(self.loss)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-friendly dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build a config from :meth:`to_dict`'s output (unknown keys raise ValueError)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**d)


@dataclass
class ImageSet:
    """Images held in memory with their labels.

    Attributes:
        images (Tensor): ``N x 3 x H x W`` uint8.
        pids (Tensor): ``N`` int64 identity labels. camids (Tensor): ``N`` int64 camera ids.
    """

    images: Tensor
    pids: Tensor
    camids: Tensor

    def __len__(self) -> int:
        return int(self.pids.numel())


@dataclass
class ReIDData:
    """Training split (pids 0..C-1) and optional query/gallery splits, preloaded.

    Attributes:
        train (ImageSet): training images. query, gallery (ImageSet, optional): test split.
        name (str): a name for logs.
        fingerprint (str): identifies the data version (for the synthetic set: generator
            version and settings, from its ``manifest.json``); empty when unknown.
    """

    train: ImageSet
    query: ImageSet | None = None
    gallery: ImageSet | None = None
    name: str = "data"
    fingerprint: str = ""

    @property
    def num_classes(self) -> int:
        """Number of training identities (``max pid + 1``)."""
        return int(self.train.pids.max()) + 1


@dataclass
class TrainResult:
    """What :func:`train` and :func:`load_or_train` return.

    Attributes:
        model (ReIDNet): the trained model (eval mode). config (TrainConfig): its config.
        history (dict): ``{"train": [row per step], "eval": [row per evaluation]}``.
        metrics (dict): the last evaluation (``mAP``, ``R1``, ``R5``, ``R10``, ``mINP``) or {}.
        seconds (float): wall time of the loop, periodic evaluations included (summed over
            resumed pieces).
        out_dir (Path, optional): the run folder. loaded (bool): read from a checkpoint.
        data_fingerprint (str): the training data's version (see :class:`ReIDData`).
    """

    model: ReIDNet
    config: TrainConfig
    history: dict[str, list[dict[str, float]]]
    metrics: dict[str, float]
    seconds: float
    out_dir: Path | None = None
    loaded: bool = False
    data_fingerprint: str = ""


def select_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when present, else CPU; or the device asked for.

    Args:
        device (str | torch.device, optional): ``None`` or ``"auto"`` to choose, else e.g.
            ``"cpu"``, ``"cuda:0"``.

    Returns:
        torch.device: the device.

    Example:
        >>> select_device("cpu")
        device(type='cpu')
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"invalid device {device!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available")
    return dev


def seed_everything(seed: int) -> None:
    """Seed ``random``, ``numpy`` and ``torch`` (all devices).

    Args:
        seed (int): the seed.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds the global state others may use
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - the global state, saved as is
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002 - restores the global state
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` it.

    A kill during the save leaves the previous file intact.

    Args:
        obj: anything ``torch.save`` accepts. path (str | PathLike): the destination.

    Returns:
        pathlib.Path: the destination.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a checkpoint is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _preload(items: Sequence[tuple[str, int, int]], height: int, width: int) -> ImageSet:
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    if len(items) == 0:
        raise ValueError("empty image list")
    images = torch.empty(len(items), 3, height, width, dtype=torch.uint8)
    for i, (path, _, _) in enumerate(items):
        with Image.open(path) as im:
            img = F.pil_to_tensor(im.convert("RGB"))
        images[i] = F.resize(img, [height, width], antialias=True)
    pids = torch.tensor([it[1] for it in items], dtype=torch.long)
    camids = torch.tensor([it[2] for it in items], dtype=torch.long)
    return ImageSet(images, pids, camids)


def _fingerprint(root: Path) -> str:
    """``"<generator>-v<version>-<sha256 of settings, 12 hex>"`` from a manifest, else ``""``."""
    import hashlib

    manifest = root / "manifest.json"
    if not manifest.is_file():
        return ""
    m = json.loads(manifest.read_text())
    settings = json.dumps(m.get("settings", {}), sort_keys=True).encode()
    digest = hashlib.sha256(settings).hexdigest()[:12]
    return f"{m.get('generator', '?')}-v{m.get('version', '?')}-{digest}"


def load_data(
    root: str | os.PathLike | None = None,
    *,
    height: int = 64,
    width: int = 32,
    fast: bool | None = None,
) -> ReIDData:
    """Load a dataset folder (or the synthetic default) into memory at ``height x width``.

    Args:
        root (str | PathLike, optional): a dataset folder in any layout that
            ``drsl.data.datasets.load_dataset`` detects; ``None`` uses the synthetic set of
            ``drsl.data.synth.ensure_dataset(fast=fast)`` (generated if missing).
        height, width (int): stored image size. fast (bool, optional): synthetic fast set.

    Returns:
        ReIDData: train, query and gallery splits.

    Raises:
        FileNotFoundError: ``root`` does not exist.
    """
    from drsl.data.datasets import load_dataset

    if root is None:
        from drsl.data.synth import ensure_dataset

        root = ensure_dataset(fast=fast)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    splits = load_dataset(root)
    return ReIDData(
        train=_preload(splits.train, height, width),
        query=_preload(splits.query, height, width),
        gallery=_preload(splits.gallery, height, width),
        name=str(getattr(splits, "name", root.name)),
        fingerprint=_fingerprint(root),
    )


def make_random_data(
    num_ids: int = 6,
    per_id: int = 4,
    *,
    height: int = 16,
    width: int = 8,
    num_test_ids: int = 3,
    seed: int = 0,
) -> ReIDData:
    """A tiny random dataset (for tests and demos): each identity a noisy colour template.

    Args:
        num_ids (int): training identities. per_id (int): images per identity and split.
        height, width (int): image size. num_test_ids (int): test identities.
        seed (int): generator seed.

    Returns:
        ReIDData: train (pids 0..num_ids-1, camera ``i % 2``), query (one image per test id,
        camera 0) and gallery (``per_id`` per test id, camera 1).

    Example:
        >>> d = make_random_data(4, 2)
        >>> len(d.train), d.num_classes, tuple(d.train.images.shape[1:])
        (8, 4, (3, 16, 8))
    """
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(num_ids + num_test_ids, 3, height, width, generator=g) * 200

    def split(ids: range, n: int, cams: Tensor) -> ImageSet:
        pids = torch.tensor(list(ids)).repeat_interleave(n)
        noise = torch.rand(len(pids), 3, height, width, generator=g) * 55
        imgs = (templates[pids] + noise).to(torch.uint8)
        return ImageSet(imgs, pids, cams.expand(len(pids)).clone())

    train_set = split(range(num_ids), per_id, torch.arange(num_ids * per_id) % 2)
    test_ids = range(num_ids, num_ids + num_test_ids)
    query = split(test_ids, 1, torch.zeros(1, dtype=torch.long))
    gallery = split(test_ids, per_id, torch.ones(1, dtype=torch.long))
    return ReIDData(train_set, query, gallery, name="random")


def build_model(config: TrainConfig, num_classes: int) -> ReIDNet:
    """The :class:`ReIDNet` that ``config`` describes.

    Args:
        config (TrainConfig): the run config. num_classes (int): training identities.

    Returns:
        ReIDNet: a freshly initialised model (float32, CPU).
    """
    return ReIDNet(
        num_classes,
        embedding_dim=config.embedding_dim,
        backbone=config.backbone,
        base_width=config.base_width,
        blocks=config.blocks,
    )


def build_criterion(
    config: TrainConfig,
) -> Callable[[ReIDOutput, Tensor], tuple[Tensor, dict[str, float]]]:
    """The training objective of ``config.loss``.

    ``total = ce_weight * CE_ls(logits, labels) + metric_weight * metric(features, labels)``,
    the metric loss on the pre-BN ``features`` (BNNeck); DRSL-family losses also get
    ``angle_embeddings`` (post-BN features when ``angle_source == "bn"``).

    Args:
        config (TrainConfig): uses ``loss``, ``loss_kwargs``, the weights, ``label_smoothing``
            and ``angle_source``.

    Returns:
        Callable: ``(ReIDOutput, labels (B,)) -> (total loss (0-d), {"loss", "ce", "metric"})``.

    Reference: Luo et al. 2019 (BNNeck); spec "Words" (angle embeddings).
    """
    from drsl.losses import cross_entropy_label_smooth, get_loss

    use_ce, metric_name = _parse_loss(config.loss)
    metric = get_loss(metric_name, **config.loss_kwargs) if metric_name else None
    wants_angle = metric_name is not None and metric_name.startswith("drsl")

    def criterion(out: ReIDOutput, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        total = out.features.new_zeros(())
        parts: dict[str, float] = {}
        if use_ce:
            ce = cross_entropy_label_smooth(out.logits, labels, epsilon=config.label_smoothing)
            total = total + config.ce_weight * ce
            parts["ce"] = float(ce.detach())
        if metric is not None:
            if wants_angle and config.angle_source == "bn":
                m = metric(out.features, labels, angle_embeddings=out.bn_features)
            else:
                m = metric(out.features, labels)
            total = total + config.metric_weight * m
            parts["metric"] = float(m.detach())
        parts["loss"] = float(total.detach())
        return total, parts

    return criterion


@torch.no_grad()
def embed(
    model: nn.Module,
    images: Tensor,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> Tensor:
    """Post-BN embeddings of uint8 images (evaluation transform, model in eval mode).

    Args:
        model (nn.Module): a :class:`ReIDNet`. images (Tensor): ``N x 3 x H x W`` uint8.
        batch_size (int): images per forward pass. device: defaults to the model's device.

    Returns:
        Tensor: ``N x D`` embeddings on the CPU, in the model's dtype.
    """
    param = next(model.parameters())
    device = param.device if device is None else torch.device(device)
    tf = build_transforms(train=False, height=images.shape[-2], width=images.shape[-1])
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = tf(images[start : start + batch_size]).to(device=device, dtype=param.dtype)
        out.append(model(x).cpu())
    model.train(was_training)
    return torch.cat(out) if out else images.new_zeros((0, 0), dtype=param.dtype)


def _summary(result: Any) -> dict[str, float]:
    cmc = np.asarray(result.cmc)
    pick = {f"R{r}": float(cmc[r - 1]) for r in (1, 5, 10) if len(cmc) >= r}
    return {"mAP": float(result.mAP), **pick, "mINP": float(result.mINP)}


def evaluate(
    model: nn.Module,
    data: ReIDData,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Market-protocol mAP, CMC rank-1/5/10 and mINP of ``model`` on ``data``'s test split.

    Args:
        model (nn.Module): a :class:`ReIDNet`. data (ReIDData): with query and gallery.
        batch_size (int): embedding batch size. device: defaults to the model's device.

    Returns:
        dict[str, float]: ``{"mAP", "R1", "R5", "R10", "mINP"}`` in [0, 1].

    Reference: ``drsl.metrics.evaluate_embeddings`` (Market-1501 protocol).
    """
    from drsl.metrics import evaluate_embeddings

    if data.query is None or data.gallery is None:
        raise ValueError(f"dataset {data.name!r} has no query/gallery split to evaluate on")
    q = embed(model, data.query.images, batch_size=batch_size, device=device)
    g = embed(model, data.gallery.images, batch_size=batch_size, device=device)
    res = evaluate_embeddings(
        q,
        g,
        data.query.pids.numpy(),
        data.gallery.pids.numpy(),
        data.query.camids.numpy(),
        data.gallery.camids.numpy(),
        max_rank=min(50, len(data.gallery)),
    )
    return _summary(res)


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        span = max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / span)))

    return f


def _write_logs(out_dir: Path, history: dict[str, list[dict]], extra: dict[str, Any]) -> None:
    for name in ("train", "eval"):
        rows = history[name]
        path = out_dir / f"{name}_log.csv"
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, path)
    tmp = out_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps({**extra, "eval": history["eval"]}, indent=2))
    os.replace(tmp, out_dir / "metrics.json")


def _batch(
    imgs: ImageSet, idx: Sequence[int], tf: Callable, device, dtype
) -> tuple[Tensor, Tensor]:
    ix = torch.as_tensor(list(idx), dtype=torch.long)
    x = torch.stack([tf(imgs.images[i]) for i in ix.tolist()])
    return x.to(device=device, dtype=dtype), imgs.pids[ix].to(device)


def train(
    config: TrainConfig,
    data: ReIDData,
    *,
    out_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    resume: bool = True,
    progress: bool = True,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a :class:`ReIDNet` on ``data`` as ``config`` says; resume from ``out_dir/last.pt``.

    Each step: a PK batch (the sampler's order for the epoch), per-image training transforms,
    forward, ``build_criterion(config)``, backward, Adam, scheduler. ``last.pt`` is written
    atomically every ``checkpoint_every`` steps and at every epoch end; it holds the epoch's
    remaining batch order and all RNG states, so a resumed run replays the exact same steps.

    Args:
        config (TrainConfig): the run. data (ReIDData): preloaded images.
        out_dir (str | PathLike, optional): run folder (checkpoints and logs); ``None`` keeps
            everything in memory (no resume).
        device (str | torch.device, optional): ``None``/``"auto"``: CUDA if present, else CPU.
        resume (bool): continue from ``out_dir/last.pt`` when it exists (its config must equal
            ``config``). Default True.
        progress (bool): show a tqdm bar (``tqdm.auto``: notebook widget or terminal).
        on_step (Callable, optional): called as ``on_step(step, parts)`` after every step
            (``parts``: the loss terms); raising there stops training (tests use it to
            simulate a kill).

    Returns:
        TrainResult: the model (eval mode), history, last metrics and the wall time.

    Reference: Luo et al. 2019 (training recipe); spec ``drsl-loss.md`` (the losses).

    Example:
        >>> cfg = TrainConfig(loss="ce+triplet", P=2, K=2, num_epochs=1, base_width=2,
        ...                   height=16, width=8, warmup_steps=0)
        >>> res = train(cfg, make_random_data(4, 2), progress=False)
        >>> len(res.history["train"]) == 2 and set(res.metrics) >= {"mAP", "R1", "mINP"}
        True
    """
    from drsl.data.sampler import PKSampler

    config.validate()
    dev = select_device(device)
    dtype = _DTYPES[config.dtype]
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "last.pt" if out is not None else None

    seed_everything(config.seed)
    model = build_model(config, data.num_classes).to(device=dev, dtype=dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    labels = data.train.pids.tolist()
    sampler = PKSampler(labels, config.P, config.K, seed=config.seed)
    steps_per_epoch = len(sampler)
    if steps_per_epoch < 1:
        raise ValueError(f"the training set cannot fill one P x K = {config.P} x {config.K} batch")
    total = config.num_epochs * steps_per_epoch
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config.warmup_steps, total))
    criterion = build_criterion(config)
    tf = build_transforms(
        train=True, height=data.train.images.shape[-2], width=data.train.images.shape[-1]
    )

    history: dict[str, list[dict[str, float]]] = {"train": [], "eval": []}
    epoch, step_in_epoch, step, seconds = 0, 0, 0, 0.0
    pending_batches: list[list[int]] | None = None
    if ckpt_path is not None and resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=dev, weights_only=False)
        if state["config"] != config.to_dict():
            raise ValueError(
                f"{ckpt_path} was written by a different config; use another out_dir or "
                "resume=False"
            )
        if state.get("data_fingerprint", "") != data.fingerprint:
            raise ValueError(
                f"{ckpt_path} was written on other data ({state.get('data_fingerprint')!r}, "
                f"now {data.fingerprint!r}); use another out_dir or resume=False"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        epoch, step_in_epoch, step = state["epoch"], state["step_in_epoch"], state["step"]
        history, seconds = state["history"], state["seconds"]
        pending_batches = state["batches"]
        _set_rng_state(state["rng"])

    def snapshot(batches: list[list[int]] | None) -> dict[str, Any]:
        return {
            "config": config.to_dict(),
            "num_classes": data.num_classes,
            "data_fingerprint": data.fingerprint,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": _rng_state(),
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "step": step,
            "batches": batches,
            "history": history,
            "seconds": seconds,
        }

    def log_extra() -> dict[str, Any]:
        return {"config": config.to_dict(), "dataset": data.name, "step": step, "seconds": seconds}

    def save(batches: list[list[int]] | None) -> None:
        if ckpt_path is not None:
            atomic_save(snapshot(batches), ckpt_path)
            _write_logs(out, history, log_extra())

    can_eval = data.query is not None and data.gallery is not None
    bar = tqdm(total=total, initial=step, disable=not progress, desc=config.loss, leave=True)
    last_loss = history["train"][-1]["loss"] if history["train"] else float("nan")
    t0 = time.perf_counter()
    try:
        while epoch < config.num_epochs and step < total:
            if pending_batches is None:
                sampler.set_epoch(epoch)
                batches = [list(map(int, b)) for b in sampler]
            else:
                batches, pending_batches = pending_batches, None
            while step_in_epoch < len(batches) and step < total:
                model.train()
                x, y = _batch(data.train, batches[step_in_epoch], tf, dev, dtype)
                loss, parts = criterion(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                step_in_epoch += 1
                row = {"step": step, "epoch": epoch, **parts, "lr": optimizer.param_groups[0]["lr"]}
                history["train"].append(row)
                bar.update(1)
                last_loss = parts["loss"]
                bar.set_postfix(loss=f"{last_loss:.3f}", refresh=False)
                if on_step is not None:
                    on_step(step, parts)
                if config.checkpoint_every and step % config.checkpoint_every == 0:
                    seconds += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    save(batches)
            finished = step_in_epoch >= len(batches)
            last = step >= total or (finished and epoch + 1 >= config.num_epochs)
            if finished:
                epoch, step_in_epoch = epoch + 1, 0
            periodic = finished and config.eval_every and epoch % config.eval_every == 0
            if can_eval and (last or periodic):
                m = evaluate(model, data, batch_size=config.eval_batch_size)
                history["eval"].append({"step": step, "epoch": epoch, **m})
                bar.set_postfix(loss=f"{last_loss:.3f}", mAP=f"{m['mAP']:.3f}")
            seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            save(None if finished else batches)
    finally:
        bar.close()
    model.eval()
    metrics = (
        {k: v for k, v in history["eval"][-1].items() if k not in ("step", "epoch")}
        if history["eval"]
        else {}
    )
    result = TrainResult(model, config, history, metrics, seconds, out, False, data.fingerprint)
    if out is not None:
        save_model(result, out / "model.pt", dataset=data.name, fingerprint=data.fingerprint)
    return result


def save_model(
    result: TrainResult, path: str | os.PathLike, *, dataset: str = "", fingerprint: str = ""
) -> Path:
    """Write the small checkpoint: float32 weights, config, metrics and history.

    Args:
        result (TrainResult): a finished run. path (str | PathLike): the file.
        dataset (str): the dataset's name, stored for reference.
        fingerprint (str): the data version (:attr:`ReIDData.fingerprint`), stored to detect
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
            "format": _FORMAT,
            "config": result.config.to_dict(),
            "num_classes": result.model.num_classes,
            "state_dict": sd,
            "metrics": result.metrics,
            "history": result.history,
            "seconds": result.seconds,
            "dataset": dataset,
            "data_fingerprint": fingerprint,
        },
        path,
    )


def load_model(
    path: str | os.PathLike, *, device: str | torch.device | None = "cpu"
) -> TrainResult:
    """Read a checkpoint written by :func:`save_model` (or a ``last.pt``).

    Args:
        path (str | PathLike): the file. device: where to put the model (default CPU).

    Returns:
        TrainResult: with ``loaded=True``; the model in eval mode.

    Raises:
        FileNotFoundError: no such file. ValueError: not a drsl checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise ValueError(f"{path} is not a readable checkpoint: {err}") from None
    if not isinstance(ck, dict) or "config" not in ck:
        raise ValueError(f"{path} is not a drsl checkpoint")
    config = TrainConfig.from_dict(ck["config"])
    model = build_model(config, ck["num_classes"])
    model.load_state_dict(ck["state_dict"] if "state_dict" in ck else ck["model"])
    model = model.to(device=select_device(device), dtype=torch.float32).eval()
    hist = ck.get("history", {"train": [], "eval": []})
    metrics = ck.get("metrics")
    if metrics is None:
        metrics = (
            {k: v for k, v in hist["eval"][-1].items() if k not in ("step", "epoch")}
            if hist["eval"]
            else {}
        )
    return TrainResult(
        model,
        config,
        hist,
        metrics,
        ck.get("seconds", 0.0),
        path.parent,
        True,
        ck.get("data_fingerprint", ""),
    )


def load_or_train(
    config: TrainConfig,
    checkpoint: str | os.PathLike,
    data: ReIDData | Callable[[], ReIDData] | None = None,
    *,
    work_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> TrainResult:
    """Load ``checkpoint`` if it exists, else train with ``config`` and save it there.

    For notebooks: the first run trains (resumable in ``work_dir``), later runs load.

    Args:
        config (TrainConfig): the run to do when nothing is saved.
        checkpoint (str | PathLike): the ``model.pt``-format file to load or write.
        data (ReIDData | Callable, optional): the data, or a function returning it (called only
            when training); ``None`` loads the synthetic default at the config's image size.
        work_dir (str | PathLike, optional): run folder for ``last.pt`` and logs; default
            ``<checkpoint without suffix>-run``.
        device: see :func:`select_device`. progress (bool): tqdm bar.

    Returns:
        TrainResult: ``loaded=True`` when read from disk.
    """
    checkpoint = Path(checkpoint)
    if checkpoint.is_file():
        return load_model(checkpoint, device=device)
    if data is None:
        data = load_data(height=config.height, width=config.width)
    elif callable(data):
        data = data()
    work = (
        Path(work_dir) if work_dir is not None else checkpoint.with_name(checkpoint.stem + "-run")
    )
    res = train(config, data, out_dir=work, device=device, progress=progress)
    save_model(res, checkpoint, dataset=data.name, fingerprint=data.fingerprint)
    return res
