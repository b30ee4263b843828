"""The baselines: batch-hard triplet, Smooth-AP, contrastive, label-smoothed cross-entropy.

Each metric loss takes ``embeddings`` (``B x D``) and ``labels`` (``B``) and, optionally,
reference items ``ref_embeddings`` (``R x D``) and ``ref_labels`` (``R``): the anchors are the
batch rows and each anchor's retrieval set is the other batch rows plus every reference (spec
"Beyond the batch"; ``R = 0`` gives the batch-only value exactly). Each is split at its
``B x (B + R)`` pairwise matrix (a ``*_form`` function) so that
:func:`drsl.losses.gradient_mass` can read the gradient on that matrix.

Reference: the papers cited per loss; spec ``docs/drsl-loss-spec.md``.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from drsl.distances import pairwise_cosine, pairwise_euclidean

from ._common import (
    MatrixForm,
    Pairs,
    attached_zero,
    check_batch,
    check_finite,
    check_refs,
    compute_dtype,
    full_precision,
    item_labels,
    negatives_only,
    pair_masks,
    positive_items,
    with_refs,
)
from ._kernel import StepSums

__all__ = [
    "batch_hard_triplet_loss",
    "smooth_ap_loss",
    "contrastive_loss",
    "cross_entropy_label_smooth",
    "TripletLoss",
    "SmoothAPLoss",
    "ContrastiveLoss",
    "CrossEntropyLabelSmooth",
]


def _setup(embeddings, labels, ref_embeddings, ref_labels):
    """(x, z or None in the compute dtype, labels, ref labels or None, item labels)."""
    labels = check_batch(embeddings, labels)
    ref, ref_labels = check_refs(embeddings, ref_embeddings, ref_labels)
    dtype = compute_dtype(embeddings.dtype)
    x = embeddings.to(dtype)
    z = None if ref is None else ref.to(dtype)
    return x, z, labels, ref_labels, item_labels(labels, ref_labels)


def role_items(labels: Tensor, ref_labels, items: Tensor, ref_role) -> Tensor:
    """The labels defining positives under ``ref_role`` (``items`` itself for ``"all"``)."""
    return positive_items(items, labels.shape[0], negatives_only(ref_role, ref_labels))


def _euclidean(x: Tensor, z: Tensor | None, embeddings: Tensor) -> Tensor:
    d = with_refs(pairwise_euclidean(x), lambda: pairwise_euclidean(x, z), z is not None)
    check_finite(d, embeddings=embeddings, ref_embeddings=z)
    return d


# --------------------------------------------------------------------------------------------
# batch-hard triplet
# --------------------------------------------------------------------------------------------


def _triplet_core(
    dist: Tensor, labels: Tensor, items: Tensor, margin: float | None, pos_items=None
) -> Tensor:
    if dist.shape[0] == 0:
        return attached_zero(dist)
    pos_mask, neg_mask = pair_masks(labels, items, pos_items=pos_items)
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=dist.device)
    d_ap = torch.where(pos_mask, dist, -inf).amax(dim=1)  # hardest positive
    d_an = torch.where(neg_mask, dist, inf).amin(dim=1)  # hardest negative
    ok = pos_mask.any(dim=1) & neg_mask.any(dim=1)
    gap = torch.where(ok, d_ap - d_an, dist.new_zeros(()))
    per = F.softplus(gap) if margin is None else F.relu(gap + margin)
    return (per * ok).sum() / ok.sum().clamp_min(1)


def _check_margin(margin: float | None) -> None:
    if margin is not None and not margin >= 0:
        raise ValueError(f"margin must be >= 0 or None, got {margin!r}")


def triplet_form(
    embeddings, labels, *, ref_embeddings=None, ref_labels=None, margin=0.3, ref_role="all"
) -> MatrixForm:
    """:func:`batch_hard_triplet_loss` split at its distance matrix (same arguments)."""
    _check_margin(margin)
    x, z, labels, ref_labels, items = _setup(embeddings, labels, ref_embeddings, ref_labels)
    pos_items = role_items(labels, ref_labels, items, ref_role)
    dist = _euclidean(x, z, embeddings)
    core = functools.partial(
        _triplet_core, labels=labels, items=items, margin=margin, pos_items=pos_items
    )
    return MatrixForm(dist, core, labels, items, pos_items)


@full_precision
def batch_hard_triplet_loss(
    embeddings: Tensor,
    labels: Tensor,
    *,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    margin: float | None = 0.3,
    ref_role: str = "all",
) -> Tensor:
    """Batch-hard triplet loss: per anchor, its farthest positive against its nearest negative.

    ``mean_a max(0, max_{p in P_a} d_ap - min_{n in N_a} d_an + margin)`` over the anchors with
    at least one positive and one negative; ``margin=None`` uses the soft margin
    ``softplus(d_ap - d_an)``. Distances are Euclidean on the embeddings as given; positives
    and negatives are searched among the other batch rows and the references.

    Args:
        embeddings (Tensor): ``B x D`` embeddings.
        labels (Tensor): ``B`` integer labels.
        ref_embeddings (Tensor, optional): ``R x D`` reference items (never anchors).
        ref_labels (Tensor, optional): ``R`` integer labels of the references.
        margin (float or None): hinge margin ``>= 0`` (default 0.3, the strong baseline's) or
            ``None`` for the soft margin.
        ref_role (str): ``"all"`` (default) or ``"negatives"`` (a reference sharing the
            anchor's label is left out of its retrieval set; spec "Negatives-only references").

    Returns:
        Tensor: 0-d loss, float32 (float64 for float64 input; see :mod:`drsl.losses`, precision),
        0, attached, without a valid anchor.

    Reference: Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person
    Re-Identification", arXiv:1703.07737, 2017 (Eq. 5, soft margin Sec. 3.3); Luo et al. 2019.

    Example:
        >>> f = torch.tensor([[0.0], [1.0], [1.5], [3.0]])
        >>> batch_hard_triplet_loss(f, torch.tensor([0, 0, 1, 1]))  # (0 + 0.8 + 1.3 + 0) / 4
        tensor(0.5250)
    """
    form = triplet_form(
        embeddings,
        labels,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        margin=margin,
        ref_role=ref_role,
    )
    return form.loss()


# --------------------------------------------------------------------------------------------
# Smooth-AP
# --------------------------------------------------------------------------------------------


def _smooth_ap_core(sim: Tensor, pairs: Pairs, temperature: float) -> Tensor:
    d = -sim  # distance-like: G(s_j - s_i) = G(d_i - d_j)
    d_pos = d.gather(1, pairs.pos_index)
    weights = torch.stack([pairs.pos_mask, pairs.neg_mask]).to(d.dtype)
    # sums over j != i of G(s_j - s_i), positives and negatives: B x P x 2, in bounded blocks
    sums = StepSums.apply(
        d, d_pos, pairs.pos_index, weights, "sigmoid", temperature, True, pairs.num_pos
    )
    rank_pos = 1.0 + sums[..., 0]  # R(i, P)
    rank_all = rank_pos + sums[..., 1]  # R(i, Omega)
    ratio = torch.where(pairs.pos_valid, rank_pos / rank_all, d.new_zeros(()))
    ap = ratio.sum(dim=1) / pairs.num_pos.clamp_min(1)
    return ((1.0 - ap) * (pairs.num_pos > 0)).sum() / pairs.num_anchors.clamp_min(1)


def smooth_ap_form(
    embeddings, labels, *, ref_embeddings=None, ref_labels=None, temperature=0.01, ref_role="all"
) -> MatrixForm:
    """:func:`smooth_ap_loss` split at its cosine-similarity matrix (same arguments)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    x, z, labels, ref_labels, items = _setup(embeddings, labels, ref_embeddings, ref_labels)
    pairs = Pairs(labels, ref_labels, ref_role)
    sim = with_refs(pairwise_cosine(x), lambda: pairwise_cosine(x, z), z is not None)
    check_finite(sim, "the cosine similarities", embeddings=embeddings, ref_embeddings=z)
    core = functools.partial(_smooth_ap_core, pairs=pairs, temperature=temperature)
    return MatrixForm(sim, core, labels, items, pairs.pos_items)


@full_precision
def smooth_ap_loss(
    embeddings: Tensor,
    labels: Tensor,
    *,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    temperature: float = 0.01,
    ref_role: str = "all",
) -> Tensor:
    """Smooth-AP: 1 - the mean over anchors of a sigmoid-smoothed average precision.

    For anchor ``a`` (the query, excluded from its own retrieval set, which holds the other
    batch rows and the references), cosine similarities ``s_j = cos(f_a, f_j)`` and
    ``G(x) = sigmoid(x / temperature)``::

        AP_a = 1/|P_a| sum_{i in P_a} (1 + sum_{j in P_a, j != i} G(s_j - s_i))
                                      / (1 + sum_{j != a, i} G(s_j - s_i))

    Any number of identities and instances per identity: the positives are gathered per anchor
    (``B x P``) and the sum over all items runs in ``B x P x N`` blocks that are recomputed in
    the backward pass, so memory stays ``O(B N)`` plus one bounded block (the reference code
    builds ``B x B x B`` and assumes equal class sizes).

    Args:
        embeddings (Tensor): ``B x D`` embeddings (normalised inside, through the cosine).
        labels (Tensor): ``B`` integer labels.
        ref_embeddings (Tensor, optional): ``R x D`` reference items (never anchors).
        ref_labels (Tensor, optional): ``R`` integer labels of the references.
        temperature (float): sigmoid temperature ``tau > 0``. Default 0.01 (the paper's).
        ref_role (str): ``"all"`` (default) or ``"negatives"`` (spec "Negatives-only
            references").

    Returns:
        Tensor: 0-d loss in ``[0, 1]``, float32 (float64 for float64 input), 0, attached,
        without positives.

    Reference: Brown, Xie, Kalogeiton, Zisserman, "Smooth-AP: Smoothing the Path Towards
    Large-Scale Image Retrieval", ECCV 2020, Eq. 6-7.

    Example:
        >>> f = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> smooth_ap_loss(f, torch.tensor([0, 0, 1, 1]))
        tensor(0.)
    """
    form = smooth_ap_form(
        embeddings,
        labels,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        temperature=temperature,
        ref_role=ref_role,
    )
    return form.loss()


# --------------------------------------------------------------------------------------------
# contrastive
# --------------------------------------------------------------------------------------------


def _contrastive_core(
    dist: Tensor, labels: Tensor, items: Tensor, margin: float, pos_items=None
) -> Tensor:
    pos_mask, neg_mask = pair_masks(labels, items, pos_items=pos_items)
    zero = dist.new_zeros(())
    per = torch.where(pos_mask, dist.square(), zero)
    per = per + torch.where(neg_mask, F.relu(margin - dist).square(), zero)
    b, n = dist.shape
    pairs = b * (n - 1)
    if pos_items is not None and pos_items is not items:  # negatives-only references left out
        pairs = int(pos_mask.sum()) + int(neg_mask.sum())
    return 0.5 * per.sum() / max(pairs, 1)


def contrastive_form(
    embeddings, labels, *, ref_embeddings=None, ref_labels=None, margin=1.0, ref_role="all"
) -> MatrixForm:
    """:func:`contrastive_loss` split at its distance matrix (same arguments)."""
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin!r}")
    x, z, labels, ref_labels, items = _setup(embeddings, labels, ref_embeddings, ref_labels)
    pos_items = role_items(labels, ref_labels, items, ref_role)
    dist = _euclidean(x, z, embeddings)
    core = functools.partial(
        _contrastive_core, labels=labels, items=items, margin=margin, pos_items=pos_items
    )
    return MatrixForm(dist, core, labels, items, pos_items)


@full_precision
def contrastive_loss(
    embeddings: Tensor,
    labels: Tensor,
    *,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    margin: float = 1.0,
    ref_role: str = "all",
) -> Tensor:
    """Contrastive pair loss over every ordered pair ``(a, j)``: anchor ``a``, item ``j != a``.

    ``1/2 d^2`` for a positive pair, ``1/2 max(0, margin - d)^2`` for a negative pair, averaged
    over all ``B (B + R - 1)`` pairs (``B (B - 1)`` without references; fewer with
    ``ref_role="negatives"``, whose left-out pairs do not count): summed over pairs, the
    negatives dominate as the number of identities in the batch grows (the imbalance DRSL
    addresses).

    Args:
        embeddings (Tensor): ``B x D`` embeddings.
        labels (Tensor): ``B`` integer labels.
        ref_embeddings (Tensor, optional): ``R x D`` reference items (never anchors).
        ref_labels (Tensor, optional): ``R`` integer labels of the references.
        margin (float): ``> 0``, the distance beyond which negatives stop pushing. Default 1.0
            (pytorch-metric-learning's ``neg_margin`` default).
        ref_role (str): ``"all"`` (default) or ``"negatives"`` (spec "Negatives-only
            references").

    Returns:
        Tensor: 0-d loss, float32 (float64 for float64 input), 0, attached, for ``B < 2``
        without references.

    Reference: Hadsell, Chopra, LeCun, "Dimensionality Reduction by Learning an Invariant
    Mapping", CVPR 2006, Eq. 4.

    Example:
        >>> f = torch.tensor([[0.0], [1.0], [0.5]])
        >>> contrastive_loss(f, torch.tensor([0, 0, 1]))
        tensor(0.2500)
    """
    form = contrastive_form(
        embeddings,
        labels,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        margin=margin,
        ref_role=ref_role,
    )
    return form.loss()


# --------------------------------------------------------------------------------------------
# cross-entropy with label smoothing
# --------------------------------------------------------------------------------------------


@full_precision
def cross_entropy_label_smooth(
    logits: Tensor,
    labels: Tensor,
    *,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    epsilon: float = 0.1,
    ref_role: str = "all",
) -> Tensor:
    """Cross-entropy with label smoothing, for an identity-classification head.

    Targets ``q = (1 - epsilon) onehot(y) + epsilon / C``; loss ``mean_b -sum_c q_c log p_c``.
    Each row's loss depends on its own logits only, so reference items change nothing: they
    are accepted (and checked) so that every loss of the package has one signature.

    Args:
        logits (Tensor): ``B x C`` class scores.
        labels (Tensor): ``B`` integer class indices in ``[0, C)``.
        ref_embeddings (Tensor, optional): ``R x C`` ignored (see above).
        ref_labels (Tensor, optional): ``R`` ignored.
        epsilon (float): smoothing in ``[0, 1]``. Default 0.1.
        ref_role (str): checked and ignored, like the references.

    Returns:
        Tensor: 0-d loss, float32 (float64 for float64 logits), 0, attached, for ``B = 0``.

    Reference: Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016, Sec. 7;
    Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-ID", CVPR-W 2019.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
        >>> round(cross_entropy_label_smooth(logits, torch.tensor([0, 1])).item(), 4)
        0.2269
    """
    labels = check_batch(logits, labels, "logits")
    _, ref_labels = check_refs(logits, ref_embeddings, ref_labels)
    negatives_only(ref_role, ref_labels)
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
    b, c = logits.shape
    if b and (int(labels.min()) < 0 or int(labels.max()) >= c):
        raise ValueError(
            f"labels must lie in [0, {c}), got min {int(labels.min())}, max {int(labels.max())}"
        )
    logp = F.log_softmax(logits.to(compute_dtype(logits.dtype)), dim=1)
    if b == 0:
        return attached_zero(logp)
    check_finite(logp, "the log-probabilities", logits=logits)
    nll = -logp.gather(1, labels[:, None].long()).squeeze(1)
    uniform = -logp.mean(dim=1)
    return ((1.0 - epsilon) * nll + epsilon * uniform).mean()


# --------------------------------------------------------------------------------------------
# module forms
# --------------------------------------------------------------------------------------------


class _RefLoss(nn.Module):
    """A module calling ``self.function(embeddings, labels, ref_..., **self.keywords())``."""

    function = staticmethod(batch_hard_triplet_loss)

    def keywords(self) -> dict:
        raise NotImplementedError

    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        *,
        ref_embeddings: Tensor | None = None,
        ref_labels: Tensor | None = None,
        ref_role: str = "all",
    ) -> Tensor:
        """Args: embeddings (B x D), labels (B); ref_embeddings (R x D), ref_labels (R),
        optional; ref_role (``"all"`` or ``"negatives"``). Returns: Tensor, the 0-d loss."""
        return self.function(
            embeddings,
            labels,
            ref_embeddings=ref_embeddings,
            ref_labels=ref_labels,
            ref_role=ref_role,
            **self.keywords(),
        )

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.keywords().items())


