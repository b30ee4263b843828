"""Baseline features: raw pixels and colour histograms."""

import numpy as np
import pytest
from PIL import Image

from drsl.data.datasets import BadImageError
from drsl.data.features import color_histogram_features, load_images, raw_pixel_features


def test_raw_pixels_are_unit_and_invariant_to_brightness_offset():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 200, (3, 128, 64, 3)).astype(np.uint8)
    f = raw_pixel_features(imgs)
    assert f.shape == (3, 3 * 16 * 32)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1, rtol=1e-5)
    g = raw_pixel_features(imgs.astype(np.float32) + 40)  # the per-image mean is removed
    np.testing.assert_allclose(f, g, atol=1e-5)
    with pytest.raises(ValueError, match="multiple"):
        raw_pixel_features(imgs, size=(10, 32))


def test_colour_histograms_are_hellinger_features():
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (4, 12, 6, 3)).astype(np.uint8)
    for stripes in (1, 3):
        f = color_histogram_features(imgs, bins=(4, 2, 2), stripes=stripes)
        assert f.shape == (4, stripes * 16)
        np.testing.assert_allclose((f**2).sum(1), 1, rtol=1e-5)  # sqrt of L1-normalised
    # a reference count for one image, one stripe
    hsv = np.asarray(Image.fromarray(imgs[0]).convert("HSV")).reshape(-1, 3).astype(int)
    idx = (hsv[:, 0] * 4 // 256) * 4 + (hsv[:, 1] * 2 // 256) * 2 + hsv[:, 2] * 2 // 256
    ref = np.sqrt(np.bincount(idx, minlength=16) / len(idx))
    np.testing.assert_allclose(color_histogram_features(imgs[:1], bins=(4, 2, 2))[0], ref, 1e-6)
    # the same colours in another arrangement: same global histogram, different stripes
    flipped = imgs[:, ::-1].copy()
    np.testing.assert_allclose(color_histogram_features(flipped), color_histogram_features(imgs))
    with pytest.raises(ValueError, match="stripes"):
        color_histogram_features(imgs, stripes=0)
    with pytest.raises(ValueError, match="N x H x W x 3"):
        color_histogram_features(imgs[0])


def test_load_images_resizes_and_names_bad_files(tmp_path):
    Image.new("RGB", (32, 64), (10, 20, 30)).save(tmp_path / "a.jpg")
    (tmp_path / "b.jpg").write_bytes(b"nope")
    arr = load_images([str(tmp_path / "a.jpg")])
    assert arr.shape == (1, 128, 64, 3) and arr.dtype == np.uint8
    with pytest.raises(BadImageError, match=r"b.jpg is unreadable \(not an image"):
        load_images([str(tmp_path / "b.jpg")])


def test_load_images_counts_the_other_bad_files(tmp_path):
    good = tmp_path / "a.jpg"
    Image.new("RGB", (32, 64), (10, 20, 30)).save(good)
    data = good.read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])  # truncated
    (tmp_path / "z.jpg").write_bytes(b"")  # zero bytes
    paths = [str(tmp_path / n) for n in ("a.jpg", "t.jpg", "a.jpg", "z.jpg")]
    with pytest.raises(BadImageError) as info:
        load_images(paths)
    msg = str(info.value)
    assert msg.startswith(f"image {tmp_path / 't.jpg'} is unreadable (truncated)")
    assert "1 other image is bad too" in msg and "\n" not in msg
