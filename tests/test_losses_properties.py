"""The spec's properties of DRSL on random batches and label layouts (hypothesis)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drsl import losses as L

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


@st.composite
def batches(draw, min_size=2, max_size=14, dtype=torch.float64):
    """Random labels (any order, any counts) and embeddings."""
    n = draw(st.integers(min_size, max_size))
    labels = draw(st.lists(st.integers(0, max(1, n // 2)), min_size=n, max_size=n))
    d = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([0.1, 1.0, 10.0]))
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n, d, generator=g, dtype=dtype) * scale
    return f, torch.tensor(labels)


options = st.fixed_dictionaries(
    {
        "smoothing": st.sampled_from(L.SMOOTHINGS),
        "delta": st.sampled_from([0.05, 0.3, 2.0]),
        "sort_weight": st.sampled_from([0.0, 0.5, 1.0]),
    }
)


def _clusters(n_ids, k, dim, seed, dtype=torch.float64):
    """L2-normalised identities, each a tight cluster around its own orthogonal direction."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=dtype))[0][:n_ids]
    f = centres.repeat_interleave(k, 0) + 0.05 * torch.randn(
        n_ids * k, dim, generator=g, dtype=dtype
    )
    perm = torch.randperm(n_ids * k, generator=g)
    labels = torch.arange(n_ids).repeat_interleave(k)
    return torch.nn.functional.normalize(f, dim=1)[perm], labels[perm]


@SETTINGS
@given(st.integers(2, 5), st.integers(2, 5), st.integers(0, 10_000))
def test_zero_loss_when_ranked_and_sorted_hard(n_ids, k, seed):
    # L2-normalised: distance order = angle order, so with H = hard the sort is perfect too;
    # clusters far apart: every positive nearer than every negative
    f, y = _clusters(n_ids, k, 8, seed)
    for gradient in L.GRADIENTS:
        assert L.drsl_loss(f, y, smoothing="hard", gradient=gradient).item() == 0.0


def test_zero_loss_when_ranked_and_sorted_linear_with_gaps():
    # each identity on the unit circle of its own plane, at angles 0, 0.2, 0.7 rad: the
    # positives' distances differ by >= 0.19 for every anchor, negatives are sqrt(2) away
    rows, labels = [], []
    for c in range(3):
        for ang in (0.0, 0.2, 0.7):
            v = torch.zeros(6, dtype=torch.float64)
            v[2 * c], v[2 * c + 1] = math.cos(ang), math.sin(ang)
            rows.append(v)
            labels.append(c)
    f, y = torch.stack(rows), torch.tensor(labels)
    terms = L.drsl_terms(L.retrieval_scores(f), y, L.angle_targets(f), delta=0.15)
    assert terms.loss.item() == 0.0
    assert torch.all(terms.l_rank == 0) and torch.all(terms.l_sort == terms.l_sort_target)
    # a wider ramp reaches across the smallest gap (0.19): the sort term wakes up
    assert L.drsl_loss(f, y, delta=0.5).item() > 0.0
    assert L.drsl_loss(f, y, delta=0.5, sort_weight=0.0).item() == 0.0


@SETTINGS
@given(batches(), options, st.integers(0, 10_000))
def test_invariant_to_permuting_the_batch(batch, opts, seed):
    f, y = batch
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    for gradient in L.GRADIENTS:
        a = L.drsl_loss(f, y, gradient=gradient, **opts)
        b = L.drsl_loss(f[perm], y[perm], gradient=gradient, **opts)
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@SETTINGS
@given(batches(), options)
def test_invariant_to_translating_the_embeddings(batch, opts):
    # distances do not see a translation; the angle targets do (cosine is taken about the
    # origin), so they are held fixed by passing them separately
    f, y = batch
    shift = torch.linspace(-3.0, 5.0, f.shape[1], dtype=f.dtype)
    a = L.drsl_loss(f, y, angle_embeddings=f, **opts)
    b = L.drsl_loss(f + shift, y, angle_embeddings=f, **opts)
    torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


@SETTINGS
@given(batches(min_size=3))
def test_l2_normalised_hard_sort_term_vanishes(batch):
    f, y = batch
    f = torch.nn.functional.normalize(f, dim=1)
    s, t = L.retrieval_scores(f), L.angle_targets(f)
    terms = L.drsl_terms(s, y, t, smoothing="hard")
    torch.testing.assert_close(terms.l_sort, terms.l_sort_target, rtol=0, atol=1e-9)


