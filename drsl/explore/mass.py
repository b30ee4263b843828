"""Every loss's value and gradient mass on positives vs negatives: on one toy batch
(:func:`summarize_batch`) and against the positive:negative ratio (:func:`ratio_curves`).

Reference: ``docs/drsl-loss-spec.md``, "Why it suits imbalance" and "Two ways to get a
gradient"; contract :func:`drsl.losses.gradient_mass`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from drsl import losses as _losses
from drsl.config import torch_threads

from .batch import _check_pk, anchor_ranking, pos_neg_ratio, toy_batch
from .menu import LOSS_NAMES, make_loss

__all__ = ["DEFAULT_P_VALUES", "BatchSummary", "RatioCurves", "summarize_batch", "ratio_curves"]

#: Default P values of :func:`ratio_curves` (with K = 4: ratios from 0.75 down to 0.05).
DEFAULT_P_VALUES: tuple[int, ...] = (2, 3, 4, 6, 8, 12, 16)


@dataclass
class BatchSummary:
    """What the batch view shows for one setting (see :func:`summarize_batch`).

    Attributes:
        P, K (int): identities and instances per identity.
        ratio (float): positives per negative for one anchor, ``(K-1)/((P-1)K)``.
        embeddings (Tensor): ``B x D`` toy embeddings; labels (Tensor): ``B``.
        anchor (int): the anchor whose ranked list is shown.
        distances (Tensor): the anchor's ``B-1`` distances in rank order.
        is_positive (Tensor): ``B-1`` bools in rank order.
        values (dict[str, float]): each loss's value on the batch.
        mass (dict[str, dict[str, float]]): each loss's :func:`drsl.losses.gradient_mass`
            (keys ``pos``, ``neg``, ``pos_per_pair``, ``neg_per_pair``).
    """

    P: int
    K: int
    ratio: float
    embeddings: Tensor
    labels: Tensor
    anchor: int
    distances: Tensor
    is_positive: Tensor
    values: dict[str, float] = field(default_factory=dict)
    mass: dict[str, dict[str, float]] = field(default_factory=dict)

    def pos_share(self, name: str) -> float:
        """Share of the gradient mass on positive pairs, ``pos / (pos + neg)`` (nan if both 0).

        Args:
            name (str): a loss name in :attr:`mass`.

        Returns:
            float: in ``[0, 1]``; 0.5 means positives and negatives get equal total push.

        Reference: spec "Two ways to get a gradient" (the identity update's balance).
        """
        m = self.mass[name]
        total = m["pos"] + m["neg"]
        return m["pos"] / total if total > 0 else float("nan")


def _value_and_mass(loss_fn: Callable, embeddings: Tensor, labels: Tensor):
    """The loss value and :func:`drsl.losses.gradient_mass`, from its one evaluation."""
    out = dict(_losses.gradient_mass(loss_fn, embeddings, labels))
    value = out.pop("loss")
    return float(value), {k: float(v) for k, v in out.items()}


def summarize_batch(
    P: int,
    K: int,
    *,
    losses: Sequence[str] = LOSS_NAMES,
    anchor: int = 0,
    delta: float | None = None,
    sort_weight: float = 1.0,
    separation: float = 1.5,
    noise: float = 1.0,
    dim: int = 8,
    seed: int = 0,
) -> BatchSummary:
    """Every loss's value and gradient mass on one toy batch, and one anchor's ranked list.

    Args:
        P (int): identities per batch (>= 2, so that negatives exist).
        K (int): instances per identity (>= 2, so that positives exist).
        losses (Sequence[str]): registry names to evaluate. Default :data:`LOSS_NAMES`.
        anchor (int): the anchor for the ranked list, in ``0..P*K-1``. Default 0.
        delta (float, optional): DRSL smoothing width (``None``: the loss's default).
        sort_weight (float): DRSL's ``lambda``. Default 1.
        separation, noise (float): cluster geometry of :func:`toy_batch`.
        dim (int): embedding dimension. Default 8.
        seed (int): batch seed. Default 0.

    Returns:
        BatchSummary: values, gradient masses and the anchor's ranked list.

    Reference: spec "Why it suits imbalance"; contract ``drsl.losses.gradient_mass``.

    Example:
        >>> s = summarize_batch(4, 2, losses=("triplet",))
        >>> s.ratio, len(s.distances), sorted(s.mass["triplet"])[:2]
        (0.16666666666666666, 7, ['neg', 'neg_per_pair'])
    """
    _check_pk(P, K, min_p=2, min_k=2)
    emb, labels = toy_batch(P, K, dim=dim, separation=separation, noise=noise, seed=seed)
    values: dict[str, float] = {}
    mass: dict[str, dict[str, float]] = {}
    with torch_threads(1):
        _, dist, is_pos = anchor_ranking(emb, labels, anchor)
        for name in losses:  # a handful of losses, not a loop over samples
            fn = make_loss(name, delta=delta, sort_weight=sort_weight)
            values[name], mass[name] = _value_and_mass(fn, emb, labels)
    return BatchSummary(
        P=P,
        K=K,
        ratio=pos_neg_ratio(P, K),
        embeddings=emb,
        labels=labels,
        anchor=int(anchor),
        distances=dist,
        is_positive=is_pos,
        values=values,
        mass=mass,
    )


@dataclass
class RatioCurves:
    """Loss values and gradient masses against the positive:negative ratio (fixed K).

    Attributes:
        K (int): instances per identity.
        P (np.ndarray): the P values, increasing; ratio (np.ndarray): ``(K-1)/((P-1)K)``.
        values, pos, neg (dict[str, np.ndarray]): per loss, the mean over seeds of the loss value
            and of the total gradient mass on positive and on negative pairs, one per P.
    """

    K: int
    P: np.ndarray
    ratio: np.ndarray
    values: dict[str, np.ndarray]
    pos: dict[str, np.ndarray]
    neg: dict[str, np.ndarray]

    def pos_share(self, name: str) -> np.ndarray:
        """Share of the gradient mass on positives, ``pos / (pos + neg)``, per P (nan if 0/0).

        Args:
            name (str): a loss name.

        Returns:
            np.ndarray: one value in ``[0, 1]`` per P.

        Reference: spec "Why it suits imbalance".
        """
        total = self.pos[name] + self.neg[name]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(total > 0, self.pos[name] / total, np.nan)


def ratio_curves(
    K: int,
    *,
    P_values: Sequence[int] = DEFAULT_P_VALUES,
    losses: Sequence[str] = LOSS_NAMES,
    delta: float | None = None,
    sort_weight: float = 1.0,
    separation: float = 1.5,
    noise: float = 1.0,
    dim: int = 8,
    seeds: Sequence[int] = (0,),
) -> RatioCurves:
    """Each loss's value and gradient mass as P grows at fixed K (the ratio falls).

    Args:
        K (int): instances per identity (>= 2).
        P_values (Sequence[int]): identities per batch to try (each >= 2).
        losses (Sequence[str]): registry names. Default :data:`LOSS_NAMES`.
        delta, sort_weight: DRSL's smoothing width and sort weight (see :func:`make_loss`).
        separation, noise, dim: geometry of :func:`toy_batch`.
        seeds (Sequence[int]): batches averaged per point. Default ``(0,)``.

    Returns:
        RatioCurves: arrays ordered by increasing P (decreasing ratio).

    Reference: spec "Why it suits imbalance".

    Example:
        >>> c = ratio_curves(2, P_values=(2, 4), losses=("triplet",))
        >>> c.ratio.tolist(), c.values["triplet"].shape
        ([0.5, 0.16666666666666666], (2,))
    """
    P_arr = np.array(sorted({int(p) for p in P_values}), dtype=np.int64)
    if len(P_arr) == 0:
        raise ValueError("P_values must not be empty")
    if len(seeds) == 0:
        raise ValueError("seeds must not be empty")
    fns = {name: make_loss(name, delta=delta, sort_weight=sort_weight) for name in losses}
    shape = (len(P_arr), len(seeds))
    values = {n: np.zeros(shape) for n in losses}
    pos = {n: np.zeros(shape) for n in losses}
    neg = {n: np.zeros(shape) for n in losses}
    for P in P_arr.tolist():
        _check_pk(P, K, min_p=2, min_k=2)
    with torch_threads(1):
        for i, P in enumerate(P_arr.tolist()):  # loops over settings, not samples
            for j, seed in enumerate(seeds):
                emb, labels = toy_batch(
                    P, K, dim=dim, separation=separation, noise=noise, seed=int(seed)
                )
                for name, fn in fns.items():
                    values[name][i, j], m = _value_and_mass(fn, emb, labels)
                    pos[name][i, j], neg[name][i, j] = m["pos"], m["neg"]
    ratio = (K - 1) / ((P_arr - 1) * K)
    return RatioCurves(
        K=K,
        P=P_arr,
        ratio=ratio,
        values={n: v.mean(axis=1) for n, v in values.items()},
        pos={n: v.mean(axis=1) for n, v in pos.items()},
        neg={n: v.mean(axis=1) for n, v in neg.items()},
    )
