"""ipywidgets explorers of the positive/negative ratio (notebook ``06_explore``).

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

Figures are drawn with the functions of :mod:`drsl.plotting.explore` on bare matplotlib Figures
(no pyplot state, so no figure is shown twice under Voila) and sent as static PNG images, the
most robust way to show them in JupyterLab, Voila and a stored notebook alike.

Reference: spec ``drsl-loss.md``, "Why it suits imbalance".
"""

from __future__ import annotations

import html
import io
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import contextmanager

import ipywidgets as widgets
from matplotlib.figure import Figure

from drsl import explore as ex
from drsl.plotting.explore import (
    plot_batch_panel,
    plot_ratio_curves,
    plot_toy_embedding,
    plot_toy_loss,
)

__all__ = ["BatchExplorer", "ToyExplorer", "Explorer", "make_explorer", "figure_png"]

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
        """The current control values, by control name.

        Returns:
            dict: name -> value.
        """
        return {name: c.value for name, c in self.controls.items()}

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


class BatchExplorer(_Base):
    """The batch view: one toy P x K batch, every loss, and the curves against the ratio.

    Controls (``controls[name]``): ``P``, ``K``, ``delta``, ``sort_weight``, ``separation``,
    ``noise``, ``loss`` (the one highlighted), ``anchor`` (whose ranked list is drawn).
    Outputs: :attr:`image` (ranked list, loss values, gradient shares), :attr:`curves_image`
    (values and shares against the ratio), :attr:`table` (the numbers), and the data in
    :attr:`summary` and :attr:`curves`.

    Args:
        P (int): identities per batch (2..16). Default 8.
        K (int): instances per identity (2..8). Default 4.
        delta (float, optional): DRSL smoothing width; default the loss's own default.
        sort_weight (float): DRSL's lambda (0..2). Default 1.
        separation (float): RMS distance between identity centres (0..4). Default 1.5.
        noise (float): RMS distance within an identity (0.05..3). Default 1.
        loss (str): the highlighted loss, one of ``losses``. Default ``"drsl"``.
        anchor (int): the anchor. Default 0.
        losses (Sequence[str]): the losses shown. Default :data:`drsl.explore.LOSS_NAMES`.
        dim (int): embedding dimension of the toy batch. Default 8.
        seed (int): batch seed. Default 0.
        P_values (Sequence[int]): the P values of the curves.
        dpi (int): resolution of the images. Default 72.

    Reference: spec "Why it suits imbalance".

    Example:
        >>> b = BatchExplorer(P=4, K=2, P_values=(2, 4, 8))
        >>> before = b.image.value
        >>> b.controls["P"].value = 8
        >>> b.summary.P, b.image.value != before, b.last_error is None
        (8, True, True)
    """

    _prefix = "drsl-batch"

    def __init__(
        self,
        *,
        P: int = 8,
        K: int = 4,
        delta: float | None = None,
        sort_weight: float = 1.0,
        separation: float = 1.5,
        noise: float = 1.0,
        loss: str = "drsl",
        anchor: int = 0,
        losses: Sequence[str] = ex.LOSS_NAMES,
        dim: int = 8,
        seed: int = 0,
        P_values: Sequence[int] = ex.DEFAULT_P_VALUES,
        dpi: int = 72,
    ) -> None:
        super().__init__()
        if loss not in losses:
            raise ValueError(f"loss must be one of {list(losses)}, got {loss!r}")
        self.losses = tuple(losses)
        self.dim, self.seed, self.dpi = int(dim), int(seed), int(dpi)
        self.P_values = tuple(int(p) for p in P_values)
        delta = ex.default_delta() if delta is None else float(delta)
        self.controls = {
            "P": _slider(widgets.IntSlider, "P (identities)", P, min=2, max=16),
            **_batch_controls(K, delta, sort_weight, separation, noise),
            "loss": widgets.Dropdown(
                options=_loss_options(self.losses),
                value=loss,
                description="loss",
                style=_STYLE,
                layout=_LAYOUT,
            ),
            "anchor": _slider(widgets.IntSlider, "anchor", anchor, min=0, max=P * K - 1),
        }
        self.image = widgets.Image(
            format="png", layout=widgets.Layout(max_width="100%", height="auto")
        )
        self.image.add_class("drsl-batch-image")
        self.curves_image = widgets.Image(
            format="png", layout=widgets.Layout(max_width="100%", height="auto")
        )
        self.curves_image.add_class("drsl-curves-image")
        self.table = widgets.HTML()
        self.table.add_class("drsl-table")
        #: the latest :class:`drsl.explore.BatchSummary` and :class:`drsl.explore.RatioCurves`
        self.summary: ex.BatchSummary | None = None
        self.curves: ex.RatioCurves | None = None
        self._curves_cache: OrderedDict[tuple, ex.RatioCurves] = OrderedDict()
        self._curves_drawn: tuple | None = None
        c = self.controls
        self.widget = widgets.VBox(
            [
                widgets.HBox(
                    [
                        widgets.VBox([c["P"], c["K"], c["anchor"]]),
                        widgets.VBox([c["delta"], c["sort_weight"], c["loss"]]),
                        widgets.VBox([c["separation"], c["noise"]]),
                    ],
                    layout=widgets.Layout(flex_flow="row wrap"),
                ),
                self.status,
                self.image,
                self.table,
                self.curves_image,
            ]
        )
        self.widget.add_class("drsl-batch-explorer")
        self._observe_all()
        self.update()

    def _curves_for(self, v: dict) -> ex.RatioCurves:
        key = (
            v["K"], round(v["delta"], 12), v["sort_weight"], v["separation"], v["noise"],
            self.dim, self.seed, self.P_values, self.losses,
        )  # fmt: skip
        if key not in self._curves_cache:
            self._curves_cache[key] = ex.ratio_curves(
                v["K"],
                P_values=self.P_values,
                losses=self.losses,
                delta=v["delta"],
                sort_weight=v["sort_weight"],
                separation=v["separation"],
                noise=v["noise"],
                dim=self.dim,
                seeds=(self.seed,),
            )
            while len(self._curves_cache) > 32:
                self._curves_cache.popitem(last=False)
        self._curves_cache.move_to_end(key)
        return self._curves_cache[key]

    def _update(self) -> None:
        v = self.values()
        anchor = self.controls["anchor"]
        if anchor.max != v["P"] * v["K"] - 1:
            held, self._held = self._held, True
            try:  # clamps the value when the batch shrinks, without a second update
                anchor.max = v["P"] * v["K"] - 1
            finally:
                self._held = held
            v["anchor"] = anchor.value
        self.summary = ex.summarize_batch(
            v["P"],
            v["K"],
            losses=self.losses,
            anchor=v["anchor"],
            delta=v["delta"],
            sort_weight=v["sort_weight"],
            separation=v["separation"],
            noise=v["noise"],
            dim=self.dim,
            seed=self.seed,
        )
        fig = Figure(figsize=(14, 3.4))
        axes = fig.subplots(1, 3, width_ratios=[1.5, 1, 1.2])
        fig.subplots_adjust(left=0.05, right=0.98, wspace=0.55, bottom=0.2, top=0.86)
        plot_batch_panel(self.summary, highlight=v["loss"], axes=axes)
        _show(self.image, fig, self.dpi)
        self.table.value = self._table_html(self.summary, v["loss"])
        self.curves = self._curves_for(v)
        # redrawn only when the curves or the highlighted loss change: moving P (the most
        # used slider) then costs one figure, not two; the caption above names the current ratio
        drawn = (id(self.curves), v["loss"])
        if drawn != self._curves_drawn:
            fig = Figure(figsize=(14, 3.6))
            axes = fig.subplots(1, 3)
            fig.subplots_adjust(left=0.05, right=0.83, wspace=0.3, bottom=0.17, top=0.9)
            plot_ratio_curves(self.curves, highlight=v["loss"], axes=axes)
            _show(self.curves_image, fig, self.dpi)
            self._curves_drawn = drawn

    def _table_html(self, s: ex.BatchSummary, highlight: str) -> str:
        head = (
            "<tr><th style='text-align:left'>loss</th><th>value</th><th>mass on positives</th>"
            "<th>mass on negatives</th><th>share on positives</th><th>per positive pair</th>"
            "<th>per negative pair</th></tr>"
        )
        pad = "<style>.drsl-table td, .drsl-table th {padding: 1px 12px;}</style>"
        rows = []
        for name in self.losses:
            m = s.mass[name]
            share = s.pos_share(name)
            style = " style='font-weight:bold'" if name == highlight else ""
            cells = [s.values[name], m["pos"], m["neg"]]
            rows.append(
                f"<tr{style}><td style='text-align:left'>{html.escape(ex.LOSS_LABELS[name])}"
                "</td>"
                + "".join(f"<td>{x:.4g}</td>" for x in cells)
                + (f"<td>{share:.0%}</td>" if share == share else "<td>-</td>")
                + f"<td>{m['pos_per_pair']:.3g}</td><td>{m['neg_per_pair']:.3g}</td></tr>"
            )
        caption = (
            f"P={s.P}, K={s.K}: one anchor sees {s.K - 1} positives and {(s.P - 1) * s.K} "
            f"negatives (ratio {s.ratio:.3g}); mass = total |dL/d distance| over all anchors "
            "(Smooth-AP: |dL/d cosine|)"
        )
        return (
            f"{pad}<div style='font-size:90%'>{caption}<table style='border-collapse:collapse'>"
            f"{head}{''.join(rows)}</table></div>"
        )


