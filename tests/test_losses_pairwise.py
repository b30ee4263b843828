"""Multi-similarity and circle loss against brute-force per-anchor loops (float64), with
reference items and negatives-only references."""

from __future__ import annotations

import math

import pytest
import torch

from drsl import losses as L


def _retrieval_sets(y, ref_y, ref_role):
    """Per anchor a: [(item index, is positive)] of its retrieval set (batch, then refs)."""
    b = len(y)
    items = list(y) + list(ref_y)
    out = []
    for a in range(b):
        rows = []
        for j, lab in enumerate(items):
            if j == a:
                continue
            if j >= b and ref_role == "negatives" and lab == y[a]:
                continue  # left out: neither positive nor negative
            rows.append((j, lab == y[a]))
        out.append(rows)
    return out


def _cos(u, v):
    return (u @ v) / (u.norm().clamp_min(1e-12) * v.norm().clamp_min(1e-12))


def ms_naive(f, y, ref=None, ref_y=(), alpha=2.0, beta=50.0, base=0.5, eps=0.1, ref_role="all"):
    """Eq. 9-11 of Wang et al. 2019, one anchor at a time."""
    allf = f if ref is None else torch.cat([f, ref])
    losses = []
    for a, rows in enumerate(_retrieval_sets(y.tolist(), list(ref_y), ref_role)):
        sp = [_cos(allf[a], allf[j]) for j, p in rows if p]
        sn = [_cos(allf[a], allf[j]) for j, p in rows if not p]
        if not sp or not sn:
            continue
        min_p, max_n = min(float(s.detach()) for s in sp), max(float(s.detach()) for s in sn)
        kept_p = [s for s in sp if float(s.detach()) - eps < max_n]
        kept_n = [s for s in sn if float(s.detach()) + eps > min_p]
        lp = torch.log1p(sum((torch.exp(-alpha * (s - base)) for s in kept_p), f.new_zeros(())))
        ln = torch.log1p(sum((torch.exp(beta * (s - base)) for s in kept_n), f.new_zeros(())))
        losses.append(lp / alpha + ln / beta)
    return torch.stack(losses).mean() if losses else f.sum() * 0


def circle_naive(f, y, ref=None, ref_y=(), m=0.25, gamma=256.0, ref_role="all"):
    """Eq. 6 of Sun et al. 2020, one anchor at a time."""
    allf = f if ref is None else torch.cat([f, ref])
    losses = []
    for a, rows in enumerate(_retrieval_sets(y.tolist(), list(ref_y), ref_role)):
        sp = [_cos(allf[a], allf[j]) for j, p in rows if p]
        sn = [_cos(allf[a], allf[j]) for j, p in rows if not p]
        if not sp or not sn:
            continue
        lp = [-gamma * max(1 + m - float(s.detach()), 0.0) * (s - (1 - m)) for s in sp]
        ln = [gamma * max(float(s.detach()) + m, 0.0) * (s - m) for s in sn]
        z = torch.logsumexp(torch.stack(lp), 0) + torch.logsumexp(torch.stack(ln), 0)
        losses.append(torch.log1p(torch.exp(z)) if z < 30 else z + torch.log1p(torch.exp(-z)))
    return torch.stack(losses).mean() if losses else f.sum() * 0


CASES = {
    "ms": (L.multi_similarity_loss, ms_naive, {}),
    "ms_wide": (
        L.multi_similarity_loss,
        lambda *a, **k: ms_naive(*a, alpha=1.0, beta=10.0, base=0.3, eps=0.5, **k),
        dict(alpha=1.0, beta=10.0, base=0.3, epsilon=0.5),
    ),
    "circle": (L.circle_loss, circle_naive, {}),
    "circle_m04": (
        L.circle_loss,
        lambda *a, **k: circle_naive(*a, m=0.4, gamma=80.0, **k),
        dict(margin=0.4, gamma=80.0),
    ),
}
LAYOUTS = {
    "pk": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
    "uneven": [5, 1, 5, 5, 2, 1, 7, 5, 2, 9, 5, 1],
    "one identity": [3] * 6,
    "no positives": [0, 1, 2, 3, 4],
}
TOL = dict(rtol=1e-10, atol=1e-12)


