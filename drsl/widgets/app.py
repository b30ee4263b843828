"""Both views in one Tab: what notebook ``07_explore`` and the Voila app show.

Reference: ``docs/drsl-loss-spec.md``, "Why it suits imbalance".
"""

from __future__ import annotations

import ipywidgets as widgets

from .batch import BatchExplorer
from .toy import ToyExplorer

__all__ = ["Explorer", "make_explorer"]


class Explorer:
    """Both views in a Tab: :attr:`batch` (:class:`BatchExplorer`), :attr:`toy`
    (:class:`ToyExplorer`), displayed through :attr:`widget`.

    Args:
        batch (BatchExplorer): the first tab. toy (ToyExplorer): the second.

    Reference: spec "Why it suits imbalance".
    """

    def __init__(self, batch: BatchExplorer, toy: ToyExplorer) -> None:
        self.batch, self.toy = batch, toy
        self.widget = widgets.Tab(
            children=[batch.widget, toy.widget],
            titles=("Batch", "Toy embedding"),
        )
        self.widget.add_class("drsl-explorer")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def make_explorer(
    *, batch: dict | None = None, toy: dict | None = None, fast: bool | None = None
) -> Explorer:
    """The full explorer: the batch view and the toy-embedding view in a Tab.

    Args:
        batch (dict, optional): keyword arguments of :class:`BatchExplorer`.
        toy (dict, optional): keyword arguments of :class:`ToyExplorer`.
        fast (bool, optional): fast mode (fewer toy steps by default); None reads
            :func:`drsl.config.fast_mode`.

    Returns:
        Explorer: display it (last expression of a cell) to show it.

    Reference: spec "Why it suits imbalance".

    Example:
        >>> e = make_explorer(fast=True, batch={"P_values": (2, 8)})
        >>> e.batch.summary.P, e.toy.run.steps
        (8, 30)
    """
    from drsl.config import fast_mode

    fast = fast_mode() if fast is None else fast
    toy_kw = {"steps": 30} if fast else {}
    toy_kw.update(toy or {})
    return Explorer(BatchExplorer(**(batch or {})), ToyExplorer(**toy_kw))
