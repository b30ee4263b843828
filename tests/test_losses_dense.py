"""The blocked kernel against the readable dense version (drsl.losses.reference), hypothesis-driven:
value and smooth gradient, every smoothing, with and without references, sort_weight 0 and 1."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drsl import losses as L
from drsl.losses.reference import drsl_loss_dense

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)


@st.composite
def problems(draw):
    """A batch and, half of the time, reference items; labels of any layout; no ties."""
    b = draw(st.integers(1, 10))
    r = draw(st.sampled_from([0, 0, 1, 5, 12]))
    n_ids = draw(st.integers(1, 5))
    labels = draw(st.lists(st.integers(0, n_ids), min_size=b, max_size=b))
    ref_labels = draw(st.lists(st.integers(0, n_ids + 1), min_size=r, max_size=r))
    d = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([0.3, 1.0, 3.0]))
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(b, d, generator=g, dtype=torch.float64) * scale
    ang = torch.randn(b + r, 3, generator=g, dtype=torch.float64)
    ref = torch.randn(r, d, generator=g, dtype=torch.float64) * scale if r else None
    return f, torch.tensor(labels), ref, torch.tensor(ref_labels) if r else None, ang


options = st.fixed_dictionaries(
    {
        "smoothing": st.sampled_from(L.SMOOTHINGS),
        "delta": st.sampled_from([0.1, 0.5, 2.0]),
        "sort_weight": st.sampled_from([0.0, 1.0]),
    }
)


def _both(problem, opts, separate_angles):
    f, y, ref, ref_y, ang = problem
    kw = dict(ref_labels=ref_y, **opts)
    if separate_angles:
        kw["angle_embeddings"] = ang[: f.shape[0]]
        if ref is not None:
            kw["ref_angle_embeddings"] = ang[f.shape[0] :]
    out = []
    for fn in (L.drsl_loss, drsl_loss_dense):
        x = f.clone().requires_grad_(True)
        z = None if ref is None else ref.clone().requires_grad_(True)
        loss = fn(x, y, ref_embeddings=z, **kw)
        grads = torch.autograd.grad(loss, [x] if z is None else [x, z], allow_unused=True)
        out.append((loss, grads))
    return out


@SETTINGS
@given(problems(), options, st.booleans())
def test_fast_kernel_equals_the_dense_version(problem, opts, separate_angles):
    (fast, g_fast), (dense, g_dense) = _both(problem, opts, separate_angles)
    torch.testing.assert_close(fast, dense, rtol=1e-10, atol=1e-12)
    for a, b in zip(g_fast, g_dense, strict=True):
        a = torch.zeros_like(b) if a is None else a
        b = torch.zeros_like(a) if b is None else b
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@SETTINGS
@given(problems(), st.sampled_from(L.SMOOTHINGS))
def test_identity_mode_value_equals_the_dense_version(problem, smoothing):
    f, y, ref, ref_y, _ = problem
    kw = dict(ref_embeddings=ref, ref_labels=ref_y, smoothing=smoothing, delta=0.5)
    fast = L.drsl_loss(f, y, gradient="identity", **kw)
    torch.testing.assert_close(fast, drsl_loss_dense(f, y, **kw), rtol=1e-10, atol=1e-12)


def test_dense_version_by_hand():
    # the worked example of the naive reference: anchor 0, positives 1 (d = 1), 2 (d = 3),
    # negative 3 (d = 2); with references the same items split between batch and memory
    f = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1])
    whole = drsl_loss_dense(f, y, smoothing="hard", sort_weight=0.0)
    # anchor 0: l_R = (0 + 1/3) / 2; anchor 1: its positive 0 (d = 1) ties with negative 3
    # (d = 1), and a tie counts as retrieved before
    assert float(whole) == pytest.approx(float(L.drsl_loss(f, y, smoothing="hard", sort_weight=0)))
    part = drsl_loss_dense(
        f[:1], y[:1], ref_embeddings=f[1:], ref_labels=y[1:], smoothing="hard", sort_weight=0.0
    )
    assert float(part) == pytest.approx((0 + 1 / 3) / 2)


def test_dense_version_without_positives_is_attached_zero():
    f = torch.randn(3, 2, requires_grad=True)
    loss = drsl_loss_dense(f, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(f.grad, torch.zeros_like(f))
