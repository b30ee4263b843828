"""The metric losses by name (:data:`LOSSES`, :func:`get_loss`) and :func:`gradient_mass`.

Reference: the cross-module contract (``drsl.losses``); spec "Why it suits imbalance".
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from types import MappingProxyType

import torch
from torch import Tensor

from ._common import MatrixForm, autocast_off, check_batch
from .names import RECORDS, resolve

__all__ = ["LOSSES", "get_loss", "gradient_mass"]

#: Metric losses by name (one per record of :data:`drsl.losses.names.RECORDS`): each a
#: ``functools.partial`` taking ``(embeddings, labels)`` and the keywords ``ref_embeddings``,
#: ``ref_labels``, ``ref_role`` (and, for DRSL, the angle embeddings).
LOSSES = MappingProxyType(
    {r.name: functools.partial(resolve(r.function), **r.options) for r in RECORDS}
)

# each loss function -> the same loss split at its pairwise matrix (for gradient_mass)
_FORMS: dict[Callable, Callable[..., MatrixForm]] = {
    resolve(r.function): resolve(r.form) for r in RECORDS
}


def get_loss(name: str, **kwargs) -> Callable[..., Tensor]:
    """A metric loss of :data:`LOSSES` by name, with its keywords overridden by ``kwargs``.

    Names (one record each in :mod:`drsl.losses.names`): ``"drsl"`` (identity gradient),
    ``"drsl_smooth"`` (smooth gradient), ``"drsl_rank"`` (``sort_weight=0``, identity
    gradient), ``"triplet"``, ``"triplet_soft"`` (``margin=None``), ``"smooth_ap"``,
    ``"contrastive"``, ``"multi_similarity"``, ``"circle"``. Every one accepts
    ``ref_embeddings`` / ``ref_labels`` / ``ref_role`` at call time (the DRSL ones also
    ``angle_embeddings`` / ``ref_angle_embeddings``).

    Args:
        name (str): a key of :data:`LOSSES`.
        **kwargs: keyword arguments of the underlying function (e.g. ``delta=0.1``).

    Returns:
        Callable[..., Tensor]: ``loss(embeddings, labels, **refs)`` (a functools.partial).

    Raises:
        ValueError: unknown name (the message lists the valid ones) or unknown keyword.

    Reference: the cross-module contract (``drsl.losses``).

    Example:
        >>> fn = get_loss("drsl", delta=0.1)
        >>> fn.keywords
        {'gradient': 'identity', 'delta': 0.1}
        >>> get_loss("nope")
        Traceback (most recent call last):
        ...
        ValueError: unknown loss 'nope'; valid names: drsl, drsl_smooth, drsl_rank, triplet, triplet_soft, smooth_ap, contrastive, multi_similarity, circle
    """  # noqa: E501
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSSES)}")
    base = LOSSES[name]
    keywords = {**base.keywords, **kwargs}
    params = inspect.signature(base.func).parameters
    bad = [k for k in keywords if k not in params or k in ("embeddings", "labels")]
    if bad:
        valid = [k for k in params if k not in ("embeddings", "labels")]
        raise ValueError(f"unknown keyword(s) {bad} for loss {name!r}; valid: {valid}")
    return functools.partial(base.func, **keywords)


def _form_of(loss_fn) -> tuple[Callable[..., MatrixForm], dict]:
    """The matrix form and keywords of a loss given as a function or a functools.partial."""
    func, keywords = loss_fn, {}
    if isinstance(loss_fn, functools.partial):
        if loss_fn.args:
            raise ValueError("gradient_mass needs a partial with keywords only (as get_loss makes)")
        func, keywords = loss_fn.func, dict(loss_fn.keywords)
    if func not in _FORMS:
        names = ", ".join(f.__name__ for f in _FORMS)
        raise ValueError(
            f"gradient_mass needs a metric loss of drsl.losses ({names}, or get_loss(name)) "
            f"whose pairwise matrix it can build; got {loss_fn!r}"
        )
    return _FORMS[func], keywords


def gradient_mass(loss_fn: Callable[..., Tensor], embeddings: Tensor, labels: Tensor) -> dict:
    """Total absolute gradient of a loss w.r.t. its pairwise matrix, on positive vs negative pairs.

    Builds the loss's ``B x (B + R)`` pairwise matrix ``M`` itself (Euclidean distance for
    DRSL, triplet and contrastive, cosine similarity for Smooth-AP, multi-similarity and
    circle; ``|dL/dd| = |dL/ds|`` for ``s = -d``), evaluates the loss from it once (with
    ``loss_fn``'s keywords, references included) and reads ``dL/dM``. Row ``a`` is anchor
    ``a``'s view, so every ordered pair counts once. For DRSL with ``gradient="identity"``
    this is the identity update.

    Args:
        loss_fn (Callable): a metric loss of this package: ``get_loss(name, **kw)``, an entry
            of :data:`LOSSES`, or one of the loss functions itself.
        embeddings (Tensor): ``B x D`` embeddings (not modified).
        labels (Tensor): ``B`` integer labels.

    Returns:
        dict: ``"pos"`` and ``"neg"`` (sums of ``|dL/dM[a, j]|`` over positive pairs
        ``j in P_a`` and negative pairs ``j in N_a``), ``"pos_per_pair"``, ``"neg_per_pair"``
        (the same divided by the number of such pairs, 0 when none), ``"num_pos_pairs"``,
        ``"num_neg_pairs"`` and ``"loss"``, the loss value of that same evaluation (float).

    Raises:
        ValueError: ``loss_fn`` is not a metric loss of :mod:`drsl.losses`.

    Reference: spec "Why it suits imbalance"; RS Loss's balance property (Oksuz et al. 2021).

    Example:
        >>> f = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 0.1], [3.0, 0.0]])
        >>> m = gradient_mass(get_loss("drsl", smoothing="hard"), f, torch.tensor([0, 0, 1, 1]))
        >>> round(m["pos"], 4) == round(m["neg"], 4)
        True
    """
    form_fn, keywords = _form_of(loss_fn)
    labels = check_batch(embeddings, labels)
    with torch.enable_grad(), autocast_off(embeddings):
        form = form_fn(embeddings.detach(), labels, **keywords)
        matrix = form.matrix.detach().requires_grad_(True)
        loss = form.core(matrix)
        loss.backward()
    grad = matrix.grad if matrix.grad is not None else torch.zeros_like(matrix)
    pos_mask, neg_mask = form.masks()
    g = grad.abs()
    n_pos, n_neg = int(pos_mask.sum()), int(neg_mask.sum())
    pos, neg = float((g * pos_mask).sum()), float((g * neg_mask).sum())
    return {
        "pos": pos,
        "neg": neg,
        "pos_per_pair": pos / n_pos if n_pos else 0.0,
        "neg_per_pair": neg / n_neg if n_neg else 0.0,
        "num_pos_pairs": n_pos,
        "num_neg_pairs": n_neg,
        "loss": float(loss.detach()),
    }
