"""Palettes of the synthetic people and scenes, and the categorical attributes of an identity.

An identity is a combination of attributes drawn from these small palettes (skin, hair colour
and style, upper-body colour and texture, sleeves, lower-body colour and type, shoes, bag, its
side and colour, build); cameras pick their walls and floors from ``WALLS`` and ``FLOORS``.
Changing any value here changes the drawn bytes: bump ``GENERATOR_VERSION`` with it.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SKIN",
    "HAIR",
    "HAIR_STYLES",
    "UPPER",
    "UPPER_WEIGHTS",
    "TEXTURES",
    "TEXTURE_WEIGHTS",
    "LOWER",
    "LOWER_WEIGHTS",
    "LOWER_TYPES",
    "SHOES",
    "BAGS",
    "BAG_COLOURS",
    "BUILDS",
    "VIEWS",
    "WALLS",
    "FLOORS",
    "CLUTTER",
    "ATTRS",
    "ATTR_NAMES",
    "draw_attr",
    "clip_rgb",
]

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
ATTRS = [
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
ATTR_NAMES = [a for a, _, _ in ATTRS]


def draw_attr(rng: np.random.Generator, k: int, weights) -> int:
    """One of ``k`` choices, with ``weights`` (normalised here) or uniformly when None."""
    p = None if weights is None else np.asarray(weights, float) / np.sum(weights)
    return int(rng.choice(k, p=p))


def clip_rgb(rgb, shade=(0, 0, 0), jitter=None) -> tuple[int, int, int]:
    """``rgb + shade (+ jitter)``, clipped to 0..255, as an int triple (PIL's fill colour).

    Example:
        >>> clip_rgb((250, 10, 100), (10, -20, 0))
        (255, 0, 100)
    """
    c = np.asarray(rgb, float) + np.asarray(shade, float)
    if jitter is not None:
        c = c + jitter
    return tuple(int(v) for v in np.clip(c, 0, 255))
