"""Mixed precision: every loss is robust on its own inside a CPU bfloat16 autocast region.

The policy (``drsl.losses``, "Precision"): a loss computes in float32 (float64 for float64
inputs) with autocast off inside, so its value inside an autocast region is the float32 value
outside it, bit for bit; half-precision inputs are upcast exactly, the loss is returned in
float32 and the gradient flows back to them in their own dtype.
"""

from __future__ import annotations

import pytest
import torch

from drsl import losses as L
from drsl.losses.names import record

pytestmark = pytest.mark.usefixtures("one_thread")


def _bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _drsl(**kw):
    return lambda e, y, **r: L.drsl_loss(e, y, delta=0.5, **kw, **r)


CASES = {
    **{f"drsl_{g}_{s}": _drsl(gradient=g, smoothing=s) for g in L.GRADIENTS for s in L.SMOOTHINGS},
    **{name: L.get_loss(name) for name in L.LOSSES if not record(name).takes_angle},
    "smooth_ap_t05": L.get_loss("smooth_ap", temperature=0.5),
    "ce": lambda e, y, **r: L.cross_entropy_label_smooth(e, y % 8, **r),
}


def _problem(with_refs: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 8, generator=g)
    y = torch.arange(4).repeat_interleave(4)
    if not with_refs:
        return x, y, {}
    z = torch.randn(24, 8, generator=g)
    zy = torch.randint(0, 6, (24,), generator=g)
    return x, y, {"ref_embeddings": z, "ref_labels": zy}


def _value_and_grads(fn, x, y, refs, dtype=None, autocast=False):
    xx = (x if dtype is None else x.to(dtype)).clone().requires_grad_(True)
    rr = dict(refs)
    if refs:
        z = refs["ref_embeddings"]
        rr["ref_embeddings"] = (z if dtype is None else z.to(dtype)).clone().requires_grad_(True)
    if autocast:
        with _bf16():
            loss = fn(xx, y, **rr)
    else:
        loss = fn(xx, y, **rr)
    loss.backward()  # outside the region, as PyTorch recommends
    # (cross-entropy ignores references: no gradient reaches them)
    grads = [xx.grad] + ([rr["ref_embeddings"].grad] if refs and fn is not CASES["ce"] else [])
    return loss, grads


def test_the_region_really_autocasts():
    # without the losses' own guard, their matrix products here would run in bfloat16
    a = torch.randn(4, 4)
    with _bf16():
        assert (a @ a).dtype == torch.bfloat16
        assert torch.bmm(a[None], a[None]).dtype == torch.bfloat16


@pytest.mark.parametrize("with_refs", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_float32_inputs_give_the_float32_value_inside_autocast(name, with_refs):
    x, y, refs = _problem(with_refs)
    want, want_grads = _value_and_grads(CASES[name], x, y, refs)
    got, grads = _value_and_grads(CASES[name], x, y, refs, autocast=True)
    assert got.dtype == torch.float32
    assert torch.equal(got, want)  # (float32 tolerance would be the weaker check)
    for g, w in zip(grads, want_grads, strict=True):
        assert g.dtype == torch.float32 and torch.isfinite(g).all()
        assert torch.equal(g, w)


@pytest.mark.parametrize("with_refs", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_bfloat16_inputs_inside_autocast(name, with_refs):
    # what a model run under autocast hands to the loss: bfloat16 features
    x, y, refs = _problem(with_refs, seed=1)
    xh = x.bfloat16()
    refs_h = {**refs, "ref_embeddings": refs["ref_embeddings"].bfloat16()} if refs else {}
    got, grads = _value_and_grads(CASES[name], xh, y, refs_h, autocast=True)
    up = {**refs_h, "ref_embeddings": refs_h["ref_embeddings"].float()} if refs else {}
    want, want_grads = _value_and_grads(CASES[name], xh.float(), y, up)
    assert got.dtype == torch.float32 and torch.isfinite(got)
    assert torch.equal(got, want)  # the float32 computation on the upcast values
    for g, w in zip(grads, want_grads, strict=True):
        assert g.dtype == torch.bfloat16 and torch.isfinite(g).all()
        assert torch.equal(g, w.bfloat16())  # the float32 gradient, rounded once


def test_half_references_are_upcast_not_rounded_to_the_batch_dtype():
    x, y, refs = _problem(True, seed=2)
    z64 = refs["ref_embeddings"].double()
    a = L.drsl_loss(x.bfloat16(), y, ref_embeddings=z64, ref_labels=refs["ref_labels"])
    b = L.drsl_loss(
        x.bfloat16().float(), y, ref_embeddings=z64.float(), ref_labels=refs["ref_labels"]
    )
    assert torch.equal(a, b)


def test_helpers_are_unchanged_inside_autocast():
    x, y, refs = _problem(True, seed=3)
    z, zy = refs["ref_embeddings"], refs["ref_labels"]
    s, t = L.retrieval_scores(x, z), L.angle_targets(x, z)
    terms = L.drsl_terms(s, y, t, ref_labels=zy)
    upd = L.identity_update(s, y, t, ref_labels=zy)
    mass = L.gradient_mass(L.get_loss("drsl_smooth"), x, y)
    with _bf16():
        s2, t2 = L.retrieval_scores(x, z), L.angle_targets(x, z)
        terms2 = L.drsl_terms(s2, y, t2, ref_labels=zy)
        upd2 = L.identity_update(s2, y, t2, ref_labels=zy)
        mass2 = L.gradient_mass(L.get_loss("drsl_smooth"), x, y)
        v = L.drsl_from_scores(s2, y, t2, ref_labels=zy)
    assert s2.dtype == t2.dtype == torch.float32
    assert torch.equal(s, s2) and torch.equal(t, t2)
    for k in ("rank", "n_fp", "l_rank", "l_sort", "l_sort_target", "anchor_loss", "loss"):
        assert torch.equal(getattr(terms, k), getattr(terms2, k)), k
    assert torch.equal(upd.total, upd2.total)
    assert mass == mass2
    assert torch.equal(v, terms.loss)


def test_a_memory_loop_inside_autocast():
    x, y, _ = _problem(False, seed=4)
    fn = L.get_loss("drsl")
    runs = []
    for autocast in (False, True):
        mem = L.CrossBatchMemory(40)
        vals = []
        for step in range(3):
            xs = (x + step).requires_grad_(True)
            emb, lab, _ = mem.references()
            refs = {} if emb is None else {"ref_embeddings": emb, "ref_labels": lab}
            if autocast:
                with _bf16():
                    loss = fn(xs, y, **refs)
            else:
                loss = fn(xs, y, **refs)
            mem.enqueue(xs.detach(), y)
            loss.backward()
            vals.append((loss.detach(), xs.grad))
        runs.append(vals)
    for (a, ga), (b, gb) in zip(*runs, strict=True):
        assert torch.equal(a, b) and torch.equal(ga, gb)
