"""drsl.gradcheck: finite differences, step sweeps, gradient comparisons, push totals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from drsl import gradcheck as G
from drsl import losses as L


def _batch(seed=0, n_ids=4, k=3, d=3):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n_ids * k, d, generator=g, dtype=torch.float64)
    return f, torch.arange(n_ids).repeat_interleave(k)


def test_numerical_gradient_known_function():
    x = torch.tensor([[0.3, -1.2], [2.0, 0.5]], dtype=torch.float64)
    est = G.numerical_gradient(lambda v: (torch.sin(v) * v).sum(), x)
    torch.testing.assert_close(est, torch.cos(x) * x + torch.sin(x), rtol=1e-8, atol=1e-9)
    assert torch.equal(x, torch.tensor([[0.3, -1.2], [2.0, 0.5]], dtype=torch.float64))


def test_numerical_gradient_agrees_with_autograd_on_sigmoid_drsl():
    f, y = _batch()
    g = f.clone()

    def fn(x):
        return L.drsl_loss(x, y, smoothing="sigmoid", delta=0.5, angle_embeddings=g)

    num = G.numerical_gradient(fn, f)
    auto = G.autograd_gradient(fn, f)
    cmp = G.compare_gradients(num, auto)
    assert cmp.relative_error < 1e-7 and cmp.cosine > 1 - 1e-12


def test_step_sweep_is_v_shaped():
    f, y = _batch(seed=1)

    def fn(x):
        return L.drsl_loss(x, y, smoothing="sigmoid", delta=1.0, angle_embeddings=f)

    sw = G.step_sweep(fn, f)
    assert sw.steps.shape == sw.errors.shape == sw.estimates.shape == (49,)
    i = int(np.argmin(sw.errors))
    assert 0 < i < len(sw.steps) - 1  # the bottom of the V is inside the sweep
    assert sw.errors.min() < 1e-8
    assert sw.errors[0] > 100 * sw.errors.min()  # round-off on the left
    assert sw.errors[-1] > 100 * sw.errors.min()  # truncation on the right
    # truncation side: error ~ h^2 (slope about 2 on log-log) between 1e-3 and 1e-2
    sel = (sw.steps >= 1e-3) & (sw.steps <= 1e-2)
    slope = np.polyfit(np.log10(sw.steps[sel]), np.log10(sw.errors[sel]), 1)[0]
    assert 1.5 < slope < 2.5
    assert sw.best_step == float(sw.steps[i])


def test_step_sweep_float32_bottom_is_higher():
    x = torch.linspace(-1, 1, 5)
    sw32 = G.step_sweep(lambda v: torch.exp(v).sum(), x)
    sw64 = G.step_sweep(lambda v: torch.exp(v).sum(), x.double())
    assert sw32.errors.min() > 100 * sw64.errors.min()
    assert sw32.best_step > sw64.best_step


def test_line_profile_shows_the_ramp_kinks():
    # anchor 0's scores for its positive (item 1) and its negative (item 2); anchor 1 ranks
    # its positive far ahead (loss 0), anchor 2 has no positive. Moving the negative's score
    # by t crosses the ramp of width delta = 0.25, with corners at t = +-0.25.
    y = torch.tensor([0, 0, 1])

    def fn(x):
        rows = [torch.stack([x.new_zeros(()), x[0], x[1]]), x.new_tensor([0.0, 0.0, -10.0])]
        s = torch.stack([*rows, x.new_zeros(3)])
        return L.drsl_from_scores(s, y, torch.ones(3, 3), smoothing="linear", delta=0.25)

    x = torch.tensor([-1.0, -1.0], dtype=torch.float64)
    v = torch.tensor([0.0, 1.0], dtype=torch.float64)
    ts = np.linspace(-0.5, 0.5, 41)
    vals, slopes = G.line_profile(fn, x, v, ts)
    assert vals[0] == 0.0 and vals[20] == pytest.approx(1 / 6) and vals[-1] == pytest.approx(0.25)
    assert np.all(np.diff(vals) >= 0)
    outside = np.abs(ts) > 0.26
    assert np.all(slopes[outside] == 0)  # beyond the ramp: no gradient at all
    assert np.all(slopes[np.abs(ts) < 0.24] > 0)
    # a central difference straddling the corner at t = 0.25 mixes the two slopes
    x0 = x + 0.25 * v
    inside = G.directional_derivative(fn, x0 - 1e-2 * v, v, 1e-6)
    across = G.directional_derivative(fn, x0, v, 1e-3)
    assert 0.0 < across < inside
    assert across == pytest.approx(inside / 2, rel=0.05)


def test_compare_gradients():
    a = torch.tensor([1.0, 2.0, -1.0])
    same = G.compare_gradients(a, a)
    assert same.cosine == pytest.approx(1.0) and same.relative_error == 0.0
    assert same.relative_norm == 1.0 and same.max_abs_diff == 0.0
    opp = G.compare_gradients(-2 * a, a)
    assert opp.cosine == pytest.approx(-1.0) and opp.relative_norm == pytest.approx(2.0)
    z = torch.zeros(3)
    assert G.compare_gradients(z, z).relative_norm == 1.0
    assert G.compare_gradients(a, z).relative_norm == math.inf
    assert G.compare_gradients(z, a).cosine == 0.0
    with pytest.raises(ValueError, match="shape"):
        G.compare_gradients(a, a[:2])


def test_identity_vs_smooth_and_push_totals():
    f, y = _batch(seed=2, n_ids=4, k=4)
    r = G.identity_vs_smooth(f, y, delta=1.0, smoothing="sigmoid", sort_weight=0.0)
    want = L.identity_update(
        L.retrieval_scores(f), y, L.angle_targets(f), delta=1.0, smoothing="sigmoid", sort_weight=0
    )
    torch.testing.assert_close(r.identity, want.total)
    assert r.per_anchor_cosine.shape == (16,)
    assert r.overall.cosine > 0.3  # same direction broadly, not the same field
    assert r.overall.relative_error > 1e-3
    # the identity update's ranking part balances its pushes exactly, entry signs included
    pt = G.push_totals(r.identity, y)
    np.testing.assert_allclose(pt["pos_push"], pt["neg_push"], atol=1e-15)
    np.testing.assert_allclose(pt["pos_abs"], pt["neg_abs"], atol=1e-15)
    # any loss of score differences has balanced signed sums (translation invariance)
    ps = G.push_totals(r.smooth, y)
    np.testing.assert_allclose(ps["pos_push"], ps["neg_push"], atol=1e-12)
    # the sorting part only moves positives among themselves: it adds to pos_abs alone
    # (seen once the ranking is done: identities far apart, angle targets from other vectors)
    far = torch.cat([f, 20.0 * torch.nn.functional.one_hot(y, 4).to(f.dtype)], dim=1)
    r1 = G.identity_vs_smooth(
        far, y, delta=1.0, smoothing="sigmoid", sort_weight=1.0, angle_embeddings=f
    )
    for field in (r1.identity, r1.smooth):
        p1 = G.push_totals(field, y)
        np.testing.assert_allclose(p1["pos_push"], p1["neg_push"], atol=1e-12)
        assert np.all(p1["pos_abs"] >= p1["neg_abs"] - 1e-15)
        assert np.any(p1["pos_abs"] > p1["neg_abs"] + 1e-6)
    with pytest.raises(ValueError, match="B x B"):
        G.push_totals(r.identity[:3], y)


def test_input_errors():
    x = torch.ones(2)
    with pytest.raises(ValueError, match="floating"):
        G.numerical_gradient(lambda v: v.sum(), torch.ones(2, dtype=torch.long))
    with pytest.raises(ValueError, match="step"):
        G.numerical_gradient(lambda v: v.sum(), x, step=0.0)
    with pytest.raises(ValueError, match="0-d"):
        G.autograd_gradient(lambda v: v, x)
    with pytest.raises(ValueError, match="steps"):
        G.step_sweep(lambda v: v.sum(), x, steps=[1e-3, -1.0])
    with pytest.raises(ValueError, match="non-zero"):
        G.step_sweep(lambda v: v.sum(), x, direction=torch.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        G.directional_derivative(lambda v: v.sum(), x, torch.ones(3), 1e-3)
