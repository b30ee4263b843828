"""DRSL as a pytorch-metric-learning loss: :class:`DRSLoss` (a ``BaseMetricLossFunction``).

With ``pytorch-metric-learning`` (PML) installed (``pip install drsl[pml]``)::

    from pytorch_metric_learning import losses
    from drsl.integrations.pml import DRSLoss

    loss_fn = DRSLoss()                                    # PML's calling convention
    loss = loss_fn(embeddings, labels)                     # == drsl.losses.drsl_loss
    memory = losses.CrossBatchMemory(DRSLoss(), embedding_size=512, memory_size=4096)
    loss = memory(embeddings, labels)                      # PML's cross-batch memory

**What each call means.** Without ``ref_emb`` and ``indices_tuple`` the value is exactly
:func:`drsl.losses.drsl_loss` of the batch. Otherwise PML's convention holds: every row of
``embeddings`` is an anchor that retrieves among the rows of ``ref_emb`` only, its positives and
negatives being the pairs of ``indices_tuple`` (pairs ``(a1, p, a2, n)`` or triplets
``(a, p, n)``, e.g. from a miner; default: every ``ref_emb`` row, by label). So
``loss_fn(x, y, indices_tuple=all pairs but (a, a), ref_emb=cat([x, r]), ...)`` equals
``drsl_loss(x, y, ref_embeddings=r, ref_labels=...)``, which is what PML's
``CrossBatchMemory`` does: it enqueues the batch first, then ranks against the whole memory
without each anchor's own copy. A PML memory of ``memory_size = M + B`` therefore holds the
same references as drsl's :class:`drsl.losses.CrossBatchMemory` of ``M`` (which enqueues after
the loss); the gradient differs in one way: PML's memory holds detached copies of the batch, so
the gradient reaches the batch rows as anchors only (drsl's own path also pushes them as items).

**Distances.** DRSL ranks by the Euclidean distance of the embeddings *as given* (not
L2-normalised; ``delta`` is in those units, see :func:`drsl.losses.drsl_loss`). The default
``distance`` is therefore ``LpDistance(normalize_embeddings=False, p=2)``, and any other is
refused. PML's reducers see one already-reduced value; embedding regularizers work as usual.

**Registration.** PML's ``CrossBatchMemory`` accepts only the losses on its
``supported_losses()`` list. Importing this module adds ``"DRSLoss"`` to that list (once, by
wrapping the static method; nothing else of PML is changed), which is what makes
``losses.CrossBatchMemory(DRSLoss(), ...)`` work.

Reference: Musgrave et al., "PyTorch Metric Learning", arXiv:2008.09164 (the library and its
``compute_loss`` contract); Wang et al., "Cross-Batch Memory for Embedding Learning", CVPR
2020; spec ``docs/drsl-loss-spec.md`` (the loss).
"""

from __future__ import annotations

import torch
from torch import Tensor

try:
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import BaseMetricLossFunction, CrossBatchMemory
    from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
except ImportError as err:  # pragma: no cover - the course environment has PML
    raise ImportError(
        "drsl.integrations.pml needs pytorch-metric-learning: pip install 'drsl[pml]' "
        "(or pip install pytorch-metric-learning)"
    ) from err

from drsl.distances import pairwise_euclidean
from drsl.losses import drsl_loss
from drsl.losses._drsl_core import drsl_core, positive_targets
from drsl.losses.drsl_options import DEFAULT_DELTA, check_options

__all__ = ["DRSLoss", "register_with_cross_batch_memory"]


class _ListedPairs:
    """Who is whose positive and negative, from explicit ``B x N`` masks (the interface of
    ``drsl.losses._common.Pairs`` that the DRSL core reads: positives as a padded ``B x P``
    index, negatives as weights)."""

    def __init__(self, pos: Tensor, neg: Tensor):
        self.num_pos = pos.sum(dim=1)
        p = int(self.num_pos.max()) if pos.shape[0] else 0
        # the positives' columns in increasing order, then padding (masked by pos_valid)
        order = torch.sort((~pos).to(torch.uint8), dim=1, stable=True).indices[:, :p]
        self.pos_valid = torch.arange(p, device=pos.device) < self.num_pos[:, None]
        self.pos_index = torch.where(self.pos_valid, order, 0)
        self.num_anchors = (self.num_pos > 0).sum()
        self._neg = neg

    def neg_weight(self, dtype: torch.dtype) -> Tensor:
        return self._neg.to(dtype)[None]


def _pair_masks(indices_tuple, labels, ref_labels, b: int, r: int):
    """``B x R`` masks of the positive and negative pairs of ``indices_tuple``."""
    a1, p, a2, n = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
    pos = torch.zeros(b, r, dtype=torch.bool, device=labels.device)
    neg = torch.zeros_like(pos)
    pos[a1, p] = True
    neg[a2, n] = True
    if bool((pos & neg).any()):
        raise ValueError("indices_tuple lists a pair both as positive and as negative")
    return pos, neg


