"""What both explorers share: PNG output of a Figure, the sliders, and the plumbing of
observers, a hold switch and an error line (:class:`_Base`).

Reference: ipywidgets (``observe``, ``Image``); ``docs/drsl-loss-spec.md``, "Why it suits
imbalance".
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from contextlib import contextmanager

import ipywidgets as widgets
from matplotlib.figure import Figure

from drsl import explore as ex

__all__ = ["figure_png"]

_STYLE = {"description_width": "96px"}
_LAYOUT = widgets.Layout(width="310px")


def figure_png(fig: Figure, *, dpi: int = 72) -> bytes:
    """A Figure as PNG bytes (for an :class:`ipywidgets.Image`).

    Args:
        fig (matplotlib.figure.Figure): the figure.
        dpi (int): resolution. Default 72.

    Returns:
        bytes: the PNG file's content.

    Reference: matplotlib ``Figure.savefig``.

    Example:
        >>> figure_png(Figure(figsize=(1, 1)))[:4]
        b'\\x89PNG'
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _show(image: widgets.Image, fig: Figure, dpi: int) -> None:
    """Put ``fig`` into ``image`` at its natural size (shrunk, never stretched, to fit)."""
    image.value = figure_png(fig, dpi=dpi)
    width = f"{round(fig.get_figwidth() * dpi)}px"
    if image.layout.width != width:
        image.layout.width = width


def _loss_options(names: Sequence[str]) -> list[tuple[str, str]]:
    return [(ex.LOSS_LABELS.get(n, n), n) for n in names]


def _slider(cls, description: str, value, **kw):
    return cls(
        value=value,
        description=description,
        continuous_update=False,
        style=_STYLE,
        layout=_LAYOUT,
        **kw,
    )


def _batch_controls(K, delta, sort_weight, separation, noise) -> dict:
    """Sliders both explorers share (K, delta, sort_weight, separation, noise): one range each."""
    return {
        "K": _slider(widgets.IntSlider, "K (instances)", K, min=2, max=8),
        "delta": _slider(
            widgets.FloatLogSlider,
            "delta",
            delta,
            base=10,
            min=-3,
            max=0,
            step=0.05,
            readout_format=".3g",
        ),
        "sort_weight": _slider(
            widgets.FloatSlider, "sort_weight", sort_weight, min=0.0, max=2.0, step=0.1
        ),
        "separation": _slider(
            widgets.FloatSlider, "separation", separation, min=0.0, max=4.0, step=0.1
        ),
        "noise": _slider(widgets.FloatSlider, "noise", noise, min=0.05, max=3.0, step=0.05),
    }


def _range(control) -> tuple | None:
    """``(lo, hi)`` of a slider's values, ``("options", values)`` of a choice, else None."""
    if isinstance(control, widgets.FloatLogSlider):
        return (control.base**control.min, control.base**control.max)
    if hasattr(control, "min") and hasattr(control, "max"):
        return (control.min, control.max)
    if isinstance(control, widgets.Dropdown):
        return ("options", tuple(o[1] if isinstance(o, tuple) else o for o in control.options))
    return None


def _within(value, span: tuple | None):
    """``value`` clamped to ``span`` (a choice outside its options: the first option)."""
    if span is None:
        return value
    if span[0] == "options":
        return value if value in span[1] else span[1][0]
    return min(max(value, span[0]), span[1])


class _Base:
    """Shared plumbing: observers on every control, a hold switch, an error line."""

    controls: dict[str, widgets.ValueWidget]
    widget: widgets.Widget

    def __init__(self) -> None:
        self._held = False
        self.status = widgets.HTML(value="")
        self.status.add_class("drsl-status")
        #: the last exception raised by a callback (shown in :attr:`status`), None when fine
        self.last_error: Exception | None = None

    _prefix = "drsl"

    def _observe_all(self) -> None:
        #: each control's range as the kernel built it: a client can send any value, and any
        #: min, max or options too, so :meth:`values` clamps to these, not to the widget's traits
        self.ranges = {name: _range(c) for name, c in self.controls.items() if _range(c)}
        for name, control in self.controls.items():
            control.add_class(f"{self._prefix}-{name}")  # e.g. drsl-batch-P, for the browser
            control.observe(self._on_change, names="value")

    @contextmanager
    def hold(self):
        """Change several controls at once, recomputing once at the end.

        Returns:
            contextmanager: yields the explorer; recomputes on exit.

        Reference: ipywidgets observers (traitlets ``observe``).

        Example:
            >>> from drsl.widgets import BatchExplorer
            >>> b = BatchExplorer(P=4, K=2, P_values=(2, 4))
            >>> with b.hold():
            ...     b.controls["P"].value = 6
            ...     b.controls["K"].value = 3
            >>> (b.summary.P, b.summary.K)
            (6, 3)
        """
        held, self._held = self._held, True
        try:
            yield self
        finally:
            self._held = held
        if not held:
            self.update()

    def _on_change(self, change) -> None:
        if not self._held:
            self.update()

    def update(self) -> None:
        """Recompute and redraw from the current control values.

        An exception is caught and shown in :attr:`status` (and kept in :attr:`last_error`)
        rather than lost in the kernel's log, where a reader would never see it.

        Reference: spec "Why it suits imbalance" (what is recomputed).
        """
        try:
            self._update()
        except Exception as err:  # shown to the reader instead of lost in the kernel log
            self.last_error = err
            self.status.value = (
                f"<span style='color:#b00'>error: {html.escape(type(err).__name__)}: "
                f"{html.escape(str(err))}</span>"
            )
        else:
            self.last_error = None
            self.status.value = ""

    def _update(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def values(self) -> dict:
        """The current control values, by control name, each within the range the kernel gave
        its control (:attr:`ranges`; whatever a client sent).

        Returns:
            dict: name -> value.
        """
        return {name: _within(c.value, self.ranges.get(name)) for name, c in self.controls.items()}

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
