"""The batch view: one toy P x K batch, every loss's value and gradient mass, and the curves
of those against the positive:negative ratio.

Reference: ``docs/drsl-loss-spec.md``, "Why it suits imbalance".
"""

from __future__ import annotations

import html
from collections import OrderedDict
from collections.abc import Sequence

import ipywidgets as widgets
from matplotlib.figure import Figure

from drsl import explore as ex
from drsl.plotting.explore import plot_batch_panel, plot_ratio_curves

from .base import (
    _LAYOUT,
    _STYLE,
    _Base,
    _batch_controls,
    _loss_options,
    _show,
    _slider,
    _within,
)

__all__ = ["BatchExplorer"]


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
        self.ranges["anchor"] = (0, v["P"] * v["K"] - 1)
        v["anchor"] = _within(anchor.value, self.ranges["anchor"])
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
