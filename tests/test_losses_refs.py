"""Reference items (spec "Beyond the batch"): empty references equal none, the split
property of data-parallel training, copies of batch rows, gradients into the references, the
memory bound, the tie rule of the hard step, and the input checks."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from drsl import losses as L
from drsl.losses import _kernel as K


def _pk(P, K_, d=4, seed=0, shuffle=False, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(P).repeat_interleave(K_)
    f = torch.randn(P * K_, d, generator=g, dtype=dtype)
    if shuffle:
        perm = torch.randperm(P * K_, generator=g)
        f, y = f[perm], y[perm]
    return f, y


# every loss with the keywords it is tested with: (name, fn(embeddings, labels, **refs))
def _drsl(**kw):
    return lambda e, y, **r: L.drsl_loss(e, y, delta=0.4, sort_weight=0.7, **kw, **r)


LOSS_CASES = {
    **{
        f"drsl_{gr}_{sm}": _drsl(gradient=gr, smoothing=sm)
        for gr in L.GRADIENTS
        for sm in L.SMOOTHINGS
    },
    "drsl_rank": lambda e, y, **r: L.get_loss("drsl_rank")(e, y, **r),
    "triplet": lambda e, y, **r: L.batch_hard_triplet_loss(e, y, **r),
    "triplet_soft": lambda e, y, **r: L.batch_hard_triplet_loss(e, y, margin=None, **r),
    "smooth_ap": lambda e, y, **r: L.smooth_ap_loss(e, y, temperature=0.5, **r),
    "contrastive": lambda e, y, **r: L.contrastive_loss(e, y, margin=2.0, **r),
    "multi_similarity": lambda e, y, **r: L.multi_similarity_loss(e, y, beta=10.0, **r),
    "circle": lambda e, y, **r: L.circle_loss(e, y, gamma=32.0, **r),
    "ce": lambda e, y, **r: L.cross_entropy_label_smooth(e, y, epsilon=0.2, **r),
}


@pytest.mark.parametrize("name", list(LOSS_CASES))
def test_empty_references_equal_none(name):
    f, y = _pk(4, 3, shuffle=True)
    fn = LOSS_CASES[name]
    y = y % 5 if name == "ce" else y
    a = fn(f, y)
    b = fn(f, y, ref_embeddings=f[:0], ref_labels=y[:0])
    assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------
# the split property: W processes, each its part as anchors and the other parts as references
# ------------------------------------------------------------------------------------------


def _split_loss(fn, e, y, W, angle=None):
    """Mean over W equal parts of fn(part, refs = the other parts), refs WITH gradient."""
    parts = torch.arange(e.shape[0]).chunk(W)
    vals = []
    for idx in parts:
        other = torch.cat([p for p in parts if p is not idx])
        kw = dict(ref_embeddings=e[other], ref_labels=y[other])
        if angle is not None:
            kw.update(angle_embeddings=angle[idx], ref_angle_embeddings=angle[other])
        vals.append(fn(e[idx], y[idx], **kw))
    return torch.stack(vals).mean()


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("W", [2, 3])
@pytest.mark.parametrize("name", list(LOSS_CASES))
def test_split_over_processes_equals_the_concatenated_batch(name, W, shuffle):
    f, y = _pk(6, 3, shuffle=shuffle, seed=W)
    if name == "ce":
        y = y % 4
    fn = LOSS_CASES[name]
    e1 = f.clone().requires_grad_(True)
    full = fn(e1, y)
    (g_full,) = torch.autograd.grad(full, e1)
    e2 = f.clone().requires_grad_(True)
    split = _split_loss(fn, e2, y, W)
    (g_split,) = torch.autograd.grad(split, e2)
    torch.testing.assert_close(split, full, rtol=0, atol=1e-10)
    torch.testing.assert_close(g_split, g_full, rtol=0, atol=1e-10)
    if "hard" not in name or "identity" in name:
        assert g_full.abs().max() > 1e-3  # a real gradient, not zeros on both sides


@pytest.mark.parametrize("gradient", L.GRADIENTS)
def test_split_property_with_separate_angle_embeddings(gradient):
    f, y = _pk(6, 4, shuffle=True, seed=5)
    ang = torch.randn(f.shape[0], 3, dtype=f.dtype, generator=torch.Generator().manual_seed(6))

    def fn(e, lab, **kw):
        return L.drsl_loss(e, lab, gradient=gradient, smoothing="sigmoid", **kw)

    e1 = f.clone().requires_grad_(True)
    full = fn(e1, y, angle_embeddings=ang)
    (g_full,) = torch.autograd.grad(full, e1)
    e2 = f.clone().requires_grad_(True)
    split = _split_loss(fn, e2, y, 2, angle=ang)
    (g_split,) = torch.autograd.grad(split, e2)
    torch.testing.assert_close(split, full, rtol=0, atol=1e-10)
    torch.testing.assert_close(g_split, g_full, rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------------------
# references that are copies of batch rows; gradients into the references
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in LOSS_CASES if n != "ce"])
def test_references_copying_the_batch_equal_the_doubled_batch(name):
    # each anchor's copy is a positive at distance 0 (never the anchor itself): the loss of
    # (batch, refs = batch) is that of the batch stacked twice (the copies' anchors repeat it)
    f, y = _pk(4, 2, shuffle=True, seed=7)
    fn = LOSS_CASES[name]
    got = fn(f, y, ref_embeddings=f.clone(), ref_labels=y.clone())
    want = fn(torch.cat([f, f]), torch.cat([y, y]))
    # a copy's distance to its original is 0 on one side and sqrt(rounding of |x|^2) ~ 1e-8
    # on the other (the expansion |x|^2 + |y|^2 - 2 x.y of drsl.distances): a smoothed step
    # of width 0.4 turns that into ~1e-9 of loss, hence this tolerance
    torch.testing.assert_close(got, want, rtol=0, atol=1e-8)
    if name.startswith("triplet"):  # the hardest positive and negative have copies: no change
        torch.testing.assert_close(got, fn(f, y), rtol=0, atol=1e-12)
    else:
        assert abs(float(got) - float(fn(f, y))) > 1e-3  # the copies do count


def test_a_copy_of_the_anchor_is_its_first_positive():
    f, y = _pk(3, 2, seed=8)
    s = L.retrieval_scores(f, f)
    terms = L.drsl_terms(s, y, L.angle_targets(f, f), ref_labels=y, smoothing="hard")
    b = f.shape[0]
    for a in range(b):
        slots = terms.pos_index[a][terms.pos_valid[a]].tolist()
        assert a not in slots and b + a in slots  # the copy, not the anchor, is a positive
        p = slots.index(b + a)
        assert terms.rank[a, p] == 1 and terms.l_rank[a, p] == 0  # retrieved first


@pytest.mark.parametrize("gradient", L.GRADIENTS)
def test_updates_flow_into_references_that_require_grad(gradient):
    f, y = _pk(4, 2, seed=9)
    g = torch.Generator().manual_seed(10)
    ref = torch.randn(6, 4, generator=g, dtype=f.dtype).requires_grad_(True)
    ref_y = torch.tensor([0, 1, 2, 3, 4, 5])
    kw = dict(gradient=gradient, delta=2.0)
    L.drsl_loss(f, y, ref_embeddings=ref, ref_labels=ref_y, **kw).backward()
    assert ref.grad is not None and ref.grad.abs().sum(dim=1).min() > 0
    # identity mode: what the references receive is the update chained through d = ||f - r||
    if gradient == "identity":
        x = f.clone().requires_grad_(True)
        r = ref.detach().clone().requires_grad_(True)
        s = L.retrieval_scores(x, r)
        t = L.angle_targets(f, ref.detach())
        upd = L.identity_update(s.detach(), y, t, ref_labels=ref_y, delta=2.0).total
        gx, gr = torch.autograd.grad(s, (x, r), grad_outputs=upd)
        torch.testing.assert_close(ref.grad, gr, rtol=1e-10, atol=1e-12)


def test_references_are_never_anchors():
    # a reference with a label no batch row has adds a negative and nothing else
    f, y = _pk(3, 2, seed=11)
    stranger = torch.full((1, 4), 50.0, dtype=f.dtype)  # far away: H = 0 for every pair
    for name in ("drsl_identity_linear", "drsl_smooth_hard", "triplet", "triplet_soft"):
        a = LOSS_CASES[name](f, y)
        b = LOSS_CASES[name](f, y, ref_embeddings=stranger, ref_labels=torch.tensor([99]))
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------
# memory: blocks of B x P x (B + R) at most, never (B + R)^2 x B
# ------------------------------------------------------------------------------------------


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an operation produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize(
    "name", ["drsl_smooth_linear", "drsl_identity_sigmoid", "smooth_ap", "triplet"]
)
def test_peak_tensor_stays_within_the_block_budget(monkeypatch, name):
    b, r, d = 32, 480, 8
    n = b + r
    g = torch.Generator().manual_seed(12)
    f = torch.randn(b, d, generator=g, dtype=torch.float64).requires_grad_(True)
    y = torch.arange(8).repeat_interleave(4)
    ref = torch.randn(r, d, generator=g, dtype=torch.float64)
    ref_y = torch.randint(0, 40, (r,), generator=g)
    monkeypatch.setattr(K, "_BLOCK_ELEMENTS", 4 * n)  # ~4 (anchor, positive) rows per block
    p = int(max((y[:, None] == torch.cat([y, ref_y])[None]).sum(1) - 1))
    with _LargestTensor() as probe:
        LOSS_CASES[name](f, y, ref_embeddings=ref, ref_labels=ref_y).backward()
    # the largest tensors are the B x N matrices (2 stacked weights for Smooth-AP) or a block
    assert probe.largest >= b * n  # the probe sees the B x N matrices
    assert probe.largest <= max(2 * b * n, p * n, 4 * n)
    assert probe.largest < b * p * n < n * n * b  # never the whole block, let alone N^2 B


def test_block_ranges_respect_the_budget_with_references():
    for b, p, n in [(256, 3, 256), (256, 14, 8448), (256, 40, 8448), (8, 8000, 8192)]:
        parts = K.blocks(b, p, n)
        assert parts[0][0] == 0 and parts[-1][1] == b
        assert all(r1 - r0 == 1 or (r1 - r0) * p * n <= K._BLOCK_ELEMENTS for r0, r1 in parts)
        assert all(r0 == q1 for (_, q1), (r0, _) in zip(parts, parts[1:], strict=False))


# ------------------------------------------------------------------------------------------
# the tie rule of the hard step (spec "Words": a tie counts as retrieved before)
# ------------------------------------------------------------------------------------------


def test_hard_step_counts_a_tie_as_before():
    x = torch.tensor([-1e-12, 0.0, 1e-12])
    assert L.step_function(x, "hard").tolist() == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("row", ["ones", "random"])
@pytest.mark.parametrize("gradient", L.GRADIENTS)
def test_collapsed_batch_has_the_largest_ranking_error(row, gradient):
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    base = torch.ones(1, 5) if row == "ones" else torch.randn(1, 5) * 3.3
    f = base.repeat(len(y), 1).double().requires_grad_(True)
    loss = L.drsl_loss(f, y, smoothing="hard", gradient=gradient, sort_weight=0.0)
    # every item ties with every other: N_FP(i) = |N_a|, rank(i) = |P_a| + |N_a|
    n = len(y)
    num_pos = torch.tensor([int((y == v).sum()) - 1 for v in y], dtype=torch.float64)
    want = ((n - 1 - num_pos) / (n - 1)).mean()
    value = float(loss.detach())
    assert value == pytest.approx(float(want), rel=1e-12) and value > 0.5
    terms = L.drsl_terms(L.retrieval_scores(f.detach()), y, torch.ones(n, n), smoothing="hard")
    valid = terms.pos_valid
    torch.testing.assert_close(
        terms.n_fp[valid], (n - 1 - num_pos)[:, None].expand_as(valid)[valid]
    )
    loss.backward()
    assert torch.isfinite(f.grad).all()


# ------------------------------------------------------------------------------------------
# input checks (one line, naming the culprit)
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LOSS_CASES))
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_inputs_are_rejected(name, bad):
    f, y = _pk(3, 2, seed=13)
    y = y % 5 if name == "ce" else y
    fn = LOSS_CASES[name]
    f_bad = f.clone()
    f_bad[4, 1] = bad
    with pytest.raises(
        ValueError, match=r"^(embeddings|logits) hold NaN or inf in 1 row\(s\) \(4\)"
    ):
        fn(f_bad, y)
    if name == "ce":
        return
    ref = f.clone()
    ref[2, 0] = bad
    with pytest.raises(ValueError, match=r"^ref_embeddings hold NaN or inf in 1 row\(s\) \(2\)"):
        fn(f, y, ref_embeddings=ref, ref_labels=y)


def test_non_finite_angle_embeddings_are_rejected():
    f, y = _pk(3, 2, seed=14)
    ang = f.clone()
    ang[0, 0] = float("nan")
    with pytest.raises(ValueError, match="^angle_embeddings hold NaN"):
        L.drsl_loss(f, y, angle_embeddings=ang)
    with pytest.raises(ValueError, match="^ref_angle_embeddings hold NaN"):
        L.drsl_loss(f, y, ref_embeddings=f, ref_labels=y, ref_angle_embeddings=ang)


@pytest.mark.parametrize("name", list(LOSS_CASES))
def test_empty_feature_dimension_is_rejected(name):
    y = torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"empty feature dimension \(4 x 0\)"):
        LOSS_CASES[name](torch.zeros(4, 0), y)


def test_reference_argument_errors():
    f, y = _pk(3, 2, seed=15)
    with pytest.raises(ValueError, match="together"):
        L.drsl_loss(f, y, ref_embeddings=f)
    with pytest.raises(ValueError, match="together"):
        L.batch_hard_triplet_loss(f, y, ref_labels=y)
    with pytest.raises(ValueError, match="D = 4 columns"):
        L.smooth_ap_loss(f, y, ref_embeddings=f[:, :2], ref_labels=y)
    with pytest.raises(ValueError, match="one label per row of ref_embeddings"):
        L.contrastive_loss(f, y, ref_embeddings=f, ref_labels=y[:2])
    with pytest.raises(ValueError, match="ref_angle_embeddings must be R x D'"):
        L.drsl_loss(f, y, ref_embeddings=f, ref_labels=y, ref_angle_embeddings=f[:2])
    with pytest.raises(ValueError, match="without ref_embeddings"):
        L.drsl_loss(f, y, ref_angle_embeddings=f)
    with pytest.raises(ValueError, match=r"B x \(B \+ R\) with R = 2"):
        L.drsl_from_scores(L.retrieval_scores(f), y, torch.ones(6, 6), ref_labels=y[:2])


def test_modules_and_registry_take_references():
    f, y = _pk(4, 2, seed=16)
    ref, ref_y = _pk(4, 3, seed=17)
    kw = dict(ref_embeddings=ref, ref_labels=ref_y)
    pairs = [
        (L.DRSLoss(gradient="identity")(f, y, **kw), L.drsl_loss(f, y, gradient="identity", **kw)),
        (
            L.TripletLoss(margin=None)(f, y, **kw),
            L.batch_hard_triplet_loss(f, y, margin=None, **kw),
        ),
        (L.SmoothAPLoss(0.1)(f, y, **kw), L.smooth_ap_loss(f, y, temperature=0.1, **kw)),
        (L.ContrastiveLoss(2.0)(f, y, **kw), L.contrastive_loss(f, y, margin=2.0, **kw)),
        (L.get_loss("drsl_smooth")(f, y, **kw), L.drsl_loss(f, y, **kw)),
    ]
    for got, want in pairs:
        assert torch.equal(got, want)
    m = L.gradient_mass(L.get_loss("drsl_rank", **kw), f, y)
    assert m["num_pos_pairs"] == 8 * 1 + 8 * 3 and m["num_neg_pairs"] == 8 * 15
    assert m["pos"] == pytest.approx(m["neg"], rel=1e-12)  # the balance holds over refs too


def test_numpy_and_torch_paths_of_the_pairs_agree():
    # CPU labels take a numpy path (fewer tiny operations); other devices the torch one
    import numpy as np

    from drsl.losses import _common as C

    g = torch.Generator().manual_seed(18)
    for _ in range(100):
        b, r = (int(v) for v in torch.randint(0, 16, (2,), generator=g))
        labels = torch.randint(0, 5, (b,), generator=g)
        refs = torch.randint(0, 7, (r,), generator=g) if r else None
        items = C.item_labels(labels, refs)
        fast = C._positives(items.numpy(), b, np)
        slow = C._positives(items, b, None)
        for u, v in zip(fast, slow, strict=True):
            assert torch.equal(torch.from_numpy(u), v)
