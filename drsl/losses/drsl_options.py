"""DRSL's options: their public constants and their one validation (torch-free).

The DRSL path runs one way, ``drsl.py`` (public functions) -> ``_drsl_core.py`` (the terms and
the identity update) -> ``_kernel.py`` (blocked step sums); every one of them reads its
defaults and checks from here, so an option is declared and validated in one place.

Reference: spec ``docs/drsl-loss-spec.md`` ("The smoothed step", "Two ways to get a gradient").
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

__all__ = ["DEFAULT_DELTA", "SMOOTHINGS", "GRADIENTS", "DRSLOptions", "check_options"]

#: Default step width ``delta``: a margin in the units of the Euclidean distance between the
#: (not normalised) embeddings, the triplet margin of the re-ID strong baseline on BNNeck features.
DEFAULT_DELTA = 0.3
#: The smoothed step ``H``: a linear ramp of width ``delta``, a sigmoid of temperature ``delta``,
#: or the hard step (its gradient through the identity update only).
SMOOTHINGS = ("linear", "sigmoid", "hard")
#: How a gradient is obtained: autograd through the smoothed ``H``, or RS Loss's identity update.
GRADIENTS = ("smooth", "identity")


def check_options(delta: float, smoothing: str, sort_weight: float, gradient: str) -> None:
    """Raise a one-line ValueError naming a bad DRSL option.

    Example:
        >>> check_options(0.3, "linear", 1.0, "smooth")
        >>> check_options(0.3, "cubic", 1.0, "smooth")
        Traceback (most recent call last):
        ...
        ValueError: smoothing must be one of ('linear', 'sigmoid', 'hard'), got 'cubic'
    """
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"smoothing must be one of {SMOOTHINGS}, got {smoothing!r}")
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    if smoothing != "hard" and not (_is_number(delta) and 0 < delta < math.inf):
        raise ValueError(f"delta must be a finite number > 0, got {delta!r}")
    if not (_is_number(sort_weight) and 0 <= sort_weight < math.inf):
        raise ValueError(f"sort_weight must be a finite number >= 0, got {sort_weight!r}")


def _is_number(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


@dataclass(frozen=True)
class DRSLOptions:
    """DRSL's four options, checked once when built (``DRSLoss`` keeps one).

    Attributes:
        delta (float): step width ``> 0`` (unused by ``"hard"``). smoothing (str): see
            :data:`SMOOTHINGS`. sort_weight (float): ``lambda >= 0``. gradient (str): see
            :data:`GRADIENTS`.

    Example:
        >>> DRSLOptions(gradient="identity").as_kwargs()
        {'delta': 0.3, 'smoothing': 'linear', 'sort_weight': 1.0, 'gradient': 'identity'}
    """

    delta: float = DEFAULT_DELTA
    smoothing: str = "linear"
    sort_weight: float = 1.0
    gradient: str = "smooth"

    def __post_init__(self) -> None:
        check_options(self.delta, self.smoothing, self.sort_weight, self.gradient)

    def as_kwargs(self) -> dict[str, float | str]:
        """The options as keywords of :func:`drsl.losses.drsl_loss`."""
        return asdict(self)
