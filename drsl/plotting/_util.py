"""Helpers every plotting submodule shares: the ``ax=None`` convention, array input, and the
course theme (applied on import).

Not imported by ``drsl.plotting`` itself (it would load pyplot on ``import drsl.plotting``),
only by the submodules that draw.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ._style import set_course_theme

set_course_theme()  # one theme for every figure of the course (drsl.plotting._style.THEME)


def new_axes(ax, figsize=None, *, layout: str | None = "constrained", **subplot_kw):
    """``(figure, axes)``: a new figure of ``figsize`` when ``ax`` is None, else ``ax``'s own.

    Args:
        ax (matplotlib.axes.Axes or None): where the caller was asked to draw.
        figsize (tuple, optional): size of a new figure (matplotlib's default if None).
        layout (str or None): layout engine of a new figure. Default ``"constrained"``.
        **subplot_kw: for a new axes, e.g. ``projection="3d"``.

    Returns:
        tuple: ``(Figure, Axes)``.
    """
    if ax is None:
        return plt.subplots(figsize=figsize, layout=layout, subplot_kw=subplot_kw or None)
    return ax.figure, ax


def to_numpy(x) -> np.ndarray:
    """A tensor (any device, with or without grad) or array-like as a NumPy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)
