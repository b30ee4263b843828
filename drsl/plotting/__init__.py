"""Figures for the course. Every function takes ``ax=None`` (or ``axes=None``) and returns the
matplotlib Figure; none saves a file or prints. This is a leaf: nothing in drsl imports it.

Submodules, one per area: :mod:`.losses` (ranked lists, loss terms, finite-difference curves),
:mod:`.data` (identities across cameras, batch ratios), :mod:`.geometry` (t-SNE, distance and
angle histograms, rank-in-rank view, ranking grids), :mod:`.explore` (the explorer's static grid),
:mod:`.train` (learning curves, sweep results).
"""

from . import data, explore, geometry, losses, train
from .data import *  # noqa: F403
from .explore import *  # noqa: F403
from .geometry import *  # noqa: F403
from .losses import *  # noqa: F403
from .train import *  # noqa: F403

__all__ = [*losses.__all__, *data.__all__, *geometry.__all__, *explore.__all__, *train.__all__]
