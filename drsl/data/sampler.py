"""The PK batch sampler: P identities x K instances per mini-batch.

Metric-learning and ranking losses need positives in every batch, which uniform sampling over
thousands of identities would almost never give. A PK batch holds P identities with K images
each, so each anchor has ``K - 1`` positives and ``(P - 1) K`` negatives: the imbalance that
DRSL is built for.

Reference: Hermans et al., "In Defense of the Triplet Loss for Person Re-Identification",
arXiv:1703.07737 (PK batches); spec ``drsl-loss.md`` (batch imbalance).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

__all__ = ["PKSampler", "pk_pos_neg_ratio", "memory_pos_neg"]


def pk_pos_neg_ratio(P, K):
    """Positives per negative seen by one anchor of a PK batch: ``(K - 1) / ((P - 1) K)``.

    Args:
        P (int or array-like): identities per batch (``>= 2``).
        K (int or array-like): instances per identity (``>= 1``); broadcast with ``P``.

    Returns:
        float or np.ndarray: the ratio (a float for scalar inputs).

    Reference: Hermans et al. 2017 (PK batches); spec, batch imbalance.

    Example:
        >>> pk_pos_neg_ratio(16, 4)  # 3 positives, 60 negatives per anchor
        0.05
        >>> pk_pos_neg_ratio([2, 4], 2).tolist()
        [0.5, 0.16666666666666666]
    """
    p, k = np.asarray(P, dtype=float), np.asarray(K, dtype=float)
    if np.any(p < 2):
        raise ValueError(f"P must be >= 2 (an anchor needs negatives), got {P}")
    if np.any(k < 1):
        raise ValueError(f"K must be >= 1, got {K}")
    ratio = (k - 1) / ((p - 1) * k)
    return float(ratio) if ratio.ndim == 0 else ratio


class PKSampler(Sampler[list[int]]):
    """Batch sampler yielding lists of ``P * K`` dataset indices: P identities x K instances.

    One epoch: each identity's images are shuffled and cut into groups of K (an identity with
    ``n >= K`` images gives ``n // K`` groups, the ``n % K`` left over change every epoch; one
    with ``n < K`` gives one group holding all its images plus ``K - n`` drawn with
    replacement). Groups are dealt round-robin into batches so that no identity appears twice
    in a batch, every identity appears at least once per epoch, and every batch is full (the
    last few slots are filled with groups of identities not yet in that batch). An identity
    with more groups than there are batches is capped at one group per batch.

    Usage: ``DataLoader(dataset, batch_sampler=PKSampler(labels, P=16, K=4))``. Iterating
    runs the current epoch and then advances it; :meth:`set_epoch` sets it, as with
    ``DistributedSampler``. The same ``seed`` and epoch give the same batches.

    Data-parallel training (``world_size = W > 1``): every rank builds the same global draw,
    one PK epoch of ``W * P`` identities per batch (same seed), and rank ``r`` takes the
    ``r``-th block of ``P`` identities of each global batch. So the ranks of a step hold
    distinct identities, together they equal the one-process draw with ``P' = W * P``, and
    every rank has the same number of batches. ``world_size=1`` is the plain sampler.

    Args:
        labels (sequence of int): identity label of each dataset item, length ``N``.
        P (int): identities per batch on this rank (``>= 2``; ``W * P`` at most the number
            of identities).
        K (int): instances per identity (``>= 1``).
        seed (int): base seed (the same on every rank). Default 0.
        rank (int): this process's rank, ``0 <= rank < world_size``. Default 0.
        world_size (int): number of data-parallel processes (``>= 1``). Default 1.

    Reference: Hermans et al., arXiv:1703.07737 (PK batches).

    Example:
        >>> s = PKSampler([0, 0, 1, 1, 2, 2, 2, 2], P=2, K=2, seed=0)
        >>> len(s), s.batch_size, s.pos_neg_ratio
        (2, 4, 0.5)
        >>> [sorted({[0, 0, 1, 1, 2, 2, 2, 2][i] for i in b}) for b in s]
        [[1, 2], [0, 2]]
        >>> r0, r1 = (PKSampler(list(range(8)) * 2, P=2, K=2, rank=r, world_size=2) for r in (0, 1))
        >>> whole = PKSampler(list(range(8)) * 2, P=4, K=2)
        >>> all(a + b == w for a, b, w in zip(r0.batches(0), r1.batches(0), whole.batches(0)))
        True
    """

    def __init__(
        self,
        labels: Sequence[int],
        P: int,
        K: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        lab = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels).reshape(-1)
        if lab.size == 0:
            raise ValueError("labels is empty: nothing to sample")
        if not np.issubdtype(lab.dtype, np.integer):
            raise ValueError(f"labels must be integers, got dtype {lab.dtype}")
        if int(P) != P or P < 2:
            raise ValueError(f"P must be an integer >= 2, got {P!r}")
        if int(K) != K or K < 1:
            raise ValueError(f"K must be an integer >= 1, got {K!r}")
        if int(world_size) != world_size or world_size < 1:
            raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
        if int(rank) != rank or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an integer in 0..{world_size - 1}, got {rank!r}")
        self.labels = lab
        self.P, self.K, self.seed = int(P), int(K), int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.identities, self._codes, self._counts = np.unique(
            lab, return_inverse=True, return_counts=True
        )
        if len(self.identities) < self.global_P:
            ranks = f" on each of {self.world_size} ranks" if self.world_size > 1 else ""
            raise ValueError(
                f"P={self.P} identities per batch{ranks} needs {self.global_P} identities but "
                f"labels hold only {len(self.identities)}"
            )
        self._groups, self._num_batches = self._plan(self._counts, self.K, self.global_P)
        self.epoch = 0

    @staticmethod
    def _plan(counts: np.ndarray, K: int, P: int) -> tuple[np.ndarray, int]:
        """Groups per identity and batches per epoch (depend on counts only, not on luck)."""
        groups = np.maximum(counts // K, 1)
        num_batches = -(-int(groups.sum()) // P)
        while groups.max() > num_batches:  # round-robin needs <= one group per batch
            groups = np.minimum(groups, num_batches)
            num_batches = -(-int(groups.sum()) // P)
        return groups, num_batches

    @property
    def global_P(self) -> int:
        """Identities per step over all ranks: ``world_size * P``."""
        return self.world_size * self.P

    @property
    def batch_size(self) -> int:
        """``P * K`` indices per batch (on this rank)."""
        return self.P * self.K

    @property
    def num_identities(self) -> int:
        """Distinct identities in ``labels``."""
        return len(self.identities)

    @property
    def pos_neg_ratio(self) -> float:
        """Positives per negative of one anchor: ``(K - 1) / ((P - 1) K)``."""
        return pk_pos_neg_ratio(self.P, self.K)

    def __len__(self) -> int:
        """Batches per epoch."""
        return self._num_batches

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch the next iteration runs (its batches depend on ``(seed, epoch)``)."""
        self.epoch = int(epoch)

    def state_dict(self) -> dict:
        """The sampler's resume state: its epoch and the settings that fix its draws.

        Returns:
            dict: ``epoch``, ``seed``, ``P``, ``K``, ``rank``, ``world_size``.
        """
        keys = ("epoch", "seed", "P", "K", "rank", "world_size")
        return {k: getattr(self, k) for k in keys}

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict`; ValueError when it belongs to other draws.

        Args:
            state (dict): from :meth:`state_dict` (on any rank of the same run).
        """
        for key in ("seed", "P", "K", "world_size"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"sampler state has {key}={state[key]!r} but this sampler has "
                    f"{key}={getattr(self, key)!r}: it comes from another run"
                )
        self.set_epoch(state["epoch"])

    def batches(self, epoch: int) -> list[list[int]]:
        """The batches of one epoch (this rank's share), without changing the sampler's epoch.

        Args:
            epoch (int): the epoch.

        Returns:
            list[list[int]]: ``len(self)`` lists of ``P * K`` dataset indices.
        """
        out = self._global_batches(epoch)
        if self.world_size == 1:
            return out.tolist()
        share = self.P * self.K  # rank r: identities r*P .. (r+1)*P - 1 of each global batch
        return out[:, self.rank * share : (self.rank + 1) * share].tolist()

    def _global_batches(self, epoch: int) -> np.ndarray:
        """``B x (global_P * K)``: one seeded PK draw of ``global_P`` identities per batch."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        n_ids, K, P = len(self.identities), self.K, self.global_P
        groups, B = self._groups, self._num_batches
        # identities in a random order; each identity's images shuffled, contiguous
        id_rank = np.empty(n_ids, dtype=np.int64)
        id_rank[rng.permutation(n_ids)] = np.arange(n_ids)
        order = np.lexsort((rng.random(self.labels.size), id_rank[self._codes]))
        by_rank = np.argsort(id_rank)  # identity codes in their epoch order
        counts = self._counts[by_rank]
        block_start = np.cumsum(counts) - counts
        g = groups[by_rank]
        # K slots per group; slot j of an identity takes its j-th shuffled image, or a random
        # one of its images once j passes its count (identities with fewer than K images)
        slot_id = np.repeat(np.arange(n_ids), g * K)
        j = np.arange(slot_id.size) - np.repeat(np.cumsum(g * K) - g * K, g * K)
        n = counts[slot_id]
        pick = np.where(j < n, j, (rng.random(slot_id.size) * n).astype(np.int64))
        slots = order[block_start[slot_id] + pick].reshape(-1, K)
        group_id = by_rank[slot_id[::K]]  # identity code of each group
        # deal group t to batch t % B: an identity's groups are contiguous and <= B, so
        # they land in different batches
        t = np.arange(len(slots))
        table = np.full((B, P), -1, dtype=np.int64)
        table[t % B, t // B] = t
        group_id = np.concatenate([group_id, np.zeros(B * P - len(slots), dtype=np.int64)])
        extra = []
        for b, p in zip(*np.nonzero(table < 0), strict=True):  # fewer than P top-ups in all
            present = group_id[table[b][table[b] >= 0]]
            code = rng.choice(np.setdiff1d(np.arange(n_ids), present))
            idx = np.flatnonzero(self._codes == code)
            if len(idx) >= K:
                extra.append(rng.choice(idx, size=K, replace=False))
            else:  # all of its images, topped up with replacement (as in the groups)
                extra.append(np.concatenate([idx, rng.choice(idx, size=K - len(idx))]))
            table[b, p] = len(slots) + len(extra) - 1
            group_id[table[b, p]] = code
        if extra:
            slots = np.concatenate([slots, np.stack(extra)])
        return slots[table[rng.permutation(B)]].reshape(B, P * K)

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        self.epoch += 1
        yield from self.batches(epoch)


def memory_pos_neg(
    labels,
    P: int,
    K: int,
    memory_size: int = 0,
    *,
    seed: int = 0,
    epochs: int = 3,
    memory_role: str = "all",
):
    """Mean positives and negatives per anchor of P x K batches with a cross-batch memory.

    Replays the :class:`PKSampler` order (no training) with a FIFO of the last
    ``memory_size`` items of earlier batches, as ``drsl.losses.CrossBatchMemory`` keeps
    them, and counts, for every anchor of every batch once the memory is full, the items of
    its identity (positives) and of other identities (negatives) in batch + memory. A memory
    drawn from ``C`` identities holds about ``memory_size / C`` positives of each anchor, so
    the ratio falls towards ``1 / (C - 1)``, never below, however large the memory.

    Args:
        labels (array-like): ``N`` training identity labels.
        P, K (int): the batch shape. memory_size (int): memory items (0: the batch alone).
        seed (int): the sampler's seed. epochs (int): epochs to replay (the memory must fill).
        memory_role (str): ``"all"`` (positives by label) or ``"negatives"``: memory items of
            the anchor's identity are left out (spec "Negatives-only references"), so the
            ratio is ``(K - 1) : ((P - 1) K + R_a^-)``.

    Returns:
        tuple[float, float]: ``(positives, negatives)`` per anchor (their ratio is the
        imbalance the loss sees).

    Example:
        >>> memory_pos_neg([0] * 4 + [1] * 4 + [2] * 4, P=2, K=2)  # the batch alone
        (1.0, 2.0)
    """
    if memory_role not in ("all", "negatives"):
        raise ValueError(f"memory_role must be 'all' or 'negatives', got {memory_role!r}")
    sampler = PKSampler(labels, P, K, seed=seed)
    lab = sampler.labels
    memory = np.empty(0, dtype=lab.dtype)
    pos, neg, n = 0.0, 0.0, 0
    for epoch in range(epochs):
        for batch in sampler.batches(epoch):
            b = lab[np.asarray(batch)]
            if len(memory) >= memory_size:
                same_b = (b[:, None] == b[None, :]).sum(1) - 1  # less the anchor itself
                same_m = (b[:, None] == memory[None, :]).sum(1)
                other = len(b) - 1 - same_b + len(memory) - same_m
                same = same_b if memory_role == "negatives" else same_b + same_m
                pos, neg, n = pos + same.sum(), neg + other.sum(), n + len(b)
            if memory_size:
                memory = np.concatenate([memory, b])[-memory_size:]
    if n == 0:
        raise ValueError(f"the memory of {memory_size} never filled in {epochs} epochs")
    return float(pos / n), float(neg / n)
