"""DRSL against the naive loop reference, its two gradient modes, precision, edge cases, API."""

from __future__ import annotations

import pytest
import torch
from test_losses_naive import drsl_anchor_terms, drsl_naive, identity_update_naive

from drsl import losses as L
from drsl.distances import pairwise_euclidean
from drsl.losses import _kernel as K

LAYOUTS = {
    "pk": [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3],
    "uneven": [5, 1, 5, 5, 2, 1, 7, 5, 2, 9, 5, 1],  # shuffled, counts 5/3/2/1/1
    "singletons": [0, 1, 2, 3, 4, 5, 6, 6],  # one pair only
}


def _batch(layout, dtype, seed=0, d=4):
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(LAYOUTS[layout])
    f = torch.randn(len(y), d, generator=g, dtype=torch.float64) * 0.6
    return f.to(dtype), y


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("smoothing", L.SMOOTHINGS)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_value_and_gradient_match_naive_loops(dtype, smoothing, layout):
    f, y = _batch(layout, dtype)
    kw = dict(delta=0.4, smoothing=smoothing, sort_weight=0.7)
    fa = f.clone().requires_grad_(True)
    fb = f.clone().requires_grad_(True)
    got = L.drsl_loss(fa, y, **kw)
    want = drsl_naive(fb, y, **kw)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    assert got.dtype == dtype
    torch.testing.assert_close(got, want.to(dtype), **tol)
    got.backward()
    want.backward()
    torch.testing.assert_close(fa.grad, fb.grad, **tol)
    if smoothing == "hard":  # the exact step: zero gradient, still attached
        assert torch.count_nonzero(fa.grad) == 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_separate_angle_embeddings_match_naive(dtype):
    f, y = _batch("uneven", dtype, seed=3)
    g = torch.randn(f.shape[0], 6, dtype=dtype, generator=torch.Generator().manual_seed(4))
    got = L.drsl_loss(f, y, angle_embeddings=g, smoothing="sigmoid", delta=0.3)
    want = drsl_naive(f, y, g=g, smoothing="sigmoid", delta=0.3)
    torch.testing.assert_close(got, want.to(dtype), rtol=1e-5, atol=1e-6)
    # the angle embeddings are a target: no gradient flows into them
    gg = g.clone().requires_grad_(True)
    L.drsl_loss(f.requires_grad_(True), y, angle_embeddings=gg).backward()
    assert gg.grad is None


def test_terms_match_naive_per_anchor_and_positive():
    f, y = _batch("uneven", torch.float64, seed=1)
    s = L.retrieval_scores(f)
    t = L.angle_targets(f)
    terms = L.drsl_terms(s, y, t, delta=0.5, smoothing="linear", sort_weight=1.0)
    names = ["rank", "rank_pos", "n_fp", "l_rank", "l_sort", "l_sort_target"]
    for a in range(len(y)):
        ref, la = drsl_anchor_terms(f, y, a, delta=0.5, smoothing="linear", sort_weight=1.0)
        assert int(terms.num_pos[a]) == len(ref)
        slots = terms.pos_index[a][terms.pos_valid[a]].tolist()
        assert slots == sorted(ref)  # positives in increasing index order
        for p, i in enumerate(slots):
            for k, name in enumerate(names):
                got = float(getattr(terms, name)[a, p])
                assert got == pytest.approx(float(ref[i][k]), rel=1e-12, abs=1e-12), (a, i, name)
        if la is None:
            assert float(terms.anchor_loss[a]) == 0.0
        else:
            assert float(terms.anchor_loss[a]) == pytest.approx(float(la), rel=1e-12)
    # padded slots hold zeros
    assert torch.all(terms.l_rank[~terms.pos_valid] == 0)
    torch.testing.assert_close(terms.loss, L.drsl_loss(f, y, delta=0.5))


