"""``load_or_train``: for notebooks, train once and load afterwards.

Reference: :func:`drsl.train.loop.train` (the run) and :func:`drsl.train.checkpoint.load_model`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from drsl.data.images import ReIDData, load_data
from drsl.train.checkpoint import TrainResult, load_model, save_model
from drsl.train.config import TrainConfig
from drsl.train.loop import train

__all__ = ["load_or_train"]


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
        device: see :func:`drsl.train.select_device`. progress (bool): tqdm bar.

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
