"""Shared plot style: one colour for positives (same identity) and one for negatives, and the
one seaborn theme of the whole course (applied by :func:`set_course_theme`)."""

POS_COLOR = "#1a9850"  # green: a positive, a true match
NEG_COLOR = "#d73027"  # red: a negative, a wrong match

#: Axis label of each kind of pair value (:meth:`drsl.geometry.PairGeometry.values`).
AXIS_LABEL = {"distance": "Euclidean distance", "angle": "angle (degrees)"}

#: The course's seaborn theme: light grid, notebook sizes, colour-blind-safe cycle.
THEME = {"style": "whitegrid", "context": "notebook", "palette": "colorblind", "font_scale": 0.9}

_applied = False


def set_course_theme(*, force: bool = False) -> None:
    """Apply the course theme (:data:`THEME`) to matplotlib through ``seaborn.set_theme``.

    Every drawing submodule of :mod:`drsl.plotting` calls it once on import, so every figure
    of the course shares it; a later call does nothing unless ``force`` (after a reader changed
    ``rcParams`` and wants the course look back).

    Args:
        force (bool): apply again even if already applied. Default False.

    Example:
        >>> import matplotlib
        >>> set_course_theme(force=True)
        >>> matplotlib.rcParams["axes.grid"]
        True
    """
    global _applied
    if _applied and not force:
        return
    import seaborn as sns  # lazy: ``import drsl.plotting`` must not load pyplot

    sns.set_theme(**THEME)
    _applied = True
