"""Naive per-anchor / per-positive loop references for the losses, and checks of them.

Written straight from the formulas (spec ``drsl-loss.md`` and each baseline's paper), one
anchor, one positive and one item at a time, sharing no code with :mod:`drsl.losses`. The other
loss tests import these; the tests at the bottom check the references themselves against
numbers worked out by hand.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def H(x: Tensor, smoothing: str, delta: float) -> Tensor:
    """The spec's step function on a scalar tensor."""
    if smoothing == "linear":
        return torch.clamp(x / (2 * delta) + 0.5, 0.0, 1.0)
    if smoothing == "sigmoid":
        return 1.0 / (1.0 + torch.exp(-x / delta))
    return (x >= 0).to(x.dtype) + 0.0 * x  # exact step, a tie counts as before; zero gradient


def dist(a: Tensor, b: Tensor) -> Tensor:
    diff = a - b
    return torch.sqrt((diff * diff).sum())


def cos(a: Tensor, b: Tensor) -> Tensor:
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return a.new_zeros(())
    return (a @ b) / (na * nb)


def drsl_anchor_terms(f, labels, a, *, delta, smoothing, sort_weight, g=None):
    """Spec terms for anchor ``a``: dict positive -> (rank, rank+, N_FP, l_R, l_S, l*_S), L_a."""
    g = f if g is None else g
    y = [int(v) for v in labels]
    n = len(y)
    P = [j for j in range(n) if j != a and y[j] == y[a]]
    N = [j for j in range(n) if y[j] != y[a]]
    if not P:
        return {}, None
    s = {j: -dist(f[a], f[j]) for j in range(n) if j != a}
    t = {j: ((1 + cos(g[a], g[j])) / 2).detach() for j in P}
    out = {}
    total = 0.0
    for i in P:
        hp = {j: H(s[j] - s[i], smoothing, delta) for j in P if j != i}
        hn = {j: H(s[j] - s[i], smoothing, delta) for j in N}
        n_fp = sum(hn.values(), f.new_zeros(()))
        rank_pos = 1 + sum(hp.values(), f.new_zeros(()))
        rank = rank_pos + n_fp
        l_r = n_fp / rank
        l_s = ((1 - t[i]) + sum((hp[j] * (1 - t[j]) for j in hp), f.new_zeros(()))) / rank_pos
        hi = [j for j in hp if t[j] >= t[i]]
        num = (1 - t[i]) + sum((hp[j] * (1 - t[j]) for j in hi), f.new_zeros(()))
        den = 1 + sum((hp[j] for j in hi), f.new_zeros(()))
        l_st = num / den
        out[i] = (rank, rank_pos, n_fp, l_r, l_s, l_st)
        total = total + l_r + sort_weight * (l_s - l_st)
    return out, total / len(P)


def drsl_naive(f, labels, *, delta=0.3, smoothing="linear", sort_weight=1.0, g=None):
    """The batch loss: mean of L_a over anchors with a positive; 0 (attached) with none."""
    losses = []
    for a in range(f.shape[0]):
        _, la = drsl_anchor_terms(
            f, labels, a, delta=delta, smoothing=smoothing, sort_weight=sort_weight, g=g
        )
        if la is not None:
            losses.append(la)
    if not losses:
        return f.sum() * 0
    return sum(losses) / len(losses)


def identity_update_naive(s, labels, t, *, delta, smoothing, sort_weight):
    """RS-Loss-style identity update dL/ds (ranking, sorting), one anchor and positive at a time.

    ``s`` and ``t`` are B x B float64 matrices (row = anchor), returned as nested lists.
    """
    y = [int(v) for v in labels]
    n = len(y)
    anchors = [a for a in range(n) if any(j != a and y[j] == y[a] for j in range(n))]
    R = [[0.0] * n for _ in range(n)]
    S = [[0.0] * n for _ in range(n)]

    def h(x):
        return float(H(torch.tensor(x, dtype=torch.float64), smoothing, delta))

    for a in anchors:
        P = [j for j in range(n) if j != a and y[j] == y[a]]
        N = [j for j in range(n) if y[j] != y[a]]
        scale = 1.0 / (len(P) * len(anchors))
        for i in P:
            hn = {j: h(s[a][j] - s[a][i]) for j in N}
            hp = {j: h(s[a][j] - s[a][i]) for j in P if j != i}
            n_fp = sum(hn.values())
            rank_pos = 1 + sum(hp.values())
            rank = rank_pos + n_fp
            l_r = n_fp / rank
            if n_fp > 0:
                R[a][i] -= l_r * scale
                for j in N:
                    R[a][j] += l_r * hn[j] / n_fp * scale
            ti = t[a][i]
            l_s = ((1 - ti) + sum(hp[j] * (1 - t[a][j]) for j in hp)) / rank_pos
            hi = [j for j in hp if t[a][j] >= ti]
            l_st = ((1 - ti) + sum(hp[j] * (1 - t[a][j]) for j in hi)) / (
                1 + sum(hp[j] for j in hi)
            )
            low = {j: hp[j] for j in hp if t[a][j] < ti}
            den = sum(low.values())
            if den > 0:
                err = sort_weight * (l_s - l_st)
                S[a][i] -= err * scale
                for j in low:
                    S[a][j] += err * low[j] / den * scale
    return R, S


def triplet_naive(f, labels, margin=0.3):
    y = [int(v) for v in labels]
    n = len(y)
    terms = []
    for a in range(n):
        P = [j for j in range(n) if j != a and y[j] == y[a]]
        N = [j for j in range(n) if y[j] != y[a]]
        if not P or not N:
            continue
        d_ap = max(dist(f[a], f[j]) for j in P)
        d_an = min(dist(f[a], f[j]) for j in N)
        if margin is None:
            terms.append(torch.log1p(torch.exp(d_ap - d_an)))
        else:
            terms.append(torch.clamp(d_ap - d_an + margin, min=0))
    return sum(terms) / len(terms) if terms else f.sum() * 0


