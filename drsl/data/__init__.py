"""Re-ID data: the synthetic Market-format set, real dataset loaders, the PK sampler.

- :mod:`drsl.data.synth`     procedural pedestrians written in the Market-1501 layout
  (``ensure_dataset()`` makes the default set on first use; CLI ``python -m drsl.data.synth``)
- :mod:`drsl.data.datasets`  loaders for Market-1501, DukeMTMC-reID, CUHK03-np, MSMT17 and
  ``ImageDataset``
- :mod:`drsl.data.splits`    ``ReIDSplits`` (what every loader returns), ``ImageDataset``
- :mod:`drsl.data.imagefile` ``read_image`` (the one image reader), ``scan_images``,
  ``BadImageError``
- :mod:`drsl.data.images`    in-memory image sets for training and evaluation
- :mod:`drsl.data.sampler`   ``PKSampler``: P identities x K instances per batch (per rank)
- :mod:`drsl.data.validation` ``split_validation``: training identities held out as a
  Market-protocol validation split
- :mod:`drsl.data.features`  raw-pixel and colour-histogram baseline features
- :mod:`drsl.data.transforms` image transforms for training and evaluation

Submodules load on first use (``drsl.data.PKSampler`` imports :mod:`drsl.data.sampler`), so
``import drsl.data.synth`` stays light in worker processes.

Reference: Zheng et al., ICCV 2015 (Market-1501 layout); Hermans et al. 2017 (PK batches).
"""

from __future__ import annotations

from drsl._lazy import lazy_exports

_EXPORTS = {
    "ReIDSplits": ".datasets",
    "ImageDataset": ".datasets",
    "load_dataset": ".datasets",
    "load_market1501": ".datasets",
    "load_dukemtmc": ".datasets",
    "load_cuhk03np": ".datasets",
    "load_msmt17": ".datasets",
    "BadImageError": ".imagefile",
    "read_image": ".imagefile",
    "scan_images": ".imagefile",
    "PKSampler": ".sampler",
    "pk_pos_neg_ratio": ".sampler",
    "memory_pos_neg": ".sampler",
    "split_validation": ".validation",
    "ensure_dataset": ".synth",
    "generate": ".synth",
    "SynthConfig": ".synth",
    "build_transforms": ".transforms",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