@pytest.mark.parametrize("smoothing", L.SMOOTHINGS)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_identity_update_matches_naive_loops(smoothing, layout):
    f, y = _batch(layout, torch.float64, seed=2)
    s = L.retrieval_scores(f)
    t = L.angle_targets(f)
    kw = dict(delta=0.5, smoothing=smoothing, sort_weight=0.8)
    upd = L.identity_update(s, y, t, **kw)
    R, S = identity_update_naive(s.tolist(), y, t.tolist(), **kw)
    torch.testing.assert_close(upd.ranking, torch.tensor(R, dtype=torch.float64))
    torch.testing.assert_close(upd.sorting, torch.tensor(S, dtype=torch.float64))
    torch.testing.assert_close(upd.total, upd.ranking + upd.sorting)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("smoothing", L.SMOOTHINGS)
def test_identity_mode_value_equals_smooth_and_chains_the_update(dtype, smoothing):
    f, y = _batch("uneven", dtype, seed=5)
    kw = dict(delta=0.4, smoothing=smoothing)
    fa = f.clone().requires_grad_(True)
    loss_id = L.drsl_loss(fa, y, gradient="identity", **kw)
    torch.testing.assert_close(loss_id, L.drsl_loss(f, y, gradient="smooth", **kw))
    loss_id.backward()
    # the embeddings' gradient is the identity update on s = -d, chained by autograd
    fb = f.clone().requires_grad_(True)
    s = -pairwise_euclidean(fb)
    upd = L.identity_update(s.detach(), y, L.angle_targets(f), **kw).total
    (want,) = torch.autograd.grad(s, fb, grad_outputs=upd.to(dtype))
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(fa.grad, want, **tol)
    assert torch.count_nonzero(fa.grad) > 0  # the update moves even the exact step


def test_from_scores_equals_embedding_form():
    f, y = _batch("pk", torch.float64, seed=6)
    for gradient in L.GRADIENTS:
        got = L.drsl_from_scores(L.retrieval_scores(f), y, L.angle_targets(f), gradient=gradient)
        torch.testing.assert_close(got, L.drsl_loss(f, y, gradient=gradient))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("gradient", L.GRADIENTS)
def test_half_precision_computes_in_float32(dtype, gradient):
    # the policy: half-precision inputs are upcast (exactly) and the loss comes back in float32
    f, y = _batch("pk", torch.float32, seed=7, d=16)
    fh = f.to(dtype).requires_grad_(True)
    loss = L.drsl_loss(fh, y, gradient=gradient, smoothing="sigmoid")
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    up = fh.detach().float().requires_grad_(True)
    ref = L.drsl_loss(up, y, gradient=gradient, smoothing="sigmoid")
    assert torch.equal(loss, ref)  # the same float32 computation on the same values
    loss.backward()
    ref.backward()
    assert fh.grad.dtype == dtype and torch.isfinite(fh.grad).all()
    assert torch.equal(fh.grad, up.grad.to(dtype))  # the float32 gradient, rounded once
    # large half-precision values: the squares would overflow float16 (max 65504)
    big = (f * 3000).to(dtype).requires_grad_(True)
    out = L.drsl_loss(big, y, gradient=gradient)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(big.grad).all()


DEGENERATE = {
    "one identity": (lambda: torch.randn(6, 3), [0] * 6),
    "no positives": (lambda: torch.randn(5, 3), [0, 1, 2, 3, 4]),
    "identical": (lambda: torch.ones(6, 3), [0, 0, 1, 1, 2, 2]),
    "zeros": (lambda: torch.zeros(6, 3), [0, 0, 1, 1, 2, 2]),
    "huge": (lambda: torch.randn(6, 3) * 1e15, [0, 0, 1, 1, 2, 2]),  # d^2 ~ 1e30 fits float32
    "huger": (lambda: torch.randn(6, 3) * 1e30, [0, 0, 1, 1, 2, 2]),  # d^2 would overflow
    "tiny": (lambda: torch.randn(6, 3) * 1e-30, [0, 0, 1, 1, 2, 2]),
    "single": (lambda: torch.randn(1, 3), [0]),
    "empty": (lambda: torch.randn(0, 3), []),
}


