"""The cross-batch memory (XBM): FIFO, loss-then-enqueue order, angles, checkpoints, devices."""

from __future__ import annotations

import io

import pytest
import torch

from drsl import losses as L
from drsl.losses.memory import CrossBatchMemory


def _with_memory(fn, mem, f, y, a=None):
    """The loss of a batch against the memory, then the enqueue: the way a training loop uses it."""
    emb, lab, ang = mem.references()
    kw = {} if a is None else {"angle_embeddings": a}
    if emb is not None:
        kw.update(ref_embeddings=emb, ref_labels=lab)
        if ang is not None:
            kw["ref_angle_embeddings"] = ang
    loss = fn(f, y, **kw)
    mem.enqueue(f.detach(), y, None if a is None else a.detach())
    return loss


def _batch(step, b=6, d=4, n_ids=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(step)
    return (
        torch.randn(b, d, generator=g, dtype=dtype),
        torch.randint(0, n_ids, (b,), generator=g),
        torch.randn(b, 3, generator=g, dtype=dtype),
    )


def test_fifo_keeps_the_last_rows_oldest_first():
    mem = CrossBatchMemory(5)
    assert len(mem) == 0 and mem.references() == (None, None, None)
    for step in range(3):
        f = torch.full((2, 3), float(step))
        mem.enqueue(f, torch.tensor([step, step]))
    emb, lab, ang = mem.references()
    assert len(mem) == 5 and ang is None
    assert emb[:, 0].tolist() == [0.0, 1.0, 1.0, 2.0, 2.0] and lab.tolist() == [0, 1, 1, 2, 2]
    mem.enqueue(torch.full((7, 3), 9.0), torch.arange(7))  # larger than the memory
    assert mem.references()[1].tolist() == [2, 3, 4, 5, 6]
    mem.clear()
    assert len(mem) == 0


def test_stores_detached_copies():
    x = torch.randn(3, 2, requires_grad=True)
    mem = CrossBatchMemory(4)
    mem.enqueue(x * 2, torch.arange(3))
    emb = mem.references()[0]
    assert not emb.requires_grad
    with torch.no_grad():
        x.add_(1.0)
    torch.testing.assert_close(emb, (x.detach() - 1.0) * 2)
    # a later enqueue builds new tensors: references handed out earlier are not modified
    before = emb.clone()
    mem.enqueue(torch.zeros(2, 2), torch.arange(2))
    assert torch.equal(emb, before) and mem.references()[0] is not emb


def test_state_dict_round_trip_is_exact():
    mem = CrossBatchMemory(10)
    for step in range(4):
        f, y, a = _batch(step, b=4)
        mem.enqueue(f, y, a)
    buf = io.BytesIO()
    torch.save(mem.state_dict(), buf)
    buf.seek(0)
    again = CrossBatchMemory(10)
    again.load_state_dict(torch.load(buf, weights_only=True))
    for x, y in zip(mem.references(), again.references(), strict=True):
        assert torch.equal(x, y) and x.dtype == y.dtype
    # both continue identically
    f, y, a = _batch(9, b=4)
    mem.enqueue(f, y, a)
    again.enqueue(f, y, a)
    for x, y in zip(mem.references(), again.references(), strict=True):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match=r"size 10.*CrossBatchMemory\(10\)"):
        CrossBatchMemory(3).load_state_dict(mem.state_dict())
    with pytest.raises(ValueError, match="not a CrossBatchMemory state"):
        CrossBatchMemory(10).load_state_dict({"size": 10})


def test_bad_arguments():
    for size in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="size"):
            CrossBatchMemory(size)
    mem = CrossBatchMemory(4)
    with pytest.raises(ValueError, match="2-D"):
        mem.enqueue(torch.zeros(3), torch.arange(3))
    with pytest.raises(ValueError, match="one label per row"):
        mem.enqueue(torch.zeros(3, 2), torch.arange(2))
    mem.enqueue(torch.zeros(3, 2), torch.arange(3))
    with pytest.raises(ValueError, match="D = 5.*D = 2"):
        mem.enqueue(torch.zeros(3, 5), torch.arange(3))
    with pytest.raises(ValueError, match="every enqueue or to none"):
        mem.enqueue(torch.zeros(3, 2), torch.arange(3), torch.zeros(3, 2))


