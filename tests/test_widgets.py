"""drsl.widgets without a kernel: set control values in Python, check the outputs follow.

ipywidgets 8 runs observers synchronously without a kernel, so each assignment below recomputes
the explorer; the results are read from its data attributes and the PNG bytes of its images.
"""

import ipywidgets as widgets
import pytest
import torch

from drsl import explore as ex
from drsl import losses
from drsl.widgets import BatchExplorer, Explorer, ToyExplorer, figure_png, make_explorer

# few P values on the curves keep each recomputation short
FEW = {"P_values": (2, 4, 8)}


@pytest.fixture(scope="module")
def batch():
    return BatchExplorer(P=4, K=3, **FEW)


@pytest.fixture(scope="module")
def toy():
    return ToyExplorer(P=3, K=3, steps=20)


def _is_png(b: bytes) -> bool:
    return b[:8] == b"\x89PNG\r\n\x1a\n" and len(b) > 1000


def test_batch_explorer_starts_with_all_outputs(batch):
    assert batch.last_error is None and batch.status.value == ""
    assert _is_png(batch.image.value) and _is_png(batch.curves_image.value)
    assert set(batch.summary.values) == set(ex.LOSS_NAMES)
    assert batch.controls["delta"].value == pytest.approx(losses.DEFAULT_DELTA)
    assert "DRSL (identity update)" in batch.table.value
    assert batch.controls["anchor"].max == 4 * 3 - 1
    for name, control in batch.controls.items():
        assert f"drsl-batch-{name}" in control._dom_classes


def test_moving_P_changes_batch_values_and_figures(batch):
    before = (batch.image.value, batch.curves_image.value, dict(batch.summary.values))
    batch.controls["P"].value = 10
    s = batch.summary
    assert (s.P, s.K) == (10, 3) and s.embeddings.shape[0] == 30
    assert s.ratio == pytest.approx(2 / 27)
    assert s.values != before[2]
    assert batch.image.value != before[0]
    # same curves (K unchanged): not redrawn
    assert batch.curves_image.value == before[1]
    assert batch.controls["anchor"].max == 29
    x, y = ex.toy_batch(10, 3, separation=batch.controls["separation"].value)
    want = losses.get_loss("triplet")(x, y)
    assert s.values["triplet"] == pytest.approx(float(want), abs=1e-6)
    assert "P=10, K=3" in batch.table.value


def test_delta_and_sort_weight_reach_drsl_only(batch):
    old = dict(batch.summary.values)
    batch.controls["delta"].value = 0.05
    assert batch.summary.values["drsl"] != old["drsl"]
    assert batch.summary.values["triplet"] == old["triplet"]
    old = dict(batch.summary.values)
    batch.controls["sort_weight"].value = 0.0
    assert batch.summary.pos_share("drsl") == pytest.approx(0.5, abs=1e-6)
    assert batch.summary.values["contrastive"] == old["contrastive"]
    x, y = batch.summary.embeddings, batch.summary.labels
    want = losses.drsl_loss(x, y, delta=0.05, sort_weight=0.0)
    assert batch.summary.values["drsl"] == pytest.approx(float(want), abs=1e-6)


def test_K_changes_the_curves(batch):
    curves, image = batch.curves, batch.curves_image.value
    batch.controls["K"].value = 4
    assert batch.curves is not curves and batch.curves.K == 4
    assert batch.curves_image.value != image
    batch.controls["K"].value = 3  # cached: the same object comes back
    assert batch.curves is curves


def test_geometry_controls_change_the_batch(batch):
    emb = batch.summary.embeddings
    batch.controls["separation"].value = 3.0
    assert not torch.equal(batch.summary.embeddings, emb)
    emb = batch.summary.embeddings
    batch.controls["noise"].value = 0.3
    assert not torch.equal(batch.summary.embeddings, emb)


def test_anchor_and_loss_change_only_the_picture(batch):
    values, image, dist = dict(batch.summary.values), batch.image.value, batch.summary.distances
    batch.controls["anchor"].value = 7
    assert batch.summary.anchor == 7 and batch.summary.values == values
    assert not torch.equal(batch.summary.distances, dist) and batch.image.value != image
    image, curves = batch.image.value, batch.curves_image.value
    batch.controls["loss"].value = "smooth_ap"
    assert batch.image.value != image and batch.curves_image.value != curves
    assert "<tr style='font-weight:bold'><td style='text-align:left'>Smooth-AP" in batch.table.value


def test_shrinking_the_batch_clamps_the_anchor():
    b = BatchExplorer(P=6, K=4, anchor=20, **FEW)
    b.controls["P"].value = 2
    assert b.controls["anchor"].value == 7 and b.summary.anchor == 7 and b.last_error is None


