"""Compact re-ID embedding networks with a BNNeck head, built from torchvision blocks.

The network is small enough to train on a laptop CPU: a narrow ResNet (torchvision's
``BasicBlock``, widths ``w, 2w, 4w, 8w``, last stride 1 as in the strong baseline) or
torchvision's ``mobilenet_v3_small``; never pretrained weights (no downloads).

BNNeck (Luo et al.): global average pooling gives the features ``f`` that feed the metric loss;
a BatchNorm1d (bias frozen at 0) gives ``bn_features`` that feed the identity classifier
(a bias-free linear layer) and, at test time, retrieval.

Reference: Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification",
CVPR-W 2019 (BNNeck, last stride 1); He et al., "Deep Residual Learning", CVPR 2016 (BasicBlock).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torchvision.models import mobilenet_v3_small
from torchvision.models.resnet import BasicBlock

__all__ = ["BACKBONES", "ReIDOutput", "ReIDNet", "build_backbone", "count_parameters"]

BACKBONES = ("resnet_narrow", "mobilenet_v3_small")


class ReIDOutput(NamedTuple):
    """What :class:`ReIDNet` returns in training mode.

    Attributes:
        features (Tensor): ``B x D`` pooled features before the BNNeck (for the metric loss).
        bn_features (Tensor): ``B x D`` features after the BNNeck (classifier and retrieval).
        logits (Tensor): ``B x C`` identity logits.
    """

    features: Tensor
    bn_features: Tensor
    logits: Tensor


def _stage(c_in: int, c_out: int, blocks: int, stride: int) -> nn.Sequential:
    down = None
    if stride != 1 or c_in != c_out:
        down = nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
        )
    layers = [BasicBlock(c_in, c_out, stride=stride, downsample=down)]
    layers += [BasicBlock(c_out, c_out) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def build_backbone(
    name: str = "resnet_narrow", *, base_width: int = 16, blocks: int = 1
) -> tuple[nn.Module, int]:
    """A convolutional trunk ending in global average pooling.

    Args:
        name (str): ``"resnet_narrow"`` (stem conv 3x3 stride 2, four stages of torchvision
            ``BasicBlock`` with widths ``base_width * (1, 2, 4, 8)`` and strides 1, 2, 2, 1) or
            ``"mobilenet_v3_small"`` (torchvision's features, random init).
        base_width (int): width of the first ResNet stage (>= 1). Default 16.
        blocks (int): BasicBlocks per ResNet stage (>= 1). Default 1.

    Returns:
        tuple[nn.Module, int]: the trunk mapping ``B x 3 x H x W`` to ``B x C``, and ``C``.

    Reference: Luo et al. 2019 (last stride 1); torchvision ``resnet`` and ``mobilenetv3``.

    Example:
        >>> import torch
        >>> trunk, c = build_backbone("resnet_narrow", base_width=4)
        >>> c, tuple(trunk(torch.zeros(2, 3, 32, 16)).shape)
        (32, (2, 32))
    """
    if name == "resnet_narrow":
        if base_width < 1 or blocks < 1:
            raise ValueError(f"base_width and blocks must be >= 1, got {base_width}, {blocks}")
        w = base_width
        trunk = nn.Sequential(
            nn.Conv2d(3, w, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            _stage(w, w, blocks, 1),
            _stage(w, 2 * w, blocks, 2),
            _stage(2 * w, 4 * w, blocks, 2),
            _stage(4 * w, 8 * w, blocks, 1),  # last stride 1 (strong baseline)
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
        )
        for m in trunk.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        return trunk, 8 * w
    if name == "mobilenet_v3_small":
        feats = mobilenet_v3_small(weights=None).features
        return nn.Sequential(feats, nn.AdaptiveAvgPool2d(1), nn.Flatten(1)), 576
    raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")


class ReIDNet(nn.Module):
    """Backbone + BNNeck + identity classifier.

    In training mode ``forward`` returns :class:`ReIDOutput` ``(features, bn_features, logits)``;
    in eval mode it returns ``bn_features`` (``B x D``), the retrieval embedding.

    Args:
        num_classes (int): number of training identities ``C`` (>= 1).
        embedding_dim (int, optional): ``D``. ``None`` (default) uses the trunk's width
            (128 for the default narrow ResNet); another value adds a bias-free linear
            projection after pooling.
        backbone (str): see :func:`build_backbone`. Default ``"resnet_narrow"``.
        base_width (int): narrow-ResNet width. Default 16.
        blocks (int): BasicBlocks per stage. Default 1.

    Reference: Luo et al. 2019, BNNeck (their Fig. 5): triplet on ``f_t``, ID loss on ``f_i``.

    Example:
        >>> import torch
        >>> net = ReIDNet(10, base_width=4)
        >>> out = net(torch.randn(4, 3, 32, 16))
        >>> [tuple(t.shape) for t in out]
        [(4, 32), (4, 32), (4, 10)]
        >>> tuple(net.eval()(torch.randn(4, 3, 32, 16)).shape)
        (4, 32)
    """

    def __init__(
        self,
        num_classes: int,
        *,
        embedding_dim: int | None = None,
        backbone: str = "resnet_narrow",
        base_width: int = 16,
        blocks: int = 1,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone, width = build_backbone(backbone, base_width=base_width, blocks=blocks)
        if embedding_dim is None or embedding_dim == width:
            self.projection: nn.Module = nn.Identity()
            embedding_dim = width
        else:
            if embedding_dim < 1:
                raise ValueError(f"embedding_dim must be >= 1, got {embedding_dim}")
            self.projection = nn.Linear(width, embedding_dim, bias=False)
        self.embedding_dim = embedding_dim
        self.num_classes = num_classes
        self.bnneck = nn.BatchNorm1d(embedding_dim)
        self.bnneck.bias.requires_grad_(False)  # Luo et al.: no shift in the BNNeck
        self.classifier = nn.Linear(embedding_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, x: Tensor) -> ReIDOutput | Tensor:
        """Embed a batch of images.

        Args:
            x (Tensor): ``B x 3 x H x W`` normalised images.

        Returns:
            ReIDOutput in training mode; ``B x D`` post-BN embeddings in eval mode.
        """
        features = self.projection(self.backbone(x))
        bn_features = self.bnneck(features)
        if not self.training:
            return bn_features
        return ReIDOutput(features, bn_features, self.classifier(bn_features))

    @torch.no_grad()
    def pre_bn_features(self, bn_features: Tensor) -> Tensor:
        """The pre-BNNeck features of eval-mode embeddings: the BNNeck undone.

        At test time the BNNeck is a fixed affine map per coordinate,
        ``g = w * (f - mu) / sqrt(var + eps) + b`` with its running statistics, so
        ``f = (g - b) / w * sqrt(var + eps) + mu``: no second pass over the images.

        Args:
            bn_features (Tensor): ``N x D`` eval-mode outputs (post-BNNeck).

        Returns:
            Tensor: ``N x D`` features ``f`` with ``self.bnneck(f) == bn_features`` in eval mode.

        Raises:
            ValueError: a BNNeck weight is 0 (the map is not invertible).

        Example:
            >>> net = ReIDNet(3, base_width=4).eval()
            >>> g = net(torch.randn(2, 3, 32, 16))
            >>> torch.allclose(net.bnneck(net.pre_bn_features(g)), g, atol=1e-5)
            True
        """
        bn = self.bnneck
        if not bool((bn.weight != 0).all()):
            raise ValueError("a BNNeck weight is 0: the BNNeck cannot be undone")
        scale = torch.sqrt(bn.running_var + bn.eps) / bn.weight
        return (bn_features - bn.bias) * scale + bn.running_mean


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model`` (trainable or not).

    Args:
        model (nn.Module): any module.

    Returns:
        int: the parameter count.

    Example:
        >>> from torch import nn
        >>> count_parameters(nn.Linear(3, 2))
        8
    """
    return sum(p.numel() for p in model.parameters())
