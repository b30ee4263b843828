"""In-memory image sets: a dataset's splits decoded once into uint8 tensors.

Training on a CPU spends most of its time in the network, not in decoding, once the images sit
in memory: :func:`load_data` reads every image of a dataset folder (any layout that
:func:`drsl.data.datasets.load_dataset` detects) at the training size into an
:class:`ImageSet` per split, and :func:`make_random_data` makes a tiny random set for tests and
demos. An unreadable image stops the load before training starts, with a one-line error that
names the file (and how many other files of the split are bad).

Reference: Zheng et al., ICCV 2015 (the Market-1501 layout and its splits).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["ImageSet", "ReIDData", "preload", "fingerprint", "load_data", "make_random_data"]


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


def preload(items: Sequence[tuple[str, int, int]], height: int, width: int) -> ImageSet:
    """Decode ``(path, pid, camid)`` items into an :class:`ImageSet` at ``height x width``.

    Args:
        items (Sequence[tuple[str, int, int]]): e.g. ``load_dataset(root).train``.
        height, width (int): stored size (antialiased resize).

    Returns:
        ImageSet: the images (uint8) and labels.

    Raises:
        ValueError: an empty list, or an unreadable image (``BadImageError``, naming the
            first and counting the others).
    """
    from torchvision.transforms.v2 import functional as F

    from drsl.data.imagefile import BadImageError, iter_images

    if len(items) == 0:
        raise ValueError("empty image list")
    images = torch.empty(len(items), 3, height, width, dtype=torch.uint8)
    try:
        for i, img in enumerate(iter_images([path for path, _, _ in items])):
            images[i] = F.resize(F.pil_to_tensor(img), [height, width], antialias=True)
    except BadImageError as err:  # the first bad file and the count of the others
        fix = f"{err}; replace or delete the unreadable file(s)"
        raise BadImageError(err.path, err.reason, fix) from None
    pids = torch.tensor([it[1] for it in items], dtype=torch.long)
    camids = torch.tensor([it[2] for it in items], dtype=torch.long)
    return ImageSet(images, pids, camids)


def fingerprint(root: str | os.PathLike) -> str:
    """``"<generator>-v<version>-<sha256 of settings, 12 hex>"`` from a manifest, else ``""``.

    Args:
        root (str | PathLike): a dataset folder.

    Returns:
        str: the data version of a drsl synthetic set; ``""`` for other folders.
    """
    manifest = Path(root) / "manifest.json"
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
        FileNotFoundError: ``root`` does not exist. NotADirectoryError: it is a file.
        ValueError: an unreadable image (naming it) or a folder of another layout.
    """
    from drsl.data.datasets import load_dataset

    if root is None:
        from drsl.data.synth import ensure_dataset

        root = ensure_dataset(fast=fast)
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"dataset path {root} is a file; pass the dataset's folder")
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    splits = load_dataset(root)
    gallery = preload(splits.gallery, height, width)
    # leave-one-out (drsl.data.folders): the queries are the gallery images, decoded once
    same = splits.query is splits.gallery
    return ReIDData(
        train=preload(splits.train, height, width),
        query=gallery if same else preload(splits.query, height, width),
        gallery=gallery,
        name=str(getattr(splits, "name", root.name)),
        fingerprint=fingerprint(root),
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