class TripletLoss(_RefLoss):
    """Module form of :func:`batch_hard_triplet_loss`.

    Args:
        margin (float or None): 0.3 by default; ``None`` = soft margin.

    Reference: Hermans et al. 2017.

    Example:
        >>> TripletLoss(margin=None)(torch.zeros(2, 3), torch.tensor([0, 1]))
        tensor(0.)
    """

    function = staticmethod(batch_hard_triplet_loss)

    def __init__(self, margin: float | None = 0.3):
        super().__init__()
        _check_margin(margin)
        self.margin = margin

    def keywords(self) -> dict:
        return {"margin": self.margin}


class SmoothAPLoss(_RefLoss):
    """Module form of :func:`smooth_ap_loss`.

    Args:
        temperature (float): sigmoid temperature. Default 0.01.

    Reference: Brown et al. 2020.

    Example:
        >>> SmoothAPLoss()(torch.eye(2), torch.tensor([0, 1]))
        tensor(0.)
    """

    function = staticmethod(smooth_ap_loss)

    def __init__(self, temperature: float = 0.01):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.temperature = temperature

    def keywords(self) -> dict:
        return {"temperature": self.temperature}


class ContrastiveLoss(_RefLoss):
    """Module form of :func:`contrastive_loss`.

    Args:
        margin (float): negative margin. Default 1.0.

    Reference: Hadsell et al. 2006.

    Example:
        >>> ContrastiveLoss()(torch.tensor([[0.0], [2.0]]), torch.tensor([0, 1]))
        tensor(0.)
    """

    function = staticmethod(contrastive_loss)

    def __init__(self, margin: float = 1.0):
        super().__init__()
        if not margin > 0:
            raise ValueError(f"margin must be > 0, got {margin!r}")
        self.margin = margin

    def keywords(self) -> dict:
        return {"margin": self.margin}


class CrossEntropyLabelSmooth(_RefLoss):
    """Module form of :func:`cross_entropy_label_smooth`.

    Args:
        epsilon (float): label smoothing. Default 0.1.

    Reference: Szegedy et al. 2016; Luo et al. 2019.

    Example:
        >>> CrossEntropyLabelSmooth(epsilon=0.0)(torch.zeros(1, 4), torch.tensor([2]))
        tensor(1.3863)
    """

    function = staticmethod(cross_entropy_label_smooth)

    def __init__(self, epsilon: float = 0.1):
        super().__init__()
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
        self.epsilon = epsilon

    def keywords(self) -> dict:
        return {"epsilon": self.epsilon}
