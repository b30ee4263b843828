"""Computations behind the positive/negative-ratio explorer (no widgets here).

The explorer in :mod:`drsl.widgets` and the static grid of notebook ``07_explore`` both call
these functions, so what the sliders show and what the static figures show is the same.
One idea per submodule:

- :mod:`.menu`: the losses on offer (:data:`LOSS_NAMES`, :data:`LOSS_LABELS`),
  :func:`default_delta` and :func:`make_loss`;
- :mod:`.batch`: :func:`toy_batch` (a P x K mini-batch of toy embeddings, identities as
  Gaussian clusters), :func:`pos_neg_ratio` and :func:`anchor_ranking` (one anchor's ranked
  list: gallery order, distances, positive or not);
- :mod:`.mass`: :func:`summarize_batch` (every loss's value and gradient mass on positives vs
  negatives) and :func:`ratio_curves` (the same against the ratio ``(K-1) / ((P-1)K)``);
- :mod:`.toy`: :func:`train_toy`, a 2-D (or unit-sphere 3-D) toy embedding trained for N steps.

``from drsl.explore import summarize_batch`` (or ``drsl.explore.summarize_batch``) is the
public path; the submodules are where the code lives.

Reference: ``docs/drsl-loss-spec.md``, "Why it suits imbalance": an anchor sees ``K - 1``
positives and ``(P - 1) K`` negatives.
"""

from __future__ import annotations

from .batch import anchor_ranking, pos_neg_ratio, toy_batch
from .mass import DEFAULT_P_VALUES, BatchSummary, RatioCurves, ratio_curves, summarize_batch
from .menu import LOSS_LABELS, LOSS_NAMES, default_delta, make_loss
from .toy import ToyRun, train_toy

__all__ = [
    "LOSS_NAMES",
    "LOSS_LABELS",
    "DEFAULT_P_VALUES",
    "BatchSummary",
    "RatioCurves",
    "ToyRun",
    "default_delta",
    "pos_neg_ratio",
    "make_loss",
    "toy_batch",
    "anchor_ranking",
    "summarize_batch",
    "ratio_curves",
    "train_toy",
]
