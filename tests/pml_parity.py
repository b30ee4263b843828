"""One home for comparing a drsl loss with a pytorch-metric-learning (PML) loss: values and
gradients in float64, on the same embeddings and labels.

Used by tests/test_pml.py (DRSL, batch-hard triplet, contrastive, multi-similarity, circle);
a baseline added to drsl is checked the same way: ``assert_pml_parity(drsl_fn, pml_loss, x, y)``.
"""

from __future__ import annotations

import numpy as np
import torch


def pk_batch(seed: int = 0, P: int = 4, K: int = 3, dim: int = 8, spread: float = 0.8):
    """A float64 P x K batch around identity centres (``requires_grad``), labels shuffled in."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(P, dim, generator=g, dtype=torch.float64)
    labels = torch.arange(P).repeat_interleave(K)
    x = centres[labels] + spread * torch.randn(P * K, dim, generator=g, dtype=torch.float64)
    perm = torch.randperm(P * K, generator=g)
    return x[perm].clone().requires_grad_(True), labels[perm]


def value_and_grad(fn, x: torch.Tensor):
    """``(loss value, d loss / d x)`` of ``fn(x)`` (``x`` a leaf)."""
    x = x.detach().clone().requires_grad_(True)
    loss = fn(x)
    (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    return float(loss.detach()), (torch.zeros_like(x) if grad is None else grad)


def assert_pml_parity(drsl_fn, pml_loss, x, labels, *, miner=None, atol=1e-12, map_value=None):
    """Assert ``drsl_fn(x, labels)`` equals ``pml_loss(x, labels, miner(x, labels))``.

    Args:
        drsl_fn: ``(embeddings, labels) -> 0-d loss``. pml_loss: a PML loss module.
        x (Tensor): ``B x D`` float64 embeddings. labels (Tensor): ``B`` labels.
        miner: a PML miner whose tuple is passed to ``pml_loss`` (optional).
        atol (float): on the values and on every gradient entry.
        map_value: ``pml value -> drsl value`` where a documented convention differs.

    Returns:
        tuple[float, float]: the two values (drsl, PML), for the caller's records.
    """

    def pml(e):
        tup = miner(e, labels) if miner is not None else None
        out = pml_loss(e, labels, tup)
        return map_value(out) if map_value is not None else out

    v_drsl, g_drsl = value_and_grad(lambda e: drsl_fn(e, labels), x)
    v_pml, g_pml = value_and_grad(pml, x)
    assert abs(v_drsl - v_pml) <= atol, (v_drsl, v_pml)
    np.testing.assert_allclose(g_drsl.numpy(), g_pml.numpy(), rtol=0, atol=atol)
    return v_drsl, v_pml
