"""``ref_role="negatives"`` (spec, "Negatives-only references") in every loss: equal to
``"all"`` exactly when no reference shares a batch label; otherwise equal to a per-anchor loop
of single-anchor calls whose references are the anchor's own retrieval set; the data-parallel
scale and split property with a negatives-only memory."""

from __future__ import annotations

import pytest
import torch

from drsl import losses as L
from drsl.losses.names import RECORDS
from drsl.train.distributed import GatheredBatch, data_parallel_loss

NAMES = [r.name for r in RECORDS]
NORMALISER = {r.name: r.normaliser for r in RECORDS}


def _data(seed=0, shared=True):
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    ref_y = torch.tensor([0, 1, 5, 6, 2, 5, 0, 7, 6]) if shared else torch.tensor([5, 6, 7, 5, 8])
    f = torch.randn(len(y), 4, dtype=torch.float64, generator=g)
    ref = torch.randn(len(ref_y), 4, dtype=torch.float64, generator=g)
    return f, y, ref, ref_y


def _value_and_grad(name, f, y, **kw):
    e = f.clone().requires_grad_(True)
    r = kw.pop("ref_embeddings").clone().requires_grad_(True)
    loss = L.get_loss(name)(e, y, ref_embeddings=r, **kw)
    ge, gr = torch.autograd.grad(loss, [e, r], allow_unused=True)
    return loss, ge, gr


@pytest.mark.parametrize("name", NAMES)
def test_negatives_equal_all_when_no_reference_shares_a_batch_label(name):
    f, y, ref, ref_y = _data(shared=False)
    a = _value_and_grad(name, f, y, ref_embeddings=ref, ref_labels=ref_y)
    n = _value_and_grad(name, f, y, ref_embeddings=ref, ref_labels=ref_y, ref_role="negatives")
    for u, v in zip(a, n, strict=True):
        assert (u is None and v is None) or torch.equal(u, v)


def _per_anchor_loop(name, f, y, ref, ref_y):
    """The negatives-only loss as a loop: anchor a alone, its retrieval set (the other batch
    rows and the references of other labels) passed as references with the default role,
    weighted as the loss's normaliser counts it."""
    fn = L.get_loss(name)
    b = len(y)
    values, weights = [], []
    for a in range(b):
        keep_ref = ref_y != y[a]
        others = torch.cat([torch.arange(a), torch.arange(a + 1, b)])
        items = torch.cat([f[others], ref[keep_ref]])
        labels = torch.cat([y[others], ref_y[keep_ref]])
        pos, neg = int((labels == y[a]).sum()), int((labels != y[a]).sum())
        weight = {
            "anchors": float(pos > 0),
            "anchors_pos_neg": float(pos > 0 and neg > 0),
            "pairs": float(pos + neg),
        }[NORMALISER[name]]
        values.append(fn(f[a : a + 1], y[a : a + 1], ref_embeddings=items, ref_labels=labels))
        weights.append(weight)
    w = torch.tensor(weights, dtype=f.dtype)
    return (torch.stack(values) * w).sum() / w.sum()


@pytest.mark.parametrize("name", NAMES)
def test_negatives_only_references_match_the_per_anchor_loop(name):
    f, y, ref, ref_y = _data(seed=1)
    e1, r1 = f.clone().requires_grad_(True), ref.clone().requires_grad_(True)
    got = L.get_loss(name)(e1, y, ref_embeddings=r1, ref_labels=ref_y, ref_role="negatives")
    e2, r2 = f.clone().requires_grad_(True), ref.clone().requires_grad_(True)
    want = _per_anchor_loop(name, e2, y, r2, ref_y)
    tol = dict(rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(got, want, **tol)
    g1 = torch.autograd.grad(got, [e1, r1])
    g2 = torch.autograd.grad(want, [e2, r2])
    for u, v in zip(g1, g2, strict=True):
        torch.testing.assert_close(u, v, **tol)
    everything = L.get_loss(name)(f, y, ref_embeddings=ref, ref_labels=ref_y)
    assert abs(float(got.detach()) - float(everything)) > 1e-6  # the role changes the loss here


@pytest.mark.parametrize("name", ["drsl", "smooth_ap", "contrastive", "circle"])
def test_a_mask_marks_the_negatives_only_references(name):
    f, y, ref, ref_y = _data(seed=2)
    fn = L.get_loss(name)
    every = torch.ones(len(ref_y), dtype=torch.bool)
    none = torch.zeros(len(ref_y), dtype=torch.bool)
    kw = dict(ref_embeddings=ref, ref_labels=ref_y)
    assert torch.equal(fn(f, y, ref_role=every, **kw), fn(f, y, ref_role="negatives", **kw))
    assert torch.equal(fn(f, y, ref_role=none, **kw), fn(f, y, **kw))
    with pytest.raises(ValueError, match="bool mask"):
        fn(f, y, ref_role=every[:-1], **kw)


def test_gradient_mass_leaves_out_the_excluded_pairs():
    f, y, ref, ref_y = _data(seed=3)
    kw = dict(ref_embeddings=ref, ref_labels=ref_y)
    m_all = L.gradient_mass(L.get_loss("drsl", **kw), f, y)
    m_neg = L.gradient_mass(L.get_loss("drsl", ref_role="negatives", **kw), f, y)
    excluded = int((y[:, None] == ref_y[None, :]).sum())
    assert m_neg["num_pos_pairs"] == m_all["num_pos_pairs"] - excluded
    assert m_neg["num_neg_pairs"] == m_all["num_neg_pairs"]


@pytest.mark.parametrize("W", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_split_batches_with_a_negatives_only_memory_equal_one_batch(name, W):
    """Each process: its part as anchors, the other parts as references ("all") and the
    memory ("negatives"), scaled by c_r; the mean equals the one-process loss and gradient."""
    f, y, mem, mem_y = _data(seed=4 + W)
    f = torch.cat([f, f[:4] * 0.5])  # 12 rows: uneven identities per part
    y = torch.cat([y, torch.tensor([3, 3, 1, 4])])
    fn = L.get_loss(name)
    e1 = f.clone().requires_grad_(True)
    full = fn(e1, y, ref_embeddings=mem, ref_labels=mem_y, ref_role="negatives")
    (g_full,) = torch.autograd.grad(full, e1)
    e2 = f.clone().requires_grad_(True)
    parts = torch.arange(len(y)).chunk(W)
    vals = []
    for r in range(W):
        gb = GatheredBatch(r, [e2[p] for p in parts], [y[p] for p in parts])
        vals.append(
            data_parallel_loss(
                fn,
                e2[parts[r]],
                y[parts[r]],
                normaliser=NORMALISER[name],
                extra_references=(mem, mem_y, None),
                gathered=gb,
                extra_role="negatives",
            )
        )
    split = torch.stack(vals).mean()
    (g_split,) = torch.autograd.grad(split, e2)
    torch.testing.assert_close(split, full, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_split, g_full, rtol=1e-10, atol=1e-12)


def test_one_process_memory_role_is_the_loss_with_that_role():
    f, y, mem, mem_y = _data(seed=9)
    gb = GatheredBatch(0, [f], [y])
    got = data_parallel_loss(
        L.drsl_loss, f, y, extra_references=(mem, mem_y, None), gathered=gb,
        extra_role="negatives",
    )  # fmt: skip
    want = L.drsl_loss(f, y, ref_embeddings=mem, ref_labels=mem_y, ref_role="negatives")
    assert torch.equal(got, want)
    with pytest.raises(ValueError, match="extra_role"):
        data_parallel_loss(L.drsl_loss, f, y, gathered=gb, extra_role="positives")
