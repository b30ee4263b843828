"""The losses the explorer offers: their names, labels, and one way to build each.

Reference: ``docs/drsl-loss-spec.md`` ("The loss for one anchor"); the registry
:func:`drsl.losses.get_loss`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import Tensor

from drsl import losses as _losses
from drsl.losses.names import RECORDS, record

__all__ = ["LOSS_NAMES", "LOSS_LABELS", "default_delta", "make_loss"]

#: The losses the explorer offers, in display order (the records of ``drsl.losses.names``
#: with a ``menu`` position).
LOSS_NAMES: tuple[str, ...] = tuple(
    r.name for r in sorted((r for r in RECORDS if r.menu), key=lambda r: r.menu)
)

#: Human-readable labels for the explorer's menus and legends (every record's ``label``).
LOSS_LABELS: dict[str, str] = {r.name: r.label for r in RECORDS}


def default_delta() -> float:
    """The default smoothing width ``delta`` of :func:`drsl.losses.drsl_loss`.

    Read from the loss's signature, so the explorer never disagrees with the package.

    Returns:
        float: the documented default ``delta``.

    Reference: spec "Words", step function ``H`` smoothed with width ``delta``.

    Example:
        >>> default_delta() > 0
        True
    """
    return float(inspect.signature(_losses.drsl_loss).parameters["delta"].default)


def make_loss(
    name: str, *, delta: float | None = None, sort_weight: float = 1.0
) -> Callable[[Tensor, Tensor], Tensor]:
    """A loss of the registry, with ``delta`` and ``sort_weight`` passed to the DRSL variants.

    Args:
        name (str): a name of :data:`drsl.losses.LOSSES` (e.g. ``"drsl"``, ``"triplet"``).
        delta (float, optional): DRSL smoothing width; ``None`` keeps the loss's default.
            Ignored by the baselines.
        sort_weight (float): DRSL's ``lambda`` (the rank-in-rank sort's weight). Ignored by
            the baselines.

    Returns:
        Callable: ``loss(embeddings: B x D, labels: B) -> 0-d Tensor``.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones), or a bad delta.

    Reference: spec "The loss for one anchor"; contract ``drsl.losses.get_loss``.

    Example:
        >>> from drsl.explore import toy_batch
        >>> x, y = toy_batch(2, 2, seed=0)
        >>> float(make_loss("triplet")(x, y)) >= 0
        True
    """
    if name in _losses.LOSSES and record(name).takes_angle:  # the DRSL family
        kwargs: dict = {"sort_weight": float(sort_weight)}
        if delta is not None:
            if not delta > 0:
                raise ValueError(f"delta must be > 0, got {delta!r}")
            kwargs["delta"] = float(delta)
        return _losses.get_loss(name, **kwargs)
    return _losses.get_loss(name)
