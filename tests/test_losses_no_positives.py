"""Reference items and missing positives (spec "The loss for one anchor" and "Beyond the batch").

No anchor with a positive gives 0, still attached, with an all-zero (never NaN) gradient that
reaches references requiring grad; anchors whose only positives are references, and references
whose labels match no anchor, give the values of the naive loops and of the dense version.
"""

from __future__ import annotations

import pytest
import torch
from test_losses_naive import cos, dist, drsl_anchor_terms

from drsl import losses as L
from drsl.losses.reference import drsl_loss_dense

pytestmark = pytest.mark.usefixtures("one_thread")

DRSL_OPTS = [
    dict(gradient=g, smoothing=s, sort_weight=w)
    for g in L.GRADIENTS
    for s in L.SMOOTHINGS
    for w in (1.0, 0.0)
]
# the metric losses that are 0 without positives (contrastive still pushes negatives apart)
ZERO_WITHOUT_POSITIVES = {
    **{f"drsl_{o['gradient']}_{o['smoothing']}_{o['sort_weight']}": o for o in DRSL_OPTS},
    "triplet": None,
    "triplet_soft": None,
    "smooth_ap": None,
}


def _call(name, x, y, **refs):
    opts = ZERO_WITHOUT_POSITIVES[name]
    if opts is not None:
        return L.drsl_loss(x, y, delta=0.5, **opts, **refs)
    return L.get_loss(name)(x, y, **refs)


def test_references_without_any_positive_give_a_loss_not_an_error():
    # drsl_loss with references, no anchor with a positive: it raised "cannot reshape tensor
    # of 0 elements into shape [3, 0, -1]" in positive_targets, in both gradient modes
    for gradient in L.GRADIENTS:
        loss = L.drsl_loss(
            torch.randn(3, 2),
            torch.tensor([0, 1, 2]),
            ref_embeddings=torch.randn(3, 2),
            ref_labels=torch.tensor([3, 4, 5]),
            gradient=gradient,
        )
        assert loss.item() == 0.0


@pytest.mark.parametrize(
    ("name", "separate_angles"),
    [(n, False) for n in ZERO_WITHOUT_POSITIVES]
    + [(n, True) for n, o in ZERO_WITHOUT_POSITIVES.items() if o is not None],  # DRSL's
)
def test_no_positive_with_references_is_an_attached_zero(name, separate_angles):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    z = torch.randn(6, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    y, zy = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7, 8, 9])  # nobody shares
    refs = dict(ref_embeddings=z, ref_labels=zy)
    if separate_angles:
        refs.update(
            angle_embeddings=torch.randn(4, 5, generator=g, dtype=torch.float64),
            ref_angle_embeddings=torch.randn(6, 5, generator=g, dtype=torch.float64),
        )
    loss = _call(name, x, y, **refs)
    assert loss.dim() == 0 and loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    # the gradient reaches both the batch and the references, as zeros (never NaN)
    assert x.grad is not None and z.grad is not None
    assert torch.equal(x.grad, torch.zeros_like(x)) and torch.equal(z.grad, torch.zeros_like(z))


@pytest.mark.parametrize("gradient", L.GRADIENTS)
def test_no_positive_with_references_in_float32_and_half(gradient):
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(5, 4).to(dtype).requires_grad_(True)
        z = torch.randn(7, 4).to(dtype).requires_grad_(True)
        loss = L.drsl_loss(
            x, torch.arange(5), ref_embeddings=z, ref_labels=torch.arange(5, 12), gradient=gradient
        )
        loss.backward()
        assert loss.item() == 0.0 and loss.dtype == torch.float32
        assert torch.count_nonzero(x.grad) == 0 and torch.count_nonzero(z.grad) == 0
        assert torch.isfinite(x.grad).all() and torch.isfinite(z.grad).all()


def test_terms_and_identity_update_without_positives():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 2, generator=g, dtype=torch.float64)
    z = torch.randn(4, 2, generator=g, dtype=torch.float64)
    y, zy = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5, 6])
    s, t = L.retrieval_scores(x, z), L.angle_targets(x, z)
    terms = L.drsl_terms(s, y, t, ref_labels=zy)
    assert terms.pos_index.shape == (3, 0) and terms.loss.item() == 0.0
    assert torch.equal(terms.num_pos, torch.zeros(3, dtype=terms.num_pos.dtype))
    upd = L.identity_update(s, y, t, ref_labels=zy)
    assert upd.total.shape == (3, 7) and torch.count_nonzero(upd.total) == 0


# ------------------------------------------------------------------------------------------
# anchors whose only positives are references; references that match no anchor
# ------------------------------------------------------------------------------------------


def _naive_with_refs(x, y, z, zy, **opts):
    """Mean of the naive per-anchor loss over the batch rows that have a positive."""
    items, labels = torch.cat([x, z]), torch.cat([y, zy])
    per = [drsl_anchor_terms(items, labels, a, **opts)[1] for a in range(x.shape[0])]
    per = [v for v in per if v is not None]
    return sum(per) / len(per)