@pytest.mark.parametrize("case", list(DEGENERATE))
@pytest.mark.parametrize("name", list(L.LOSSES))
def test_degenerate_batches_stay_finite(case, name):
    make, labels = DEGENERATE[case]
    if case == "huger" and name == "contrastive":
        pytest.skip("contrastive's value is d^2 ~ 1e60 itself: beyond float32 by definition")
    torch.manual_seed(0)
    f = make().requires_grad_(True)
    y = torch.tensor(labels, dtype=torch.long)
    loss = L.get_loss(name)(f, y)
    assert loss.dim() == 0 and torch.isfinite(loss), (case, name, loss)
    loss.backward()
    assert f.grad is not None and torch.isfinite(f.grad).all(), (case, name)
    if case in ("no positives", "single", "empty") and name != "contrastive":
        assert loss.item() == 0.0 and torch.count_nonzero(f.grad) == 0


@pytest.mark.parametrize("gradient", L.GRADIENTS)
def test_no_positive_gives_attached_zero(gradient):
    f = torch.randn(4, 3, requires_grad=True)
    loss = L.drsl_loss(f, torch.arange(4), gradient=gradient)
    assert loss.requires_grad and loss.item() == 0.0
    loss.backward()
    assert torch.equal(f.grad, torch.zeros_like(f))


def test_huge_norms_agree_with_scaled_batch():
    # the distance rescaling makes the loss scale-covariant: f * c with delta * c
    f, y = _batch("pk", torch.float32, seed=8)
    a = L.drsl_loss(f * 1e30, y, delta=0.4e30)
    torch.testing.assert_close(a, L.drsl_loss(f, y, delta=0.4), rtol=1e-5, atol=1e-6)


def test_large_positive_sets_are_computed_in_blocks(monkeypatch):
    # a tiny block budget forces many blocks; the result must not change
    f, y = _batch("uneven", torch.float64, seed=9)
    fa = f.clone().requires_grad_(True)
    want = L.drsl_loss(fa, y, smoothing="sigmoid")
    want.backward()
    upd = L.identity_update(L.retrieval_scores(f), y, L.angle_targets(f))
    monkeypatch.setattr(K, "_BLOCK_ELEMENTS", 7)
    assert len(K.blocks(12, 4)) == 12  # one anchor per block
    fb = f.clone().requires_grad_(True)
    got = L.drsl_loss(fb, y, smoothing="sigmoid")
    got.backward()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(fb.grad, fa.grad)
    upd2 = L.identity_update(L.retrieval_scores(f), y, L.angle_targets(f))
    torch.testing.assert_close(upd2.total, upd.total)


def test_block_budget_bounds_memory():
    for b, p in [(64, 3), (1024, 3), (1024, 1023), (5000, 4999)]:
        blocks = K.blocks(b, p)
        assert blocks[0][0] == 0 and blocks[-1][1] == b
        assert all(r1 - r0 == 1 or (r1 - r0) * p * b <= K._BLOCK_ELEMENTS for r0, r1 in blocks)


def test_module_matches_function():
    f, y = _batch("pk", torch.float32)
    g = f.flip(1)
    crit = L.DRSLoss(delta=0.2, smoothing="sigmoid", sort_weight=0.5, gradient="identity")
    want = L.drsl_loss(
        f,
        y,
        delta=0.2,
        smoothing="sigmoid",
        sort_weight=0.5,
        gradient="identity",
        angle_embeddings=g,
    )
    torch.testing.assert_close(crit(f, y, angle_embeddings=g), want)
    assert "gradient='identity'" in repr(crit)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(smoothing="cubic"), "smoothing"),
        (dict(gradient="auto"), "gradient"),
        (dict(delta=0.0), "delta"),
        (dict(delta=-1.0), "delta"),
        (dict(sort_weight=-0.5), "sort_weight"),
    ],
)
def test_bad_options_raise(kwargs, match):
    f, y = _batch("pk", torch.float32)
    with pytest.raises(ValueError, match=match):
        L.drsl_loss(f, y, **kwargs)
    with pytest.raises(ValueError, match=match):
        L.DRSLoss(**kwargs)


