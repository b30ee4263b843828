"""DRSL written densely, line by line from the spec: the version to read (and to test against).

:func:`drsl_loss_dense` builds, for every anchor ``a``, positive candidate ``i`` and item ``j``,
the full ``B x N x N`` tensor of steps ``H(s_j - s_i)`` and sums it with masks. That is easy to
check against the spec and costs ``O(B N^2)`` memory, fine for a classroom batch, far too much
for training: :func:`drsl.losses.drsl_loss` computes the same numbers (the tests check it) with
``B x P x N`` blocks (``P``, the largest number of positives, is small).

Reference: spec ``docs/drsl-loss-spec.md``, "Words", "The loss for one anchor" and "Beyond the
batch".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["drsl_loss_dense"]

# the step functions H(x) of the spec ("Words"); the hard one keeps x on the graph (zero slope)
_STEPS = {
    "linear": lambda x, delta: (x / (2 * delta) + 0.5).clamp(0.0, 1.0),
    "sigmoid": lambda x, delta: torch.sigmoid(x / delta),
    "hard": lambda x, delta: (x >= 0).to(x.dtype) + 0.0 * x,
}


def drsl_loss_dense(
    embeddings: Tensor,
    labels: Tensor,
    *,
    angle_embeddings: Tensor | None = None,
    ref_embeddings: Tensor | None = None,
    ref_labels: Tensor | None = None,
    ref_angle_embeddings: Tensor | None = None,
    delta: float = 0.3,
    smoothing: str = "linear",
    sort_weight: float = 1.0,
) -> Tensor:
    """DRSL with dense ``B x N x N`` tensors (``N = B + R``): the spec, one line per equation.

    Same value as :func:`drsl.losses.drsl_loss` and, through autograd, the same smooth gradient
    (``gradient="smooth"``); no input checks, no half-precision handling, ``O(B N^2)`` memory.

    Args:
        embeddings (Tensor): ``B x D`` embeddings ``f`` (the anchors).
        labels (Tensor): ``B`` integer identity labels.
        angle_embeddings (Tensor, optional): ``B x D'`` for the angle targets; default ``f``.
        ref_embeddings (Tensor, optional): ``R x D`` reference items (retrieved, never anchors).
        ref_labels (Tensor, optional): ``R`` labels of the references.
        ref_angle_embeddings (Tensor, optional): ``R x D'``; default ``ref_embeddings``.
        delta (float): step width. smoothing (str): ``"linear"``, ``"sigmoid"`` or ``"hard"``.
        sort_weight (float): ``lambda``, weight of the sorting term.

    Returns:
        Tensor: 0-d loss (0, still attached, when no anchor has a positive).

    Reference: spec "The loss for one anchor"; RS Loss (Oksuz et al., ICCV 2021), Eq. 7-8.

    Example:
        >>> f = torch.tensor([[0.0, 0.0], [0.1, 0.0], [2.0, 0.0], [2.0, 0.2]])
        >>> round(drsl_loss_dense(f, torch.tensor([0, 1, 0, 1]), smoothing="hard").item(), 4)
        0.5833
    """
    g = embeddings if angle_embeddings is None else angle_embeddings
    if ref_embeddings is not None:  # the retrieval set: the batch rows, then the references
        g_ref = ref_embeddings if ref_angle_embeddings is None else ref_angle_embeddings
        items, items_g = torch.cat([embeddings, ref_embeddings]), torch.cat([g, g_ref])
        items_y = torch.cat([labels, ref_labels])
    else:
        items, items_g, items_y = embeddings, g, labels
    B, N = embeddings.shape[0], items.shape[0]
    H = _STEPS[smoothing]
    s = -(embeddings[:, None, :] - items[None, :, :]).norm(dim=2)  # s[a, j] = -||f_a - f_j||
    t = ((1 + F.cosine_similarity(g[:, None, :], items_g[None, :, :], dim=2)) / 2).detach()
    not_self = ~torch.eye(
        B, N, dtype=torch.bool, device=s.device
    )  # the anchor is item a: in neither set
    pos = (labels[:, None] == items_y[None, :]) & not_self  # [a, j]: j in P_a
    neg = labels[:, None] != items_y[None, :]  # [a, j]: j in N_a
    # h[a, i, j] = H(s_j - s_i), "j is retrieved before i", for j != i only
    h = H(s[:, None, :] - s[:, :, None], delta) * ~torch.eye(N, dtype=torch.bool, device=s.device)
    h_pos, h_neg = h * pos[:, None, :], h * neg[:, None, :]
    rank = 1 + h_pos.sum(2) + h_neg.sum(2)  # rank(i), [a, i]
    rank_pos = 1 + h_pos.sum(2)  # rank+(i)
    l_rank = h_neg.sum(2) / rank  # l_R(i) = N_FP(i) / rank(i)
    w = 1 - t  # (1 - t_j), [a, j]
    l_sort = (w + (h_pos * w[:, None, :]).sum(2)) / rank_pos  # l_S(i)
    h_hi = h_pos * (t[:, None, :] >= t[:, :, None])  # only the positives j with t_j >= t_i
    l_sort_target = (w + (h_hi * w[:, None, :]).sum(2)) / (1 + h_hi.sum(2))  # l*_S(i)
    per_positive = (l_rank + sort_weight * (l_sort - l_sort_target)) * pos  # i in P_a only
    num_pos = pos.sum(1)
    has = num_pos > 0  # anchors without a positive contribute nothing
    if not has.any():
        return s.sum() * 0.0
    return (per_positive.sum(1)[has] / num_pos[has]).mean()  # mean over anchors of L_a
