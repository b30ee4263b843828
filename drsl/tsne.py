"""A cached 2-D t-SNE of embeddings, and the identities to show in it (behind
:func:`drsl.plotting.plot_tsne`).

Two caches: on disk through ``joblib.Memory`` when a folder is given, and in memory (the last
32 results, keyed by a hash of the features and of every parameter). The in-memory one is kept
for the calls without a folder (nothing is written by default), where the alternative is a new
fit (seconds); with a folder it saves little (a disk hit costs about a millisecond).

Reference: van der Maaten & Hinton, "Visualizing Data using t-SNE", JMLR 2008;
``sklearn.manifold.TSNE``; ``joblib.Memory``.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from drsl.metrics.protocol import as_ids

__all__ = ["tsne", "clear_tsne_cache", "select_identities"]

_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()
_CACHE_SIZE = 32


def clear_tsne_cache() -> None:
    """Empty the in-memory t-SNE cache (the disk cache stays).

    Example:
        >>> clear_tsne_cache()
    """
    _CACHE.clear()


def _key(x: np.ndarray, params: dict) -> str:
    h = hashlib.sha256()
    h.update(str(x.shape).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(json.dumps(params, sort_keys=True).encode())
    return h.hexdigest()[:32]


def _fit(x, perplexity, pca_dim, seed, max_iter, sklearn_version, num_threads) -> np.ndarray:
    """PCA (when ``pca_dim``) then t-SNE; ``sklearn_version`` is part of the disk-cache key."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    z = PCA(n_components=pca_dim, random_state=seed).fit_transform(x) if pca_dim else x
    model = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        max_iter=max_iter,
        random_state=seed,
    )
    # OpenMP threads of the Barnes-Hut gradient; torch_threads would also limit torch, which
    # t-SNE does not use, so threadpoolctl alone
    with threadpool_limits(limits=num_threads):
        return model.fit_transform(z).astype(np.float32)


def tsne(
    features,
    *,
    perplexity: float = 30.0,
    pca_dim: int | None = 50,
    seed: int = 0,
    max_iter: int = 1000,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    num_threads: int | None = 1,
) -> np.ndarray:
    """2-D t-SNE of the rows of ``features``, after a PCA down to ``pca_dim`` dimensions.

    Results are cached under a hash of the features (as float32) and of every parameter:
    in memory (the last 32 results) and, when ``cache_dir`` is given, on disk in that folder
    (``joblib.Memory``; created if missing); nothing is written otherwise. The perplexity is
    capped at ``(n - 1) / 3`` so that small sets work; the capped value is the one hashed.

    Args:
        features (Tensor or np.ndarray, n x D): the embeddings (n >= 4).
        perplexity (float): t-SNE perplexity (> 0). Default 30.
        pca_dim (int, optional): PCA dimensions before t-SNE; ``None`` skips the PCA, as
            does ``pca_dim >= min(n, D)``. Default 50.
        seed (int): random state of PCA and t-SNE. Default 0.
        max_iter (int): t-SNE iterations (>= 250). Default 1000.
        cache_dir (str or Path, optional): folder of the on-disk cache.
        use_cache (bool): read and write the caches. Default True.
        num_threads (int, optional): OpenMP threads of the Barnes-Hut gradient; ``None``
            leaves scikit-learn's default (all cores). Default 1: on a shared or small machine
            the threads' contention made t-SNE 6 to 35 times slower here (e.g. 1000 points:
            7 s with one thread, 43 s with all), and one thread is fast enough for the few
            hundred points of a plot.

    Returns:
        np.ndarray: ``n x 2`` float32 coordinates (a copy: editing it leaves the cache alone).

    Reference: van der Maaten & Hinton, "Visualizing Data using t-SNE", JMLR 2008;
    ``sklearn.manifold.TSNE``.
    """
    import sklearn
    from joblib import Memory

    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (n x D), got shape {x.shape}")
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {n}")
    if perplexity <= 0:
        raise ValueError(f"perplexity must be > 0, got {perplexity}")
    if max_iter < 250:
        raise ValueError(f"max_iter must be >= 250, got {max_iter}")
    params = {
        "perplexity": float(min(perplexity, (n - 1) / 3.0)),
        "pca_dim": int(pca_dim) if pca_dim is not None and pca_dim < min(x.shape) else None,
        "seed": int(seed),
        "max_iter": int(max_iter),
        "sklearn_version": sklearn.__version__,
    }
    if not use_cache:
        return _fit(x, **params, num_threads=num_threads)
    key = _key(x, params)
    if key not in _CACHE:
        fit = _fit
        if cache_dir is not None:
            memory = Memory(location=Path(cache_dir), verbose=0)
            fit = memory.cache(_fit, ignore=["num_threads"])
        _CACHE[key] = fit(x, **params, num_threads=num_threads)
    _CACHE.move_to_end(key)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return _CACHE[key].copy()


def select_identities(
    pids, *, num_ids: int = 8, ids: Sequence[int] | None = None, seed: int = 0
) -> np.ndarray:
    """Identities to show: the given ``ids``, else ``num_ids`` drawn at random (seeded).

    Junk (``-1``) and distractors (``0``) are never drawn.

    Args:
        pids (array-like, n): identities of the items.
        num_ids (int): how many to draw when ``ids`` is None (capped at the number present).
        ids (sequence of int, optional): explicit identities (each must occur in ``pids``).
        seed (int): random seed. Default 0.

    Returns:
        np.ndarray: the chosen identities, sorted.

    Reference: none (a display choice).

    Example:
        >>> select_identities([3, 3, 5, 0, -1, 7], ids=[7, 3]).tolist()
        [3, 7]
        >>> len(select_identities([3, 3, 5, 0, -1, 7], num_ids=10))
        3
    """
    p = as_ids(pids, "pids", device="cpu").numpy()
    present = np.unique(p)
    if ids is not None:
        chosen = np.unique(np.asarray(list(ids), dtype=np.int64))
        missing = np.setdiff1d(chosen, present)
        if missing.size:
            raise ValueError(f"ids not present in pids: {missing.tolist()}")
        return chosen
    if num_ids < 1:
        raise ValueError(f"num_ids must be >= 1, got {num_ids}")
    pool = present[present > 0]
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, size=min(num_ids, pool.size), replace=False))
