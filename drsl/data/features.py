"""Hand-made image features for nearest-neighbour baselines: raw pixels and colour histograms.

A learned embedding has to beat these. On the synthetic set they must stay poor (the task is
not solvable by colour alone because identities share palettes and cameras cast colours);
``benchmarks/bench_synth_baseline.py`` measures them with :mod:`drsl.metrics`.

Reference: Gray & Tao, ECCV 2008 and Liao et al., CVPR 2015 (colour-histogram re-ID
features, striped over the body); the issue's "raw-pixel or colour-histogram nearest-neighbour
baseline".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = ["load_images", "raw_pixel_features", "color_histogram_features"]


def load_images(paths: Sequence[str], size: tuple[int, int] = (64, 128)) -> np.ndarray:
    """Read images as one uint8 array, resized to ``size`` (width, height).

    Args:
        paths (Sequence[str]): image files.
        size (tuple[int, int]): ``(width, height)``. Default ``(64, 128)`` (Market crops).

    Returns:
        np.ndarray: ``N x height x width x 3`` uint8.

    Raises:
        drsl.data.datasets.BadImageError: an unreadable image (named, with the count of the
            other bad ones).
    """
    from drsl.data.imagefile import iter_images

    out = np.empty((len(paths), size[1], size[0], 3), dtype=np.uint8)
    for i, img in enumerate(iter_images(list(paths))):
        if img.size != tuple(size):
            img = img.resize(size, Image.Resampling.BILINEAR)
        out[i] = np.asarray(img)
    return out


def _check(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be N x H x W x 3, got shape {images.shape}")
    return images


def raw_pixel_features(images: np.ndarray, *, size: tuple[int, int] = (16, 32)) -> np.ndarray:
    """Down-sampled pixels, each image centred and scaled to unit norm.

    Args:
        images (np.ndarray): ``N x H x W x 3`` uint8 (or float in [0, 255]).
        size (tuple[int, int]): ``(width, height)`` to average down to. Default ``(16, 32)``.

    Returns:
        np.ndarray: ``N x (3 * width * height)`` float32, unit rows.

    Reference: the pixel-space nearest-neighbour baseline.

    Example:
        >>> f = raw_pixel_features(np.random.default_rng(0).integers(0, 255, (2, 128, 64, 3)))
        >>> f.shape, np.allclose(np.linalg.norm(f, axis=1), 1)
        ((2, 1536), True)
    """
    images = _check(images).astype(np.float32)
    n, h, w, _ = images.shape
    sw, sh = size
    if h % sh or w % sw:
        raise ValueError(f"image size {w}x{h} is not a multiple of {sw}x{sh}")
    small = images.reshape(n, sh, h // sh, sw, w // sw, 3).mean(axis=(2, 4))  # box average
    flat = small.reshape(n, -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-6)


def color_histogram_features(
    images: np.ndarray, *, bins: tuple[int, int, int] = (8, 4, 4), stripes: int = 1
) -> np.ndarray:
    """Joint HSV colour histograms, over the whole image or over horizontal stripes.

    Each histogram is L1-normalised and square-rooted (Hellinger), so that the Euclidean
    distance between features is the Hellinger distance between histograms.

    Args:
        images (np.ndarray): ``N x H x W x 3`` uint8 RGB.
        bins (tuple[int, int, int]): bins of hue, saturation, value. Default ``(8, 4, 4)``.
        stripes (int): horizontal bands, each with its own histogram (1 = global; 6 is the
            classic "striped" re-ID feature). Default 1.

    Returns:
        np.ndarray: ``N x (stripes * prod(bins))`` float32.

    Reference: Gray & Tao, ECCV 2008; Liao et al., CVPR 2015 (striped colour histograms).

    Example:
        >>> img = np.zeros((1, 8, 4, 3), np.uint8); img[..., 0] = 255  # pure red
        >>> f = color_histogram_features(img, bins=(4, 2, 2))
        >>> f.shape, float(f.max())
        ((1, 16), 1.0)
    """
    images = _check(images)
    n, h, w, _ = images.shape
    if stripes < 1 or stripes > h:
        raise ValueError(f"stripes must be in 1..{h}, got {stripes}")
    hsv = np.stack([np.asarray(Image.fromarray(im).convert("HSV")) for im in images])
    hb, sb, vb = bins
    idx = (
        (hsv[..., 0].astype(np.int64) * hb // 256) * (sb * vb)
        + (hsv[..., 1].astype(np.int64) * sb // 256) * vb
        + hsv[..., 2].astype(np.int64) * vb // 256
    )  # N x H x W joint bin
    nb = hb * sb * vb
    band = (np.arange(h) * stripes // h)[None, :, None]  # stripe of each row
    flat = (np.arange(n)[:, None, None] * stripes + band) * nb + idx
    hist = np.bincount(flat.reshape(-1), minlength=n * stripes * nb).reshape(n, stripes, nb)
    hist = hist / hist.sum(axis=2, keepdims=True)
    return np.sqrt(hist).reshape(n, -1).astype(np.float32) / np.sqrt(stripes)
