"""Pair-weighting baselines on cosine similarity: multi-similarity and circle loss.

Both weigh every (anchor, item) pair by how far its similarity is from where it should be, so
hard negatives dominate however many easy ones there are: the imbalance-aware baselines a
reviewer expects next to DRSL. Like every loss of the package they take reference items
(``ref_embeddings``, ``ref_labels``: a cross-batch memory, or the other processes' batches) and
``ref_role``, and are split at their ``B x (B + R)`` similarity matrix (``*_form``) for
:func:`drsl.losses.gradient_mass`.

Each is the mean of a per-anchor loss over the anchors that have a positive and a negative in
their retrieval set (the normaliser ``"anchors_pos_neg"``); in P x K batches that is every
anchor, the batch mean of the papers' code.

Reference: Wang, Han, Huang, Dong, Scott, "Multi-Similarity Loss with General Pair Weighting
for Deep Metric Learning", CVPR 2019; Sun et al., "Circle Loss: A Unified Perspective of Pair
Similarity Optimization", CVPR 2020.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from drsl.distances import pairwise_cosine

from ._common import MatrixForm, attached_zero, check_finite, full_precision, pair_masks, with_refs
from .baselines import _RefLoss, _setup, role_items

__all__ = [
    "multi_similarity_loss",
    "circle_loss",
    "MultiSimilarityLoss",
    "CircleLoss",
]


def _log1p_sum_exp(x: Tensor, mask: Tensor) -> Tensor:
    """Per row ``log(1 + sum_{j: mask} exp(x_j))`` (0 for an empty row), stable, NaN-free."""
    has = mask.any(dim=1)
    use = mask | ~has[:, None]  # an empty row uses finite entries; its result is dropped
    lse = torch.logsumexp(torch.where(use, x, -torch.inf), dim=1)
    # log(1 + e^lse) exactly: F.softplus returns its input above 20 (an error of e^-20)
    zero = x.new_zeros(())
    return torch.where(has, torch.logaddexp(lse, zero), zero)


def _cosine_form(embeddings, labels, ref_embeddings, ref_labels, ref_role):
    """(similarity B x N, labels, items, pos_items)."""
    x, z, labels, ref_labels, items = _setup(embeddings, labels, ref_embeddings, ref_labels)
    pos_items = role_items(labels, ref_labels, items, ref_role)
    sim = with_refs(pairwise_cosine(x), lambda: pairwise_cosine(x, z), z is not None)
    check_finite(sim, "the cosine similarities", embeddings=embeddings, ref_embeddings=z)
    return sim, labels, items, pos_items


def _mean_over_anchors(per: Tensor, ok: Tensor, sim: Tensor) -> Tensor:
    return torch.where(ok, per, sim.new_zeros(())).sum() / ok.sum().clamp_min(1)


# --------------------------------------------------------------------------------------------
# multi-similarity
# --------------------------------------------------------------------------------------------


def _ms_core(sim, labels, items, pos_items, alpha, beta, base, epsilon) -> Tensor:
    if sim.shape[0] == 0:
        return attached_zero(sim)
    pos, neg = pair_masks(labels, items, pos_items=pos_items)
    ok = pos.any(dim=1) & neg.any(dim=1)
    with torch.no_grad():  # pair mining (Eq. 9-10): compare with the hardest of the other kind
        hardest_pos = torch.where(pos, sim, torch.inf).amin(dim=1, keepdim=True)
        hardest_neg = torch.where(neg, sim, -torch.inf).amax(dim=1, keepdim=True)
        neg_kept = neg & (sim + epsilon > hardest_pos)
        pos_kept = pos & (sim - epsilon < hardest_neg)
    pos_term = _log1p_sum_exp(-alpha * (sim - base), pos_kept) / alpha
    neg_term = _log1p_sum_exp(beta * (sim - base), neg_kept) / beta
    return _mean_over_anchors(pos_term + neg_term, ok, sim)


def multi_similarity_form(
    embeddings,
    labels,
    *,
    ref_embeddings=None,
    ref_labels=None,
    alpha=2.0,
    beta=50.0,
    base=0.5,
    epsilon=0.1,
    ref_role="all",
) -> MatrixForm:
    """:func:`multi_similarity_loss` split at its cosine-similarity matrix (same arguments)."""
    for name, v in (("alpha", alpha), ("beta", beta)):
        if not v > 0:
            raise ValueError(f"{name} must be > 0, got {v!r}")
    if not epsilon >= 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon!r}")
    sim, labels, items, pos_items = _cosine_form(
        embeddings, labels, ref_embeddings, ref_labels, ref_role
    )
    core = functools.partial(
        _ms_core,
        labels=labels,
        items=items,
        pos_items=pos_items,
        alpha=alpha,
        beta=beta,
        base=base,
        epsilon=epsilon,
    )
    return MatrixForm(sim, core, labels, items, pos_items)


@full_precision
def multi_similarity_loss(
    embeddings: Tensor,
    labels: Tensor,
    *,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    alpha: float = 2.0,
    beta: float = 50.0,
    base: float = 0.5,
    epsilon: float = 0.1,
    ref_role: str = "all",
) -> Tensor:
    """Multi-similarity loss: soft weights on the mined positive and negative pairs.

    For anchor ``a`` with cosine similarities ``S_aj`` to its retrieval set (the other batch
    rows and the references), positives ``P_a`` and negatives ``N_a``, the pairs are mined
    against the hardest pair of the other kind (Eq. 9-10): a negative is kept when
    ``S_an + epsilon > min_{p in P_a} S_ap``, a positive when
    ``S_ap - epsilon < max_{n in N_a} S_an``; then (Eq. 11)::

        L_a = 1/alpha log(1 + sum_{kept p} exp(-alpha (S_ap - base)))
            + 1/beta  log(1 + sum_{kept n} exp( beta (S_an - base)))

    and the loss is the mean of ``L_a`` over the anchors with a positive and a negative.

    Args:
        embeddings (Tensor): ``B x D`` embeddings (normalised inside, through the cosine).
        labels (Tensor): ``B`` integer labels.
        ref_embeddings (Tensor, optional): ``R x D`` reference items (never anchors).
        ref_labels (Tensor, optional): ``R`` integer labels of the references.
        alpha (float): positive scale, default 2 (the paper's, Sec. 5.1).
        beta (float): negative scale, default 50 (the paper's).
        base (float): the similarity margin ``lambda``, default 0.5: the authors' released
            code (the paper's text says 1, which with cosine similarities at most 1 would
            leave every negative below the threshold).
        epsilon (float): mining margin ``>= 0``, default 0.1 (the paper's).
        ref_role (str): ``"all"`` (default) or ``"negatives"`` (spec "Negatives-only
            references"); also an ``R`` bool mask of the negatives-only references.

    Returns:
        Tensor: 0-d loss, float32 (float64 for float64 input), 0, attached, without an anchor
        that has both a positive and a negative.

    Reference: Wang et al., "Multi-Similarity Loss with General Pair Weighting for Deep
    Metric Learning", CVPR 2019, Eq. 9-11; code github.com/MalongTech/research-ms-loss.

    Example:
        >>> f = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
        >>> round(multi_similarity_loss(f, torch.tensor([0, 0, 1, 1])).item(), 4)
        0.0
    """
    form = multi_similarity_form(
        embeddings,
        labels,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        alpha=alpha,
        beta=beta,
        base=base,
        epsilon=epsilon,
        ref_role=ref_role,
    )
    return form.loss()


# --------------------------------------------------------------------------------------------
# circle
# --------------------------------------------------------------------------------------------


def _circle_core(sim, labels, items, pos_items, margin, gamma) -> Tensor:
    if sim.shape[0] == 0:
        return attached_zero(sim)
    pos, neg = pair_masks(labels, items, pos_items=pos_items)
    ok = pos.any(dim=1) & neg.any(dim=1)
    alpha_p = (1.0 + margin - sim.detach()).clamp_min(0.0)  # weights are constants (Sec. 3.1)
    alpha_n = (sim.detach() + margin).clamp_min(0.0)
    logit_p = -gamma * alpha_p * (sim - (1.0 - margin))
    logit_n = gamma * alpha_n * (sim - margin)
    inf = torch.inf
    has = ok[:, None]
    lse_p = torch.logsumexp(torch.where(pos | ~has, logit_p, -inf), dim=1)
    lse_n = torch.logsumexp(torch.where(neg | ~has, logit_n, -inf), dim=1)
    per = torch.logaddexp(lse_p + lse_n, sim.new_zeros(()))  # log(1 + e^z), exact for large z
    return _mean_over_anchors(per, ok, sim)


def circle_form(
    embeddings,
    labels,
    *,
    ref_embeddings=None,
    ref_labels=None,
    margin=0.25,
    gamma=256.0,
    ref_role="all",
) -> MatrixForm:
    """:func:`circle_loss` split at its cosine-similarity matrix (same arguments)."""
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma!r}")
    sim, labels, items, pos_items = _cosine_form(
        embeddings, labels, ref_embeddings, ref_labels, ref_role
    )
    core = functools.partial(
        _circle_core, labels=labels, items=items, pos_items=pos_items, margin=margin, gamma=gamma
    )
    return MatrixForm(sim, core, labels, items, pos_items)


@full_precision
def circle_loss(
    embeddings: Tensor,
    labels: Tensor,
    *,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    margin: float = 0.25,
    gamma: float = 256.0,
    ref_role: str = "all",
) -> Tensor:
    """Circle loss: every similarity re-weighted by its distance from its optimum.

    For anchor ``a`` with cosine similarities ``s_p`` to its positives and ``s_n`` to its
    negatives among its retrieval set (Eq. 6), with ``alpha_p = [1 + m - s_p]_+`` and
    ``alpha_n = [s_n + m]_+`` held constant in the gradient::

        L_a = log(1 + sum_n exp(gamma alpha_n (s_n - m)) sum_p exp(-gamma alpha_p (s_p - 1 + m)))

    and the loss is the mean of ``L_a`` over the anchors with a positive and a negative.

    Args:
        embeddings (Tensor): ``B x D`` embeddings (normalised inside, through the cosine).
        labels (Tensor): ``B`` integer labels.
        ref_embeddings (Tensor, optional): ``R x D`` reference items (never anchors).
        ref_labels (Tensor, optional): ``R`` integer labels of the references.
        margin (float): the relaxation ``m >= 0``, default 0.25 (the paper's setting for face
            recognition and its parameter study; 0.4 for fine-grained retrieval).
        gamma (float): the scale ``gamma > 0``, default 256 (the same setting; 80 for
            fine-grained retrieval).
        ref_role (str): ``"all"`` (default) or ``"negatives"`` (spec "Negatives-only
            references"); also an ``R`` bool mask of the negatives-only references.

    Returns:
        Tensor: 0-d loss, float32 (float64 for float64 input), 0, attached, without an anchor
        that has both a positive and a negative.

    Reference: Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity
    Optimization", CVPR 2020, Eq. 4-6.

    Example:
        >>> f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
        >>> circle_loss(f, torch.tensor([0, 0, 1, 1])) < 1e-6
        tensor(True)
    """
    form = circle_form(
        embeddings,
        labels,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        margin=margin,
        gamma=gamma,
        ref_role=ref_role,
    )
    return form.loss()


class MultiSimilarityLoss(_RefLoss):
    """Module form of :func:`multi_similarity_loss`.

    Args:
        alpha, beta, base, epsilon (float): see :func:`multi_similarity_loss`.

    Reference: Wang et al. 2019.

    Example:
        >>> MultiSimilarityLoss()(torch.eye(2), torch.tensor([0, 1]))
        tensor(0.)
    """

    function = staticmethod(multi_similarity_loss)

    def __init__(self, alpha=2.0, beta=50.0, base=0.5, epsilon=0.1):
        super().__init__()
        multi_similarity_form(torch.eye(1), [0], alpha=alpha, beta=beta, epsilon=epsilon)
        self.alpha, self.beta, self.base, self.epsilon = alpha, beta, base, epsilon

    def keywords(self) -> dict:
        return {"alpha": self.alpha, "beta": self.beta, "base": self.base, "epsilon": self.epsilon}


class CircleLoss(_RefLoss):
    """Module form of :func:`circle_loss`.

    Args:
        margin, gamma (float): see :func:`circle_loss`.

    Reference: Sun et al. 2020.

    Example:
        >>> CircleLoss()(torch.eye(2), torch.tensor([0, 1]))
        tensor(0.)
    """

    function = staticmethod(circle_loss)

    def __init__(self, margin=0.25, gamma=256.0):
        super().__init__()
        circle_form(torch.eye(1), [0], margin=margin, gamma=gamma)
        self.margin, self.gamma = margin, gamma

    def keywords(self) -> dict:
        return {"margin": self.margin, "gamma": self.gamma}
