"""Cameras: their nuisances, their scenes, and what they do to an image.

A camera is a dict of nuisances drawn once per set (colour cast and brightness, contrast and
gamma, blur, sensor noise, JPEG quality, a preferred viewpoint, scale of the detector box,
occlusion rate) and a fixed scene (walls, floor, pattern, clutter) several crops wide, from
which each tracklet takes its own crop.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from drsl.data.synth.config import SynthConfig
from drsl.data.synth.palette import CLUTTER, FLOORS, WALLS, clip_rgb

__all__ = ["sample_cameras", "background", "occluder", "camera_look"]


def sample_cameras(cfg: SynthConfig, rng: np.random.Generator) -> list[dict]:
    """Per camera: photometric nuisances, scene and preferred views, scaled by difficulty."""
    d = cfg.difficulty
    cams = []
    for c in range(cfg.num_cams):
        preferred = c % 4  # cameras look mostly at fronts, backs or sides, in turn
        views = np.full(4, 0.1 + 0.4 * (1 - min(d, 1)))
        views[preferred] += 1.0
        if preferred >= 2:
            views[5 - preferred] += 0.6  # side cameras see both directions
        cams.append(
            {
                "gains": (1 + rng.uniform(-0.12, 0.12, 3) * d).tolist(),
                "brightness": float(1 + rng.uniform(-0.22, 0.18) * d),
                "contrast": float(1 + rng.uniform(-0.25, 0.1) * d),
                "gamma": float(1 + rng.uniform(-0.18, 0.18) * d),
                "blur": float(rng.uniform(0.0, 0.9) * d),
                "noise": float(rng.uniform(0.005, 0.03) * d),
                "quality": int(rng.integers(70, 95)),
                "views": (views / views.sum()).tolist(),
                "wall": clip_rgb(WALLS[int(rng.integers(len(WALLS)))], rng.normal(0, 8, 3)),
                "floor": clip_rgb(FLOORS[int(rng.integers(len(FLOORS)))], rng.normal(0, 8, 3)),
                "horizon": float(rng.uniform(0.35, 0.7)),
                "pattern": int(rng.integers(0, 4)),
                "clutter": float(rng.uniform(1.0, 3.0) * d),
                "occlusion": float(min(0.6, rng.uniform(0.08, 0.3) * d)),
                "scale": float(rng.uniform(0.84, 0.94)),
                "light": float(rng.uniform(-1, 1)),
                "seed": [int(cfg.seed), 7, c],
            }
        )
    return cams


# ----------------------------------------------------------------------------- drawing


_SCENE_WIDTH = 6  # a camera's scene is this many crops wide
_SCENES: dict = {}  # per-process cache of camera panoramas: _scene_key(...) -> uint8 array
_SCENE_FIELDS = ("horizon", "pattern", "clutter")


def _scene_key(cam: dict, W: int, H: int) -> tuple:
    """Everything the scene depends on: its seed, size, and the camera's scene settings.

    The seed alone is not enough: two sets with the same seed and other settings (number of
    cameras, difficulty) give camera ``c`` another wall, floor, horizon and clutter. Keyed by
    the seed only (generator version 2 before the split), a process that drew one set and
    then another reused the first set's scenes: the same settings gave other bytes than in a
    fresh process (344 of the fast set's 650 files after drawing a 3-camera set).
    """
    scene = tuple(cam[f] for f in _SCENE_FIELDS)
    return (tuple(cam["seed"]), W, H, tuple(cam["wall"]), tuple(cam["floor"]), *scene)


def _scene(cam: dict, W: int, H: int) -> np.ndarray:
    """The camera's fixed scene, several crops wide: walls, floor, pattern, stains, clutter.

    Computed once per camera and process (see :func:`_scene_key`).
    """
    key = _scene_key(cam, W, H)
    if key in _SCENES:
        return _SCENES[key]
    rng = np.random.default_rng(cam["seed"])
    PW = _SCENE_WIDTH * W
    y = np.arange(H, dtype=np.float32)[:, None, None] / H
    x = np.arange(PW, dtype=np.float32)[None, :, None] / W  # in crop widths
    horizon = cam["horizon"]
    # the wall changes along the scene (shop fronts, hedges, glass): segments of the palette
    cuts = np.sort(rng.uniform(0, _SCENE_WIDTH, 4))
    colours = [cam["wall"]] + [
        clip_rgb(WALLS[int(rng.integers(len(WALLS)))], rng.normal(0, 8, 3)) for _ in cuts
    ]
    segment = np.searchsorted(cuts, x[0, :, 0])  # PW
    wall = np.asarray(colours, np.float32)[segment][None] * (0.85 + 0.3 * y)
    floor = np.asarray(cam["floor"], np.float32) * (0.8 + 0.3 * (y - horizon))
    img = np.where(y < horizon, wall, floor * np.ones((1, PW, 1), np.float32))
    pattern = cam["pattern"]
    if pattern == 1:  # paving on the floor
        lines = ((x * 1.5 + y * 3) % 1 < 0.07) | ((y * 18) % 1 < 0.1)
        img = img * (1 - 0.1 * (lines & (y >= horizon)))
    elif pattern == 2:  # bricks / windows on the wall
        lines = ((x * 1.25) % 1 < 0.1) | ((y * 12) % 1 < 0.1)
        img = img * (1 - 0.15 * (lines & (y < horizon)))
    elif pattern == 3:  # arcades: light and shade along the wall
        img = img * (0.8 + 0.3 * np.abs(np.sin(x * 1.3)))
    # low-frequency stains / foliage / light, and grain
    blotch = Image.fromarray(rng.integers(0, 256, (6, 16), dtype=np.uint8), "L")
    blotch = np.asarray(blotch.resize((PW, H), Image.Resampling.BICUBIC), np.float32)
    img = img * (0.86 + 0.28 * blotch[:, :, None] / 255.0)
    img = img + rng.normal(0, 4, (H, PW, 1)).astype(np.float32)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    _clutter(ImageDraw.Draw(canvas), cam, rng, rng.poisson(2.5 * cam["clutter"]), PW, H, W)
    _SCENES[key] = np.asarray(canvas)
    return _SCENES[key]


def _clutter(draw, cam: dict, rng: np.random.Generator, n: int, PW: int, H: int, W: int):
    """Poles, signs, bushes and distant passers-by, in muted colours of the scene."""
    horizon = cam["horizon"]
    for _ in range(int(n)):
        colour = CLUTTER[int(rng.integers(len(CLUTTER)))]
        colour = clip_rgb(np.asarray(colour) * 0.6 + np.asarray(cam["wall"]) * 0.4)  # muted
        kind = int(rng.integers(4))
        x0 = rng.uniform(-0.2, PW / W) * W
        if kind == 0:  # pole / door frame / tree trunk
            draw.rectangle([x0, 0, x0 + rng.uniform(0.04, 0.16) * W, H], fill=colour)
        elif kind == 1:  # sign / window / poster
            y0 = rng.uniform(0.0, horizon) * H
            draw.rectangle(
                [x0, y0, x0 + rng.uniform(0.2, 0.6) * W, y0 + rng.uniform(0.08, 0.25) * H],
                fill=colour,
            )
        elif kind == 2:  # a bush / a parked bike: a blob on the ground line
            y0 = (horizon - rng.uniform(0.05, 0.2)) * H
            draw.ellipse(
                [x0, y0, x0 + rng.uniform(0.3, 0.7) * W, y0 + rng.uniform(0.15, 0.35) * H],
                fill=colour,
            )
        else:  # a passer-by further away: a small figure
            h = rng.uniform(0.25, 0.45) * H
            y0 = horizon * H - h * 0.8
            draw.rounded_rectangle([x0, y0, x0 + h * 0.3, y0 + h], radius=h * 0.12, fill=colour)


def background(cam: dict, track: np.random.Generator, W: int, H: int) -> Image.Image:
    """A crop of the camera's scene at the tracklet's place, plus its passing clutter."""
    scene = _scene(cam, W, H)
    x0 = int(track.integers(0, scene.shape[1] - W + 1))
    canvas = Image.fromarray(scene[:, x0 : x0 + W])
    _clutter(ImageDraw.Draw(canvas), cam, track, track.poisson(0.5 * cam["clutter"]), W, H, W)
    return canvas


def occluder(canvas: Image.Image, rng: np.random.Generator, W: int, H: int) -> None:
    """Something in front of the person: a car or bench below, a pole or a passer-by aside."""
    draw = ImageDraw.Draw(canvas)
    colour = clip_rgb(np.asarray(CLUTTER[int(rng.integers(len(CLUTTER)))]) * 0.8 + 20)
    kind = int(rng.integers(3))
    if kind == 0:  # car / bench / railing over the legs
        y0 = rng.uniform(0.62, 0.85) * H
        draw.rectangle([0, y0, W, H], fill=colour)
        if rng.random() < 0.5:
            draw.rectangle([0, y0, W, y0 + 0.03 * H], fill=clip_rgb(np.asarray(colour) * 0.6))
    elif kind == 1:  # pole
        x0 = rng.uniform(0.1, 0.75) * W
        draw.rectangle([x0, 0, x0 + rng.uniform(0.1, 0.22) * W, H], fill=colour)
    else:  # a passer-by's shoulder from one side
        x0 = (rng.uniform(-0.5, -0.25) if rng.random() < 0.5 else rng.uniform(0.65, 0.9)) * W
        y0 = rng.uniform(0.15, 0.45) * H
        draw.ellipse([x0, y0, x0 + 0.6 * W, y0 + 1.2 * H], fill=colour)


def camera_look(img: Image.Image, cam: dict, rng: np.random.Generator, d: float) -> Image.Image:
    """Photometric nuisances of the camera: blur, a per-channel tone curve (colour cast,
    brightness, contrast, gamma) applied as one lookup table, then sensor noise."""
    if cam["blur"] > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(cam["blur"] * rng.uniform(0.7, 1.3)))
    gains = np.asarray(cam["gains"]) * (1 + rng.normal(0, 0.03 * d, 3))
    gains = gains * cam["brightness"] * (1 + rng.uniform(-0.08, 0.08) * d)
    v = np.arange(256)[None, :] / 255.0 * gains[:, None]  # 3 x 256 tone curves
    v = np.clip((v - 0.5) * cam["contrast"] + 0.5, 0, 1) ** cam["gamma"]
    img = img.point((v * 255 + 0.5).astype(np.uint8).reshape(-1).tolist())
    if cam["noise"] <= 0:
        return img
    x = np.asarray(img, dtype=np.float32)
    x = x + rng.standard_normal(x.shape, dtype=np.float32) * (255 * cam["noise"])
    return Image.fromarray(np.clip(x + 0.5, 0, 255).astype(np.uint8), "RGB")
