"""The result of every dataset loader: :class:`ReIDSplits`, and :class:`ImageDataset` over
its items.

An item is ``(img_path, pid, camid)``: train pids relabelled ``0..n-1``; query and gallery
keep the dataset's pids (``0`` distractors, ``-1`` junk); camids 0-based.

Reference: Zheng et al., ICCV 2015 (Market-1501 protocol).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset

from drsl.data.imagefile import read_image

__all__ = ["Item", "ReIDSplits", "ImageDataset"]

Item = tuple[str, int, int]  # (img_path, pid, camid)


@dataclass
class ReIDSplits:
    """The three splits of a re-ID dataset.

    Attributes:
        train (list[Item]): ``(img_path, pid, camid)``, pids relabelled ``0..n-1``.
        query (list[Item]): original pids.
        gallery (list[Item]): original pids; ``0`` distractors and ``-1`` junk kept.
        name (str): dataset name (``"market1501"``, ``"synthetic"``, ...).
        root (str): the folder it was read from.
        distractor_pid (int or None): the pid that marks distractors (0), or None where pid 0
            is an ordinary identity (MSMT17).
        protocol (str): how the queries are evaluated when it is not the dataset's own query
            and gallery split (e.g. leave-one-out, :mod:`drsl.data.folders`); "" otherwise.
    """

    train: list[Item]
    query: list[Item]
    gallery: list[Item]
    name: str = "custom"
    root: str = ""
    distractor_pid: int | None = 0
    protocol: str = ""

    @property
    def num_train_pids(self) -> int:
        """Identities in train (the classifier's number of classes)."""
        return len({pid for _, pid, _ in self.train})

    @property
    def num_train_cams(self) -> int:
        """Cameras seen in train."""
        return len({cam for _, _, cam in self.train})

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(pids, camids)`` of a split as int64 arrays, in item order.

        Args:
            split (str): ``"train"``, ``"query"`` or ``"gallery"``.

        Returns:
            tuple[np.ndarray, np.ndarray]: two arrays of the split's length.
        """
        items = self._split(split)
        pids = np.array([p for _, p, _ in items], dtype=np.int64)
        cams = np.array([c for _, _, c in items], dtype=np.int64)
        return pids, cams

    def _split(self, split: str) -> list[Item]:
        if split not in ("train", "query", "gallery"):
            raise ValueError(f"split must be 'train', 'query' or 'gallery', got {split!r}")
        return getattr(self, split)

    def statistics(self):
        """Images, identities and cameras per split (identities exclude distractors and junk).

        Returns:
            pandas.DataFrame: one row per split with columns ``images``, ``identities``,
            ``cameras``, ``distractor_images``, ``junk_images``.
        """
        import pandas as pd

        rows = {}
        for split in ("train", "query", "gallery"):
            pids, cams = self.arrays(split)
            # train pids are relabelled identities: no distractor or junk there
            test = split != "train"
            if test and self.distractor_pid is not None:
                distractor = pids == self.distractor_pid
            else:
                distractor = np.zeros(len(pids), bool)
            junk = (pids == -1) & test
            rows[split] = {
                "images": len(pids),
                "identities": len(np.unique(pids[~distractor & ~junk])),
                "cameras": len(np.unique(cams)),
                "distractor_images": int(distractor.sum()),
                "junk_images": int(junk.sum()),
            }
        return pd.DataFrame.from_dict(rows, orient="index")

    def __repr__(self) -> str:
        return (
            f"ReIDSplits(name={self.name!r}, train={len(self.train)} images / "
            f"{self.num_train_pids} ids, query={len(self.query)}, gallery={len(self.gallery)}, "
            f"root={self.root!r})"
        )


class ImageDataset(Dataset):
    """A torch Dataset over ``(img_path, pid, camid)`` items, returning ``(image, pid, camid)``.

    Args:
        items (Sequence[Item]): e.g. ``splits.train``.
        transform (callable, optional): applied to the RGB PIL image; None returns the PIL
            image itself.

    Raises:
        BadImageError: when an image cannot be read (one line naming the file).

    Reference: the Market-1501 layout (Zheng et al., ICCV 2015).

    Example:
        >>> ds = ImageDataset([("missing.jpg", 3, 0)])
        >>> len(ds)
        1
    """

    def __init__(self, items: Sequence[Item], transform: Callable | None = None) -> None:
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        path, pid, camid = self.items[index]
        image = read_image(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, pid, camid
