"""A validation split carved out of the training identities, with the Market protocol.

Choosing a learning rate or a step budget on the test split makes the test score optimistic:
the choice has seen the test identities. :func:`split_validation` holds out part of the
*training* identities instead and lays them out as the test split is laid out (as the
synthetic generator and Market-1501 do it): for every held-out identity and every camera with
at least two of its images, one image of that camera becomes a query and the rest stay in the
gallery, so every query has its same-camera images as junk and its other-camera images as
matches. The remaining identities (relabelled ``0..C-1``) are the training set. Settings are
chosen on ``fit`` (train + validation); the test split is scored once per final run.

Reference: Zheng et al., ICCV 2015 (Market-1501 protocol: one query per identity and camera).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from drsl.data.images import ImageSet, ReIDData

__all__ = ["split_validation"]


def _subset(images: ImageSet, index: np.ndarray, pids: torch.Tensor | None = None) -> ImageSet:
    idx = torch.as_tensor(index, dtype=torch.long)
    return ImageSet(
        images.images[idx],
        images.pids[idx] if pids is None else pids,
        images.camids[idx],
    )


def _query_picks(pids: np.ndarray, camids: np.ndarray, held: np.ndarray, rng) -> np.ndarray:
    """Indices of the queries: one image per held-out identity and camera with >= 2 images."""
    picks = []
    for pid in held:
        for cam in np.unique(camids[pids == pid]):
            where = np.flatnonzero((pids == pid) & (camids == cam))
            if len(where) >= 2:
                picks.append(int(where[rng.integers(len(where))]))
    return np.asarray(sorted(picks), dtype=np.int64)


def split_validation(
    data: ReIDData, num_ids: int = 100, *, seed: int = 0
) -> tuple[ReIDData, ReIDData]:
    """Hold out ``num_ids`` training identities as a query/gallery validation split.

    Args:
        data (ReIDData): a dataset with a training split (and usually a test split).
        num_ids (int): identities to hold out, ``1 <= num_ids <= C - 2`` (two must remain for
            a P x K batch). Default 100 (of the synthetic set's 400).
        seed (int): which identities and which query images (independent of any run seed,
            so every run of an experiment sees the same split). Default 0.

    Returns:
        tuple[ReIDData, ReIDData]: ``(fit, test)``. ``fit.train``: the other identities,
        pids relabelled ``0..C-num_ids-1`` in order; ``fit.query``/``fit.gallery``: the
        held-out identities (their original training pids + 1, so none is the distractor pid
        0). ``test``: ``fit.train`` with ``data``'s own query and gallery.

    Raises:
        ValueError: ``num_ids`` out of range, or no held-out identity has a camera with two
            images (no query could be made).

    Example:
        >>> from drsl.data.images import make_random_data
        >>> fit, test = split_validation(make_random_data(6, 4), 2)
        >>> fit.num_classes, len(fit.query), len(fit.gallery), len(test.query)
        (4, 4, 4, 3)
    """
    pids = data.train.pids.numpy()
    camids = data.train.camids.numpy()
    ids = np.unique(pids)
    if not 1 <= num_ids <= len(ids) - 2:
        raise ValueError(
            f"num_ids must be in 1..{len(ids) - 2} (the training split has {len(ids)} "
            f"identities and two must remain), got {num_ids}"
        )
    rng = np.random.default_rng([seed, 7])
    held = np.sort(rng.choice(ids, size=num_ids, replace=False))
    is_held = np.isin(pids, held)
    queries = _query_picks(pids, camids, held, rng)
    if len(queries) == 0:
        raise ValueError("no held-out identity has two images in one camera: no query to make")
    gallery = np.setdiff1d(np.flatnonzero(is_held), queries)
    keep = np.flatnonzero(~is_held)
    _, relabelled = np.unique(pids[keep], return_inverse=True)
    train = _subset(data.train, keep, torch.as_tensor(relabelled, dtype=torch.long))
    shift = torch.ones((), dtype=torch.long)  # validation pids start at 1: 0 means distractor
    query, gal = _subset(data.train, queries), _subset(data.train, gallery)
    query.pids, gal.pids = query.pids + shift, gal.pids + shift
    fit = ReIDData(
        train,
        query,
        gal,
        name=f"{data.name}-fit{num_ids}",
        fingerprint=f"{data.fingerprint}+val{num_ids}s{seed}",
    )
    return fit, replace(data, train=train, name=f"{data.name}-test", fingerprint=fit.fingerprint)