@SETTINGS
@given(batches(), options)
def test_terms_are_bounded(batch, opts):
    f, y = batch
    terms = L.drsl_terms(L.retrieval_scores(f), y, L.angle_targets(f), **opts)
    valid = terms.pos_valid
    assert torch.all((terms.l_rank >= 0) & (terms.l_rank < 1))
    # dropping the larger (1 - t) values can only lower the mean: l_S >= l*_S
    gap = terms.l_sort - terms.l_sort_target
    assert torch.all(gap >= -1e-12) and torch.all(gap <= 1)
    assert torch.all(terms.rank[valid] >= terms.rank_pos[valid])
    assert torch.all(terms.rank_pos[valid] >= 1)
    assert 0 <= terms.loss.item() <= 1 + opts["sort_weight"]


@SETTINGS
@given(batches(max_size=10), st.sampled_from(["linear", "sigmoid"]))
def test_identity_value_equals_smooth_value(batch, smoothing):
    f, y = batch
    a = L.drsl_loss(f, y, smoothing=smoothing, gradient="identity")
    b = L.drsl_loss(f, y, smoothing=smoothing, gradient="smooth")
    assert a.item() == b.item()


@SETTINGS
@given(batches(), options)
def test_identity_update_sums_to_zero_and_balances(batch, opts):
    f, y = batch
    upd = L.identity_update(L.retrieval_scores(f), y, L.angle_targets(f), **opts)
    same = y[:, None] == y[None, :]
    pos = same & ~torch.eye(len(y), dtype=torch.bool)
    for part in (upd.ranking, upd.sorting):
        # per anchor, what the items receive equals what they owe
        torch.testing.assert_close(part.sum(dim=1), torch.zeros(len(y), dtype=f.dtype))
        assert torch.all(part.diagonal() == 0)  # the anchor itself is never moved
    # ranking part: positives only go up (dL/ds <= 0), negatives only down, by equal totals
    r = upd.ranking
    assert torch.all(r[pos] <= 0) and torch.all(r[~same] >= 0)
    push_pos = -(r * pos).sum(dim=1)
    push_neg = (r * ~same).sum(dim=1)
    torch.testing.assert_close(push_pos, push_neg)
    # sorting part: moves positives only
    assert torch.all(upd.sorting[~pos] == 0)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(batches(max_size=8), st.sampled_from([0.3, 1.0]), st.sampled_from([0.0, 1.0]))
def test_gradcheck_sigmoid_smooth(batch, delta, sort_weight):
    f, y = batch
    f = f.clone().requires_grad_(True)
    g = f.detach().clone()  # targets from fixed angles: gradcheck perturbs f only

    def fn(x):
        return L.drsl_loss(
            x, y, smoothing="sigmoid", delta=delta, sort_weight=sort_weight, angle_embeddings=g
        )

    assert torch.autograd.gradcheck(fn, (f,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradcheck_baselines_and_step_sums():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(9, 3, dtype=torch.float64, generator=g).requires_grad_(True)
    y = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 3])
    for fn in (
        lambda x: L.smooth_ap_loss(x, y, temperature=0.5),
        lambda x: L.batch_hard_triplet_loss(x, y, margin=None),
        lambda x: L.contrastive_loss(x, y, margin=3.0),
        lambda x: L.drsl_from_scores(-torch.cdist(x, x), y, torch.ones(9, 9), smoothing="sigmoid"),
    ):
        assert torch.autograd.gradcheck(fn, (f,), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("smoothing", ["linear", "sigmoid"])
def test_smooth_gradient_sums_to_zero_per_anchor(smoothing):
    # the loss depends on score differences within each anchor's row only
    g = torch.Generator().manual_seed(1)
    f = torch.randn(10, 3, dtype=torch.float64, generator=g)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3, 4])
    s = L.retrieval_scores(f).requires_grad_(True)
    L.drsl_from_scores(s, y, L.angle_targets(f), smoothing=smoothing, delta=1.0).backward()
    torch.testing.assert_close(s.grad.sum(dim=1), torch.zeros(10, dtype=torch.float64))
