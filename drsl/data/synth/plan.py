"""The plan of a set: its identities, cameras and the list of images to draw.

Everything here is decided by one generator seeded with ``(seed, 0)``, before any pixel is
drawn; each planned image then carries its own seeds (tracklet and image), so the drawing can
run in any order and in any number of processes with byte-identical results.
"""

from __future__ import annotations

import numpy as np

from drsl.data.synth.camera import sample_cameras
from drsl.data.synth.config import SynthConfig
from drsl.data.synth.palette import (
    ATTR_NAMES,
    ATTRS,
    BAG_COLOURS,
    BAGS,
    BUILDS,
    HAIR_STYLES,
    LOWER,
    LOWER_TYPES,
    SHOES,
    TEXTURES,
    UPPER,
    VIEWS,
    draw_attr,
)

__all__ = ["sample_identities", "make_plan", "file_name", "identity_rows"]


def sample_identities(n: int, cfg: SynthConfig, rng: np.random.Generator) -> list[dict]:
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
            proto = {a: draw_attr(rng, k, w) for a, k, w in ATTRS}
        for _ in range(20):
            person = dict(proto)
            changes = 0 if cfg.family_size == 1 else 1 + int(rng.binomial(2, 0.35))
            for idx in rng.choice(len(ATTRS), size=changes, replace=False):
                a, k, w = ATTRS[idx]
                person[a] = draw_attr(rng, k, w)
            if person["accent"] == person["upper"]:  # an accent must show
                person["accent"] = (person["accent"] + 1) % len(UPPER)
            key = tuple(person[a] for a in ATTR_NAMES)
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


def _view(cam: dict, rng: np.random.Generator) -> str:
    return VIEWS[int(rng.choice(4, p=cam["views"]))]


def make_plan(cfg: SynthConfig):
    """People, cameras and the list of images to draw (deterministic for ``cfg.seed``)."""
    rng = np.random.default_rng([cfg.seed, 0])
    n_ids = cfg.num_train_ids + cfg.num_test_ids
    num_strangers = cfg.num_distractors // 2
    people = sample_identities(n_ids + num_strangers, cfg, rng)
    # families are contiguous; shuffle so that train and test both hold relatives
    order = rng.permutation(n_ids)
    people = [people[i] for i in order] + people[n_ids:]
    cams = sample_cameras(cfg, rng)
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


def file_name(pid: int, cam: int, frame: int, bbox: int) -> str:
    pid_s = "-1" if pid == -1 else f"{pid:04d}"
    return f"{pid_s}_c{cam + 1}s{1 + frame // 10000}_{frame:06d}_{bbox:02d}.jpg"


def identity_rows(people, pids, is_train, n_ids) -> list[dict]:
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
