"""The toy-embedding view: points trained for N steps under one loss, shown frame by frame.

Reference: ``docs/drsl-loss-spec.md``, "Two ways to get a gradient".
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import ipywidgets as widgets
from matplotlib.figure import Figure

from drsl import explore as ex
from drsl.plotting.explore import plot_toy_embedding, plot_toy_loss

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

__all__ = ["ToyExplorer"]


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
            self.ranges["step"] = (0, self.run.steps)
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
        run, step = self.run, _within(self.controls["step"].value, self.ranges.get("step"))
        fig = Figure(figsize=(10, 4.2))
        ax0 = fig.add_subplot(1, 2, 1, projection="3d" if run.sphere else None)
        ax1 = fig.add_subplot(1, 2, 2)
        fig.subplots_adjust(left=0.05, right=0.97, wspace=0.25, bottom=0.13, top=0.9)
        plot_toy_embedding(run, step, ax=ax0)
        plot_toy_loss(run, step, ax=ax1)
        _show(self.image, fig, self.dpi)
