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
camera), files ``PPPP_cCsS_FFFFFF_NN.jpg``; ``identities.csv`` (the attributes of every pid),
the marker ``.drsl-synth.json`` (written first) and ``manifest.json`` (settings, counts, sha256
and size of every file; written last).

Deterministic: every image draws from its own seed ``(seed, kind, index)``, so the same settings
give byte-identical files whatever the number of worker processes.

Safe: a set is drawn into a temporary sibling under an advisory lock and renamed into place
(never half-written); a reused set is checked against its manifest; a folder the generator did
not make is never written to or deleted.

Modules: :mod:`~drsl.data.synth.config` (``SynthConfig``, presets), ``palette`` (colours and
attributes), ``person`` (the renderer, one function per body part), ``camera`` (nuisances,
scenes, occluders), ``render`` (one image), ``plan`` (identities, cameras, the image list),
``writer`` (``generate``: processes, manifest), ``manifest`` (marker, checks), ``cache``
(``ensure_dataset``), ``command`` (``synth_command``, ``main``).

CLI: ``python -m drsl.data.synth --out data/synthetic [--fast] [--seed 0] [--force] [...]``.

Reference: Zheng et al., ICCV 2015 (Market-1501 layout and protocol); the issue "Re-ID data
and evaluation" of this project (the generator's requirements).
"""

from __future__ import annotations

from drsl._lazy import lazy_exports

_EXPORTS = {
    "GENERATOR_VERSION": ".config",
    "SynthConfig": ".config",
    "DEFAULT": ".config",
    "FAST": ".config",
    "make_config": ".config",
    "generate": ".writer",
    "ensure_dataset": ".cache",
    "render_identity": ".render",
    "read_manifest": ".manifest",
    "verify": ".manifest",
    "check_set": ".manifest",
    "is_ours": ".manifest",
    "repair_command": ".manifest",
    "synth_command": ".command",
    "main": ".command",
}

__all__ = sorted(_EXPORTS)


# submodules load on first use, so that ``drsl.data.synth.config`` (a CLI's parser) does not
# import numpy and PIL
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