def _compare(name, f, y, **refs):
    fast, naive, kw = CASES[name]
    fa, fb = f.clone().requires_grad_(True), f.clone().requires_grad_(True)
    naive_refs = {}
    if "ref_embeddings" in refs:
        naive_refs = dict(ref=refs["ref_embeddings"], ref_y=refs["ref_labels"].tolist())
    if "ref_role" in refs:
        naive_refs["ref_role"] = refs["ref_role"]
    got, want = fast(fa, y, **kw, **refs), naive(fb, y, **naive_refs)
    assert got.dtype == torch.float64 and got.dim() == 0
    torch.testing.assert_close(got, want, **TOL)
    got.backward()
    want.backward()
    torch.testing.assert_close(fa.grad, fb.grad, **TOL)
    return float(got.detach())


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name", list(CASES))
def test_pairwise_losses_match_the_per_anchor_loop(name, layout):
    y = torch.tensor(LAYOUTS[layout])
    f = torch.randn(len(y), 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    value = _compare(name, f, y)
    if layout in ("pk", "uneven"):
        assert value > 1e-3  # a real loss, not two zeros


@pytest.mark.parametrize("ref_role", ["all", "negatives"])
@pytest.mark.parametrize("name", list(CASES))
def test_pairwise_losses_with_references_match_the_loop(name, ref_role):
    g = torch.Generator().manual_seed(4)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    f = torch.randn(6, 5, dtype=torch.float64, generator=g)
    ref_y = torch.tensor([0, 3, 1, 1, 4, 0, 5])
    ref = torch.randn(7, 5, dtype=torch.float64, generator=g)
    _compare(name, f, y, ref_embeddings=ref, ref_labels=ref_y, ref_role=ref_role)


def test_multi_similarity_mining_drops_easy_pairs():
    # one anchor's positive far more similar than any negative (beyond epsilon): no pair is
    # mined for it, so its loss is exactly 0 (the papers' Eq. 9-10)
    f = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]], dtype=torch.float64)
    assert float(L.multi_similarity_loss(f, torch.tensor([0, 0, 1, 1]))) == 0.0


def test_circle_loss_value_of_a_small_case():
    # two anchors' views: s_p = 0 and s_n = 0 for every anchor (orthogonal rows)
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1])  # positives: opposite rows (s = -1); negatives: s = 0 x 2
    m, gamma = 0.25, 2.0
    lp = -gamma * (1 + m + 1) * (-1 - (1 - m))
    ln = math.log(2) + gamma * m * (0 - m)
    want = math.log1p(math.exp(lp + ln))
    got = L.circle_loss(f, y, gamma=gamma)
    assert abs(float(got) - want) < 1e-6


@pytest.mark.parametrize("name", ["multi_similarity", "circle"])
def test_modules_and_registry_give_the_function(name):
    f = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    fn = L.multi_similarity_loss if name == "multi_similarity" else L.circle_loss
    module = L.MultiSimilarityLoss() if name == "multi_similarity" else L.CircleLoss()
    assert torch.equal(L.get_loss(name)(f, y), fn(f, y))
    assert torch.equal(module(f, y, ref_embeddings=f[:2], ref_labels=y[:2]),
                       fn(f, y, ref_embeddings=f[:2], ref_labels=y[:2]))  # fmt: skip


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: L.multi_similarity_loss(torch.eye(2), [0, 1], alpha=0), "alpha"),
        (lambda: L.multi_similarity_loss(torch.eye(2), [0, 1], epsilon=-1), "epsilon"),
        (lambda: L.circle_loss(torch.eye(2), [0, 1], gamma=0), "gamma"),
        (lambda: L.CircleLoss(margin=-0.1), "margin"),
        (lambda: L.circle_loss(torch.eye(2), [0, 1], ref_role="positives"), "ref_role"),
    ],
)
def test_bad_options_fail_with_one_line(call, match):
    with pytest.raises(ValueError, match=match):
        call()
