"""Toy mini-batches: P identities as Gaussian clusters of K instances, and one anchor's list.

Reference: ``docs/drsl-loss-spec.md``, "Why it suits imbalance" (P identities, K instances);
"Words" (score ``s_j = -||f_a - f_j||``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from drsl.distances import pairwise_euclidean

__all__ = ["pos_neg_ratio", "toy_batch", "anchor_ranking"]

_POOL_P, _POOL_K = 16, 8  # toy_batch draws at least this many identities and instances


def pos_neg_ratio(P: int, K: int) -> float:
    """Positives per negative that one anchor sees in a P x K batch: ``(K-1) / ((P-1) K)``.

    Args:
        P (int): identities per batch (>= 2).
        K (int): instances per identity (>= 1).

    Returns:
        float: the ratio.

    Reference: spec "Why it suits imbalance": ``K - 1`` positives, ``(P - 1) K`` negatives.

    Example:
        >>> pos_neg_ratio(16, 4)
        0.05
    """
    _check_pk(P, K, min_p=2, min_k=1)
    return (K - 1) / ((P - 1) * K)


def _check_pk(P: int, K: int, *, min_p: int = 1, min_k: int = 1) -> None:
    if not isinstance(P, int | np.integer) or P < min_p:
        raise ValueError(f"P (identities per batch) must be an int >= {min_p}, got {P!r}")
    if not isinstance(K, int | np.integer) or K < min_k:
        raise ValueError(f"K (instances per identity) must be an int >= {min_k}, got {K!r}")


def toy_batch(
    P: int,
    K: int,
    *,
    dim: int = 8,
    separation: float = 1.5,
    noise: float = 1.0,
    sphere: bool = False,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """A P x K toy mini-batch: each identity a Gaussian cluster around its own centre.

    Centres are drawn with standard deviation ``separation / sqrt(2 dim)`` per coordinate and
    instances around them with ``noise / sqrt(2 dim)``, so that ``separation`` is the RMS
    distance between two identities' centres and ``noise`` the RMS distance between two images
    of one identity, whatever ``dim``. Rows are grouped by identity (labels ``0..P-1``, each
    repeated K times), as a PK sampler yields them. Batches of one seed are nested: the batch
    for ``(P, K)`` is the top-left corner of the batch for any larger ``(P', K')``.

    Args:
        P (int): identities (>= 1).
        K (int): instances per identity (>= 1).
        dim (int): embedding dimension. Default 8.
        separation (float): RMS distance between identity centres (>= 0). Default 1.5.
        noise (float): RMS distance between two instances of one identity (>= 0). Default 1.
        sphere (bool): L2-normalise the rows (points on the unit sphere). Default False.
        seed (int): seed of the generator; the same seed gives the same batch.
        dtype (torch.dtype): dtype of the embeddings. Default float32.
        device: device of the result. Default CPU.

    Returns:
        tuple[Tensor, Tensor]: embeddings ``(P*K) x dim`` and int64 labels ``(P*K,)``.

    Reference: spec "Why it suits imbalance" (P identities, K instances).

    Example:
        >>> x, y = toy_batch(3, 2, dim=4)
        >>> tuple(x.shape), y.tolist()
        ((6, 4), [0, 0, 1, 1, 2, 2])
    """
    _check_pk(P, K)
    if not isinstance(dim, int | np.integer) or dim < 1:
        raise ValueError(f"dim must be an int >= 1, got {dim!r}")
    if not separation >= 0:
        raise ValueError(f"separation must be >= 0, got {separation!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    gen = torch.Generator().manual_seed(int(seed))
    scale = 1.0 / math.sqrt(2 * dim)
    # draw a pool of at least _POOL_P x _POOL_K and slice it: batches are nested, so a larger
    # P (or K) adds identities (or instances) and keeps the others where they were
    n_p, n_k = max(P, _POOL_P), max(K, _POOL_K)
    centres = torch.randn(n_p, 1, dim, generator=gen, dtype=torch.float64)
    offsets = torch.randn(n_p, n_k, dim, generator=gen, dtype=torch.float64)
    emb = centres[:P] * (separation * scale) + offsets[:P, :K] * (noise * scale)
    emb = emb.reshape(P * K, dim)
    if sphere:
        emb = F.normalize(emb, dim=1)
    labels = torch.arange(P).repeat_interleave(K)
    return emb.to(dtype=dtype, device=device), labels.to(device=device)


def anchor_ranking(embeddings: Tensor, labels: Tensor, anchor: int = 0) -> tuple[Tensor, ...]:
    """One anchor's ranked list: the other items by increasing distance (decreasing score).

    Args:
        embeddings (Tensor): ``B x D``.
        labels (Tensor): ``B`` identity labels.
        anchor (int): index of the anchor in ``0..B-1``.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``order`` (``B-1`` item indices, rank 1 first),
        ``distances`` (``B-1``, non-decreasing), ``is_positive`` (``B-1`` bools: same identity).
        Ties keep index order.

    Reference: spec "Words": score ``s_j = -||f_a - f_j||``, higher score retrieved earlier.

    Example:
        >>> x = torch.tensor([[0.0], [3.0], [1.0], [2.0]]); y = torch.tensor([0, 0, 1, 1])
        >>> [t.tolist() for t in anchor_ranking(x, y, 0)]
        [[2, 3, 1], [1.0, 2.0, 3.0], [False, False, True]]
    """
    if embeddings.dim() != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(
            f"need embeddings B x D and labels B, got {tuple(embeddings.shape)} and "
            f"{tuple(labels.shape)}"
        )
    B = embeddings.shape[0]
    if not 0 <= int(anchor) < B:
        raise ValueError(f"anchor must be in 0..{B - 1}, got {anchor!r}")
    with torch.no_grad():
        dist = pairwise_euclidean(embeddings[anchor : anchor + 1], embeddings)[0]
        others = torch.arange(B, device=embeddings.device)
        others = others[others != anchor]
        order = others[torch.argsort(dist[others], stable=True)]
        return order, dist[order], labels[order] == labels[anchor]
