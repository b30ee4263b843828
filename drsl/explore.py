"""Computations behind the positive/negative-ratio explorer (no widgets here).

The explorer in :mod:`drsl.widgets` and the static grid of notebook ``06_explore`` both call
these functions, so what the sliders show and what the static figures show is the same.

- :func:`toy_batch`: a P x K mini-batch of toy embeddings, identities as Gaussian clusters;
- :func:`anchor_ranking`: one anchor's ranked list (gallery order, distances, positive or not);
- :func:`summarize_batch`: every loss's value and gradient mass on positives vs negatives;
- :func:`ratio_curves`: the same against the positive:negative ratio ``(K-1) / ((P-1)K)``;
- :func:`train_toy`: a 2-D (or unit-sphere 3-D) toy embedding trained for N steps.

Reference: spec ``drsl-loss.md``, "Why it suits imbalance": an anchor sees ``K - 1`` positives
and ``(P - 1) K`` negatives.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from drsl import losses as _losses
from drsl.distances import pairwise_euclidean

__all__ = [
    "LOSS_NAMES",
    "LOSS_LABELS",
    "BatchSummary",
    "RatioCurves",
    "ToyRun",
    "default_delta",
    "pos_neg_ratio",
    "make_loss",
    "toy_batch",
    "anchor_ranking",
    "summarize_batch",
    "ratio_curves",
    "train_toy",
]

#: The losses the explorer offers, in display order (names of :func:`drsl.losses.get_loss`).
LOSS_NAMES: tuple[str, ...] = ("drsl", "drsl_smooth", "triplet", "contrastive", "smooth_ap")

#: Human-readable labels for the explorer's menus and legends.
LOSS_LABELS: dict[str, str] = {
    "drsl": "DRSL (identity update)",
    "drsl_smooth": "DRSL (smooth gradient)",
    "drsl_rank": "DRSL ranking only",
    "triplet": "triplet (batch hard)",
    "triplet_soft": "triplet (soft margin)",
    "contrastive": "contrastive",
    "smooth_ap": "Smooth-AP",
}

_POOL_P, _POOL_K = 16, 8  # toy_batch draws at least this many identities and instances

#: Default P values of :func:`ratio_curves` (with K = 4: ratios from 0.75 down to 0.05).
DEFAULT_P_VALUES: tuple[int, ...] = (2, 3, 4, 6, 8, 12, 16)


@contextmanager
def _one_thread():
    """Run torch on one intra-op thread, then restore the setting.

    The explorer's batches are tiny (at most a few hundred rows): there, starting and syncing
    threads costs far more than the arithmetic (about 10x the CPU time with 2 threads measured
    here), so every function of this module computes on one thread.
    """
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_delta() -> float:
    """The default smoothing width ``delta`` of :func:`drsl.losses.drsl_loss`.

    Read from the loss's signature, so the explorer never disagrees with the package.

    Returns:
        float: the documented default ``delta``.

    Reference: spec "Words", step function ``H`` smoothed with width ``delta``.

    Example:
        >>> default_delta() > 0
        True
    """
    return float(inspect.signature(_losses.drsl_loss).parameters["delta"].default)


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


def make_loss(
    name: str, *, delta: float | None = None, sort_weight: float = 1.0
) -> Callable[[Tensor, Tensor], Tensor]:
    """A loss of the registry, with ``delta`` and ``sort_weight`` passed to the DRSL variants.

    Args:
        name (str): a name of :data:`drsl.losses.LOSSES` (e.g. ``"drsl"``, ``"triplet"``).
        delta (float, optional): DRSL smoothing width; ``None`` keeps the loss's default.
            Ignored by the baselines.
        sort_weight (float): DRSL's ``lambda`` (the rank-in-rank sort's weight). Ignored by
            the baselines.

    Returns:
        Callable: ``loss(embeddings: B x D, labels: B) -> 0-d Tensor``.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones), or a bad delta.

    Reference: spec "The loss for one anchor"; contract ``drsl.losses.get_loss``.

    Example:
        >>> x, y = toy_batch(2, 2, seed=0)
        >>> float(make_loss("triplet")(x, y)) >= 0
        True
    """
    if name.startswith("drsl"):
        kwargs: dict = {"sort_weight": float(sort_weight)}
        if delta is not None:
            if not delta > 0:
                raise ValueError(f"delta must be > 0, got {delta!r}")
            kwargs["delta"] = float(delta)
        return _losses.get_loss(name, **kwargs)
    return _losses.get_loss(name)


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
    """The loss value and :func:`drsl.losses.gradient_mass`, from one forward pass."""
    seen: list[float] = []

    def recording(e: Tensor, y: Tensor) -> Tensor:
        value = loss_fn(e, y)
        seen.append(float(value.detach()))
        return value

    out = _losses.gradient_mass(recording, embeddings, labels)
    return seen[-1], {k: float(v) for k, v in out.items()}


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
    with _one_thread():
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
    with _one_thread():
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


@dataclass
class ToyRun:
    """A toy embedding's trajectory under one loss (see :func:`train_toy`).

    Attributes:
        loss (str): the loss name.
        positions (Tensor): ``(steps+1) x B x D`` point positions, step 0 the start.
        labels (Tensor): ``B`` identity labels.
        losses (Tensor): ``steps+1`` loss values at those positions.
        sphere (bool): whether the points live on the unit sphere (D = 3) or the plane (D = 2).
    """

    loss: str
    positions: Tensor
    labels: Tensor
    losses: Tensor
    sphere: bool

    @property
    def steps(self) -> int:
        """Number of training steps (``positions`` holds one more frame)."""
        return self.positions.shape[0] - 1


def train_toy(
    loss: str = "drsl",
    P: int = 4,
    K: int = 4,
    *,
    steps: int = 60,
    lr: float = 0.05,
    sphere: bool = False,
    separation: float = 1.0,
    noise: float = 1.0,
    delta: float | None = None,
    sort_weight: float = 1.0,
    seed: int = 0,
) -> ToyRun:
    """Train the points of a toy batch directly (no network) for ``steps`` steps.

    Each step moves every point against its gradient (for ``"drsl"``: the identity update),
    scaled so that the point with the largest gradient moves exactly ``lr``: every loss then
    moves at the same speed while the relative push between points is kept as the loss gives
    it. On the sphere the loss sees the L2-normalised points and they are normalised again
    after each step.

    Args:
        loss (str): a registry name (see :func:`make_loss`). Default ``"drsl"``.
        P (int): identities (>= 2). K (int): points per identity (>= 2).
        steps (int): training steps (>= 0). Default 60.
        lr (float): distance moved per step by the most-pushed point (> 0). Default 0.05.
        sphere (bool): 3-D unit sphere instead of the 2-D plane. Default False.
        separation, noise (float): start geometry (see :func:`toy_batch`).
        delta, sort_weight: DRSL's parameters (see :func:`make_loss`).
        seed (int): seed of the start positions.

    Returns:
        ToyRun: positions ``(steps+1) x P*K x D`` and the loss at each frame.

    Reference: spec "Two ways to get a gradient" (the identity update moves the points).

    Example:
        >>> run = train_toy("triplet", 2, 2, steps=3)
        >>> tuple(run.positions.shape), tuple(run.losses.shape)
        ((4, 4, 2), (4,))
    """
    _check_pk(P, K, min_p=2, min_k=2)
    if not isinstance(steps, int | np.integer) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    fn = make_loss(loss, delta=delta, sort_weight=sort_weight)
    dim = 3 if sphere else 2
    x, labels = toy_batch(
        P, K, dim=dim, separation=separation, noise=noise, sphere=sphere, seed=seed
    )
    with _one_thread():
        return _train_points(fn, x, labels, int(steps), float(lr), bool(sphere), loss)


def _train_points(fn, x: Tensor, labels: Tensor, steps: int, lr: float, sphere: bool, loss: str):
    """The loop of :func:`train_toy` (normalised steps; on the sphere, renormalised)."""
    frames = [x]
    values = []
    for _ in range(steps):  # optimisation steps: sequential by nature
        xr = x.detach().requires_grad_(True)
        value = fn(F.normalize(xr, dim=1) if sphere else xr, labels)
        (grad,) = torch.autograd.grad(value, xr, allow_unused=True)
        values.append(float(value.detach()))
        if grad is None:
            grad = torch.zeros_like(x)
        top = grad.norm(dim=1).max()
        x = x - lr * grad / top if top > 0 else x.clone()
        if sphere:
            x = F.normalize(x, dim=1)
        frames.append(x.detach())
    with torch.no_grad():
        values.append(float(fn(F.normalize(x, dim=1) if sphere else x, labels)))
    return ToyRun(
        loss=loss,
        positions=torch.stack(frames),
        labels=labels,
        losses=torch.tensor(values, dtype=x.dtype),
        sphere=bool(sphere),
    )