def smooth_ap_naive(f, labels, temperature=0.01):
    y = [int(v) for v in labels]
    n = len(y)
    aps = []
    for a in range(n):
        P = [j for j in range(n) if j != a and y[j] == y[a]]
        if not P:
            continue
        s = {j: cos(f[a], f[j]) for j in range(n) if j != a}
        ap = 0.0
        for i in P:
            r_p = 1 + sum(torch.sigmoid((s[j] - s[i]) / temperature) for j in P if j != i)
            r_all = 1 + sum(torch.sigmoid((s[j] - s[i]) / temperature) for j in s if j != i)
            ap = ap + r_p / r_all
        aps.append(ap / len(P))
    return 1 - sum(aps) / len(aps) if aps else f.sum() * 0


def contrastive_naive(f, labels, margin=1.0):
    y = [int(v) for v in labels]
    n = len(y)
    total = f.new_zeros(())
    for a in range(n):
        for j in range(n):
            if j == a:
                continue
            d = dist(f[a], f[j])
            if y[a] == y[j]:
                total = total + 0.5 * d**2
            else:
                total = total + 0.5 * torch.clamp(margin - d, min=0) ** 2
    return total / max(n * (n - 1), 1)


def ce_label_smooth_naive(logits, labels, epsilon=0.1):
    b, c = logits.shape
    total = logits.new_zeros(())
    for r in range(b):
        m = max(float(v) for v in logits[r].detach())  # a constant shift, for stability
        logz = m + torch.log(sum(torch.exp(logits[r, k] - m) for k in range(c)))
        for k in range(c):
            q = (1 - epsilon) * (k == int(labels[r])) + epsilon / c
            total = total - q * (logits[r, k] - logz)
    return total / b


# ------------------------------------------------------------------------------------------
# the references against hand-worked numbers
# ------------------------------------------------------------------------------------------


def _worked_example():
    # anchor 0 at the origin; positives 1 (distance 1) and 2 (distance 3); negative 3 at 2.
    f = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    # angle embeddings: t_1 = (1 + cos 90deg) / 2 = 0.5, t_2 = (1 + cos 0) / 2 = 1
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    return f, torch.tensor([0, 0, 0, 1]), g


def test_drsl_reference_by_hand():
    f, y, g = _worked_example()
    terms, la = drsl_anchor_terms(f, y, 0, delta=0.3, smoothing="hard", sort_weight=1.0, g=g)
    # positive 1 (ranked first): no negative above, rank 1, l_S = l*_S = 1 - t_1 = 0.5
    assert [float(v) for v in terms[1]] == [1.0, 1.0, 0.0, 0.0, 0.5, 0.5]
    # positive 2 (ranked third): one negative and one positive above: rank 3, rank+ 2,
    # l_R = 1/3; l_S = (0 + 0.5) / 2 = 0.25, l*_S = 0 (no positive of target >= 1 above it)
    rank, rank_pos, n_fp, l_r, l_s, l_st = (float(v) for v in terms[2])
    assert (rank, rank_pos, n_fp, l_s, l_st) == (3.0, 2.0, 1.0, 0.25, 0.0)
    assert abs(l_r - 1 / 3) < 1e-15
    assert abs(float(la) - (0 + 1 / 3 + 0.25) / 2) < 1e-15


def test_identity_reference_by_hand():
    f, y, g = _worked_example()
    s = (-torch.cdist(f, f)).tolist()
    t = ((1 + torch.nn.functional.cosine_similarity(g[:, None], g[None], dim=2)) / 2).tolist()
    R, S = identity_update_naive(s, y, t, delta=0.3, smoothing="hard", sort_weight=1.0)
    # three anchors have positives (0, 1, 2); anchor 0 has 2 positives: scale 1/6.
    # positive 2 owes l_R = 1/3 to negative 3, the only negative above it
    assert abs(R[0][2] + 1 / 18) < 1e-15 and abs(R[0][3] - 1 / 18) < 1e-15
    assert R[0][1] == 0.0
    # positive 2 (t = 1) owes its sorting error 0.25 to positive 1 (t = 0.5), ranked above it
    assert abs(S[0][2] + 0.25 / 6) < 1e-15 and abs(S[0][1] - 0.25 / 6) < 1e-15


def test_baseline_references_by_hand():
    f = torch.tensor([[0.0], [1.0], [1.5], [3.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    # hardest positive / negative per anchor: (1, 1.5), (1, 0.5), (1.5, 0.5), (1.5, 2)
    assert abs(float(triplet_naive(f, y, 0.3)) - (0.8 + 1.3) / 4) < 1e-12
    # pairs: positives d = 1, 1.5 (twice each), negatives d = 1.5, 3, 0.5, 2 (twice each)
    want = 2 * (0.5 * 1 + 0.5 * 2.25 + 0.5 * 0.25) / 12
    assert abs(float(contrastive_naive(f, y, 1.0)) - want) < 1e-12
    # smooth-AP on perfectly separated directions with a tiny temperature: AP = 1
    e = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]], dtype=torch.float64)
    assert abs(float(smooth_ap_naive(e, y, 0.001))) < 1e-12
    logits = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    p = math.exp(2) / (math.exp(2) + 1)
    want = -(0.95 * math.log(p) + 0.05 * math.log(1 - p))
    assert abs(float(ce_label_smooth_naive(logits, torch.tensor([0]), 0.1)) - want) < 1e-12