class ToyExplorer(_Base):
    """The toy-embedding view: points trained for N steps under one loss, frame by frame.

    Controls (``controls[name]``): ``loss``, ``P``, ``K``, ``separation``, ``noise``,
    ``delta``, ``sort_weight``, ``steps``, ``lr``, ``sphere`` (retrain on change) and
    ``step`` (the frame shown, driven by the :attr:`play` control; redraw only).
    Outputs: :attr:`image` (points with their paths, and the loss curve) and :attr:`run`.

    Args:
        loss (str): default ``"drsl"``. P (int): default 5. K (int): default 4.
        separation (float): default 1. noise (float): default 1.
        delta (float, optional): default the loss's own. sort_weight (float): default 1.
        steps (int): training steps (10..200). Default 60.
        lr (float): distance moved per step by the most-pushed point. Default 0.05.
        sphere (bool): train on the unit sphere in 3-D. Default False.
        losses (Sequence[str]): the menu. seed (int): start positions. dpi (int): resolution.

    Reference: spec "Two ways to get a gradient".

    Example:
        >>> t = ToyExplorer(steps=10)
        >>> first = t.image.value
        >>> t.controls["step"].value = 3
        >>> t.image.value != first, t.run.steps
        (True, 10)
    """

    _prefix = "drsl-toy"

    def __init__(
        self,
        *,
        loss: str = "drsl",
        P: int = 5,
        K: int = 4,
        separation: float = 1.0,
        noise: float = 1.0,
        delta: float | None = None,
        sort_weight: float = 1.0,
        steps: int = 60,
        lr: float = 0.05,
        sphere: bool = False,
        losses: Sequence[str] = ex.LOSS_NAMES,
        seed: int = 0,
        dpi: int = 72,
    ) -> None:
        super().__init__()
        if loss not in losses:
            raise ValueError(f"loss must be one of {list(losses)}, got {loss!r}")
        self.losses = tuple(losses)
        self.seed, self.dpi = int(seed), int(dpi)
        delta = ex.default_delta() if delta is None else float(delta)
        self.controls = {
            "loss": widgets.Dropdown(
                options=_loss_options(self.losses),
                value=loss,
                description="loss",
                style=_STYLE,
                layout=_LAYOUT,
            ),
            "P": _slider(widgets.IntSlider, "P (identities)", P, min=2, max=8),
            **_batch_controls(K, delta, sort_weight, separation, noise),
            "steps": _slider(widgets.IntSlider, "steps N", steps, min=10, max=200, step=10),
            "lr": _slider(
                widgets.FloatLogSlider,
                "step size",
                lr,
                base=10,
                min=-3,
                max=0,
                step=0.1,
                readout_format=".3g",
            ),
            "sphere": widgets.Checkbox(
                value=sphere, description="on the sphere (3-D)", indent=False, layout=_LAYOUT
            ),
            "step": widgets.IntSlider(
                value=0, min=0, max=steps, description="frame", style=_STYLE, layout=_LAYOUT
            ),
        }
        self.play = widgets.Play(value=0, min=0, max=steps, interval=300, step=1)
        self.play.add_class("drsl-play")
        # a kernel-side link, so that it also works headless and in stored notebooks
        self._link = widgets.link((self.play, "value"), (self.controls["step"], "value"))
        self.image = widgets.Image(
            format="png", layout=widgets.Layout(max_width="100%", height="auto")
        )
        self.image.add_class("drsl-toy-image")
        #: the latest :class:`drsl.explore.ToyRun`
        self.run: ex.ToyRun | None = None
        c = self.controls
        self.widget = widgets.VBox(
            [
                widgets.HBox(
                    [
                        widgets.VBox([c["loss"], c["P"], c["K"], c["sphere"]]),
                        widgets.VBox([c["separation"], c["noise"], c["delta"], c["sort_weight"]]),
                        widgets.VBox([c["steps"], c["lr"], widgets.HBox([self.play]), c["step"]]),
                    ],
                    layout=widgets.Layout(flex_flow="row wrap"),
                ),
                self.status,
                self.image,
            ]
        )
        self.widget.add_class("drsl-toy-explorer")
        self._observe_all()
        self.update()

    def _on_change(self, change) -> None:
        if self._held:
            return
        if change["owner"] is self.controls["step"]:
            self.redraw()
        else:
            self.update()

    def _update(self) -> None:
        v = self.values()
        self.run = ex.train_toy(
            v["loss"],
            v["P"],
            v["K"],
            steps=v["steps"],
            lr=v["lr"],
            sphere=v["sphere"],
            separation=v["separation"],
            noise=v["noise"],
            delta=v["delta"],
            sort_weight=v["sort_weight"],
            seed=self.seed,
        )
        held, self._held = self._held, True
        try:  # new run: show its last frame, Play restarts from 0
            self.play.max = self.controls["step"].max = self.run.steps
            self.controls["step"].value = self.run.steps
        finally:
            self._held = held
        self._draw()

    def redraw(self) -> None:
        """Redraw the current frame of the current run (no retraining)."""
        try:
            self._draw()
        except Exception as err:
            self.last_error = err
            self.status.value = f"<span style='color:#b00'>error: {html.escape(str(err))}</span>"

    def _draw(self) -> None:
        run, step = self.run, self.controls["step"].value
        fig = Figure(figsize=(10, 4.2))
        ax0 = fig.add_subplot(1, 2, 1, projection="3d" if run.sphere else None)
        ax1 = fig.add_subplot(1, 2, 2)
        fig.subplots_adjust(left=0.05, right=0.97, wspace=0.25, bottom=0.13, top=0.9)
        plot_toy_embedding(run, step, ax=ax0)
        plot_toy_loss(run, step, ax=ax1)
        _show(self.image, fig, self.dpi)


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
