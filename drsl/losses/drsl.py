"""DRSL, the Differentiable Retrieval-Sort Loss ("rank-in-rank"): the public functions.

Every function takes a mini-batch ``embeddings`` (``B x D``) and identity ``labels`` (``B``),
optionally reference items ``ref_embeddings`` (``R x D``) and ``ref_labels`` (``R``): the anchors
are the batch rows, and each anchor retrieves among the other batch rows and all references
(spec "Beyond the batch"; ``R = 0`` gives the batch-only loss exactly). Labels may come in any
order and counts; anchors without a positive are skipped; with none at all the loss is 0,
still attached to the graph. The terms themselves live in :mod:`drsl.losses._drsl_core`.

**Precision.** Every function computes in float32 (float64 inputs in float64) with autocast
off inside, also when called inside a :func:`torch.autocast` region; float16/bfloat16 inputs
are upcast and the loss comes back in float32 (see :mod:`drsl.losses`, "Precision").

Reference: spec ``docs/drsl-loss-spec.md`` (the project's reading of "Rank-in-Rank Loss for
Person Re-identification", ACM TOMM, doi:10.1145/3532866); RS Loss (Oksuz et al., ICCV 2021);
AP-Loss (Chen et al., CVPR 2019).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from drsl.distances import pairwise_cosine, pairwise_euclidean

from ._common import (
    MatrixForm,
    Pairs,
    check_batch,
    check_finite,
    check_refs,
    compute_dtype,
    full_precision,
    with_refs,
)
from ._drsl_core import (
    SLOT_TERMS,
    angle_inputs,
    drsl_core,
    drsl_identity,
    drsl_smooth,
    positive_targets,
    prepare_scores,
)
from .drsl_options import DEFAULT_DELTA, DRSLOptions, check_options

__all__ = [
    "DRSLTerms",
    "IdentityUpdate",
    "retrieval_scores",
    "angle_targets",
    "drsl_from_scores",
    "drsl_terms",
    "identity_update",
    "drsl_loss",
    "DRSLoss",
]


@full_precision
def retrieval_scores(embeddings: Tensor, ref_embeddings: Tensor | None = None) -> Tensor:
    """Retrieval scores ``s[a, j] = -||f_a - f_j||_2`` (higher = retrieved earlier).

    Args:
        embeddings (Tensor): ``B x D`` embeddings (not normalised).
        ref_embeddings (Tensor, optional): ``R x D`` reference items (columns ``B..B+R-1``).

    Returns:
        Tensor: ``B x (B + R)`` scores, same dtype and device, differentiable.

    Reference: spec "Words", retrieval score.

    Example:
        >>> retrieval_scores(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
        tensor([[-0., -5.],
                [-5., -0.]])
    """
    batch = pairwise_euclidean(embeddings)
    return -with_refs(
        batch, lambda: pairwise_euclidean(embeddings, ref_embeddings), _has(ref_embeddings)
    )


@full_precision
def angle_targets(angle_embeddings: Tensor, ref_angle_embeddings: Tensor | None = None) -> Tensor:
    """Angle targets ``t[a, j] = (1 + cos(g_a, g_j)) / 2`` in ``[0, 1]``, detached.

    Args:
        angle_embeddings (Tensor): ``B x D'`` angle embeddings ``g``.
        ref_angle_embeddings (Tensor, optional): ``R x D'`` those of the reference items.

    Returns:
        Tensor: ``B x (B + R)`` targets (no gradient flows through them).

    Reference: spec "Words", angle target.

    Example:
        >>> angle_targets(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
        tensor([[1.0000, 0.5000, 0.0000],
                [0.5000, 1.0000, 0.5000],
                [0.0000, 0.5000, 1.0000]])
    """
    g = angle_embeddings.detach()
    gr = ref_angle_embeddings.detach() if _has(ref_angle_embeddings) else None
    cos = with_refs(pairwise_cosine(g), lambda: pairwise_cosine(g, gr), gr is not None)
    return ((1.0 + cos) / 2.0).detach()


def _has(x: Tensor | None) -> bool:
    return x is not None and x.shape[0] > 0


@dataclass(frozen=True)
class DRSLTerms:
    """Every term of the spec, per anchor ``a`` (row) and positive slot ``p`` (column).

    Slot ``p`` of anchor ``a`` holds positive ``i = pos_index[a, p]`` (an item index in
    ``0..B+R-1``) when ``pos_valid[a, p]``; padded slots hold 0 in every ``B x P`` term.

    Attributes:
        pos_index (Tensor): ``B x P`` long, the positives of each anchor in increasing order.
        pos_valid (Tensor): ``B x P`` bool.
        num_pos (Tensor): ``B`` long, ``|P_a|``.
        rank (Tensor): ``B x P``, ``rank(i)``.
        rank_pos (Tensor): ``B x P``, ``rank+(i)``.
        n_fp (Tensor): ``B x P``, ``N_FP(i)``.
        l_rank (Tensor): ``B x P``, ranking error ``l_R(i)``.
        l_sort (Tensor): ``B x P``, sorting error ``l_S(i)``.
        l_sort_target (Tensor): ``B x P``, target sorting error ``l*_S(i)``.
        anchor_loss (Tensor): ``B``, ``L_a`` (0 for anchors without positives).
        loss (Tensor): 0-d, the batch loss (mean of ``L_a`` over anchors with a positive).
    """

    pos_index: Tensor
    pos_valid: Tensor
    num_pos: Tensor
    rank: Tensor
    rank_pos: Tensor
    n_fp: Tensor
    l_rank: Tensor
    l_sort: Tensor
    l_sort_target: Tensor
    anchor_loss: Tensor
    loss: Tensor


@dataclass(frozen=True)
class IdentityUpdate:
    """The identity update ``dL/ds`` (``B x (B + R)``, row = anchor) split into its two parts.

    Attributes:
        ranking (Tensor): the part driven by the ranking errors ``l_R``.
        sorting (Tensor): the part driven by the sorting errors ``lambda (l_S - l*_S)``.
    """

    ranking: Tensor
    sorting: Tensor

    @property
    def total(self) -> Tensor:
        """Tensor: ``ranking + sorting``, what ``gradient="identity"`` back-propagates."""
        return self.ranking + self.sorting


@full_precision
def drsl_from_scores(
    scores: Tensor,
    labels: Tensor,
    targets: Tensor,
    *,
    ref_labels: Tensor | None = None,
    delta: float = DEFAULT_DELTA,
    smoothing: str = "linear",
    sort_weight: float = 1.0,
    gradient: str = "smooth",
) -> Tensor:
    """DRSL on a given score matrix and angle-target matrix (the core of :func:`drsl_loss`).

    Args:
        scores (Tensor): ``B x (B + R)`` scores, row ``a`` = anchor ``a``'s ``s_j`` (higher =
            earlier; column ``a``, the anchor itself, is never used).
        labels (Tensor): ``B`` integer identity labels.
        targets (Tensor): ``B x (B + R)`` angle targets ``t[a, j]`` in ``[0, 1]`` (detached).
        ref_labels (Tensor, optional): ``R`` labels of the reference columns ``B..B+R-1``.
        delta (float): step width (see :data:`DEFAULT_DELTA`).
        smoothing (str): ``"linear"``, ``"sigmoid"`` or ``"hard"``.
        sort_weight (float): ``lambda >= 0``.
        gradient (str): ``"smooth"`` (autograd) or ``"identity"`` (the identity update).

    Returns:
        Tensor: 0-d loss, float32 (float64 for float64 scores).

    Reference: spec "The loss for one anchor", "Two ways to get a gradient".

    Example:
        >>> s = torch.tensor([[0.0, -1.0, -2.0], [-1.0, 0.0, -0.5], [-2.0, -0.5, 0.0]])
        >>> t = torch.ones(3, 3)
        >>> round(drsl_from_scores(s, torch.tensor([0, 0, 1]), t, smoothing="hard").item(), 4)
        0.25
    """
    check_options(delta, smoothing, sort_weight, gradient)
    d, t_pos, pairs = prepare_scores(scores, labels, targets, ref_labels)
    return drsl_core(d, t_pos, pairs, delta, smoothing, sort_weight, gradient)


@full_precision
def drsl_terms(
    scores: Tensor,
    labels: Tensor,
    targets: Tensor,
    *,
    ref_labels: Tensor | None = None,
    delta: float = DEFAULT_DELTA,
    smoothing: str = "linear",
    sort_weight: float = 1.0,
) -> DRSLTerms:
    """Every term of the spec for every anchor and positive (for teaching and checking).

    Args:
        scores (Tensor): ``B x (B + R)`` scores (see :func:`drsl_from_scores`).
        labels (Tensor): ``B`` integer labels. ref_labels (Tensor, optional): ``R`` labels.
        targets (Tensor): ``B x (B + R)`` angle targets.
        delta (float): step width. smoothing (str): step kind. sort_weight (float): ``lambda``.

    Returns:
        DRSLTerms: ``rank``, ``rank_pos``, ``n_fp``, ``l_rank``, ``l_sort``, ``l_sort_target``
        per (anchor, positive slot), ``anchor_loss`` and ``loss`` (differentiable w.r.t. scores,
        computed in float32 or float64).

    Reference: spec "The loss for one anchor".

    Example:
        >>> s = torch.tensor([[0.0, -1.0, -2.0], [-1.0, 0.0, -0.5], [-2.0, -0.5, 0.0]])
        >>> terms = drsl_terms(s, torch.tensor([0, 0, 1]), torch.ones(3, 3), smoothing="hard")
        >>> terms.rank[:2, 0].tolist(), terms.l_rank[:2, 0].tolist()
        ([1.0, 2.0], [0.0, 0.5])
    """
    check_options(delta, smoothing, sort_weight, "smooth")
    d, t_pos, pairs = prepare_scores(scores, labels, targets, ref_labels)
    t = drsl_smooth(d, t_pos, pairs, smoothing, delta, sort_weight, True)
    valid = pairs.pos_valid
    zero = d.new_zeros(())
    per_slot = {k: torch.where(valid, t[k], zero) for k in SLOT_TERMS}
    return DRSLTerms(
        pairs.pos_index,
        valid,
        pairs.num_pos,
        **per_slot,
        anchor_loss=t["anchor_loss"],
        loss=t["loss"],
    )


@full_precision
def identity_update(
    scores: Tensor,
    labels: Tensor,
    targets: Tensor,
    *,
    ref_labels: Tensor | None = None,
    delta: float = DEFAULT_DELTA,
    smoothing: str = "linear",
    sort_weight: float = 1.0,
) -> IdentityUpdate:
    """The identity update ``dL/ds`` that ``gradient="identity"`` back-propagates, in two parts.

    For anchor ``a``, positive ``i`` owes its ranking error ``l_R(i)`` to the negatives ranked
    before it and its sorting error ``lambda (l_S(i) - l*_S(i))`` to the positives of lower
    target ranked before it, split in proportion to ``H(s_j - s_i)``;
    ``dL_a/ds_k = (received - owed) / |P_a|``, divided once more by the number of anchors with a
    positive. Each row sums to 0 in each part; in the ranking part the positives' total push
    (``-sum`` over positives) equals the negatives' (``sum`` over negatives).

    Args:
        scores (Tensor): ``B x (B + R)`` scores. labels (Tensor): ``B`` labels.
        targets (Tensor): ``B x (B + R)`` angle targets.
        ref_labels (Tensor, optional): ``R`` labels of the reference columns.
        delta (float): step width. smoothing (str): step kind. sort_weight (float): ``lambda``.

    Returns:
        IdentityUpdate: ``ranking`` and ``sorting`` ``B x (B + R)`` matrices (``total`` = their
        sum), detached, in float32 or float64.

    Reference: spec "Two ways to get a gradient", 2; RS Loss (Oksuz et al. 2021), Alg. 1.

    Example:
        >>> s = torch.tensor([[0.0, -1.0, -0.5], [-1.0, 0.0, -2.0], [-0.5, -2.0, 0.0]])
        >>> upd = identity_update(s, torch.tensor([0, 0, 1]), torch.ones(3, 3), smoothing="hard")
        >>> upd.ranking
        tensor([[ 0.0000, -0.2500,  0.2500],
                [ 0.0000,  0.0000,  0.0000],
                [ 0.0000,  0.0000,  0.0000]])
    """
    check_options(delta, smoothing, sort_weight, "identity")
    d, t_pos, pairs = prepare_scores(scores.detach(), labels, targets, ref_labels)
    with torch.no_grad():
        _, (to_neg, rank_slots, sort_slots) = drsl_identity(
            d, t_pos, pairs, smoothing, delta, sort_weight, True
        )
    ranking = to_neg.scatter_add_(1, pairs.pos_index, rank_slots)
    sorting = torch.zeros_like(d).scatter_add_(1, pairs.pos_index, sort_slots)
    return IdentityUpdate(ranking, sorting)


def _same_keywords_as(source: Callable) -> Callable[[Callable], Callable]:
    """Give a ``(embeddings, labels, **options)`` wrapper the keywords of ``source``: declared
    once (in ``source``), shown by ``help()`` and ``inspect.signature``, checked on each call."""

    def decorate(fn: Callable) -> Callable:
        sig = inspect.signature(source).replace(
            return_annotation=inspect.signature(fn).return_annotation
        )

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                sig.bind(*args, **kwargs)
            except TypeError as err:
                raise TypeError(f"{fn.__name__}(): {err}") from None
            return fn(*args, **kwargs)

        wrapper.__signature__ = sig
        return wrapper

    return decorate


def drsl_form(
    embeddings: Tensor,
    labels: Tensor,
    *,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    angle_embeddings: Tensor | None = None,
    ref_angle_embeddings: Tensor | None = None,
    delta: float = DEFAULT_DELTA,
    smoothing: str = "linear",
    sort_weight: float = 1.0,
    gradient: str = "smooth",
    ref_role: str = "all",
) -> MatrixForm:
    """:func:`drsl_loss` split at its ``B x (B + R)`` distance matrix (same arguments)."""
    check_options(delta, smoothing, sort_weight, gradient)
    labels = check_batch(embeddings, labels)
    ref, ref_labels = check_refs(embeddings, ref_embeddings, ref_labels)
    dtype = compute_dtype(embeddings.dtype)
    x = embeddings.to(dtype)
    z = None if ref is None else ref.to(dtype)
    pairs = Pairs(labels, ref_labels, ref_role)
    # s_j = -d[a, j] = -||f_a - f_j|| over the batch, then the references
    d = with_refs(pairwise_euclidean(x), lambda: pairwise_euclidean(x, z), z is not None)
    check_finite(d, embeddings=embeddings, ref_embeddings=ref)
    g, gr = angle_inputs(x, z, angle_embeddings, ref_angle_embeddings)  # checked, even unused
    if sort_weight != 0:
        t_pos = positive_targets(g, gr, pairs)  # t_j = (1 + cos(g_a, g_j)) / 2, B x P
        check_finite(t_pos, "the angle targets", angle_embeddings=g, ref_angle_embeddings=gr)
    else:
        t_pos = x.new_ones(pairs.pos_index.shape)
    core = functools.partial(
        drsl_core,
        t_pos=t_pos,
        pairs=pairs,
        delta=delta,
        smoothing=smoothing,
        sort_weight=sort_weight,
        gradient=gradient,
    )
    return MatrixForm(d, core, pairs.labels, pairs.items, pairs.pos_items)


@full_precision
@_same_keywords_as(drsl_form)
def drsl_loss(embeddings: Tensor, labels: Tensor, **options) -> Tensor:
    """DRSL: rank every positive ahead of the negatives by distance, sort positives by angle.

    For each anchor ``a`` and positive ``i`` (spec, "The loss for one anchor")::

        l_R(i) = N_FP(i) / rank(i),   L_a = mean_i [ l_R(i) + lambda (l_S(i) - l*_S(i)) ]

    with scores ``s_j = -||f_a - f_j||`` and targets ``t_j = (1 + cos(g_a, g_j)) / 2``; the
    loss is the mean of ``L_a`` over anchors with a positive. With references, anchor ``a``
    retrieves among the other batch rows and the ``R`` reference items (never anchors).

    **Default delta = 0.3** (:data:`DEFAULT_DELTA`), in the units of the Euclidean distance
    between the (not normalised) embeddings. With the linear ramp a (positive ``i``, negative
    ``j``) pair stops contributing once ``d_j >= d_i + delta``: ``delta`` is a margin, and 0.3 is
    the triplet margin that the re-ID strong baseline uses on the same kind of un-normalised
    BNNeck features, so DRSL's ranking term is satisfied exactly when an all-pairs hinge triplet
    with that margin is. The smooth gradient only flows for pairs within ``delta`` of each other,
    so the scale matters: if your distances are much larger than ~1-10 (or much smaller, e.g.
    L2-normalised features, distances in ``[0, 2]``) scale ``delta`` with them (multiplying all
    embeddings by ``c`` and ``delta`` by ``c`` leaves the loss unchanged). The identity update
    is far less sensitive (at ``delta -> 0`` it is RS Loss's update).

    Args:
        embeddings (Tensor): ``B x D`` embeddings ``f`` (float16/bfloat16/float32/float64).
        labels (Tensor): ``B`` integer identity labels, any order and counts.
        ref_embeddings (Tensor, optional): ``R x D`` reference items (a cross-batch memory, or
            the other processes' batches gathered with gradient); the identity update flows
            into them too when they require grad.
        ref_labels (Tensor, optional): ``R`` integer labels of the references.
        angle_embeddings (Tensor, optional): ``B x D'`` tensor ``g`` for the angle targets
            (e.g. BNNeck's post-BN features); default ``embeddings``. Detached.
        ref_angle_embeddings (Tensor, optional): ``R x D'`` those of the references; default
            ``ref_embeddings`` (pass it whenever you pass ``angle_embeddings`` with references).
        delta (float): step width ``delta > 0`` (unused by ``"hard"``). Default 0.3.
        smoothing (str): ``"linear"`` (default), ``"sigmoid"`` or ``"hard"``.
        sort_weight (float): ``lambda >= 0``, weight of the in-rank sort. Default 1.
        gradient (str): ``"smooth"`` (default: autograd through ``H``) or ``"identity"`` (RS
            Loss's error-driven update on the scores, chained to the embeddings by autograd).
            Both give the same loss value.
        ref_role (str): ``"all"`` (default) or ``"negatives"``: a reference sharing the
            anchor's label is left out of that anchor's retrieval set, neither positive nor
            negative (spec "Negatives-only references"); also an ``R`` bool mask of such
            references.

    Returns:
        Tensor: 0-d loss, float32 (float64 for float64 embeddings; half-precision inputs are
        computed in float32 and their gradient comes back in their dtype); 0 (attached, zero
        gradient, also into references that require grad) when no anchor has a positive.

    Raises:
        ValueError: a bad option or shape, NaN/inf inputs, an empty feature dimension.

    Reference: spec ``docs/drsl-loss-spec.md``; RS Loss (Oksuz et al., ICCV 2021) Eq. 7-8 and
    Alg. 1; XBM (Wang et al., CVPR 2020) for the references.

    Example:
        >>> f = torch.tensor([[0.0, 0.0], [0.1, 0.0], [2.0, 0.0], [2.0, 0.2]])
        >>> drsl_loss(f, torch.tensor([0, 0, 1, 1]))
        tensor(0.)
        >>> # l_R = 1/2, 2/3, 2/3, 1/2 for the four anchors (one positive each: no sorting)
        >>> round(drsl_loss(f, torch.tensor([0, 1, 0, 1]), smoothing="hard").item(), 4)
        0.5833
        >>> # anchors 0 and 1 only; items 2 and 3 become references
        >>> y = torch.tensor([0, 1, 0, 1])
        >>> round(drsl_loss(f[:2], y[:2], ref_embeddings=f[2:], ref_labels=y[2:],
        ...                 smoothing="hard").item(), 4)
        0.5833
    """
    form = drsl_form(embeddings, labels, **options)
    return form.loss()


class DRSLoss(nn.Module):
    """Module form of :func:`drsl_loss`: the four options at construction, the rest per call.

    Args:
        **options: ``delta``, ``smoothing``, ``sort_weight``, ``gradient`` (see
            :class:`drsl.losses.drsl_options.DRSLOptions`; checked here, once).

    Reference: spec ``docs/drsl-loss-spec.md``.

    Example:
        >>> crit = DRSLoss(gradient="identity")
        >>> f = torch.tensor([[0.0, 0.0], [0.1, 0.0], [2.0, 0.0], [2.0, 0.2]])
        >>> crit(f, torch.tensor([0, 0, 1, 1]))
        tensor(0.)
    """

    def __init__(self, **options) -> None:
        super().__init__()
        self.options = DRSLOptions(**options)

    def forward(
        self, embeddings: Tensor, labels: Tensor, angle_embeddings: Tensor | None = None, **refs
    ) -> Tensor:
        """Args: embeddings (B x D), labels (B), angle_embeddings (B x D', optional), and the
        reference keywords of :func:`drsl_loss` (``ref_embeddings``, ``ref_labels``,
        ``ref_angle_embeddings``, ``ref_role``).

        Returns: Tensor, the 0-d loss.
        """
        return drsl_loss(
            embeddings,
            labels,
            angle_embeddings=angle_embeddings,
            **refs,
            **self.options.as_kwargs(),
        )

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.options.as_kwargs().items())


# help(DRSLoss) and inspect.signature show the four options DRSLOptions declares
DRSLoss.__init__.__signature__ = inspect.signature(DRSLOptions).replace(
    parameters=[
        inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        *(
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(DRSLOptions).parameters.values()
        ),
    ],
    return_annotation=None,
)
