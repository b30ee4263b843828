"""One image from its spec: the camera's background, the person on a shaded layer, an
occluder, then the camera's photometric look. Drawn at twice the size and averaged down.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from drsl.data.synth.camera import background, camera_look, occluder
from drsl.data.synth.config import DEFAULT, SynthConfig
from drsl.data.synth.palette import VIEWS
from drsl.data.synth.person import draw_person
from drsl.data.synth.plan import make_plan

__all__ = ["render", "render_identity"]


def render(spec: tuple, people: list[dict], cams: list[dict], cfg: SynthConfig) -> Image.Image:
    """Render one image from its spec ``(kind, person, cam, view, track_seed, image_seed)``.

    Args:
        spec (tuple): from the plan; ``kind`` is ``"person"`` or ``"junk"``, ``person`` an
            index into ``people`` (-1: an empty box).
        people (list[dict]): the identities of the plan.
        cams (list[dict]): the cameras of the plan.
        cfg (SynthConfig): the settings (size, difficulty).

    Returns:
        PIL.Image.Image: the RGB ``cfg.width x cfg.height`` image.
    """
    kind, person, cam_id, view, track_seed, image_seed = spec
    cam = cams[cam_id]
    W, H = cfg.width * 2, cfg.height * 2  # draw at 2x, then average down (anti-aliasing)
    d = cfg.difficulty
    track = np.random.default_rng(track_seed)  # shared by the frames of a tracklet
    rng = np.random.default_rng(image_seed)
    canvas = background(cam, track, W, H)
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
        draw_person(layer, people[person], view, (cx, top, u), rng.random(), rng)
        xs = (np.arange(W, dtype=np.float32) - cx) / (0.16 * u)
        ys = (np.arange(H, dtype=np.float32) - top) / u
        light = 1.0 - 0.2 * xs**2 + 0.08 * cam["light"] * xs
        light = np.clip(light[None, :] - 0.12 * ys[:, None], 0.55, 1.0)
        light = Image.fromarray((light * 255).astype(np.uint8), "L").convert("RGB")
        shaded = ImageChops.multiply(layer.convert("RGB"), light)
        canvas.paste(shaded, (0, 0), layer.getchannel("A"))
    if kind != "junk" and rng.random() < cam["occlusion"]:
        occluder(canvas, rng, W, H)
    canvas = canvas.reduce(2)
    return camera_look(canvas, cam, rng, d)


# ----------------------------------------------------------------------------- the plan


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
        >>> from drsl.data.synth import FAST
        >>> render_identity(config=FAST, view="back").size
        (64, 128)
    """
    cfg = config or DEFAULT
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    plan_people, cams, *_ = make_plan(cfg)
    people = plan_people if people is None else people
    if not 0 <= camera < len(cams):
        raise ValueError(f"camera must be in 0..{len(cams) - 1}, got {camera}")
    spec = ("person", person, camera, view, [cfg.seed, 5, person, camera], [cfg.seed, 6, seed])
    return render(spec, people, cams, cfg)
