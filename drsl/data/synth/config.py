"""The dials of the synthetic generator: :class:`SynthConfig` and its two presets.

Every field carries ``metadata={"help": ..., "flag": ...}``: the help text and the option name
of the command line (``python -m drsl synth`` / ``python -m drsl.data.synth``), so an option is
declared once, here. Light module (no numpy, no PIL): a CLI can build its parser from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

__all__ = ["GENERATOR_VERSION", "SynthConfig", "DEFAULT", "FAST", "make_config"]

GENERATOR_VERSION = "2"  # bump whenever the drawn bytes change: cached sets are redrawn


def _opt(default, help: str, flag: str):
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass(frozen=True)
class SynthConfig:
    """The dials of the generator.

    Attributes:
        seed (int): base seed.
        num_train_ids (int): identities in ``bounding_box_train``.
        num_test_ids (int): identities in ``query`` and ``bounding_box_test``.
        num_cams (int): cameras (2..9; Market has 6).
        images_per_id (float): mean images per identity over all its cameras.
        num_distractors (int): gallery images with pid 0 (strangers, empty boxes).
        num_junk (int): gallery images with pid -1 (badly cropped boxes).
        height (int): image height in pixels (Market: 128).
        width (int): image width in pixels (Market: 64).
        difficulty (float): scales every camera nuisance (0 = clean cameras, 1 = default).
        family_size (int): identities per family sharing most attributes (1 = independent).
        workers (int or None): processes (None: 2 for large sets, else 1). Not part of the
            output: any value gives the same bytes.

    Example:
        >>> from dataclasses import fields
        >>> {f.name: f.metadata["flag"] for f in fields(SynthConfig)}["num_train_ids"]
        '--train-ids'
    """

    seed: int = _opt(0, "base seed (same settings and seed: byte-identical images)", "--seed")
    num_train_ids: int = _opt(400, "identities in bounding_box_train", "--train-ids")
    num_test_ids: int = _opt(400, "identities in query and bounding_box_test", "--test-ids")
    num_cams: int = _opt(6, "cameras, 2..9 (Market-1501 has 6)", "--cams")
    images_per_id: float = _opt(
        12.0, "mean images per identity over all its cameras", "--images-per-id"
    )
    num_distractors: int = _opt(
        500, "gallery images with pid 0 (strangers, empty boxes)", "--distractors"
    )
    num_junk: int = _opt(250, "gallery images with pid -1 (badly cropped boxes)", "--junk")
    height: int = _opt(128, "image height in pixels (Market: 128)", "--height")
    width: int = _opt(64, "image width in pixels (Market: 64)", "--width")
    difficulty: float = _opt(
        1.0, "scales every camera nuisance (0 = clean cameras, 1 = default)", "--difficulty"
    )
    family_size: int = _opt(
        4, "identities per family sharing most attributes (1 = independent)", "--family-size"
    )
    workers: int | None = _opt(
        None, "worker processes (default: 2 for large sets, else 1; same bytes)", "--workers"
    )

    def output_settings(self) -> dict:
        """The settings that determine the bytes written (all but ``workers``)."""
        d = asdict(self)
        d.pop("workers")
        return d

    def validate(self) -> None:
        """Raise ValueError naming the first bad value (and its command-line flag)."""
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
        flags = {f.name: f.metadata["flag"] for f in fields(self)}
        for name, ok, need in checks:
            if not ok:
                raise ValueError(
                    f"{name} must be {need} ({flags[name]}), got {getattr(self, name)!r}"
                )


DEFAULT = SynthConfig()
"""The default set: 400 + 400 identities, 6 cameras, 10,400 images (4,865 train,
1,369 query, 4,166 gallery with 500 distractors and 250 junk)."""

FAST = SynthConfig(
    num_train_ids=48, num_test_ids=32, images_per_id=8.0, num_distractors=30, num_junk=12
)
"""The fast set (``DRSL_FAST=1``): 48 + 32 identities, 650 images, a few seconds."""


def make_config(base: SynthConfig | None = None, **overrides) -> SynthConfig:
    """``base`` (default :data:`DEFAULT`) with some fields replaced, validated.

    Args:
        base (SynthConfig, optional): the preset.
        **overrides: :class:`SynthConfig` fields.

    Returns:
        SynthConfig: the validated settings.

    Raises:
        ValueError: an unknown field name or a bad value (both named).

    Example:
        >>> make_config(FAST, seed=3).seed, make_config(FAST).num_train_ids
        (3, 48)
    """
    names = {f.name for f in fields(SynthConfig)}
    bad = set(overrides) - names
    if bad:
        raise ValueError(f"unknown setting(s) {sorted(bad)}; valid: {sorted(names)}")
    out = SynthConfig(**{**asdict(base or DEFAULT), **overrides})
    out.validate()
    return out
