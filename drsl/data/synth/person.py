"""The person renderer, one function per body part, drawn back to front.

:func:`draw_person` computes the body's colours and proportions once (:class:`Body`) and then
paints, in this order: what is behind the body (long hair, a backpack seen from the side),
legs and shoes, hips or skirt, the far arm (side views), the torso with its texture, bags in
front of the torso, the near arm(s), a shoulder bag or handbag, then neck, head, face and cap.
The order and every number are those of the generator's version 2: changing them changes
the drawn bytes (bump ``GENERATOR_VERSION``; ``tests/test_synth.py`` pins the hashes).

Coordinates are canvas pixels; ``u`` is the person's height, ``top`` the top of the head,
``cx`` the body's centre line. The image mirrors the person: a front view shows their left
side on the image's right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from drsl.data.synth.palette import (
    BAG_COLOURS,
    BUILDS,
    HAIR,
    HAIR_STYLES,
    LOWER,
    SHOES,
    SKIN,
    TEXTURES,
    UPPER,
    clip_rgb,
)

__all__ = ["Body", "draw_person"]


def _box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    """``[left, top, right, bottom]`` whatever the order of the corners (PIL needs it)."""
    return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]


def _limb(draw: ImageDraw.ImageDraw, p0, p1, width: float, fill) -> None:
    """A segment with round ends from ``p0`` to ``p1``."""
    draw.line([p0, p1], fill=fill, width=max(1, int(round(width))))
    r = width / 2
    for px, py in (p0, p1):
        draw.ellipse([px - r, py - r, px + r, py + r], fill=fill)


@dataclass
class Body:
    """Colours and proportions of one person in one image (computed by :meth:`make`)."""

    canvas: Image.Image
    draw: ImageDraw.ImageDraw
    p: dict
    view: str
    side: bool
    facing: int
    cx: float
    top: float
    u: float
    swing: float
    skin: tuple
    hair: tuple
    upper: tuple
    accent: tuple
    lower: tuple
    shoes: tuple
    bagc: tuple
    build: float
    bag_right_in_image: bool
    sw: float
    ww: float
    y_sh: float
    y_waist: float
    y_crotch: float
    y_knee: float
    y_ankle: float
    y_foot: float
    hx: float
    rh: float
    y_head: float
    arm_w: float

    @classmethod
    def make(cls, canvas, p: dict, view: str, box: tuple, phase: float, rng) -> Body:
        """Colours (identity shade + one lighting jitter drawn from ``rng``) and proportions."""
        cx, top, u = box
        side = view in ("left", "right")
        jit = rng.normal(0, 4, 3)
        shade = p["shade"]
        build = BUILDS[p["build"]][1] * p["width"]
        rh = 0.062 * u
        return cls(
            canvas=canvas,
            draw=ImageDraw.Draw(canvas),
            p=p,
            view=view,
            side=side,
            facing=1 if view == "right" else -1,  # side views: the direction the person faces
            cx=cx,
            top=top,
            u=u,
            swing=math.sin(2 * math.pi * phase),
            skin=clip_rgb(SKIN[p["skin"]], (0, 0, 0), jit),
            hair=clip_rgb(HAIR[p["hair"]], (0, 0, 0), jit),
            upper=clip_rgb(UPPER[p["upper"]][1], shade[0], jit),
            accent=clip_rgb(UPPER[p["accent"]][1], shade[1], jit),
            lower=clip_rgb(LOWER[p["lower"]][1], shade[2], jit),
            shoes=clip_rgb(SHOES[p["shoes"]][1], (0, 0, 0), jit),
            bagc=clip_rgb(BAG_COLOURS[p["bag_colour"]][1], shade[3], jit),
            build=build,
            # mirror the person's left/right: a front view shows their left on the right
            bag_right_in_image=(p["bag_side"] == 1) == (view == "front"),
            sw=0.25 * u * build * (0.55 if side else 1.0),  # shoulder width
            ww=0.2 * u * build * (0.62 if side else 1.0),  # waist width
            y_sh=top + 0.17 * u,
            y_waist=top + 0.47 * u,
            y_crotch=top + 0.56 * u,
            y_knee=top + 0.73 * u,
            y_ankle=top + 0.93 * u,
            y_foot=top + 0.985 * u,
            hx=cx + (0.015 * u if view == "right" else -0.015 * u if view == "left" else 0),
            rh=rh,
            y_head=top + 0.075 * u,
            arm_w=0.058 * u * build,
        )


def _behind(b: Body) -> None:
    """Behind the body: long hair (unless seen from the back), a backpack seen from the side."""
    p, u, draw = b.p, b.u, b.draw
    if p["hair_style"] == 1 and b.view != "back":
        draw.rounded_rectangle(
            [
                b.hx - b.rh * 1.15 - (0.02 * u if b.side else 0) * b.facing,
                b.y_head - b.rh,
                b.hx + b.rh * 1.15 - (0.03 * u if b.side else 0) * b.facing,
                b.top + 0.24 * u,
            ],
            radius=b.rh,
            fill=b.hair,
        )
    if p["bag"] == 1 and b.side:
        bx = b.cx - b.facing * (b.sw / 2 + 0.05 * u)
        draw.rounded_rectangle(
            [bx - 0.06 * u, b.y_sh + 0.02 * u, bx + 0.06 * u, b.top + 0.42 * u],
            radius=0.02 * u,
            fill=b.bagc,
        )


def _legs(b: Body) -> None:
    """Both legs in the lower garment (or skin below shorts and skirts), and the shoes."""
    p, u, cx, draw = b.p, b.u, b.cx, b.draw
    side, build, lower, skin = b.side, b.build, b.lower, b.skin
    stride = (0.08 if side else 0.035) * u * b.swing
    leg_w = 0.085 * u * build * (0.9 if side else 1.0)
    hips = [cx - (0 if side else b.ww / 4), cx + (0 if side else b.ww / 4)]
    feet = [hips[0] - stride, hips[1] + stride]
    lower_len = {0: 1.0, 1: 0.45, 2: 0.35}[p["lower_type"]]
    for hxp, fx in zip(hips, feet, strict=True):
        knee = (hxp + (fx - hxp) * 0.45, b.y_knee)
        _limb(draw, (hxp, b.y_crotch), knee, leg_w, lower if lower_len > 0.5 else skin)
        _limb(draw, knee, (fx, b.y_ankle), leg_w * 0.9, lower if lower_len > 0.9 else skin)
        if lower_len < 0.9:  # shorts / skirt: the garment covers the thigh
            _limb(
                draw,
                (hxp, b.y_crotch),
                (hxp + (fx - hxp) * 0.3, b.top + 0.66 * u),
                leg_w * 1.05,
                lower,
            )
        sx = fx + (b.facing * 0.025 * u if side else 0)
        draw.ellipse(
            [sx - leg_w * 0.7, b.y_ankle - 0.01 * u, sx + leg_w * 0.7, b.y_foot], fill=b.shoes
        )


def _hips(b: Body) -> None:
    """A skirt's trapezoid, or the hips of trousers and shorts."""
    u, cx, ww = b.u, b.cx, b.ww
    if b.p["lower_type"] == 2:
        b.draw.polygon(
            [
                (cx - ww / 2, b.y_waist),
                (cx + ww / 2, b.y_waist),
                (cx + ww * 0.75, b.top + 0.68 * u),
                (cx - ww * 0.75, b.top + 0.68 * u),
            ],
            fill=b.lower,
        )
    else:
        b.draw.rectangle(
            [cx - ww / 2, b.y_waist - 0.01 * u, cx + ww / 2, b.y_crotch + 0.02 * u], fill=b.lower
        )


