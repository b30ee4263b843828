"""Mixed precision (drsl.train.precision): CPU bfloat16 autocast trains, losses stay float32."""

from __future__ import annotations

import math

import pytest
import torch

from drsl.losses import cross_entropy_label_smooth, get_loss
from drsl.models import ReIDNet
from drsl.train.precision import (
    AMP_CHOICES,
    Precision,
    backward_step,
    resolve_precision,
    to_float32,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 3, 16, 8, generator=g)
    y = torch.arange(4).repeat_interleave(2)  # P = 4 identities x K = 2
    return x, y


@pytest.mark.parametrize("metric", ["drsl", "triplet"])
def test_cpu_bf16_autocast_trains_with_a_finite_decreasing_float32_loss(metric):
    torch.manual_seed(0)
    model = ReIDNet(4, base_width=2)
    prec = resolve_precision("auto", "cpu")
    assert prec == Precision("cpu", torch.bfloat16)
    scaler = prec.grad_scaler()
    assert not scaler.is_enabled()  # bf16 needs no loss scaling
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    fn = get_loss(metric)
    x, y = _batch()
    losses = []
    for _ in range(6):
        with prec.autocast():
            out = model(x)
        assert out.features.dtype == torch.bfloat16  # autocast really ran the model in bf16
        out = to_float32(out)
        assert out.features.dtype == out.logits.dtype == torch.float32
        kw = {"angle_embeddings": out.bn_features} if metric == "drsl" else {}
        loss = cross_entropy_label_smooth(out.logits, y) + fn(out.features, y, **kw)
        assert loss.dtype == torch.float32
        opt.zero_grad(set_to_none=True)
        backward_step(loss, opt, scaler)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], losses


def test_losses_compute_half_inputs_in_float32_and_return_float32():
    # drsl.losses' precision contract: half inputs are upcast exactly, the loss is float32,
    # and an autocast region around the call changes nothing
    f = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    y = torch.arange(4).repeat_interleave(2)
    prec = resolve_precision("bf16", "cpu")
    for name in ("drsl", "triplet", "smooth_ap", "contrastive"):
        fn = get_loss(name)
        half = fn(f.bfloat16(), y)
        assert half.dtype == torch.float32, name
        assert half == fn(f.bfloat16().float(), y), name
        with prec.autocast():
            inside = fn(f, y)
        assert inside == fn(f, y), name


def test_off_is_a_pass_through():
    prec = resolve_precision("off", "cpu")
    assert not prec.enabled and prec.name == "off"
    lin = torch.nn.Linear(3, 2)
    with prec.autocast():
        assert lin(torch.randn(2, 3)).dtype == torch.float32
    scaler = prec.grad_scaler()
    loss = torch.tensor(2.0, requires_grad=True)
    assert scaler.scale(loss) is loss


def test_to_float32_keeps_structure_and_gradient():
    from drsl.models import ReIDOutput

    a = torch.ones(2, 3, dtype=torch.bfloat16, requires_grad=True)
    out = to_float32(ReIDOutput(a, a * 2, a * 3))
    assert isinstance(out, ReIDOutput) and out.logits.dtype == torch.float32
    out.features.sum().backward()
    assert a.grad is not None and a.grad.dtype == torch.bfloat16
    nested = to_float32({"x": [torch.ones(1, dtype=torch.float16)], "n": 3})
    assert nested["x"][0].dtype == torch.float32 and nested["n"] == 3


@pytest.mark.parametrize(
    ("amp", "kwargs", "match"),
    [
        ("fp32", {}, "unknown amp setting 'fp32'"),
        ("fp16", {}, "needs CUDA"),
        ("bf16", {"param_dtype": torch.float64}, "needs float32 weights"),
    ],
)
def test_bad_settings_fail_with_one_line(amp, kwargs, match):
    with pytest.raises(ValueError, match=match):
        resolve_precision(amp, "cpu", **kwargs)


def test_choices_and_bools():
    assert AMP_CHOICES == ("off", "auto", "bf16", "fp16")
    assert resolve_precision(True, "cpu").name == "bf16"
    assert resolve_precision(None, "cpu").name == "off"
    assert resolve_precision(False, "cuda").name == "off"  # off needs no GPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_auto_picks_bf16_or_fp16_with_a_scaler():
    prec = resolve_precision("auto", "cuda")
    assert prec.name in ("bf16", "fp16")
    assert prec.grad_scaler().is_enabled() == (prec.name == "fp16")
    fp16 = resolve_precision("fp16", "cuda")
    assert fp16.needs_scaler and fp16.grad_scaler().is_enabled()
