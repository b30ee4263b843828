"""The block plan of the step sums (``drsl.losses._kernel.BlockPlan``): anchors walked in order
of decreasing positive count, each block trimmed to the slots it needs. It covers every anchor
with a positive once, within the budget, and changes no value (bit for bit)."""

from __future__ import annotations

import pytest
import torch

from drsl import losses as L
from drsl.losses import _drsl_core as C
from drsl.losses import _kernel as K
from drsl.losses._common import Pairs

pytestmark = pytest.mark.usefixtures("one_thread")


def _memory_like(b=32, r=480, d=8, seed=0, dtype=torch.float64):
    """A PK batch and references with very uneven positive counts (as a cross-batch memory)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g, dtype=dtype)
    y = torch.arange(b // 4).repeat_interleave(4)
    z = torch.randn(r, d, generator=g, dtype=dtype)
    # identity 0 fills a third of the memory: its anchors have ~160 positives, the others ~10
    zy = torch.randint(0, 3 * b // 4, (r,), generator=g)
    zy[: r // 3] = 0
    return x, y, z, zy


@pytest.mark.parametrize(("b", "p", "n", "budget"), [(32, 9, 512, 2048), (64, 30, 1000, 40000)])
def test_the_plan_covers_every_anchor_once_within_the_budget(monkeypatch, b, p, n, budget):
    monkeypatch.setattr(K, "_BLOCK_ELEMENTS", budget)
    g = torch.Generator().manual_seed(b)
    num_pos = torch.randint(0, p + 1, (b,), generator=g)
    num_pos[0] = p
    plan = K.BlockPlan(b, p, n, num_pos)
    assert plan.order is not None and sorted(plan.order.tolist()) == list(range(b))
    seen = []
    for r0, r1, slots in plan.ranges:
        rows = plan.order[r0:r1]
        assert slots == int(num_pos[rows].max()) and slots >= 1  # trimmed to the block's need
        assert r1 - r0 == 1 or (r1 - r0) * slots * n <= budget
        seen += rows.tolist()
    # every anchor with a positive exactly once; those without none
    assert sorted(seen) == sorted(torch.nonzero(num_pos).flatten().tolist())
    assert torch.equal(plan.back(plan.rows(num_pos)), num_pos)


def test_one_block_keeps_the_plain_walk():
    num_pos = torch.tensor([3, 1, 0, 2])
    plan = K.BlockPlan(4, 3, 10, num_pos)
    assert plan.order is None and plan.ranges == [(0, 4, 3)]
    assert K.BlockPlan(4, 3, 10).ranges == [(0, 4, 3)]


@pytest.mark.parametrize("smoothing", L.SMOOTHINGS)
@pytest.mark.parametrize("gradient", L.GRADIENTS)
def test_trimmed_blocks_change_no_value(monkeypatch, smoothing, gradient):
    # the same loss and gradients, bit for bit, with and without trimming, in many blocks
    x, y, z, zy = _memory_like()
    n = x.shape[0] + z.shape[0]
    monkeypatch.setattr(K, "_BLOCK_ELEMENTS", 6 * n)
    counts = Pairs(y, zy).num_pos
    assert counts.max() > 2 * counts.float().mean()  # uneven: trimming has work to skip
    out = []
    for trim in (True, False):
        if not trim:
            untrimmed = _untrimmed_plan()
            monkeypatch.setattr(K, "BlockPlan", untrimmed)
            monkeypatch.setattr(C, "BlockPlan", untrimmed)
        xx, zz = x.clone().requires_grad_(True), z.clone().requires_grad_(True)
        loss = L.drsl_loss(
            xx, y, ref_embeddings=zz, ref_labels=zy, smoothing=smoothing, gradient=gradient
        )
        loss.backward()
        out.append((loss, xx.grad, zz.grad))
    (a, ga, za), (b, gb, zb) = out
    assert torch.equal(a, b) and torch.equal(ga, gb) and torch.equal(za, zb)


def _untrimmed_plan():
    plan = K.BlockPlan

    def build(b, p, n, num_pos=None):
        return plan(b, p, n, None)  # every block with all P slots, in the anchors' order

    return build


def test_trimmed_step_sums_hold_zero_in_padded_slots(monkeypatch):
    x, y, z, zy = _memory_like(seed=1)
    pairs = Pairs(y, zy)
    d = torch.cdist(x, torch.cat([x, z]))
    d_pos = d.gather(1, pairs.pos_index)
    w = torch.ones(1, *d.shape, dtype=d.dtype)  # every column
    monkeypatch.setattr(K, "_BLOCK_ELEMENTS", 4 * d.shape[1])
    # (hard step: a padded slot, the anchor itself at distance 0, counts at least itself)
    trimmed = K.step_sums(d, d_pos, pairs.pos_index, w, "hard", False, pairs.num_pos)
    plain = K.step_sums(d, d_pos, pairs.pos_index, w, "hard", False)
    valid = pairs.pos_valid
    assert torch.equal(trimmed[valid], plain[valid])
    assert torch.count_nonzero(trimmed[~valid]) == 0 and torch.count_nonzero(plain[~valid]) > 0
    # and with one block (the plain walk) the padding is zeroed too
    monkeypatch.setattr(K, "_BLOCK_ELEMENTS", 1 << 30)
    whole = K.step_sums(d, d_pos, pairs.pos_index, w, "hard", False, pairs.num_pos)
    assert torch.equal(whole, trimmed)