def _arm(b: Body, x_sh: float, dx: float, colour_sleeve) -> tuple[float, float]:
    """One arm from the shoulder at ``x_sh``, the hand ``dx`` aside; returns the hand."""
    u, top, draw = b.u, b.top, b.draw
    elbow = (x_sh + dx * 0.5, top + 0.33 * u)
    hand = (x_sh + dx, top + 0.49 * u)
    _limb(draw, (x_sh, b.y_sh + 0.03 * u), elbow, b.arm_w, colour_sleeve)
    sleeve_long = b.p["sleeves"] == 1
    _limb(draw, elbow, hand, b.arm_w * 0.9, colour_sleeve if sleeve_long else b.skin)
    r = b.arm_w * 0.55
    draw.ellipse([hand[0] - r, hand[1] - r, hand[0] + r, hand[1] + r], fill=b.skin)
    return hand


def _far_arm(b: Body) -> None:
    """Side views: the far arm, behind the torso, in a darker sleeve."""
    if b.side:
        _arm(b, b.cx, -b.facing * 0.06 * b.u * b.swing, clip_rgb(np.asarray(b.upper) * 0.8))


def _torso_outline(b: Body) -> list[tuple[float, float]]:
    return [
        (b.cx - b.sw / 2, b.y_sh),
        (b.cx + b.sw / 2, b.y_sh),
        (b.cx + b.ww / 2, b.y_waist + 0.01 * b.u),
        (b.cx - b.ww / 2, b.y_waist + 0.01 * b.u),
    ]


