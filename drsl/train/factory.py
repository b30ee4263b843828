"""What a :class:`~drsl.train.config.TrainConfig` builds: the device, seeds, model and objective.

Reference: Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification",
CVPR-W 2019 (BNNeck, label smoothing); spec ``drsl-loss.md`` ("Words": angle embeddings may be
BNNeck's post-BN features).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from drsl.models import ReIDNet, ReIDOutput
from drsl.train.config import TrainConfig, parse_loss

__all__ = [
    "torch_dtype",
    "select_device",
    "seed_everything",
    "build_model",
    "build_criterion",
    "Objective",
]

Criterion = Callable[..., tuple[Tensor, dict[str, float]]]


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a config's ``dtype`` name (``"float32"`` or ``"float64"``).

    Example:
        >>> torch_dtype("float64")
        torch.float64
    """
    return {"float32": torch.float32, "float64": torch.float64}[name]


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


class Objective:
    """The training objective of a config: ``ce_weight * CE + metric_weight * metric``.

    One calling convention, ``objective(out, labels, gathered=gb, extra_references=mem)``
    (both optional): the metric loss goes through ``drsl.train.distributed.data_parallel_loss``
    (the other processes' batches and the memory as references, the per-process scale ``c_r``)
    and the CE term is scaled by ``gb.scale("items")`` when several processes take part. In one
    process without a memory it computes exactly the same tensors as the plain losses.

    Attributes:
        use_ce (bool): whether the CE term is on. metric_name (str or None): the metric loss.
        wants_angle (bool): a metric loss that takes angle embeddings (the DRSL family; its
            record in ``drsl.losses.names``).
    """

    def __init__(self, config: TrainConfig) -> None:
        from drsl.losses import get_loss
        from drsl.losses.names import record

        self.config = config
        self.use_ce, self.metric_name = parse_loss(config.loss)
        name = self.metric_name
        self.metric = get_loss(name, **config.loss_kwargs) if name else None
        self.wants_angle = name is not None and record(name).takes_angle

    def angle_of(self, out: ReIDOutput) -> Tensor | None:
        """DRSL's angle embeddings of ``out`` (``bn_features`` for ``angle_source="bn"``)."""
        if self.wants_angle and self.config.angle_source == "bn":
            return out.bn_features
        return None

    def _metric(self, out, labels, gathered, extra) -> Tensor:
        from drsl.losses.names import record
        from drsl.train.distributed import data_parallel_loss

        return data_parallel_loss(
            self.metric,
            out.features,
            labels,
            angle_embeddings=self.angle_of(out),
            normaliser=record(self.metric_name).normaliser,
            extra_references=extra,
            gathered=gathered,
            extra_role=self.config.memory_role,
        )

    def __call__(
        self,
        out: ReIDOutput,
        labels: Tensor,
        *,
        gathered: Any = None,
        extra_references: tuple | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """Args:
            out (ReIDOutput): ``features`` (B x D), ``bn_features``, ``logits`` (B x C).
            labels (Tensor): ``B`` identity labels.
            gathered (GatheredBatch, optional): every process's batch; default
                ``gather_batch`` of this one (in one process: the batch itself).
            extra_references (tuple, optional): ``(emb R x D, labels R, angle or None)``,
                e.g. ``CrossBatchMemory.references()``.

        Returns:
            tuple: the 0-d total loss and ``{"ce", "metric", "loss"}`` as floats (this
            process's scaled shares under data parallelism; their mean over processes is the
            one-process value, ``drsl.train.distributed.reduce_means``).
        """
        from drsl.losses import cross_entropy_label_smooth
        from drsl.train.distributed import gather_batch

        cfg = self.config
        if gathered is None:
            gathered = gather_batch(out.features, labels, self.angle_of(out))
        total = out.features.new_zeros(())
        parts: dict[str, float] = {}
        if self.use_ce:
            ce = cross_entropy_label_smooth(out.logits, labels, epsilon=cfg.label_smoothing)
            if gathered.world_size > 1:
                ce = ce * gathered.scale("items").to(ce)  # c_r = W B_r / sum_v B_v
            total = total + cfg.ce_weight * ce
            parts["ce"] = float(ce.detach())
        if self.metric is not None:
            m = self._metric(out, labels, gathered, extra_references)
            total = total + cfg.metric_weight * m
            parts["metric"] = float(m.detach())
        parts["loss"] = float(total.detach())
        return total, parts


def build_criterion(config: TrainConfig) -> Objective:
    """The training objective of ``config.loss`` (an :class:`Objective`).

    ``total = ce_weight * CE_ls(logits, labels) + metric_weight * metric(features, labels)``,
    the metric loss on the pre-BN ``features`` (BNNeck); DRSL-family losses also get
    ``angle_embeddings`` (post-BN features when ``angle_source == "bn"``). Reference items
    reach the metric loss as ``extra_references`` (a cross-batch memory's ``references()``)
    and, under data parallelism, as the other processes' batches (``gathered=``).

    Args:
        config (TrainConfig): uses ``loss``, ``loss_kwargs``, the weights, ``label_smoothing``
            and ``angle_source``.

    Returns:
        Objective: ``(ReIDOutput, labels (B,), gathered=None, extra_references=None) ->
        (total loss (0-d), {"loss", "ce", "metric"})``.

    Reference: Luo et al. 2019 (BNNeck); spec "Words" (angle embeddings), "Beyond the batch".

    Example:
        >>> crit = build_criterion(TrainConfig(loss="ce+triplet"))
        >>> out = ReIDOutput(torch.eye(4), torch.eye(4), torch.zeros(4, 3))
        >>> total, parts = crit(out, torch.tensor([0, 0, 1, 1]))
        >>> sorted(parts), crit.angle_of(out) is None
        (['ce', 'loss', 'metric'], True)
    """
    return Objective(config)
