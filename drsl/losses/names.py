"""One record per metric loss: the single place a loss is named (torch-free).

Everything that needs to know the losses reads :data:`RECORDS`: the registry
(:data:`drsl.losses.LOSSES`, :func:`drsl.losses.gradient_mass`), the run config
(``drsl.train.config.METRIC_LOSSES`` and ``LOSS_CHOICES``, hence the command line), the
data-parallel scale (``drsl.train.distributed``), the objective (which losses take
angle embeddings) and the explorer's menu (``drsl.explore.LOSS_NAMES`` and ``LOSS_LABELS``).
Adding a loss is one :class:`LossRecord` here plus its function and its tests.

No torch import: ``drsl train --help`` and the config checks read this module without loading
torch; the functions are named by dotted path and imported by :func:`resolve`.

Reference: spec ``docs/drsl-loss-spec.md`` ("Beyond the batch": how each loss normalises).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["NORMALISER_KINDS", "LossRecord", "RECORDS", "record", "resolve"]

#: How a loss normalises its sum (the per-process count of the data-parallel scale):
#: ``"anchors"``: anchors with at least one positive in the retrieval set; ``"anchors_pos_neg"``:
#: anchors with a positive and a negative; ``"pairs"``: ordered (anchor, retrieval item) pairs;
#: ``"items"``: batch rows (the CE term).
NORMALISER_KINDS = ("anchors", "anchors_pos_neg", "pairs", "items")


@dataclass(frozen=True)
class LossRecord:
    """Everything the package says about one metric loss, by name.

    Attributes:
        name (str): the registry name (``get_loss(name)``, ``--loss name``).
        function (str): ``"module:attribute"`` of the loss function.
        form (str): ``"module:attribute"`` of its matrix form (for ``gradient_mass``).
        normaliser (str): one of :data:`NORMALISER_KINDS`.
        label (str): human-readable label (menus, legends).
        takes_angle (bool): the loss takes ``angle_embeddings`` (the DRSL family).
        options (Mapping): default keywords of the function under this name.
        course (tuple[str, ...]): the recipes the course offers (``"ce+"``: with CE + BNNeck,
            ``""``: alone); they make ``drsl.train.LOSS_CHOICES``.
        menu (int): position in the explorer's menu (0: not offered there).
    """

    name: str
    function: str
    form: str
    normaliser: str
    label: str
    takes_angle: bool = False
    options: Mapping = field(default_factory=dict)
    course: tuple[str, ...] = ()
    menu: int = 0

    def __post_init__(self) -> None:
        if self.normaliser not in NORMALISER_KINDS:
            raise ValueError(f"normaliser of {self.name!r} must be one of {NORMALISER_KINDS}")
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


_DRSL, _BASE = "drsl.losses.drsl", "drsl.losses.baselines"
_PAIRWISE = "drsl.losses.pairwise"

#: The metric losses, in registry order.
RECORDS: tuple[LossRecord, ...] = (
    LossRecord(
        "drsl", f"{_DRSL}:drsl_loss", f"{_DRSL}:drsl_form", "anchors",
        "DRSL (identity update)", True, {"gradient": "identity"}, ("ce+", ""), 1,
    ),
    LossRecord(
        "drsl_smooth", f"{_DRSL}:drsl_loss", f"{_DRSL}:drsl_form", "anchors",
        "DRSL (smooth gradient)", True, {"gradient": "smooth"}, (), 2,
    ),
    LossRecord(
        "drsl_rank", f"{_DRSL}:drsl_loss", f"{_DRSL}:drsl_form", "anchors",
        "DRSL ranking only", True, {"sort_weight": 0.0, "gradient": "identity"}, ("ce+", ""),
    ),
    LossRecord(
        "triplet", f"{_BASE}:batch_hard_triplet_loss", f"{_BASE}:triplet_form",
        "anchors_pos_neg", "triplet (batch hard)", course=("ce+", ""), menu=3,
    ),
    LossRecord(
        "triplet_soft", f"{_BASE}:batch_hard_triplet_loss", f"{_BASE}:triplet_form",
        "anchors_pos_neg", "triplet (soft margin)", options={"margin": None},
    ),
    LossRecord(
        "smooth_ap", f"{_BASE}:smooth_ap_loss", f"{_BASE}:smooth_ap_form", "anchors",
        "Smooth-AP", course=("ce+", ""), menu=5,
    ),
    LossRecord(
        "contrastive", f"{_BASE}:contrastive_loss", f"{_BASE}:contrastive_form", "pairs",
        "contrastive", course=("",), menu=4,
    ),
    LossRecord(
        "multi_similarity", f"{_PAIRWISE}:multi_similarity_loss",
        f"{_PAIRWISE}:multi_similarity_form", "anchors_pos_neg", "multi-similarity",
    ),
    LossRecord(
        "circle", f"{_PAIRWISE}:circle_loss", f"{_PAIRWISE}:circle_form", "anchors_pos_neg",
        "circle",
    ),
)  # fmt: skip

_BY_NAME = {r.name: r for r in RECORDS}


def record(name: str) -> LossRecord:
    """The record of loss ``name``.

    Args:
        name (str): a metric loss name.

    Returns:
        LossRecord: its record.

    Raises:
        ValueError: unknown name (the message lists the valid ones).

    Example:
        >>> record("triplet_soft").options["margin"] is None
        True
    """
    if name not in _BY_NAME:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(_BY_NAME)}")
    return _BY_NAME[name]


def resolve(path: str):
    """The object at ``"module:attribute"`` (imports the module).

    Example:
        >>> resolve("math:pi") > 3
        True
    """
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)
