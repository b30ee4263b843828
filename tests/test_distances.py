"""drsl.distances: values, hand-written gradient, extreme scales, errors."""

from __future__ import annotations

import pytest
import torch

from drsl import distances as D


def _x(n=7, d=4, seed=0, dtype=torch.float64):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_euclidean_matches_cdist(dtype):
    x, y = _x(dtype=dtype), _x(5, seed=1, dtype=dtype)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(D.pairwise_euclidean(x), torch.cdist(x, x), **tol)
    torch.testing.assert_close(D.pairwise_euclidean(x, y), torch.cdist(x, y), **tol)
    torch.testing.assert_close(
        D.pairwise_euclidean(x, y, squared=True), torch.cdist(x, y) ** 2, **tol
    )
    assert torch.all(D.pairwise_euclidean(x).diagonal() == 0)


@pytest.mark.parametrize("squared", [False, True])
def test_euclidean_gradcheck(squared):
    x = _x().requires_grad_(True)
    y = _x(5, seed=1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: D.pairwise_euclidean(a, squared=squared), (x,))
    assert torch.autograd.gradcheck(
        lambda a, b: D.pairwise_euclidean(a, b, squared=squared), (x, y)
    )
    # only one side needing a gradient
    assert torch.autograd.gradcheck(
        lambda b: D.pairwise_euclidean(x.detach(), b, squared=squared), (y,)
    )


def test_euclidean_gradient_matches_autograd_of_cdist():
    x = _x(9, 3, seed=2).requires_grad_(True)
    w = _x(9, 9, seed=3)
    (D.pairwise_euclidean(x) * w).sum().backward()
    g1 = x.grad.clone()
    x.grad = None
    (torch.cdist(x, x) * w).sum().backward()
    torch.testing.assert_close(g1, x.grad)


def test_coincident_points_have_zero_gradient():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [4.0, 6.0]], requires_grad=True)
    d = D.pairwise_euclidean(x)
    assert d[0, 1] == 0 and d[0, 2] == 5
    d.sum().backward()
    assert torch.isfinite(x.grad).all()
    # only the pairs with the third point pull: unit vectors, times 2 (both rows of the pair)
    torch.testing.assert_close(x.grad[0], torch.tensor([-1.2, -1.6]))
    with pytest.raises(RuntimeError):  # first-order only
        g = torch.autograd.grad(D.pairwise_euclidean(x).sum(), x, create_graph=True)[0]
        g.sum().backward()


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_extreme_scales_are_exact_rescalings(scale):
    x = _x(6, 3, seed=4, dtype=torch.float32)
    torch.testing.assert_close(D.pairwise_euclidean(x * scale) / scale, D.pairwise_euclidean(x))
    torch.testing.assert_close(D.pairwise_cosine(x * scale), D.pairwise_cosine(x))
    xs = (x * scale).requires_grad_(True)
    D.pairwise_euclidean(xs).sum().backward()
    assert torch.isfinite(xs.grad).all()


def test_large_common_offset_is_harmless():
    x = _x(6, 3, seed=5, dtype=torch.float32)
    torch.testing.assert_close(
        D.pairwise_euclidean(x + 1e4), D.pairwise_euclidean(x), atol=2e-3, rtol=1e-3
    )


def test_cosine_and_indexed_cosine():
    x = _x(6, 3, seed=6)
    c = D.pairwise_cosine(x)
    torch.testing.assert_close(c, torch.nn.functional.cosine_similarity(x[:, None], x[None], dim=2))
    idx = torch.tensor([[1, 2], [0, 0], [5, 4], [3, 3], [2, 1], [0, 5]])
    torch.testing.assert_close(D.indexed_cosine(x, idx), c.gather(1, idx))
    z = torch.zeros(2, 3)
    z_idx = torch.tensor([[1], [0]])
    assert torch.all(D.pairwise_cosine(z) == 0) and torch.all(D.indexed_cosine(z, z_idx) == 0)
    with pytest.raises(ValueError, match="index"):
        D.indexed_cosine(x, idx[:3])


def test_angle_and_chunks():
    x = _x(5, 3, seed=7)
    ang = D.pairwise_angle(x)
    assert torch.all(ang.diagonal() == 0) and torch.all((ang >= 0) & (ang <= 180))
    blocks = list(D.chunked_euclidean(x, x[:3], chunk_size=2))
    assert [s for s, _ in blocks] == [0, 2, 4]
    torch.testing.assert_close(torch.cat([b for _, b in blocks]), D.pairwise_euclidean(x, x[:3]))


def test_errors():
    x = _x()
    with pytest.raises(ValueError, match="2-D"):
        D.pairwise_euclidean(x[0])
    with pytest.raises(ValueError, match="dimension"):
        D.pairwise_euclidean(x, x[:, :2])
    with pytest.raises(ValueError, match="dtype"):
        D.pairwise_cosine(x, x.float())
    with pytest.raises(ValueError, match="chunk_size"):
        list(D.chunked_euclidean(x, x, chunk_size=0))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("squared", [False, True])
def test_inference_path_gives_the_grad_path_values(dtype, squared):
    """Without a gradient the distances are computed in place and nothing is saved: the same
    numbers, bit for bit, as the differentiable path, and the definition's up to rounding."""
    x, y = _x(40, 16, seed=8, dtype=dtype), _x(30, 16, seed=9, dtype=dtype) * 1e3
    for other in (None, y):
        with torch.no_grad():
            fast = D.pairwise_euclidean(x, other, squared=squared)
        also_fast = D.pairwise_euclidean(x, other, squared=squared)  # no input needs a grad
        graded = D.pairwise_euclidean(x.requires_grad_(True), other, squared=squared)
        x.requires_grad_(False)
        assert graded.requires_grad and not fast.requires_grad and not also_fast.requires_grad
        assert torch.equal(fast, graded.detach()) and torch.equal(also_fast, fast)
        diff = x.double()[:, None] - (x if other is None else other).double()[None]
        ref = (diff**2).sum(-1)  # the definition, in float64 (torch.cdist's own diagonal is not 0)
        want = (ref if squared else ref.sqrt()).to(dtype)
        tol = 1e-10 if dtype == torch.float64 else 1e-4
        torch.testing.assert_close(fast, want, rtol=tol, atol=tol * want.max().item())


def test_largest_float32_features_do_not_give_nan():
    # max |x| >= 2^127: the power-of-two scale 2^128 overflowed to inf and every distance
    # became NaN; now distances are finite where they fit and inf where they do not
    x = torch.tensor([[3e38, 0.0], [-3e38, 0.0], [0.0, 0.0]])
    d = D.pairwise_euclidean(x)
    assert not torch.isnan(d).any()
    torch.testing.assert_close(d[0, 2], torch.tensor(3e38))
    assert torch.isinf(d[0, 1])  # 6e38 does not fit float32
    blocks = torch.cat([b for _, b in D.chunked_euclidean(x, x, chunk_size=2)])
    assert not torch.isnan(blocks).any()
