"""Training: config, loop, checkpoints with exact resume, evaluation, load-or-train.

- :mod:`drsl.train.config`     :class:`TrainConfig` (and its TOML files), ``LOSS_CHOICES``;
  no torch import, so the command line's ``--help`` is fast
- :mod:`drsl.train.factory`    device, seeds, model and training objective of a config
- :mod:`drsl.train.loop`       :func:`train`, the divergence guard
- :mod:`drsl.train.step`       :func:`train_step`: autocast forward, gathered references and the
  cross-batch memory, update, enqueue
- :mod:`drsl.train.parts`      what a run builds (DDP-wrapped model, sharded sampler, memory,
  precision and its grad scaler)
- :mod:`drsl.train.distributed` torchrun context, references gathered with gradient, the scale
- :mod:`drsl.train.precision`  ``--amp``: autocast, float32 losses, the grad scaler
- :mod:`drsl.train.run_folder` every file a run writes (lock, atomic writes, rank-0 seam)
- :mod:`drsl.train.checkpoint` the whole life of ``last.pt`` (snapshot, atomic save, check,
  restore) and ``model.pt`` (:func:`save_model`, :func:`load_model`), loaded as data
- :mod:`drsl.train.evaluation` :func:`embed`, :func:`evaluate` (Market protocol; not named
  ``evaluate.py``, which the function of the same name would shadow)
- :mod:`drsl.train.notebook`   :func:`load_or_train`

The in-memory image sets a run trains on (``ReIDData``, ``load_data``, ``make_random_data``)
are :mod:`drsl.data.images`'. Names load on first use (``from drsl.train import TrainConfig``
does not import torch).

Reference: Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification",
CVPR-W 2019; spec ``drsl-loss.md``.
"""

from __future__ import annotations

from drsl._lazy import lazy_exports

_EXPORTS = {
    "LOSS_CHOICES": "drsl.train.config",
    "TrainConfig": "drsl.train.config",
    "read_config": "drsl.train.config",
    "config_to_toml": "drsl.train.config",
    "TrainResult": "drsl.train.checkpoint",
    "CheckpointError": "drsl.train.checkpoint",
    "atomic_save": "drsl.train.checkpoint",
    "save_model": "drsl.train.checkpoint",
    "load_model": "drsl.train.checkpoint",
    "select_device": "drsl.train.factory",
    "seed_everything": "drsl.train.factory",
    "build_model": "drsl.train.factory",
    "build_criterion": "drsl.train.factory",
    "embed": "drsl.train.evaluation",
    "evaluate": "drsl.train.evaluation",
    "DivergenceError": "drsl.train.loop",
    "LossGuard": "drsl.train.loop",
    "train": "drsl.train.loop",
    "train_step": "drsl.train.step",
    "load_or_train": "drsl.train.notebook",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
