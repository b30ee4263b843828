"""Procedural synthetic pedestrians, written as a Market-1501-format re-ID dataset.

Real re-ID sets cannot be downloaded here, so the course trains and evaluates on drawn people
that behave like re-ID data: many identities that differ in details, seen by several cameras
that change how they look.

- **Identity** = a combination of attributes from small palettes: skin tone, hair colour and
  style, upper-body colour, texture (plain, stripes, checks, chest logo, back print, open
  jacket) and sleeves, lower-body colour and type (trousers, shorts, skirt), shoe colour, bag
  (none, backpack, shoulder bag, handbag), its side and colour, body build; plus an identity
  shade of each colour. Identities come in *families* that share most attributes (each member
  re-draws one to three of the prototype's), so the task is fine-grained.
- **Camera** = nuisances: colour cast and brightness, contrast and gamma, blur, sensor noise,
  JPEG quality, its own background scene with clutter, a preferred viewpoint (front, back or
  side, which hides or shows the logo, the back print, the backpack, the bag on one side),
  scale and crop jitter of the detector box, and partial occlusion.
- **Tracklets**: an identity seen by a camera gives a few near-identical frames (same view,
  place and light), as in Market-1501. That is why the protocol drops same-camera matches.

Output, in the Market layout and naming: ``bounding_box_train/``, ``bounding_box_test/``
(with distractors ``0000_...`` and junk ``-1_...``), ``query/`` (one image per identity and
camera), files ``PPPP_cCsS_FFFFFF_NN.jpg``; ``identities.csv`` (the attributes of every pid)
and ``manifest.json`` (settings, counts and the sha256 of every file), written last.

Deterministic: every image draws from its own seed ``(seed, kind, index)``, so the same settings
give byte-identical files whatever the number of worker processes.

CLI: ``python -m drsl.data.synth --out data/synthetic [--fast] [--seed 0] [...]``.

Reference: Zheng et al., ICCV 2015 (Market-1501 layout and protocol); the issue "Re-ID data
and evaluation" of this project (the generator's requirements).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

__all__ = [
    "GENERATOR_VERSION",
    "SynthConfig",
    "DEFAULT",
    "FAST",
    "generate",
    "ensure_dataset",
    "render_identity",
    "read_manifest",
    "verify",
    "main",
]

GENERATOR_VERSION = "2"  # bump whenever the drawn bytes change: cached sets are redrawn

# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SynthConfig:
    """The dials of the generator.

    Attributes:
        seed (int): base seed.
        num_train_ids (int): identities in ``bounding_box_train``.
        num_test_ids (int): identities in ``query`` and ``bounding_box_test``.
        num_cams (int): cameras (1..9; Market has 6).
        images_per_id (float): mean images per identity over all its cameras.
        num_distractors (int): gallery images with pid 0 (strangers, empty boxes).
        num_junk (int): gallery images with pid -1 (badly cropped boxes).
        height (int): image height in pixels (Market: 128).
        width (int): image width in pixels (Market: 64).
        difficulty (float): scales every camera nuisance (0 = clean cameras, 1 = default).
        family_size (int): identities per family sharing most attributes (1 = independent).
        workers (int or None): processes (None: 2 for large sets, else 1). Not part of the
            output: any value gives the same bytes.
    """

    seed: int = 0
    num_train_ids: int = 400
    num_test_ids: int = 400
    num_cams: int = 6
    images_per_id: float = 12.0
    num_distractors: int = 500
    num_junk: int = 250
    height: int = 128
    width: int = 64
    difficulty: float = 1.0
    family_size: int = 4
    workers: int | None = None

    def output_settings(self) -> dict:
        """The settings that determine the bytes written (all but ``workers``)."""
        d = asdict(self)
        d.pop("workers")
        return d

    def validate(self) -> None:
        """Raise ValueError naming the first bad value."""
        checks = [
            ("num_train_ids", self.num_train_ids >= 2, ">= 2"),
            ("num_test_ids", self.num_test_ids >= 2, ">= 2"),
            ("num_cams", 2 <= self.num_cams <= 9, "in 2..9"),
            ("images_per_id", 2 <= self.images_per_id <= 200, "in 2..200"),
            ("num_distractors", self.num_distractors >= 0, ">= 0"),
            ("num_junk", self.num_junk >= 0, ">= 0"),
            ("height", 32 <= self.height <= 512, "in 32..512"),
            ("width", 16 <= self.width <= 256, "in 16..256"),
            ("difficulty", 0 <= self.difficulty <= 3, "in 0..3"),
            ("family_size", self.family_size >= 1, ">= 1"),
        ]
        for name, ok, need in checks:
            if not ok:
                raise ValueError(f"{name} must be {need}, got {getattr(self, name)!r}")


DEFAULT = SynthConfig()
"""The default set: 400 + 400 identities, 6 cameras, 10,400 images (4,865 train,
1,369 query, 4,166 gallery with 500 distractors and 250 junk)."""

FAST = SynthConfig(
    num_train_ids=48, num_test_ids=32, images_per_id=8.0, num_distractors=30, num_junk=12
)
"""The fast set (``DRSL_FAST=1``): 48 + 32 identities, 650 images, a few seconds."""

# ----------------------------------------------------------------------------- palettes

SKIN = [(236, 196, 168), (222, 170, 130), (196, 136, 98), (150, 96, 62), (98, 64, 44)]
HAIR = [(22, 20, 20), (62, 42, 28), (112, 76, 44), (196, 162, 96), (150, 146, 140)]
HAIR_STYLES = ["short", "long", "cap", "buzz"]
UPPER = [
    ("white", (228, 228, 226)),
    ("black", (30, 30, 34)),
    ("grey", (120, 120, 124)),
    ("navy", (36, 48, 96)),
    ("red", (176, 36, 40)),
    ("green", (52, 110, 60)),
    ("yellow", (222, 190, 60)),
    ("light blue", (120, 168, 214)),
    ("pink", (222, 140, 170)),
    ("brown", (110, 76, 50)),
]
UPPER_WEIGHTS = [0.13, 0.2, 0.13, 0.12, 0.08, 0.07, 0.05, 0.08, 0.06, 0.08]
TEXTURES = ["plain", "stripes", "checks", "logo", "back print", "open jacket"]
TEXTURE_WEIGHTS = [0.4, 0.14, 0.1, 0.14, 0.1, 0.12]
LOWER = [
    ("black", (34, 34, 38)),
    ("dark jeans", (40, 56, 92)),
    ("light jeans", (96, 126, 170)),
    ("grey", (112, 112, 116)),
    ("khaki", (176, 158, 112)),
    ("white", (220, 220, 214)),
    ("brown", (96, 70, 48)),
]
LOWER_WEIGHTS = [0.26, 0.22, 0.12, 0.12, 0.12, 0.06, 0.1]
LOWER_TYPES = ["trousers", "shorts", "skirt"]
SHOES = [
    ("black", (24, 24, 26)),
    ("white", (226, 226, 226)),
    ("brown", (92, 60, 36)),
    ("grey", (128, 128, 132)),
]
BAGS = ["none", "backpack", "shoulder bag", "handbag"]
BAG_COLOURS = [
    ("black", (28, 28, 30)),
    ("brown", (104, 70, 42)),
    ("navy", (40, 50, 92)),
    ("red", (160, 40, 44)),
    ("grey", (110, 112, 116)),
    ("olive", (96, 104, 60)),
]
BUILDS = [("slim", 0.86), ("medium", 1.0), ("broad", 1.14)]
VIEWS = ["front", "back", "left", "right"]
WALLS = [
    (150, 148, 142),
    (186, 176, 158),
    (132, 92, 76),
    (112, 126, 136),
    (96, 118, 84),
    (206, 204, 198),
    (88, 86, 84),
    (168, 150, 120),
]
FLOORS = [
    (108, 108, 110),
    (150, 144, 132),
    (84, 84, 88),
    (170, 166, 156),
    (120, 112, 98),
    (96, 110, 80),
]
CLUTTER = [c for _, c in UPPER] + [c for _, c in LOWER] + [(70, 90, 70), (150, 120, 90)]

# categorical attributes of an identity: (name, number of choices, weights or None)
_ATTRS = [
    ("skin", len(SKIN), None),
    ("hair", len(HAIR), [0.36, 0.28, 0.16, 0.1, 0.1]),
    ("hair_style", len(HAIR_STYLES), [0.45, 0.3, 0.1, 0.15]),
    ("upper", len(UPPER), UPPER_WEIGHTS),
    ("texture", len(TEXTURES), TEXTURE_WEIGHTS),
    ("accent", len(UPPER), None),
    ("sleeves", 2, [0.45, 0.55]),
    ("lower", len(LOWER), LOWER_WEIGHTS),
    ("lower_type", len(LOWER_TYPES), [0.7, 0.18, 0.12]),
    ("shoes", len(SHOES), [0.4, 0.3, 0.15, 0.15]),
    ("bag", len(BAGS), [0.4, 0.3, 0.18, 0.12]),
    ("bag_side", 2, None),
    ("bag_colour", len(BAG_COLOURS), None),
    ("build", len(BUILDS), [0.3, 0.45, 0.25]),
]
_ATTR_NAMES = [a for a, _, _ in _ATTRS]


def _draw_attr(rng: np.random.Generator, k: int, weights) -> int:
    p = None if weights is None else np.asarray(weights, float) / np.sum(weights)
    return int(rng.choice(k, p=p))


def _sample_identities(n: int, cfg: SynthConfig, rng: np.random.Generator) -> list[dict]:
    """``n`` distinct identities in families of ``cfg.family_size`` sharing most attributes.

    A family draws a prototype; each member re-draws one to three of its attributes. When a
    member cannot be made distinct from everyone so far (20 tries), a new family starts.
    """
    people: list[dict] = []
    seen: set[tuple] = set()
    family, members = -1, cfg.family_size
    while len(people) < n:
        if members == cfg.family_size:
            family, members = family + 1, 0
            proto = {a: _draw_attr(rng, k, w) for a, k, w in _ATTRS}
        for _ in range(20):
            person = dict(proto)
            changes = 0 if cfg.family_size == 1 else 1 + int(rng.binomial(2, 0.35))
            for idx in rng.choice(len(_ATTRS), size=changes, replace=False):
                a, k, w = _ATTRS[idx]
                person[a] = _draw_attr(rng, k, w)
            if person["accent"] == person["upper"]:  # an accent must show
                person["accent"] = (person["accent"] + 1) % len(UPPER)
            key = tuple(person[a] for a in _ATTR_NAMES)
            if key not in seen:
                break
        else:
            members = cfg.family_size  # this family is exhausted: start another
            continue
        seen.add(key)
        # identity shades: each colour shifted a little, the body a little wider/narrower
        person["shade"] = rng.normal(0, 9, size=(5, 3)).round().astype(int).tolist()
        person["width"] = float(np.clip(rng.normal(1, 0.04), 0.9, 1.1))
        person["family"] = family
        people.append(person)
        members += 1
    return people


def _sample_cameras(cfg: SynthConfig, rng: np.random.Generator) -> list[dict]:
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
                "wall": _col(WALLS[int(rng.integers(len(WALLS)))], rng.normal(0, 8, 3)),
                "floor": _col(FLOORS[int(rng.integers(len(FLOORS)))], rng.normal(0, 8, 3)),
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


def _col(rgb, shade=(0, 0, 0), jitter=None) -> tuple[int, int, int]:
    c = np.asarray(rgb, float) + np.asarray(shade, float)
    if jitter is not None:
        c = c + jitter
    return tuple(int(v) for v in np.clip(c, 0, 255))


_SCENE_WIDTH = 6  # a camera's scene is this many crops wide
_SCENES: dict = {}  # per-process cache of camera panoramas: (seed, W, H) -> uint8 array


def _scene(cam: dict, W: int, H: int) -> np.ndarray:
    """The camera's fixed scene, several crops wide: walls, floor, pattern, stains, clutter.

    Computed once per camera and process (it depends only on the camera's seed).
    """
    key = (tuple(cam["seed"]), W, H)
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
        _col(WALLS[int(rng.integers(len(WALLS)))], rng.normal(0, 8, 3)) for _ in cuts
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
        colour = _col(np.asarray(colour) * 0.6 + np.asarray(cam["wall"]) * 0.4)  # muted
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


def _background(cam: dict, track: np.random.Generator, W: int, H: int) -> Image.Image:
    """A crop of the camera's scene at the tracklet's place, plus its passing clutter."""
    scene = _scene(cam, W, H)
    x0 = int(track.integers(0, scene.shape[1] - W + 1))
    canvas = Image.fromarray(scene[:, x0 : x0 + W])
    _clutter(ImageDraw.Draw(canvas), cam, track, track.poisson(0.5 * cam["clutter"]), W, H, W)
    return canvas


def _box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    """``[left, top, right, bottom]`` whatever the order of the corners (PIL needs it)."""
    return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]


def _limb(draw: ImageDraw.ImageDraw, p0, p1, width: float, fill) -> None:
    draw.line([p0, p1], fill=fill, width=max(1, int(round(width))))
    r = width / 2
    for px, py in (p0, p1):
        draw.ellipse([px - r, py - r, px + r, py + r], fill=fill)


def _person(
    canvas: Image.Image, p: dict, view: str, box: tuple, phase: float, rng: np.random.Generator
) -> None:
    """Draw person ``p`` seen from ``view`` ('front', 'back', 'left', 'right') into ``box``.

    ``canvas`` is a transparent RGBA layer; ``box = (cx, top, height)`` in its pixels;
    ``phase`` in [0, 1) is the walking phase. Colours get the identity's shade plus a small
    per-image jitter (lighting).
    """
    cx, top, u = box
    side = view in ("left", "right")
    draw = ImageDraw.Draw(canvas)
    jit = rng.normal(0, 4, 3)
    shade = p["shade"]
    skin = _col(SKIN[p["skin"]], (0, 0, 0), jit)
    hair = _col(HAIR[p["hair"]], (0, 0, 0), jit)
    upper = _col(UPPER[p["upper"]][1], shade[0], jit)
    accent = _col(UPPER[p["accent"]][1], shade[1], jit)
    lower = _col(LOWER[p["lower"]][1], shade[2], jit)
    shoes = _col(SHOES[p["shoes"]][1], (0, 0, 0), jit)
    bagc = _col(BAG_COLOURS[p["bag_colour"]][1], shade[3], jit)
    build = BUILDS[p["build"]][1] * p["width"]
    # mirror the person's left/right into the image: front view shows their left on the right
    bag_right_in_image = (p["bag_side"] == 1) == (view == "front")
    swing = math.sin(2 * math.pi * phase)

    sw = 0.25 * u * build * (0.55 if side else 1.0)  # shoulder width
    ww = 0.2 * u * build * (0.62 if side else 1.0)  # waist width
    y_sh, y_waist, y_crotch = top + 0.17 * u, top + 0.47 * u, top + 0.56 * u
    y_knee, y_ankle, y_foot = top + 0.73 * u, top + 0.93 * u, top + 0.985 * u
    hx = cx + (0.015 * u if view == "right" else -0.015 * u if view == "left" else 0)
    rh = 0.062 * u
    y_head = top + 0.075 * u
    facing = 1 if view == "right" else -1  # side views: the direction the person faces

    # -- behind the body: long hair (back), backpack (side views), bag on the far side
    if p["hair_style"] == 1 and view != "back":
        draw.rounded_rectangle(
            [
                hx - rh * 1.15 - (0.02 * u if side else 0) * facing,
                y_head - rh,
                hx + rh * 1.15 - (0.03 * u if side else 0) * facing,
                top + 0.24 * u,
            ],
            radius=rh,
            fill=hair,
        )
    if p["bag"] == 1 and side:
        bx = cx - facing * (sw / 2 + 0.05 * u)
        draw.rounded_rectangle(
            [bx - 0.06 * u, y_sh + 0.02 * u, bx + 0.06 * u, top + 0.42 * u],
            radius=0.02 * u,
            fill=bagc,
        )

    # -- legs (lower garment), shoes
    stride = (0.08 if side else 0.035) * u * swing
    leg_w = 0.085 * u * build * (0.9 if side else 1.0)
    hips = [cx - (0 if side else ww / 4), cx + (0 if side else ww / 4)]
    feet = [hips[0] - stride, hips[1] + stride]
    lower_len = {0: 1.0, 1: 0.45, 2: 0.35}[p["lower_type"]]
    for hxp, fx in zip(hips, feet, strict=True):
        knee = (hxp + (fx - hxp) * 0.45, y_knee)
        _limb(draw, (hxp, y_crotch), knee, leg_w, lower if lower_len > 0.5 else skin)
        _limb(draw, knee, (fx, y_ankle), leg_w * 0.9, lower if lower_len > 0.9 else skin)
        if lower_len < 0.9:  # shorts / skirt: the garment covers the thigh
            _limb(
                draw, (hxp, y_crotch), (hxp + (fx - hxp) * 0.3, top + 0.66 * u), leg_w * 1.05, lower
            )
        sx = fx + (facing * 0.025 * u if side else 0)
        draw.ellipse([sx - leg_w * 0.7, y_ankle - 0.01 * u, sx + leg_w * 0.7, y_foot], fill=shoes)
    # hips / skirt
    if p["lower_type"] == 2:
        draw.polygon(
            [
                (cx - ww / 2, y_waist),
                (cx + ww / 2, y_waist),
                (cx + ww * 0.75, top + 0.68 * u),
                (cx - ww * 0.75, top + 0.68 * u),
            ],
            fill=lower,
        )
    else:
        draw.rectangle(
            [cx - ww / 2, y_waist - 0.01 * u, cx + ww / 2, y_crotch + 0.02 * u], fill=lower
        )

    # -- arms behind (side view far arm)
    arm_w = 0.058 * u * build
    sleeve_long = p["sleeves"] == 1

    def arm(x_sh, dx, colour_sleeve):
        elbow = (x_sh + dx * 0.5, top + 0.33 * u)
        hand = (x_sh + dx, top + 0.49 * u)
        _limb(draw, (x_sh, y_sh + 0.03 * u), elbow, arm_w, colour_sleeve)
        _limb(draw, elbow, hand, arm_w * 0.9, colour_sleeve if sleeve_long else skin)
        r = arm_w * 0.55
        draw.ellipse([hand[0] - r, hand[1] - r, hand[0] + r, hand[1] + r], fill=skin)
        return hand

    if side:
        arm(cx, -facing * 0.06 * u * swing, _col(np.asarray(upper) * 0.8))

    # -- torso with texture
    torso = [
        (cx - sw / 2, y_sh),
        (cx + sw / 2, y_sh),
        (cx + ww / 2, y_waist + 0.01 * u),
        (cx - ww / 2, y_waist + 0.01 * u),
    ]
    texture = TEXTURES[p["texture"]]
    x0, x1 = cx - sw / 2, cx + sw / 2
    if texture in ("stripes", "checks"):
        mask = Image.new("L", canvas.size, 0)
        ImageDraw.Draw(mask).polygon(torso, fill=255)
        layer = Image.new("RGB", canvas.size, upper)
        ld = ImageDraw.Draw(layer)
        period = 0.05 * u
        y = y_sh + period * 0.5
        while y < y_waist:
            ld.rectangle([x0, y, x1, y + period * 0.45], fill=accent)
            y += period
        if texture == "checks":
            x = x0 + period * 0.5
            while x < x1:
                ld.rectangle([x, y_sh, x + period * 0.45, y_waist], fill=accent)
                x += period
        canvas.paste(layer, (0, 0), mask)
    else:
        draw.polygon(torso, fill=upper)
        if texture == "logo" and view == "front":
            s = 0.055 * u
            ly = top + 0.27 * u
            draw.ellipse([cx - s, ly - s, cx + s, ly + s], fill=accent)
        elif texture == "back print" and view == "back":
            s = 0.07 * u
            ly = top + 0.29 * u
            draw.rectangle([cx - s, ly - s, cx + s, ly + s], fill=accent)
        elif texture == "open jacket" and view == "front":
            draw.polygon(
                [
                    (cx - 0.045 * u * build, y_sh),
                    (cx + 0.045 * u * build, y_sh),
                    (cx + 0.03 * u, y_waist),
                    (cx - 0.03 * u, y_waist),
                ],
                fill=accent,
            )
        elif texture == "open jacket" and side:
            draw.rectangle(
                _box(cx + facing * (sw / 2 - 0.02 * u), y_sh, cx + facing * sw / 2, y_waist),
                fill=accent,
            )

    # -- bags in front of the torso
    bag = p["bag"]
    if bag == 1 and view == "back":
        draw.rounded_rectangle(
            [cx - sw * 0.38, y_sh + 0.02 * u, cx + sw * 0.38, top + 0.43 * u],
            radius=0.03 * u,
            fill=bagc,
        )
    elif bag == 1 and view == "front":
        for sx in (cx - sw * 0.3, cx + sw * 0.3):
            draw.line([(sx, y_sh), (sx, top + 0.36 * u)], fill=bagc, width=max(1, int(0.025 * u)))
    # near arm(s)
    if side:
        arm(cx, facing * 0.06 * u * swing, upper)
    else:
        arm(cx - sw / 2 - arm_w * 0.25, -0.02 * u - 0.02 * u * swing, upper)
        arm(cx + sw / 2 + arm_w * 0.25, 0.02 * u + 0.02 * u * swing, upper)
    if bag in (2, 3):
        visible = not side or (view == "right") == (p["bag_side"] == 0)
        sgn = 1 if bag_right_in_image else -1
        if side:
            sgn = 0
        if bag == 2 and visible:  # shoulder bag: strap across, bag at the hip
            bx = cx + sgn * (sw / 2 + 0.01 * u)
            if not side:
                draw.line(
                    [(cx - sgn * sw * 0.35, y_sh), (bx, top + 0.44 * u)],
                    fill=bagc,
                    width=max(1, int(0.02 * u)),
                )
            draw.rectangle(
                [bx - 0.055 * u, top + 0.42 * u, bx + 0.055 * u, top + 0.53 * u], fill=bagc
            )
        elif bag == 3 and visible:  # handbag at the hand
            bx = cx + sgn * (sw / 2 + 0.04 * u) + (facing * 0.02 * u if side else 0)
            draw.rectangle([bx - 0.04 * u, top + 0.5 * u, bx + 0.04 * u, top + 0.58 * u], fill=bagc)

    # -- neck, head, hair
    draw.rectangle([hx - 0.022 * u, y_head + rh * 0.6, hx + 0.022 * u, y_sh + 0.01 * u], fill=skin)
    head = [hx - rh * 0.88, y_head - rh, hx + rh * 0.88, y_head + rh]
    style = HAIR_STYLES[p["hair_style"]]
    if view == "back" and style != "buzz":
        draw.ellipse(head, fill=hair)
        if style == "long":
            draw.rounded_rectangle(
                [hx - rh * 1.1, y_head - rh * 0.3, hx + rh * 1.1, top + 0.25 * u],
                radius=rh * 0.6,
                fill=hair,
            )
    else:
        draw.ellipse(head, fill=skin)
        if style in ("short", "long"):
            draw.chord([head[0], head[1], head[2], head[3]], 180, 360, fill=hair)
            if side:  # hair covers the back of the head
                back = hx - facing * rh * 0.45
                draw.ellipse(
                    [back - rh * 0.55, y_head - rh, back + rh * 0.55, y_head + rh * 0.5], fill=hair
                )
        elif style == "buzz":
            draw.chord(
                [head[0], head[1], head[2], y_head + rh * 0.3],
                180,
                360,
                fill=_col((np.asarray(hair) + np.asarray(skin)) / 2),
            )
        if view == "front":
            e = rh * 0.18
            for ex in (hx - rh * 0.35, hx + rh * 0.35):
                draw.ellipse(
                    [ex - e, y_head - e * 0.5, ex + e, y_head + e * 0.9],
                    fill=_col(np.asarray(skin) * 0.55),
                )
        elif side:
            ex = hx + facing * rh * 0.5
            draw.ellipse(
                [ex - rh * 0.12, y_head - rh * 0.1, ex + rh * 0.12, y_head + rh * 0.15],
                fill=_col(np.asarray(skin) * 0.55),
            )
    if style == "cap":
        draw.chord(
            [head[0] - rh * 0.05, head[1] - rh * 0.1, head[2] + rh * 0.05, head[3] - rh * 0.2],
            180,
            360,
            fill=accent,
        )
        if view == "front":
            draw.rectangle(
                [hx - rh * 0.8, y_head - rh * 0.42, hx + rh * 0.8, y_head - rh * 0.3], fill=accent
            )
        elif side:
            draw.rectangle(
                _box(hx, y_head - rh * 0.42, hx + facing * rh * 1.5, y_head - rh * 0.3), fill=accent
            )


def _occluder(canvas: Image.Image, rng: np.random.Generator, W: int, H: int) -> None:
    """Something in front of the person: a car or bench below, a pole or a passer-by aside."""
    draw = ImageDraw.Draw(canvas)
    colour = _col(np.asarray(CLUTTER[int(rng.integers(len(CLUTTER)))]) * 0.8 + 20)
    kind = int(rng.integers(3))
    if kind == 0:  # car / bench / railing over the legs
        y0 = rng.uniform(0.62, 0.85) * H
        draw.rectangle([0, y0, W, H], fill=colour)
        if rng.random() < 0.5:
            draw.rectangle([0, y0, W, y0 + 0.03 * H], fill=_col(np.asarray(colour) * 0.6))
    elif kind == 1:  # pole
        x0 = rng.uniform(0.1, 0.75) * W
        draw.rectangle([x0, 0, x0 + rng.uniform(0.1, 0.22) * W, H], fill=colour)
    else:  # a passer-by's shoulder from one side
        x0 = (rng.uniform(-0.5, -0.25) if rng.random() < 0.5 else rng.uniform(0.65, 0.9)) * W
        y0 = rng.uniform(0.15, 0.45) * H
        draw.ellipse([x0, y0, x0 + 0.6 * W, y0 + 1.2 * H], fill=colour)


def _camera_look(img: Image.Image, cam: dict, rng: np.random.Generator, d: float) -> Image.Image:
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


def _render(spec: tuple, people: list[dict], cams: list[dict], cfg: SynthConfig) -> Image.Image:
    """Render one image from its spec ``(kind, person, cam, view, track_seed, image_seed)``."""
    kind, person, cam_id, view, track_seed, image_seed = spec
    cam = cams[cam_id]
    W, H = cfg.width * 2, cfg.height * 2  # draw at 2x, then average down (anti-aliasing)
    d = cfg.difficulty
    track = np.random.default_rng(track_seed)  # shared by the frames of a tracklet
    rng = np.random.default_rng(image_seed)
    canvas = _background(cam, track, W, H)
    scale = cam["scale"] * (1 + track.uniform(-0.06, 0.06) * d) * (1 + rng.normal(0, 0.015 * d))
    cx = W * (0.5 + track.uniform(-0.06, 0.06) * d + rng.normal(0, 0.012 * d))
    u = H * min(scale, 1.02)
    top = H * 0.985 - u + H * rng.normal(0, 0.012 * d) + H * track.uniform(-0.02, 0.03) * d
    if kind == "junk":  # a badly placed box: only part of the person
        where = int(rng.integers(3))
        top = top + [-0.55 * u, 0.45 * u, 0.0][where]
        cx = cx + [0, 0, (0.5 if rng.random() < 0.5 else -0.5) * W][where]
    if person >= 0:
        # soft shadow on the ground, then the person on a layer, shaded as a rounded body
        ImageDraw.Draw(canvas, "RGBA").ellipse(
            [cx - 0.13 * u, top + 0.955 * u, cx + 0.13 * u, top + 1.01 * u], fill=(0, 0, 0, 60)
        )
        layer = Image.new("RGBA", (W, H), (0, 0, 0, 0))
        _person(layer, people[person], view, (cx, top, u), rng.random(), rng)
        xs = (np.arange(W, dtype=np.float32) - cx) / (0.16 * u)
        ys = (np.arange(H, dtype=np.float32) - top) / u
        light = 1.0 - 0.2 * xs**2 + 0.08 * cam["light"] * xs
        light = np.clip(light[None, :] - 0.12 * ys[:, None], 0.55, 1.0)
        light = Image.fromarray((light * 255).astype(np.uint8), "L").convert("RGB")
        shaded = ImageChops.multiply(layer.convert("RGB"), light)
        canvas.paste(shaded, (0, 0), layer.getchannel("A"))
    if kind != "junk" and rng.random() < cam["occlusion"]:
        _occluder(canvas, rng, W, H)
    canvas = canvas.reduce(2)
    return _camera_look(canvas, cam, rng, d)


# ----------------------------------------------------------------------------- the plan


def _view(cam: dict, rng: np.random.Generator) -> str:
    return VIEWS[int(rng.choice(4, p=cam["views"]))]


def _plan(cfg: SynthConfig):
    """People, cameras and the list of images to draw (deterministic for ``cfg.seed``)."""
    rng = np.random.default_rng([cfg.seed, 0])
    n_ids = cfg.num_train_ids + cfg.num_test_ids
    num_strangers = cfg.num_distractors // 2
    people = _sample_identities(n_ids + num_strangers, cfg, rng)
    # families are contiguous; shuffle so that train and test both hold relatives
    order = rng.permutation(n_ids)
    people = [people[i] for i in order] + people[n_ids:]
    cams = _sample_cameras(cfg, rng)
    pids = rng.permutation(np.arange(1, n_ids + 1))  # Market-like: pids interleave the splits
    is_train = np.zeros(n_ids, bool)
    is_train[rng.permutation(n_ids)[: cfg.num_train_ids]] = True
    frame = rng.integers(0, 500, cfg.num_cams)  # per-camera frame counters
    images = []  # (folder, pid, cam, frame, bbox, spec)
    per_track = max(1.0, (cfg.images_per_id - 1) / ((2 + cfg.num_cams) / 2))

    def next_frame(cam: int) -> int:
        frame[cam] += int(rng.integers(1, 40))
        return int(frame[cam])

    for i in range(n_ids):
        n_cams = int(rng.integers(2, cfg.num_cams + 1))
        cameras = np.sort(rng.choice(cfg.num_cams, size=n_cams, replace=False))
        lengths = 1 + rng.poisson(per_track - 1 + 0.3, size=n_cams)
        if not is_train[i] and lengths.max() < 2:
            lengths[int(rng.integers(n_cams))] = 2  # a test id needs a query and a match
        queries = []
        for cam, n in zip(cameras, lengths, strict=True):
            cam = int(cam)
            view = _view(cams[cam], rng)
            track_seed = [cfg.seed, 1, i, cam]
            start = len(images)
            for k in range(int(n)):
                spec = ("person", i, cam, view, track_seed, [cfg.seed, 2, len(images)])
                folder = "bounding_box_train" if is_train[i] else "bounding_box_test"
                images.append([folder, int(pids[i]), cam, next_frame(cam), 1 + k % 3, spec])
            if not is_train[i] and n >= 2:
                queries.append(start + int(rng.integers(n)))
        for q in queries:  # one query per identity and camera, as in Market-1501
            images[q][0] = "query"
    # distractors (pid 0): strangers seen once, and empty boxes; junk (pid -1): bad crops
    test_ids = np.flatnonzero(~is_train)
    for k in range(cfg.num_distractors):
        cam = int(rng.integers(cfg.num_cams))
        person = n_ids + k if k < num_strangers else -1
        spec = (
            "person",
            person,
            cam,
            _view(cams[cam], rng),
            [cfg.seed, 3, k, cam],
            [cfg.seed, 2, len(images)],
        )
        images.append(["bounding_box_test", 0, cam, next_frame(cam), 1, spec])
    for k in range(cfg.num_junk):
        cam = int(rng.integers(cfg.num_cams))
        person = int(rng.choice(test_ids))
        spec = (
            "junk",
            person,
            cam,
            _view(cams[cam], rng),
            [cfg.seed, 4, k, cam],
            [cfg.seed, 2, len(images)],
        )
        images.append(["bounding_box_test", -1, cam, next_frame(cam), 1, spec])
    return people, cams, pids, is_train, images


def _file_name(pid: int, cam: int, frame: int, bbox: int) -> str:
    pid_s = "-1" if pid == -1 else f"{pid:04d}"
    return f"{pid_s}_c{cam + 1}s{1 + frame // 10000}_{frame:06d}_{bbox:02d}.jpg"


# ----------------------------------------------------------------------------- writing

_WORKER: dict = {}


def _init_worker(people, cams, cfg, out_dir) -> None:
    _WORKER.update(people=people, cams=cams, cfg=cfg, out_dir=out_dir)


def _write_one(job: tuple) -> tuple[str, str, int]:
    rel, spec = job
    w = _WORKER
    img = _render(spec, w["people"], w["cams"], w["cfg"])
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=w["cams"][spec[2]]["quality"])
    data = buf.getvalue()
    (Path(w["out_dir"]) / rel).write_bytes(data)
    return rel, hashlib.sha256(data).hexdigest(), len(data)


def _identity_rows(people, pids, is_train, n_ids) -> list[dict]:
    rows = []
    for i, p in enumerate(people):
        if i < n_ids:
            pid, split = int(pids[i]), "train" if is_train[i] else "test"
        else:
            pid, split = 0, "distractor"
        rows.append(
            {
                "pid": pid,
                "split": split,
                "family": p["family"],
                "skin": p["skin"],
                "hair": p["hair"],
                "hair_style": HAIR_STYLES[p["hair_style"]],
                "upper": UPPER[p["upper"]][0],
                "texture": TEXTURES[p["texture"]],
                "accent": UPPER[p["accent"]][0],
                "sleeves": ["short", "long"][p["sleeves"]],
                "lower": LOWER[p["lower"]][0],
                "lower_type": LOWER_TYPES[p["lower_type"]],
                "shoes": SHOES[p["shoes"]][0],
                "bag": BAGS[p["bag"]],
                "bag_side": ["right", "left"][p["bag_side"]] if p["bag"] else "",
                "bag_colour": BAG_COLOURS[p["bag_colour"]][0] if p["bag"] else "",
                "build": BUILDS[p["build"]][0],
            }
        )
    return rows


def _config(cfg: SynthConfig | None, overrides: dict) -> SynthConfig:
    base = cfg or DEFAULT
    names = {f.name for f in fields(SynthConfig)}
    bad = set(overrides) - names
    if bad:
        raise ValueError(f"unknown setting(s) {sorted(bad)}; valid: {sorted(names)}")
    out = SynthConfig(**{**asdict(base), **overrides})
    out.validate()
    return out


def generate(
    out_dir: str | Path,
    *,
    config: SynthConfig | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **settings,
) -> Path:
    """Draw a synthetic re-ID dataset into ``out_dir`` (Market-1501 layout).

    Args:
        out_dir (str or Path): the dataset folder to create (must be empty or absent).
        config (SynthConfig, optional): base settings (default :data:`DEFAULT`).
        overwrite (bool): replace an existing synthetic set in ``out_dir`` (one whose manifest
            says ``drsl.data.synth``; any other folder is never deleted).
        progress (bool): show a tqdm progress bar. Default True.
        **settings: any :class:`SynthConfig` field, e.g. ``seed=1``, ``num_train_ids=100``,
            ``num_cams=4``, ``difficulty=0.5``, ``workers=2``.

    Returns:
        pathlib.Path: ``out_dir``, holding the three split folders, ``identities.csv`` and
        ``manifest.json`` (settings, counts, sha256 of every image; written last).

    Raises:
        ValueError: a bad setting, or ``out_dir`` not empty.

    Reference: the Market-1501 layout (Zheng et al., ICCV 2015); module docstring.

    Example:
        >>> import tempfile
        >>> out = generate(tempfile.mkdtemp() + "/s", num_train_ids=2, num_test_ids=2,
        ...                images_per_id=3, num_distractors=1, num_junk=1, progress=False)
        >>> sorted(p.name for p in out.iterdir())
        ['bounding_box_test', 'bounding_box_train', 'identities.csv', 'manifest.json', 'query']
    """
    from tqdm import tqdm

    cfg = _config(config, settings)
    out = Path(out_dir).expanduser()
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"out_dir {out} is not empty (pass overwrite=True to replace it)")
        if not _is_ours(out):
            raise ValueError(f"out_dir {out} is not a drsl synthetic set: refusing to delete it")
        shutil.rmtree(out)
    t0 = time.perf_counter()
    people, cams, pids, is_train, images = _plan(cfg)
    n_ids = cfg.num_train_ids + cfg.num_test_ids
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    jobs = [
        (f"{folder}/{_file_name(pid, cam, frame, bbox)}", spec)
        for folder, pid, cam, frame, bbox, spec in images
    ]
    workers = cfg.workers
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(jobs) >= 2000 else 1
    bar = tqdm(
        total=len(jobs), desc=f"synthetic re-ID -> {out.name}", unit="img", disable=not progress
    )
    if workers > 1:
        import multiprocessing as mp

        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers, _init_worker, (people, cams, cfg, str(out))) as pool:
            results = []
            for r in pool.imap_unordered(_write_one, jobs, chunksize=64):
                results.append(r)
                bar.update()
    else:
        _init_worker(people, cams, cfg, str(out))
        results = []
        for job in jobs:
            results.append(_write_one(job))
            bar.update()
    bar.close()
    results.sort()
    with open(out / "identities.csv", "w", newline="") as fh:
        rows = _identity_rows(people, pids, is_train, n_ids)
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    counts = {
        f: sum(1 for j in jobs if j[0].startswith(f + "/"))
        for f in ("bounding_box_train", "bounding_box_test", "query")
    }
    manifest = {
        "generator": "drsl.data.synth",
        "version": GENERATOR_VERSION,
        "settings": cfg.output_settings(),
        "counts": {
            **counts,
            "train_ids": cfg.num_train_ids,
            "test_ids": cfg.num_test_ids,
            "distractors": cfg.num_distractors,
            "junk": cfg.num_junk,
        },
        "bytes": int(sum(r[2] for r in results)),
        "seconds": round(time.perf_counter() - t0, 2),
        "workers": workers,
        "files": {rel: digest for rel, digest, _ in results},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def _is_ours(path: Path) -> bool:
    try:
        return json.loads((path / "manifest.json").read_text()).get("generator") == (
            "drsl.data.synth"
        )
    except (OSError, ValueError):
        return False


def read_manifest(root: str | Path) -> dict:
    """The manifest of a synthetic set.

    Args:
        root (str or Path): the dataset folder.

    Returns:
        dict: ``generator``, ``version``, ``settings``, ``counts``, ``bytes``, ``seconds``,
        ``files`` (relative path -> sha256).
    """
    return json.loads((Path(root) / "manifest.json").read_text())


def verify(root: str | Path) -> list[str]:
    """Files whose sha256 differs from the manifest (or that are missing).

    Args:
        root (str or Path): the dataset folder.

    Returns:
        list[str]: relative paths that fail; empty when the set is intact.
    """
    root = Path(root)
    bad = []
    for rel, digest in read_manifest(root)["files"].items():
        path = root / rel
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            bad.append(rel)
    return bad


def ensure_dataset(
    root: str | Path | None = None, *, fast: bool | None = None, progress: bool = True, **settings
) -> Path:
    """A ready synthetic set: reuse it when its manifest matches, else draw it (atomically).

    Args:
        root (str or Path, optional): where it lives; default ``data_dir()/"synthetic"``, or
            ``data_dir()/"synthetic-fast"`` in fast mode.
        fast (bool, optional): the small set (:data:`FAST`); None reads
            ``drsl.config.fast_mode()`` (``DRSL_FAST=1``).
        progress (bool): progress bar while drawing.
        **settings: :class:`SynthConfig` fields overriding the preset.

    Returns:
        pathlib.Path: the dataset folder, ready for :func:`drsl.data.datasets.load_dataset`.

    Raises:
        ValueError: ``root`` holds something that is not a drsl synthetic set.

    Reference: the Market-1501 layout (Zheng et al., ICCV 2015).
    """
    from drsl.config import data_dir, fast_mode

    fast = fast_mode() if fast is None else fast
    cfg = _config(FAST if fast else DEFAULT, settings)
    root = (
        Path(root) if root is not None else data_dir() / ("synthetic-fast" if fast else "synthetic")
    )
    wanted = {"version": GENERATOR_VERSION, "settings": cfg.output_settings()}
    if (root / "manifest.json").is_file():
        have = read_manifest(root)
        if have.get("generator") == "drsl.data.synth" and all(
            have.get(k) == v for k, v in wanted.items()
        ):
            return root
    if root.exists() and any(root.iterdir()) and not _is_ours(root):
        raise ValueError(f"{root} exists and is not a drsl synthetic set: not touching it")
    # draw into a temporary sibling, then swap it in (safe if two processes race)
    tmp = root.parent / f"{root.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    generate(tmp, config=cfg, progress=progress)
    old = root.parent / f"{root.name}.old-{os.getpid()}"
    if root.exists():
        if (root / "manifest.json").is_file() and all(
            read_manifest(root).get(k) == v for k, v in wanted.items()
        ):
            shutil.rmtree(tmp)  # another process finished first
            return root
        root.rename(old)
    try:
        tmp.rename(root)
    except OSError:  # another process swapped its copy in meanwhile
        shutil.rmtree(tmp)
    if old.exists():
        shutil.rmtree(old)
    return root


def render_identity(
    people: list[dict] | None = None,
    *,
    person: int = 0,
    camera: int = 0,
    view: str = "front",
    config: SynthConfig | None = None,
    seed: int = 0,
) -> Image.Image:
    """Draw one person as a given camera sees it (for figures and exploring the generator).

    Args:
        people (list[dict], optional): identities from the plan; None uses those of
            ``config`` (default settings).
        person (int): index into ``people``.
        camera (int): camera index.
        view (str): ``"front"``, ``"back"``, ``"left"`` or ``"right"``.
        config (SynthConfig, optional): settings (default :data:`DEFAULT`).
        seed (int): image seed.

    Returns:
        PIL.Image.Image: an RGB ``width x height`` image.

    Example:
        >>> render_identity(config=FAST, view="back").size
        (64, 128)
    """
    cfg = config or DEFAULT
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    plan_people, cams, *_ = _plan(cfg)
    people = plan_people if people is None else people
    if not 0 <= camera < len(cams):
        raise ValueError(f"camera must be in 0..{len(cams) - 1}, got {camera}")
    spec = ("person", person, camera, view, [cfg.seed, 5, person, camera], [cfg.seed, 6, seed])
    return _render(spec, people, cams, cfg)


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """``python -m drsl.data.synth``: draw a synthetic set (see ``--help``)."""
    from drsl.config import data_dir

    parser = argparse.ArgumentParser(
        prog="python -m drsl.data.synth",
        description="Draw a synthetic re-ID dataset in the Market-1501 layout.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="dataset folder (default: data/synthetic or data/synthetic-fast)",
    )
    parser.add_argument("--fast", action="store_true", help="the small set used by tests")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-ids", type=int, dest="num_train_ids")
    parser.add_argument("--test-ids", type=int, dest="num_test_ids")
    parser.add_argument("--cams", type=int, dest="num_cams")
    parser.add_argument("--images-per-id", type=float, dest="images_per_id")
    parser.add_argument("--distractors", type=int, dest="num_distractors")
    parser.add_argument("--junk", type=int, dest="num_junk")
    parser.add_argument("--difficulty", type=float)
    parser.add_argument("--family-size", type=int, dest="family_size")
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--force", action="store_true", help="replace an existing synthetic set")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = vars(parser.parse_args(argv))
    out = args.pop("out") or data_dir() / ("synthetic-fast" if args["fast"] else "synthetic")
    fast, force, quiet = args.pop("fast"), args.pop("force"), args.pop("quiet")
    settings = {k: v for k, v in args.items() if v is not None}
    base = FAST if fast else DEFAULT
    t0 = time.perf_counter()
    try:
        generate(out, config=base, overwrite=force, progress=not quiet, **settings)
    except ValueError as err:
        parser.error(str(err))
    m = read_manifest(out)
    c = m["counts"]
    print(
        f"wrote {out}: {c['bounding_box_train']} train / {c['query']} query / "
        f"{c['bounding_box_test']} gallery images, {m['bytes'] / 2**20:.1f} MiB of JPEG, "
        f"{time.perf_counter() - t0:.1f} s with {m['workers']} worker(s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