def _only_ref_positives(seed=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 5])  # no two batch rows share a label
    # labels 0..3 twice each in the references; 4, 5 nowhere (anchors 4, 5 have no positive);
    # 7, 8 match no anchor (negatives of every anchor)
    zy = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 7, 8])
    z = (x[zy.clamp(max=5)] + 0.4 * torch.randn(10, 3, generator=g, dtype=torch.float64)).clone()
    return x, y, z, zy


@pytest.mark.parametrize("smoothing", L.SMOOTHINGS)
def test_anchors_whose_only_positives_are_references(smoothing):
    x, y, z, zy = _only_ref_positives()
    opts = dict(delta=0.6, smoothing=smoothing, sort_weight=0.8)
    terms = L.drsl_terms(L.retrieval_scores(x, z), y, L.angle_targets(x, z), ref_labels=zy, **opts)
    # every positive is a reference (column >= B); anchors 4 and 5 have none
    assert (terms.pos_index[terms.pos_valid] >= 6).all()
    assert terms.num_pos.tolist() == [2, 2, 2, 2, 0, 0]
    want = _naive_with_refs(x, y, z, zy, **opts)
    xa, za = x.clone().requires_grad_(True), z.clone().requires_grad_(True)
    xb, zb = x.clone().requires_grad_(True), z.clone().requires_grad_(True)
    got = L.drsl_loss(xa, y, ref_embeddings=za, ref_labels=zy, **opts)
    dense = drsl_loss_dense(xb, y, ref_embeddings=zb, ref_labels=zy, **opts)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    got.backward()
    dense.backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(za.grad, zb.grad, rtol=1e-10, atol=1e-12)
    if smoothing != "hard":  # the positives (references) are pulled: a gradient reaches them
        assert za.grad[:8].abs().sum() > 0
    identity = L.drsl_loss(x, y, ref_embeddings=z, ref_labels=zy, gradient="identity", **opts)
    torch.testing.assert_close(identity, want, rtol=1e-12, atol=1e-12)


def _baselines_naive(x, y, z, zy, temperature):
    """Batch-hard triplet (margin 0.3) and Smooth-AP, one batch anchor at a time."""
    items, labels = torch.cat([x, z]), torch.cat([y, zy]).tolist()
    trip, ap = [], []
    for a in range(x.shape[0]):
        others = [j for j in range(len(labels)) if j != a]
        pos = [j for j in others if labels[j] == labels[a]]
        if not pos:
            continue
        neg = [j for j in others if labels[j] != labels[a]]
        d_ap = max(dist(items[a], items[j]) for j in pos)
        d_an = min(dist(items[a], items[j]) for j in neg)
        trip.append(torch.clamp(d_ap - d_an + 0.3, min=0))
        s = {j: cos(items[a], items[j]) for j in others}
        total = 0.0
        for i in pos:
            g = {j: torch.sigmoid((s[j] - s[i]) / temperature) for j in others if j != i}
            total = total + (1 + sum(g[j] for j in pos if j != i)) / (1 + sum(g.values()))
        ap.append(total / len(pos))
    return sum(trip) / len(trip), 1 - sum(ap) / len(ap)


def test_baselines_with_only_reference_positives():
    x, y, z, zy = _only_ref_positives(seed=3)
    want_trip, want_ap = _baselines_naive(x, y, z, zy, temperature=0.5)
    refs = dict(ref_embeddings=z, ref_labels=zy)
    got_trip = L.batch_hard_triplet_loss(x, y, **refs)
    got_ap = L.smooth_ap_loss(x, y, temperature=0.5, **refs)
    torch.testing.assert_close(got_trip, want_trip, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_ap, want_ap, rtol=1e-10, atol=1e-12)


def test_references_that_match_no_anchor_are_negatives_only():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    z = x[:5] + 0.3 * torch.randn(5, 3, generator=g, dtype=torch.float64)  # close: they count
    zy = torch.tensor([10, 11, 12, 13, 14])
    opts = dict(delta=1.0, smoothing="sigmoid", sort_weight=1.0)
    s, t = L.retrieval_scores(x, z), L.angle_targets(x, z)
    with_refs = L.drsl_terms(s, y, t, ref_labels=zy, **opts)
    alone = L.drsl_terms(s[:, :8], y, t[:, :8], **opts)
    # the same positives, more false positives ahead of them: ranking errors only grow
    assert torch.equal(with_refs.pos_index, alone.pos_index)
    valid = with_refs.pos_valid
    assert (with_refs.n_fp[valid] > alone.n_fp[valid]).all()
    torch.testing.assert_close(with_refs.rank_pos, alone.rank_pos)
    want = _naive_with_refs(x, y, z, zy, **opts)
    zr = z.clone().requires_grad_(True)
    for gradient in L.GRADIENTS:
        zr.grad = None
        loss = L.drsl_loss(x, y, ref_embeddings=zr, ref_labels=zy, gradient=gradient, **opts)
        torch.testing.assert_close(loss, want, rtol=1e-12, atol=1e-12)
        loss.backward()
        assert zr.grad.abs().sum(dim=1).min() > 0  # every such negative is pushed away
    dense = drsl_loss_dense(x, y, ref_embeddings=z, ref_labels=zy, **opts)
    torch.testing.assert_close(loss, dense, rtol=1e-12, atol=1e-12)