def _woven_torso(b: Body, torso, checks: bool) -> None:
    """Stripes (and, for checks, columns) of the accent colour, masked by the torso."""
    canvas, u = b.canvas, b.u
    x0, x1 = b.cx - b.sw / 2, b.cx + b.sw / 2
    mask = Image.new("L", canvas.size, 0)
    ImageDraw.Draw(mask).polygon(torso, fill=255)
    layer = Image.new("RGB", canvas.size, b.upper)
    ld = ImageDraw.Draw(layer)
    period = 0.05 * u
    y = b.y_sh + period * 0.5
    while y < b.y_waist:
        ld.rectangle([x0, y, x1, y + period * 0.45], fill=b.accent)
        y += period
    if checks:
        x = x0 + period * 0.5
        while x < x1:
            ld.rectangle([x, b.y_sh, x + period * 0.45, b.y_waist], fill=b.accent)
            x += period
    canvas.paste(layer, (0, 0), mask)


def _torso_mark(b: Body, texture: str) -> None:
    """What a plain torso shows of its texture from this view: logo, back print, jacket."""
    u, cx, top, draw, view = b.u, b.cx, b.top, b.draw, b.view
    if texture == "logo" and view == "front":
        s = 0.055 * u
        ly = top + 0.27 * u
        draw.ellipse([cx - s, ly - s, cx + s, ly + s], fill=b.accent)
    elif texture == "back print" and view == "back":
        s = 0.07 * u
        ly = top + 0.29 * u
        draw.rectangle([cx - s, ly - s, cx + s, ly + s], fill=b.accent)
    elif texture == "open jacket" and view == "front":
        draw.polygon(
            [
                (cx - 0.045 * u * b.build, b.y_sh),
                (cx + 0.045 * u * b.build, b.y_sh),
                (cx + 0.03 * u, b.y_waist),
                (cx - 0.03 * u, b.y_waist),
            ],
            fill=b.accent,
        )
    elif texture == "open jacket" and b.side:
        draw.rectangle(
            _box(
                cx + b.facing * (b.sw / 2 - 0.02 * u), b.y_sh, cx + b.facing * b.sw / 2, b.y_waist
            ),
            fill=b.accent,
        )


def _torso(b: Body) -> None:
    """The torso with its texture."""
    torso = _torso_outline(b)
    texture = TEXTURES[b.p["texture"]]
    if texture in ("stripes", "checks"):
        _woven_torso(b, torso, texture == "checks")
    else:
        b.draw.polygon(torso, fill=b.upper)
        _torso_mark(b, texture)


def _backpack(b: Body) -> None:
    """A backpack over the back (back view) or its straps (front view)."""
    u, cx, draw = b.u, b.cx, b.draw
    if b.p["bag"] == 1 and b.view == "back":
        draw.rounded_rectangle(
            [cx - b.sw * 0.38, b.y_sh + 0.02 * u, cx + b.sw * 0.38, b.top + 0.43 * u],
            radius=0.03 * u,
            fill=b.bagc,
        )
    elif b.p["bag"] == 1 and b.view == "front":
        for sx in (cx - b.sw * 0.3, cx + b.sw * 0.3):
            draw.line(
                [(sx, b.y_sh), (sx, b.top + 0.36 * u)], fill=b.bagc, width=max(1, int(0.025 * u))
            )


def _near_arms(b: Body) -> None:
    """The near arm (side views) or both arms (front and back)."""
    u, cx, sw = b.u, b.cx, b.sw
    if b.side:
        _arm(b, cx, b.facing * 0.06 * u * b.swing, b.upper)
    else:
        _arm(b, cx - sw / 2 - b.arm_w * 0.25, -0.02 * u - 0.02 * u * b.swing, b.upper)
        _arm(b, cx + sw / 2 + b.arm_w * 0.25, 0.02 * u + 0.02 * u * b.swing, b.upper)


def _hand_bags(b: Body) -> None:
    """A shoulder bag (strap across, bag at the hip) or a handbag, when this view shows it."""
    p, u, cx, top, sw, draw, side = b.p, b.u, b.cx, b.top, b.sw, b.draw, b.side
    bag = p["bag"]
    if bag not in (2, 3):
        return
    visible = not side or (b.view == "right") == (p["bag_side"] == 0)
    sgn = 1 if b.bag_right_in_image else -1
    if side:
        sgn = 0
    if bag == 2 and visible:
        bx = cx + sgn * (sw / 2 + 0.01 * u)
        if not side:
            draw.line(
                [(cx - sgn * sw * 0.35, b.y_sh), (bx, top + 0.44 * u)],
                fill=b.bagc,
                width=max(1, int(0.02 * u)),
            )
        draw.rectangle(
            [bx - 0.055 * u, top + 0.42 * u, bx + 0.055 * u, top + 0.53 * u], fill=b.bagc
        )
    elif bag == 3 and visible:
        bx = cx + sgn * (sw / 2 + 0.04 * u) + (b.facing * 0.02 * u if side else 0)
        draw.rectangle([bx - 0.04 * u, top + 0.5 * u, bx + 0.04 * u, top + 0.58 * u], fill=b.bagc)


