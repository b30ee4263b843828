"""The baselines (batch-hard triplet, Smooth-AP, contrastive, label-smoothed CE) against loops."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_losses_naive import (
    ce_label_smooth_naive,
    contrastive_naive,
    smooth_ap_naive,
    triplet_naive,
)

from drsl import losses as L
from drsl.losses import _kernel as K

BASELINES = {
    "triplet": (lambda f, y: L.batch_hard_triplet_loss(f, y), triplet_naive),
    "triplet_soft": (
        lambda f, y: L.batch_hard_triplet_loss(f, y, margin=None),
        lambda f, y: triplet_naive(f, y, None),
    ),
    "triplet_m1": (
        lambda f, y: L.batch_hard_triplet_loss(f, y, margin=1.0),
        lambda f, y: triplet_naive(f, y, 1.0),
    ),
    "smooth_ap": (lambda f, y: L.smooth_ap_loss(f, y), smooth_ap_naive),
    "smooth_ap_t05": (
        lambda f, y: L.smooth_ap_loss(f, y, temperature=0.5),
        lambda f, y: smooth_ap_naive(f, y, 0.5),
    ),
    "contrastive": (lambda f, y: L.contrastive_loss(f, y), contrastive_naive),
    "contrastive_m3": (
        lambda f, y: L.contrastive_loss(f, y, margin=3.0),
        lambda f, y: contrastive_naive(f, y, 3.0),
    ),
}

LAYOUTS = {
    "pk": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
    "uneven": [5, 1, 5, 5, 2, 1, 7, 5, 2, 9, 5, 1],
    "one identity": [3] * 7,
    "no positives": [0, 1, 2, 3, 4],
}


def _tol(dtype):
    return dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=1e-6)


def _check(name, f, y):
    fast, naive = BASELINES[name]
    fa = f.clone().requires_grad_(True)
    fb = f.clone().requires_grad_(True)
    got, want = fast(fa, y), naive(fb, y)
    assert got.dtype == f.dtype and got.dim() == 0
    torch.testing.assert_close(got, want.to(f.dtype), **_tol(f.dtype))
    got.backward()
    want.backward()
    torch.testing.assert_close(fa.grad, fb.grad, **_tol(f.dtype))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name", list(BASELINES))
def test_baselines_match_naive_loops(name, layout, dtype):
    g = torch.Generator().manual_seed(0)
    y = torch.tensor(LAYOUTS[layout])
    f = (torch.randn(len(y), 5, generator=g, dtype=torch.float64) * 0.7).to(dtype)
    _check(name, f, y)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    st.integers(2, 12).flatmap(lambda n: st.lists(st.integers(0, n // 2), min_size=n, max_size=n)),
    st.integers(0, 2**31 - 1),
    st.sampled_from(list(BASELINES)),
)
def test_baselines_random_layouts(labels, seed, name):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(len(labels), 3, generator=g, dtype=torch.float64)
    _check(name, f, torch.tensor(labels))


def test_smooth_ap_many_instances_in_blocks(monkeypatch):
    # 2 identities of 15 and 9 instances (P = 14): computed in many small blocks
    g = torch.Generator().manual_seed(2)
    y = torch.tensor([0] * 15 + [1] * 9)[torch.randperm(24, generator=g)]
    f = torch.randn(24, 4, generator=g, dtype=torch.float64)
    monkeypatch.setattr(K, "_BLOCK_ELEMENTS", 100)
    assert len(K.blocks(24, 14)) == 24
    _check("smooth_ap_t05", f, y)


def test_smooth_ap_perfect_and_reversed():
    # perfectly retrieved -> 0; all negatives above all positives -> well above 0
    f = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
    y = torch.tensor([0, 0, 1, 1])
    assert L.smooth_ap_loss(f, y).item() == pytest.approx(0.0, abs=1e-6)
    assert L.smooth_ap_loss(f, torch.tensor([0, 1, 1, 0])).item() > 0.4


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("epsilon", [0.0, 0.1, 1.0])
def test_cross_entropy_label_smooth_matches_loop(dtype, epsilon):
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(6, 5, generator=g, dtype=torch.float64) * 3).to(dtype)
    y = torch.tensor([0, 4, 2, 2, 1, 3])
    la = logits.clone().requires_grad_(True)
    lb = logits.clone().requires_grad_(True)
    got = L.cross_entropy_label_smooth(la, y, epsilon=epsilon)
    want = ce_label_smooth_naive(lb, y, epsilon)
    torch.testing.assert_close(got, want.to(dtype), **_tol(dtype))
    got.backward()
    want.backward()
    torch.testing.assert_close(la.grad, lb.grad, **_tol(dtype))
    torch.testing.assert_close(
        got, torch.nn.functional.cross_entropy(logits, y, label_smoothing=epsilon), **_tol(dtype)
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["triplet", "smooth_ap", "contrastive"])
def test_baselines_half_precision(dtype, name):
    g = torch.Generator().manual_seed(4)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    f = torch.randn(8, 16, generator=g).to(dtype).requires_grad_(True)
    loss = BASELINES[name][0](f, y)
    # half-precision inputs are upcast exactly and the loss comes back in float32
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.equal(loss, BASELINES[name][0](f.detach().float(), y))
    loss.backward()
    assert f.grad.dtype == dtype and torch.isfinite(f.grad).all()
    logits = torch.randn(8, 4, generator=g).to(dtype)
    ce = L.cross_entropy_label_smooth(logits, torch.tensor([0, 1, 2, 3] * 2))
    assert ce.dtype == torch.float32
    assert torch.equal(
        ce, L.cross_entropy_label_smooth(logits.float(), torch.tensor([0, 1, 2, 3] * 2))
    )


def test_modules_match_functions():
    g = torch.Generator().manual_seed(5)
    f = torch.randn(8, 4, generator=g)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    logits = torch.randn(8, 4, generator=g)
    pairs = [
        (L.TripletLoss(margin=0.5), L.batch_hard_triplet_loss(f, y, margin=0.5)),
        (L.TripletLoss(margin=None), L.batch_hard_triplet_loss(f, y, margin=None)),
        (L.SmoothAPLoss(temperature=0.1), L.smooth_ap_loss(f, y, temperature=0.1)),
        (L.ContrastiveLoss(margin=2.0), L.contrastive_loss(f, y, margin=2.0)),
    ]
    for module, want in pairs:
        torch.testing.assert_close(module(f, y), want)
    torch.testing.assert_close(
        L.CrossEntropyLabelSmooth(epsilon=0.2)(logits, y),
        L.cross_entropy_label_smooth(logits, y, epsilon=0.2),
    )


def test_baseline_bad_arguments_raise():
    f, y = torch.randn(4, 3), torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="margin"):
        L.batch_hard_triplet_loss(f, y, margin=-0.1)
    with pytest.raises(ValueError, match="temperature"):
        L.smooth_ap_loss(f, y, temperature=0.0)
    with pytest.raises(ValueError, match="margin"):
        L.contrastive_loss(f, y, margin=0.0)
    with pytest.raises(ValueError, match="epsilon"):
        L.cross_entropy_label_smooth(f, y, epsilon=1.5)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        L.cross_entropy_label_smooth(f, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="one label per row"):
        L.smooth_ap_loss(f, y[:3])
    for module, kw in [
        (L.TripletLoss, dict(margin=-1.0)),
        (L.SmoothAPLoss, dict(temperature=-1.0)),
        (L.ContrastiveLoss, dict(margin=-1.0)),
        (L.CrossEntropyLabelSmooth, dict(epsilon=2.0)),
    ]:
        with pytest.raises(ValueError):
            module(**kw)