def test_hold_recomputes_once(monkeypatch):
    b = BatchExplorer(P=3, K=2, **FEW)
    calls = []
    real = ex.summarize_batch
    monkeypatch.setattr(ex, "summarize_batch", lambda *a, **k: calls.append(a) or real(*a, **k))
    with b.hold():
        b.controls["P"].value = 5
        b.controls["K"].value = 4
    assert calls == [(5, 4)]


def test_errors_are_shown_not_lost(monkeypatch):
    b = BatchExplorer(P=3, K=2, **FEW)

    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(ex, "summarize_batch", boom)
    b.controls["P"].value = 4
    assert isinstance(b.last_error, RuntimeError) and "kaboom" in b.status.value
    monkeypatch.undo()
    b.controls["P"].value = 5
    assert b.last_error is None and b.status.value == "" and b.summary.P == 5


def test_bad_arguments():
    with pytest.raises(ValueError, match="loss"):
        BatchExplorer(loss="nope")
    with pytest.raises(ValueError, match="loss"):
        ToyExplorer(loss="nope")


def test_toy_explorer_trains_and_play_steps_frames(toy):
    assert toy.last_error is None and toy.run.steps == 20
    assert toy.controls["step"].value == 20 and toy.play.max == 20
    last = toy.image.value
    toy.play.value = 5  # as the Play control does, through the kernel-side link
    assert toy.controls["step"].value == 5
    assert toy.image.value != last and _is_png(toy.image.value)
    frame5 = toy.image.value
    run = toy.run
    toy.controls["step"].value = 6
    assert toy.run is run  # stepping redraws, it does not retrain
    toy.controls["step"].value = 5
    assert toy.image.value == frame5  # rendering is deterministic


def test_toy_explorer_retrains_on_control_change(toy):
    run = toy.run
    toy.controls["loss"].value = "triplet"
    assert toy.run is not toy and toy.run.loss == "triplet"
    assert not torch.equal(toy.run.positions[-1], run.positions[-1])
    toy.controls["steps"].value = 30
    assert toy.run.steps == 30 and toy.play.max == 30 and toy.controls["step"].max == 30
    toy.controls["sphere"].value = True
    assert toy.run.positions.shape[-1] == 3 and toy.last_error is None
    want = ex.train_toy(
        "triplet", 3, 3, steps=30, sphere=True, lr=toy.controls["lr"].value,
        separation=toy.controls["separation"].value, noise=toy.controls["noise"].value,
    )  # fmt: skip
    torch.testing.assert_close(toy.run.positions, want.positions)


def test_make_explorer_is_a_tab_of_both_views():
    e = make_explorer(fast=True, batch={"P": 3, "K": 2, **FEW}, toy={"P": 2, "K": 2})
    assert isinstance(e, Explorer) and isinstance(e.widget, widgets.Tab)
    assert e.widget.children == (e.batch.widget, e.toy.widget)
    assert e.toy.run.steps == 30 and e.batch.summary.P == 3
    bundle = e._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_figure_png():
    import io

    from matplotlib.figure import Figure
    from PIL import Image

    png = figure_png(Figure(figsize=(2, 3)), dpi=50)
    assert Image.open(io.BytesIO(png)).size == (100, 150)


def test_public_names_live_in_one_submodule_each():
    """drsl.widgets is a package (one view per submodule); ``from drsl.widgets import ...``
    is the public path and gives the objects of the submodules."""
    import importlib

    import drsl.widgets as pkg

    assert set(pkg.__all__) == {
        "BatchExplorer", "ToyExplorer", "Explorer", "make_explorer", "figure_png",
    }  # fmt: skip
    for name in pkg.__all__:
        obj = getattr(pkg, name)
        assert obj.__module__.startswith("drsl.widgets."), (name, obj.__module__)
        assert getattr(importlib.import_module(obj.__module__), name) is obj


def test_values_a_client_sends_beyond_the_ranges_are_clamped_in_the_kernel():
    """A client can send any value, and any min, max or options with it (as a comm message
    would): the explorer computes with values inside the ranges the kernel built."""
    b = BatchExplorer(P=4, K=2, **FEW)
    b.controls["P"].set_state({"max": 64, "value": 40})  # the slider stops at 16
    assert b.controls["P"].value == 40 and b.summary.P == 16 and b.values()["P"] == 16
    b.controls["delta"].set_state({"max": 5, "value": 1e4})  # log slider: 10**-3 .. 10**0
    assert b.values()["delta"] == pytest.approx(1.0)
    b.controls["anchor"].set_state({"max": 500, "value": 400})
    assert b.values()["anchor"] == 16 * 2 - 1 and b.controls["anchor"].max == 16 * 2 - 1
    b.controls["loss"].set_state({"options": ["evil"], "index": 0})
    assert b.values()["loss"] == b.losses[0] and b.last_error is None
    t = ToyExplorer(P=3, K=2, steps=20)
    t.controls["steps"].set_state({"max": 10**6, "value": 10**6})
    assert t.run.steps == 200
    t.controls["step"].set_state({"max": 10**6, "value": 10**5})
    assert t.last_error is None
