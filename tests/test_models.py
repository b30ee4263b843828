"""Tests of drsl.models (ReIDNet, BNNeck) and drsl.data.transforms."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drsl.data.transforms import build_transforms
from drsl.models import ReIDNet, ReIDOutput, build_backbone, count_parameters

# tiny models: one torch thread for the whole module (the fixture is in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("backbone", ["resnet_narrow", "mobilenet_v3_small"])
def test_forward_shapes_train_and_eval(backbone):
    torch.manual_seed(0)
    net = ReIDNet(7, backbone=backbone, base_width=4)
    x = torch.randn(4, 3, 64, 32)
    out = net(x)
    assert isinstance(out, ReIDOutput)
    d = net.embedding_dim
    assert out.features.shape == (4, d) and out.bn_features.shape == (4, d)
    assert out.logits.shape == (4, 7)
    net.eval()
    emb = net(x)
    assert emb.shape == (4, d)
    # eval mode returns the BNNeck output computed with the running statistics
    bn = net.bnneck
    f = net.projection(net.backbone(x))
    ref = (f - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    torch.testing.assert_close(emb, ref)


def test_pre_bn_features_undo_the_bnneck_of_eval_embeddings():
    torch.manual_seed(0)
    net = ReIDNet(5, base_width=4)
    net(torch.randn(8, 3, 32, 16))  # one training step's batch moves the running statistics
    net.eval()
    x = torch.randn(4, 3, 32, 16)
    pre = net.projection(net.backbone(x))
    torch.testing.assert_close(net.pre_bn_features(net(x)), pre)
    torch.testing.assert_close(net.bnneck(net.pre_bn_features(net(x))), net(x))
    with torch.no_grad():
        net.bnneck.weight[0] = 0.0
    with pytest.raises(ValueError, match="cannot be undone"):
        net.pre_bn_features(net(x))


def test_bnneck_details():
    net = ReIDNet(5, base_width=2)
    assert not net.bnneck.bias.requires_grad  # no shift (Luo et al.)
    assert net.classifier.bias is None
    out = net(torch.randn(6, 3, 32, 16))
    # in training mode bn_features are the batch-normalised features (zero mean per dim)
    torch.testing.assert_close(out.bn_features.mean(0), torch.zeros(16), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.logits, out.bn_features @ net.classifier.weight.T)


def test_projection_and_dtype_device_follow():
    net = ReIDNet(3, base_width=2, embedding_dim=8).double()
    out = net(torch.randn(2, 3, 16, 8, dtype=torch.float64))
    assert out.features.shape == (2, 8) and out.features.dtype == torch.float64


def test_default_model_is_small():
    net = ReIDNet(500)
    assert net.embedding_dim == 128
    n = count_parameters(net)
    assert n * 4 < 5 * 2**20  # fits a 5 MB float32 checkpoint with 500 identities


def test_gradients_reach_backbone():
    net = ReIDNet(4, base_width=2)
    out = net(torch.randn(4, 3, 16, 8))
    (out.features.pow(2).sum() + out.logits.sum()).backward()
    assert net.backbone[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 3, "backbone": "vgg"}, "unknown backbone"),
        ({"num_classes": 3, "base_width": 0}, "base_width"),
    ],
)
def test_model_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        ReIDNet(**kw)


def test_build_backbone_width():
    trunk, c = build_backbone("resnet_narrow", base_width=3, blocks=2)
    assert c == 24 and trunk(torch.zeros(1, 3, 32, 16)).shape == (1, 24)


@settings(max_examples=20, deadline=None)
@given(
    h=st.integers(8, 80),
    w=st.integers(8, 40),
    train=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_transforms_output_size_and_range(h, w, train, seed):
    torch.manual_seed(seed)
    img = torch.randint(0, 256, (3, 50, 23), dtype=torch.uint8)
    out = build_transforms(train=train, height=h, width=w)(img)
    assert out.shape == (3, h, w) and out.dtype == torch.float32
    # normalised values stay within the ImageNet-normalised range of [0, 1] pixels
    assert out.min() >= -2.2 and out.max() <= 2.7


def test_eval_transform_is_deterministic_and_normalises():
    from PIL import Image

    img = Image.new("RGB", (20, 40), (124, 116, 104))  # about the ImageNet mean colour
    tf = build_transforms(train=False, height=40, width=20)
    a, b = tf(img), tf(img)
    torch.testing.assert_close(a, b)
    assert a.abs().max() < 0.01


def test_train_transform_augments():
    torch.manual_seed(0)
    img = torch.randint(0, 256, (3, 32, 16), dtype=torch.uint8)
    tf = build_transforms(train=True, height=32, width=16)
    outs = torch.stack([tf(img) for _ in range(8)])
    assert (outs - outs[0]).abs().amax(dim=(1, 2, 3)).gt(0).any()
    flip_only = build_transforms(train=True, height=32, width=16, pad=0, erase_p=0, flip_p=1)
    ref = build_transforms(train=False, height=32, width=16)(img)
    torch.testing.assert_close(flip_only(img), ref.flip(-1))


@pytest.mark.parametrize(
    "kw, match",
    [({"height": 2}, "height and width"), ({"flip_p": 2.0}, "probabilities"), ({"pad": -1}, "pad")],
)
def test_transform_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        build_transforms(train=True, **kw)