def _head_box(b: Body) -> list[float]:
    return [b.hx - b.rh * 0.88, b.y_head - b.rh, b.hx + b.rh * 0.88, b.y_head + b.rh]


def _hair_from_behind(b: Body, style: str) -> None:
    """The back of the head: all hair, and long hair down to the shoulders."""
    hx, rh, draw = b.hx, b.rh, b.draw
    draw.ellipse(_head_box(b), fill=b.hair)
    if style == "long":
        draw.rounded_rectangle(
            [hx - rh * 1.1, b.y_head - rh * 0.3, hx + rh * 1.1, b.top + 0.25 * b.u],
            radius=rh * 0.6,
            fill=b.hair,
        )


def _hair_on_face_side(b: Body, style: str) -> None:
    """Short or long hair over the top (and the back of a side view), or a buzz cut."""
    hx, rh, y_head, draw = b.hx, b.rh, b.y_head, b.draw
    head = _head_box(b)
    if style in ("short", "long"):
        draw.chord([head[0], head[1], head[2], head[3]], 180, 360, fill=b.hair)
        if b.side:  # hair covers the back of the head
            back = hx - b.facing * rh * 0.45
            draw.ellipse(
                [back - rh * 0.55, y_head - rh, back + rh * 0.55, y_head + rh * 0.5], fill=b.hair
            )
    elif style == "buzz":
        draw.chord(
            [head[0], head[1], head[2], y_head + rh * 0.3],
            180,
            360,
            fill=clip_rgb((np.asarray(b.hair) + np.asarray(b.skin)) / 2),
        )


def _eyes(b: Body) -> None:
    """Two eyes from the front, one from the side."""
    hx, rh, y_head, draw = b.hx, b.rh, b.y_head, b.draw
    if b.view == "front":
        e = rh * 0.18
        for ex in (hx - rh * 0.35, hx + rh * 0.35):
            draw.ellipse(
                [ex - e, y_head - e * 0.5, ex + e, y_head + e * 0.9],
                fill=clip_rgb(np.asarray(b.skin) * 0.55),
            )
    elif b.side:
        ex = hx + b.facing * rh * 0.5
        draw.ellipse(
            [ex - rh * 0.12, y_head - rh * 0.1, ex + rh * 0.12, y_head + rh * 0.15],
            fill=clip_rgb(np.asarray(b.skin) * 0.55),
        )


def _cap(b: Body) -> None:
    """A cap in the accent colour, with its peak in front or aside."""
    hx, rh, y_head, draw = b.hx, b.rh, b.y_head, b.draw
    head = _head_box(b)
    draw.chord(
        [head[0] - rh * 0.05, head[1] - rh * 0.1, head[2] + rh * 0.05, head[3] - rh * 0.2],
        180,
        360,
        fill=b.accent,
    )
    if b.view == "front":
        draw.rectangle(
            [hx - rh * 0.8, y_head - rh * 0.42, hx + rh * 0.8, y_head - rh * 0.3], fill=b.accent
        )
    elif b.side:
        draw.rectangle(
            _box(hx, y_head - rh * 0.42, hx + b.facing * rh * 1.5, y_head - rh * 0.3),
            fill=b.accent,
        )


def _head(b: Body) -> None:
    """Neck, head, hair, eyes and cap."""
    hx, rh, draw = b.hx, b.rh, b.draw
    draw.rectangle(
        [hx - 0.022 * b.u, b.y_head + rh * 0.6, hx + 0.022 * b.u, b.y_sh + 0.01 * b.u],
        fill=b.skin,
    )
    style = HAIR_STYLES[b.p["hair_style"]]
    if b.view == "back" and style != "buzz":
        _hair_from_behind(b, style)
    else:
        draw.ellipse(_head_box(b), fill=b.skin)
        _hair_on_face_side(b, style)
        _eyes(b)
    if style == "cap":
        _cap(b)


_PARTS = (_behind, _legs, _hips, _far_arm, _torso, _backpack, _near_arms, _hand_bags, _head)
"""The body parts in painting order (back to front)."""


def draw_person(
    canvas: Image.Image, p: dict, view: str, box: tuple, phase: float, rng: np.random.Generator
) -> None:
    """Draw person ``p`` seen from ``view`` ('front', 'back', 'left', 'right') into ``box``.

    Args:
        canvas (PIL.Image.Image): a transparent RGBA layer, drawn in place.
        p (dict): the identity (attribute indices, ``shade`` 5 x 3, ``width``).
        view (str): the viewpoint.
        box (tuple): ``(cx, top, height)`` in canvas pixels.
        phase (float): walking phase in [0, 1).
        rng (numpy.random.Generator): the image's generator (one lighting jitter is drawn).

    Colours get the identity's shade plus a small per-image jitter (lighting).
    """
    b = Body.make(canvas, p, view, box, phase, rng)
    for part in _PARTS:
        part(b)
