"""Mixed precision in training: ``--amp`` runs the forward pass under CPU bfloat16
autocast, the losses in float32; the loss stays finite and falls; bad settings fail early."""

from __future__ import annotations

import json
import math

import pytest
import torch

from drsl.data.images import make_random_data
from drsl.train import TrainConfig, train
from drsl.train.config import AMP_CHOICES as CONFIG_CHOICES
from drsl.train.precision import AMP_CHOICES

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(**kw) -> TrainConfig:
    base = dict(loss="ce+drsl", P=3, K=2, num_epochs=8, base_width=4, height=16, width=8,
                warmup_steps=2, lr=3e-3, eval_every=0, checkpoint_every=0, seed=1)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def data():
    return make_random_data(num_ids=9, per_id=3, height=16, width=8)


@pytest.mark.parametrize("loss", ["ce+drsl", "ce+triplet"])
def test_cpu_bf16_autocast_trains_with_a_finite_decreasing_loss(tmp_path, data, loss):
    res = train(_config(loss=loss, amp="bf16"), data, out_dir=tmp_path, progress=False)
    losses = [r["loss"] for r in res.history["train"]]
    assert len(losses) == 24 and all(math.isfinite(v) for v in losses)
    k = len(losses) // 4
    assert sum(losses[-k:]) / k < sum(losses[:k]) / k, losses
    assert all(p.dtype == torch.float32 for p in res.model.parameters())  # weights stay fp32
    # autocast really ran: the same run without it computes other values
    plain = train(_config(loss=loss), data, progress=False)
    assert [r["loss"] for r in plain.history["train"]][1:] != losses[1:]
    assert json.loads((tmp_path / "metrics.json").read_text())["amp"] == "bf16"


def test_auto_is_bf16_on_the_cpu(tmp_path, data):
    train(_config(amp="auto", num_epochs=1), data, out_dir=tmp_path, progress=False)
    assert json.loads((tmp_path / "metrics.json").read_text())["amp"] == "bf16"


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"amp": "fp16"}, "--amp fp16 needs CUDA"),
        ({"amp": "bf16", "dtype": "float64"}, "needs float32 weights"),
        ({"amp": "half"}, "amp must be one of"),
    ],
)
def test_bad_amp_settings_fail_with_one_line(data, kw, match):
    with pytest.raises(ValueError, match=match) as err:
        train(_config(num_epochs=1, **kw), data, progress=False, device="cpu")
    assert "\n" not in str(err.value)


def test_amp_choices_are_declared_once():
    assert AMP_CHOICES is CONFIG_CHOICES