def test_bad_inputs_raise():
    f, y = _batch("pk", torch.float32)
    with pytest.raises(ValueError, match="2-D"):
        L.drsl_loss(f[0], y)
    with pytest.raises(ValueError, match="one label per row"):
        L.drsl_loss(f, y[:-1])
    with pytest.raises(ValueError, match="integers"):
        L.drsl_loss(f, y.float())
    with pytest.raises(ValueError, match="floating point"):
        L.drsl_loss(f.long(), y)
    with pytest.raises(ValueError, match="angle_embeddings"):
        L.drsl_loss(f, y, angle_embeddings=f[:-1])
    with pytest.raises(ValueError, match="square"):
        L.drsl_from_scores(f, y, f)
    s = L.retrieval_scores(f)
    with pytest.raises(ValueError, match="targets"):
        L.drsl_terms(s, y, s[:, :-1])
    assert L.drsl_loss(f, y, delta=0.0, smoothing="hard") >= 0  # hard ignores delta


def test_registry_and_get_loss():
    assert list(L.LOSSES) == [
        "drsl",
        "drsl_smooth",
        "drsl_rank",
        "triplet",
        "triplet_soft",
        "smooth_ap",
        "contrastive",
        "multi_similarity",
        "circle",
    ]
    assert L.get_loss("drsl").keywords["gradient"] == "identity"
    assert L.get_loss("drsl_smooth").keywords["gradient"] == "smooth"
    assert L.get_loss("drsl_rank").keywords["sort_weight"] == 0.0
    assert L.get_loss("triplet_soft").keywords["margin"] is None
    assert L.get_loss("drsl", gradient="smooth").keywords["gradient"] == "smooth"
    f, y = _batch("pk", torch.float32)
    torch.testing.assert_close(
        L.get_loss("drsl_rank", delta=0.1)(f, y),
        L.drsl_loss(f, y, delta=0.1, sort_weight=0.0, gradient="identity"),
    )
    with pytest.raises(ValueError, match="valid names: drsl, drsl_smooth"):
        L.get_loss("rs_loss")
    with pytest.raises(ValueError, match="unknown keyword"):
        L.get_loss("triplet", delta=0.1)
    with pytest.raises(TypeError):
        L.LOSSES["mine"] = L.drsl_loss  # read-only


def test_gradient_mass():
    f, y = _batch("pk", torch.float64, seed=11)
    # the ranking part of the identity update: as much push on positives as on negatives
    m = L.gradient_mass(L.get_loss("drsl_rank", delta=0.5), f, y)
    assert m["pos"] > 0 and m["pos"] == pytest.approx(m["neg"], rel=1e-12)
    assert m["num_pos_pairs"] == 12 * 2 and m["num_neg_pairs"] == 12 * 9
    assert m["pos_per_pair"] == pytest.approx(m["pos"] / 24)
    assert m["neg_per_pair"] == pytest.approx(m["neg"] / 108)
    # against a direct computation on the distance matrix (smooth DRSL)
    d = pairwise_euclidean(f).requires_grad_(True)
    L.drsl_from_scores(-d, y, L.angle_targets(f), delta=0.5).backward()
    same = y[:, None] == y[None, :]
    pos = same & ~torch.eye(12, dtype=torch.bool)
    m2 = L.gradient_mass(L.get_loss("drsl_smooth", delta=0.5), f, y)
    assert m2["pos"] == pytest.approx(float(d.grad.abs()[pos].sum()), rel=1e-10)
    assert m2["neg"] == pytest.approx(float(d.grad.abs()[~same].sum()), rel=1e-10)
    # every registered loss works; the input is untouched
    f0 = f.clone()
    for name in L.LOSSES:
        m = L.gradient_mass(L.get_loss(name), f, y)
        assert set(m) >= {"pos", "neg", "pos_per_pair", "neg_per_pair"}
    assert torch.equal(f, f0) and f.grad is None
    with pytest.raises(ValueError, match="pairwise matrix"):
        L.gradient_mass(lambda e, lab: e.sum(), f, y)
