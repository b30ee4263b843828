"""A cross-batch memory (XBM): the embeddings of earlier batches as reference items of the loss.

A ranking loss over one batch sees ``(P - 1) K`` negatives per anchor. A cross-batch memory
keeps the detached embeddings (and labels, and optionally angle embeddings) of the last
``size`` items seen, first in, first out; each step the loss is computed with the batch as
anchors and the memory as ``ref_embeddings`` / ``ref_labels`` (spec "Beyond the batch"),
**then** the batch is enqueued. The order matters: enqueuing first would make each item its
own reference, a positive at distance 0.

Embeddings drift slowly once a model is past its first steps ("slow drift", the XBM paper's
observation), which is why stale, detached features still make useful negatives; a warm-up
(``memory_warmup`` in training) leaves the memory off while they still move fast.

Used the way the training loop uses it, in any loop::

    emb, lab, ang = memory.references()            # None, None, None while empty
    loss = loss_fn(f, y, ref_embeddings=emb, ref_labels=lab)
    loss.backward(); optimizer.step()
    memory.enqueue(f.detach(), y)                  # after the loss, never before

Reference: Wang, Zhang, Huang, Scott, "Cross-Batch Memory for Embedding Learning", CVPR 2020;
pytorch-metric-learning's ``CrossBatchMemory`` wrapper (the same call-then-enqueue order).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["CrossBatchMemory"]

_KEYS = ("embeddings", "labels", "angle_embeddings")


def _check_rows(name: str, x: Tensor) -> None:
    """A batch the memory may store: floating point, every row finite (else one line, and
    nothing is stored: a NaN row would surface only at the next loss, far from its cause)."""
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point, got dtype {x.dtype}")
    bad = ~torch.isfinite(x).all(dim=1)
    if bool(bad.any()):
        first = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{name} hold NaN or inf in {int(bad.sum())} row(s) (the first: row {first}); "
            "nothing was stored"
        )


class CrossBatchMemory:
    """A first-in-first-out queue of the last ``size`` detached embeddings and their labels.

    The rows are kept oldest first. Each :meth:`enqueue` builds new tensors (one copy of at most
    ``size`` rows, about 16 MiB for 8192 x 512 float32) instead of writing in place, so that
    references handed to a loss are never modified under its autograd graph. Tensors live on
    the device (and in the dtype) of the latest :meth:`enqueue`.

    Args:
        size (int): the capacity in rows, ``>= 1``.

    Reference: Wang et al., "Cross-Batch Memory for Embedding Learning", CVPR 2020, Sec. 4.

    Example:
        >>> mem = CrossBatchMemory(3)
        >>> mem.references()
        (None, None, None)
        >>> mem.enqueue(torch.zeros(2, 4), torch.tensor([0, 1]))
        >>> mem.enqueue(torch.ones(2, 4), torch.tensor([2, 3]))
        >>> emb, labels, angle = mem.references()
        >>> len(mem), labels.tolist(), emb[:, 0].tolist(), angle
        (3, [1, 2, 3], [0.0, 1.0, 1.0], None)
    """

    def __init__(self, size: int):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be an integer >= 1, got {size!r}")
        self.size = size
        self._data: dict[str, Tensor | None] = dict.fromkeys(_KEYS)

    def __len__(self) -> int:
        emb = self._data["embeddings"]
        return 0 if emb is None else emb.shape[0]

    def __repr__(self) -> str:
        return f"CrossBatchMemory(size={self.size}, filled={len(self)})"

    def _check(self, embeddings, labels, angle_embeddings) -> None:
        if not isinstance(embeddings, Tensor) or embeddings.dim() != 2:
            raise ValueError(
                f"embeddings must be 2-D (B x D), got {getattr(embeddings, 'shape', embeddings)}"
            )
        if not isinstance(labels, Tensor) or labels.shape != (embeddings.shape[0],):
            raise ValueError(f"labels must be 1-D with one label per row ({embeddings.shape[0]})")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
        if angle_embeddings is not None and angle_embeddings.shape[0] != embeddings.shape[0]:
            raise ValueError("angle_embeddings must have one row per embedding")
        _check_rows("embeddings", embeddings)
        if angle_embeddings is not None:
            _check_rows("angle_embeddings", angle_embeddings)
        old = self._data["embeddings"]
        if old is None:
            return
        if old.shape[1] != embeddings.shape[1]:
            raise ValueError(
                f"embeddings have D = {embeddings.shape[1]}, the memory holds D = {old.shape[1]}"
            )
        if (angle_embeddings is None) != (self._data["angle_embeddings"] is None):
            raise ValueError(
                "pass angle_embeddings to every enqueue or to none (the memory "
                f"{'holds' if self._data['angle_embeddings'] is not None else 'has no'} angles)"
            )

    def enqueue(
        self, embeddings: Tensor, labels: Tensor, angle_embeddings: Tensor | None = None
    ) -> None:
        """Append detached copies of a batch; keep the last ``size`` rows.

        Args:
            embeddings (Tensor): ``B x D`` (detached here; any dtype, any device).
            labels (Tensor): ``B`` integer labels.
            angle_embeddings (Tensor, optional): ``B x D'``, for DRSL's angle targets; pass it
                on every call or on none.
        """
        self._check(embeddings, labels, angle_embeddings)
        new = {"embeddings": embeddings, "labels": labels, "angle_embeddings": angle_embeddings}
        dev = embeddings.device
        for key, value in new.items():
            if value is None:
                continue
            value = value.detach()[-self.size :].to(dev)
            old = self._data[key]
            if old is None:
                self._data[key] = value.clone()
                continue
            keep = max(0, old.shape[0] + value.shape[0] - self.size)
            # one new tensor, oldest rows first (the device and dtype follow the newest batch)
            self._data[key] = torch.cat([old[keep:].to(device=dev, dtype=value.dtype), value])

    def references(self) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """``(embeddings R x D, labels R, angle_embeddings R x D' or None)``, oldest first.

        Each is None while the memory is empty (``angle_embeddings`` also when never given).
        """
        return self._data["embeddings"], self._data["labels"], self._data["angle_embeddings"]

    def clear(self) -> None:
        """Empty the memory."""
        self._data = dict.fromkeys(_KEYS)

    def state_dict(self) -> dict:
        """``{"size": int, "embeddings", "labels", "angle_embeddings": Tensor or None}``.

        The tensors are the stored ones (never modified in place later): saving and loading
        them restores the memory exactly, for resumable checkpoints.
        """
        return {"size": self.size, **self._data}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (tensors kept on the device they come on).

        Raises:
            ValueError: a different ``size``, or missing/inconsistent entries.
        """
        if not isinstance(state, dict) or set(state) != {"size", *_KEYS}:
            raise ValueError(f"not a CrossBatchMemory state: keys {sorted(state)}")
        if state["size"] != self.size:
            raise ValueError(
                f"the state is of a memory of size {state['size']}, this one has size "
                f"{self.size}: build CrossBatchMemory({state['size']})"
            )
        emb, labels = state["embeddings"], state["labels"]
        if (emb is None) != (labels is None) or (
            emb is not None and emb.shape[0] != labels.shape[0]
        ):
            raise ValueError("inconsistent CrossBatchMemory state: embeddings and labels differ")
        self._data = {k: state[k] for k in _KEYS}