class DRSLoss(BaseMetricLossFunction):
    """DRSL (:func:`drsl.losses.drsl_loss`) as a pytorch-metric-learning loss.

    Args:
        delta (float): step width, in units of the Euclidean distance. Default 0.3.
        smoothing (str): ``"linear"`` (default), ``"sigmoid"`` or ``"hard"``.
        sort_weight (float): ``lambda >= 0``, weight of the in-rank sort. Default 1.
        gradient (str): ``"smooth"`` (default) or ``"identity"``.
        **kwargs: PML's ``reducer``, ``embedding_regularizer``, ... (``distance`` must be
            un-normalised ``LpDistance(p=2)``, the default).

    Call: ``loss_fn(embeddings, labels, indices_tuple=None, ref_emb=None, ref_labels=None)``
    with ``embeddings`` ``B x D``, ``labels`` ``B``, ``ref_emb`` ``R x D``, ``ref_labels`` ``R``
    (see the module for what each combination means). Returns the 0-d loss.

    Reference: spec ``docs/drsl-loss-spec.md``; PML ``BaseMetricLossFunction``.

    Example:
        >>> f = torch.tensor([[0.0, 0.0], [0.1, 0.0], [2.0, 0.0], [2.0, 0.2]])
        >>> round(DRSLoss(smoothing="hard")(f, torch.tensor([0, 1, 0, 1])).item(), 4)
        0.5833
    """

    def __init__(
        self,
        delta: float = DEFAULT_DELTA,
        smoothing: str = "linear",
        sort_weight: float = 1.0,
        gradient: str = "smooth",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_options(delta, smoothing, sort_weight, gradient)
        d = self.distance
        if not (isinstance(d, LpDistance) and d.p == 2 and not d.normalize_embeddings):
            raise ValueError(
                "DRSLoss ranks by the Euclidean distance of the embeddings as given: pass no "
                "distance (or LpDistance(normalize_embeddings=False, p=2))"
            )
        self.delta, self.smoothing = delta, smoothing
        self.sort_weight, self.gradient = sort_weight, gradient
        self.add_to_recordable_attributes(list_of_names=["delta", "sort_weight"], is_stat=False)

    def get_default_distance(self):
        return LpDistance(normalize_embeddings=False, p=2)

    def _options(self) -> dict:
        return {
            "delta": self.delta,
            "smoothing": self.smoothing,
            "sort_weight": self.sort_weight,
            "gradient": self.gradient,
        }

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if labels is None:
            raise ValueError("DRSLoss needs labels (identities) for every embedding")
        if ref_emb is embeddings and indices_tuple is None:  # the batch alone
            loss = drsl_loss(embeddings, labels, **self._options())
        else:
            loss = self._against_references(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        return {"loss": {"losses": loss, "indices": None, "reduction_type": "already_reduced"}}

    def _against_references(self, x, labels, indices_tuple, ref, ref_labels) -> Tensor:
        """Each anchor retrieves among the ``ref`` rows that ``indices_tuple`` pairs it with."""
        if ref_labels is None:
            raise ValueError("ref_emb needs ref_labels")
        b, r = x.shape[0], ref.shape[0]
        pos, neg = _pair_masks(indices_tuple, labels, ref_labels, b, r)
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        xd, rd = x.to(dtype), ref.to(device=x.device, dtype=dtype)
        # the items are [batch; references] as in drsl's own layout; the batch columns are in
        # neither set (weight 0, never a positive), so only the references count
        d = torch.cat([pairwise_euclidean(xd), pairwise_euclidean(xd, rd)], dim=1)
        none = torch.zeros(b, b, dtype=torch.bool, device=x.device)
        pairs = _ListedPairs(torch.cat([none, pos], 1), torch.cat([none, neg], 1))
        if self.sort_weight != 0:
            t_pos = positive_targets(xd.detach(), rd.detach(), pairs)
        else:
            t_pos = xd.new_ones(pairs.pos_index.shape)
        o = self._options()
        return drsl_core(
            d, t_pos, pairs, o["delta"], o["smoothing"], o["sort_weight"], o["gradient"]
        )


def register_with_cross_batch_memory() -> None:
    """Add ``"DRSLoss"`` to PML's ``CrossBatchMemory.supported_losses()`` (idempotent; done
    when this module is imported)."""
    listed = CrossBatchMemory.supported_losses
    if getattr(listed, "_drsl_registered", False):
        return

    def supported_losses():
        return [*listed(), "DRSLoss"]

    supported_losses._drsl_registered = True
    CrossBatchMemory.supported_losses = staticmethod(supported_losses)


register_with_cross_batch_memory()
