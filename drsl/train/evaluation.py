"""Evaluation of a model on a dataset's test split: embeddings and Market-protocol scores.

Reference: Zheng et al., ICCV 2015 (Market-1501 protocol); ``drsl.metrics`` (CMC, mAP, mINP).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from drsl.data.images import ReIDData
from drsl.data.transforms import build_transforms

__all__ = ["embed", "evaluate"]


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
        model (nn.Module): a :class:`drsl.models.ReIDNet`. images (Tensor): ``N x 3 x H x W``
            uint8. batch_size (int): images per forward pass. device: defaults to the
            model's device.

    Returns:
        Tensor: ``N x D`` embeddings on the CPU, in the model's dtype.

    Example:
        >>> from drsl.models import ReIDNet
        >>> net = ReIDNet(3, base_width=2)
        >>> tuple(embed(net, torch.zeros(5, 3, 16, 8, dtype=torch.uint8), batch_size=2).shape)
        (5, 16)
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
    rerank: bool = False,
) -> dict[str, float]:
    """Market-protocol mAP, CMC rank-1/5/10 and mINP of ``model`` on ``data``'s test split.

    Args:
        model (nn.Module): a :class:`drsl.models.ReIDNet`. data (ReIDData): with query and
            gallery. batch_size (int): embedding batch size. device: defaults to the model's.
        rerank (bool): rank by k-reciprocal re-ranked distances
            (:func:`drsl.metrics.rerank_distances`, default parameters) over the gallery
            without its junk items (which the protocol drops anyway, and which torchreid's
            loaders never read). Default False.

    Returns:
        dict[str, float]: ``{"mAP", "R1", "R5", "R10", "mINP"}`` in [0, 1].

    Reference: ``drsl.metrics.evaluate_embeddings`` (Market-1501 protocol).
    """
    from drsl.metrics import evaluate_embeddings, evaluate_rank, rerank_distances

    if data.query is None or data.gallery is None:
        raise ValueError(f"dataset {data.name!r} has no query/gallery split to evaluate on")
    q = embed(model, data.query.images, batch_size=batch_size, device=device)
    g = embed(model, data.gallery.images, batch_size=batch_size, device=device)
    ids = (data.query.pids, data.gallery.pids, data.query.camids, data.gallery.camids)
    if not rerank:
        res = evaluate_embeddings(
            q, g, *(t.numpy() for t in ids), max_rank=min(50, len(data.gallery))
        )
        return _summary(res)
    keep = data.gallery.pids != -1
    g_pids, g_camids = data.gallery.pids[keep], data.gallery.camids[keep]
    distmat = rerank_distances(q, g[keep])
    res = evaluate_rank(
        distmat, ids[0], g_pids, ids[2], g_camids, max_rank=min(50, int(keep.sum()))
    )
    return _summary(res)