@pytest.mark.parametrize("name", list(L.LOSSES))
def test_every_loss_uses_the_memory_then_enqueues(name):
    fn, mem = L.get_loss(name), CrossBatchMemory(8)
    f0, y0, _ = _batch(0)
    f1, y1, _ = _batch(1)
    assert torch.equal(_with_memory(fn, mem, f0, y0), fn(f0, y0))  # empty: the batch alone
    got = _with_memory(fn, mem, f1, y1)
    # the second batch against the first one's six rows (the memory holds 8 >= 6)
    assert torch.equal(got, fn(f1, y1, ref_embeddings=f0, ref_labels=y0))
    assert len(mem) == 8


def test_enqueuing_first_would_make_each_item_its_own_positive():
    # the order matters (XBM, Alg. 1): were the batch enqueued before the loss, every anchor
    # would find itself in the memory, a positive at distance 0 retrieved first
    fn = L.get_loss("drsl", smoothing="hard", sort_weight=0.0)
    f = torch.tensor([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [1.5, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1])  # interleaved: every positive has a negative before it
    right = _with_memory(fn, CrossBatchMemory(16), f, y)
    wrong_mem = CrossBatchMemory(16)
    wrong_mem.enqueue(f, y)
    emb, lab, _ = wrong_mem.references()
    wrong = fn(f, y, ref_embeddings=emb, ref_labels=lab)
    assert right.item() > 0.3  # every anchor's positive sits behind a negative
    assert wrong.item() < right.item()  # the self-copies (rank 1, no error) dilute the loss
    terms = L.drsl_terms(
        L.retrieval_scores(f, emb), y, torch.ones(4, 8), ref_labels=lab, smoothing="hard"
    )
    for a in range(4):  # the copy of anchor a is one of its positives, with l_R = 0
        slot = terms.pos_index[a].tolist().index(4 + a)
        assert terms.l_rank[a, slot] == 0 and terms.rank[a, slot] == 1


def test_angle_embeddings_travel_with_the_memory():
    fn, mem = L.get_loss("drsl_smooth"), CrossBatchMemory(32)
    f0, y0, a0 = _batch(0)
    f1, y1, a1 = _batch(1)
    _with_memory(fn, mem, f0, y0, a0)
    got = _with_memory(fn, mem, f1, y1, a1)
    want = fn(
        f1, y1, angle_embeddings=a1, ref_embeddings=f0, ref_labels=y0, ref_angle_embeddings=a0
    )
    assert torch.equal(got, want)
    assert torch.equal(mem.references()[2][6:], a1)


def test_a_memory_resumes_exactly_from_its_state_dict():
    def run(mem, steps):
        return [_with_memory(fn, mem, *_batch(s)[:2]).item() for s in steps]

    fn = L.get_loss("drsl")
    want = run(CrossBatchMemory(10), range(6))
    first = CrossBatchMemory(10)
    got = run(first, range(3))
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = CrossBatchMemory(10)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert len(resumed) == 10
    assert got + run(resumed, range(3, 6)) == want


def test_gradient_flows_into_the_batch_only():
    fn, mem = L.get_loss("drsl"), CrossBatchMemory(16)
    f0, y0, _ = _batch(0)
    _with_memory(fn, mem, f0.requires_grad_(True), y0)
    f1, y1, _ = _batch(1)
    x = f1.clone().requires_grad_(True)
    _with_memory(fn, mem, x, y1).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not mem.references()[0].requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_memory_follows_the_device():
    mem = CrossBatchMemory(8)
    mem.enqueue(torch.zeros(2, 3), torch.arange(2))
    mem.enqueue(torch.ones(2, 3, device="cuda"), torch.arange(2, device="cuda"))
    emb, lab, _ = mem.references()
    assert emb.device.type == "cuda" and lab.device.type == "cuda" and len(mem) == 4
    f = torch.randn(6, 3, device="cuda", requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2, 2], device="cuda")
    loss = _with_memory(L.get_loss("drsl"), mem, f, y)
    loss.backward()
    assert loss.device.type == "cuda" and torch.isfinite(f.grad).all()
