"""ipywidgets explorers of the positive/negative ratio (notebook ``07_explore``).

Two views, each a small class holding its controls, its callbacks and its outputs, so that the
logic runs and is tested without a kernel: setting ``explorer.controls["P"].value`` recomputes
synchronously, and the results are in plain attributes (``summary``, ``curves``, ``run``) and in
the PNG bytes of the :class:`ipywidgets.Image` outputs.

- :class:`BatchExplorer`: P, K, delta, sort_weight, separation, noise, the loss and the anchor;
  shows the anchor's ranked list, each loss's value, each loss's gradient mass on positives vs
  negatives, and curves of those against the positive:negative ratio.
- :class:`ToyExplorer`: trains a 2-D (or unit-sphere 3-D) toy embedding for N steps under the
  chosen loss; a Play control steps through the frames.
- :func:`make_explorer`: both views in a Tab (what the notebook and the Voila app show).

One view per submodule (:mod:`.batch`, :mod:`.toy`, :mod:`.app` for the Tab); :mod:`.base`
holds what they share (:func:`figure_png`, the sliders, the observers). Import from
``drsl.widgets``: ``from drsl.widgets import make_explorer``.

Figures are drawn with the functions of :mod:`drsl.plotting.explore` on bare matplotlib Figures
(no pyplot state, so no figure is shown twice under Voila) and sent as static PNG images, the
most robust way to show them in JupyterLab, Voila and a stored notebook alike.

Reference: ``docs/drsl-loss-spec.md``, "Why it suits imbalance".
"""

from __future__ import annotations

from .app import Explorer, make_explorer
from .base import figure_png
from .batch import BatchExplorer
from .toy import ToyExplorer

__all__ = ["BatchExplorer", "ToyExplorer", "Explorer", "make_explorer", "figure_png"]
