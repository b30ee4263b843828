"""Image transforms for training and evaluation (torchvision.transforms.v2).

Training: resize, random horizontal flip, pad-and-random-crop, to float, normalise, random
erasing (the strong baseline's augmentations). Evaluation: resize, to float, normalise.
Both accept a PIL image or a ``3 x H x W`` uint8 tensor and return a ``3 x height x width``
float32 tensor.

Reference: Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification",
CVPR-W 2019 (flip, padding 10 + crop at 256x128, random erasing); Zhong et al., "Random
Erasing Data Augmentation", AAAI 2020.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "build_transforms"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_transforms(
    *,
    train: bool,
    height: int = 128,
    width: int = 64,
    pad: int | None = None,
    flip_p: float = 0.5,
    erase_p: float = 0.5,
) -> v2.Compose:
    """The augmentation (``train=True``) or evaluation pipeline.

    Args:
        train (bool): training pipeline (augmentations) or evaluation pipeline.
        height (int): output height in pixels (>= 4). Default 128.
        width (int): output width in pixels (>= 4). Default 64.
        pad (int, optional): padding before the random crop; default ``round(10 * width / 128)``
            (the strong baseline's 10 pixels at width 128, scaled).
        flip_p (float): horizontal-flip probability. Default 0.5.
        erase_p (float): random-erasing probability (erased area filled with 0, i.e. the
            mean colour after normalisation). Default 0.5.

    Returns:
        torchvision.transforms.v2.Compose: maps a PIL image or ``3 x H x W`` uint8 tensor to a
        ``3 x height x width`` float32 tensor.

    Reference: Luo et al. 2019, Sec. 3 (standard baseline augmentations).

    Example:
        >>> img = torch.randint(0, 256, (3, 40, 20), dtype=torch.uint8)
        >>> tuple(build_transforms(train=True, height=32, width=16)(img).shape)
        (3, 32, 16)
        >>> build_transforms(train=False, height=32, width=16)(img).dtype
        torch.float32
    """
    if height < 4 or width < 4:
        raise ValueError(f"height and width must be >= 4, got {height} x {width}")
    if not (0.0 <= flip_p <= 1.0 and 0.0 <= erase_p <= 1.0):
        raise ValueError(
            f"probabilities must lie in [0, 1], got flip_p={flip_p}, erase_p={erase_p}"
        )
    if pad is None:
        pad = max(1, round(10 * width / 128))
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    size = (height, width)
    head = [v2.ToImage(), v2.Resize(size, antialias=True)]
    tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if not train:
        return v2.Compose(head + tail)
    aug = [v2.RandomHorizontalFlip(p=flip_p)]
    if pad > 0:
        aug += [v2.Pad(pad), v2.RandomCrop(size)]
    erase = [v2.RandomErasing(p=erase_p, value=0)] if erase_p > 0 else []
    return v2.Compose(head + aug + tail + erase)
