"""drsl.explore (the explorer's computations) and drsl.plotting.explore (its figures)."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drsl import explore as ex
from drsl import losses
from drsl.plotting import explore as pe


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_toy_batch_shapes_labels_and_seed():
    x, y = ex.toy_batch(3, 4, dim=5, seed=1)
    assert x.shape == (12, 5) and x.dtype == torch.float32
    assert y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    x2, _ = ex.toy_batch(3, 4, dim=5, seed=1)
    x3, _ = ex.toy_batch(3, 4, dim=5, seed=2)
    assert torch.equal(x, x2) and not torch.equal(x, x3)
    assert ex.toy_batch(2, 2, dtype=torch.float64)[0].dtype == torch.float64


def test_toy_batch_is_nested_across_P_and_K():
    small, _ = ex.toy_batch(3, 2, dim=4, seed=0)
    big, _ = ex.toy_batch(12, 6, dim=4, seed=0)
    corner = big.reshape(12, 6, 4)[:3, :2].reshape(6, 4)
    torch.testing.assert_close(small, corner)


def test_toy_batch_separation_and_noise_are_rms_distances():
    x, y = ex.toy_batch(16, 8, dim=64, separation=3.0, noise=0.5, seed=0, dtype=torch.float64)
    d = torch.cdist(x, x)
    same = y[:, None] == y[None, :]
    off = ~torch.eye(len(y), dtype=torch.bool)
    within = d[same & off].square().mean().sqrt()
    between = d[~same].square().mean().sqrt()
    assert within == pytest.approx(0.5, rel=0.15)
    # between two identities: centres (3.0) and both instances' noise add in quadrature
    assert between == pytest.approx((3.0**2 + 0.5**2) ** 0.5, rel=0.2)


def test_toy_batch_sphere_rows_are_unit():
    x, _ = ex.toy_batch(4, 3, dim=3, sphere=True)
    torch.testing.assert_close(x.norm(dim=1), torch.ones(12))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"P": 0, "K": 2}, "P"),
        ({"P": 2, "K": 0}, "K"),
        ({"P": 2, "K": 2, "dim": 0}, "dim"),
        ({"P": 2, "K": 2, "noise": -1.0}, "noise"),
        ({"P": 2, "K": 2, "separation": float("nan")}, "separation"),
    ],
)
def test_toy_batch_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ex.toy_batch(**kwargs)


def test_pos_neg_ratio():
    assert ex.pos_neg_ratio(2, 2) == pytest.approx(0.5)
    assert ex.pos_neg_ratio(16, 4) == pytest.approx(3 / 60)
    with pytest.raises(ValueError, match="P"):
        ex.pos_neg_ratio(1, 4)


def test_default_delta_follows_the_loss():
    assert ex.default_delta() == losses.DEFAULT_DELTA


def test_make_loss_passes_drsl_options_only_to_drsl():
    x, y = ex.toy_batch(4, 3, seed=0)
    a = ex.make_loss("drsl", delta=0.05, sort_weight=0.0)(x, y)
    b = losses.drsl_loss(x, y, delta=0.05, sort_weight=0.0, gradient="identity")
    torch.testing.assert_close(a, b)
    t = ex.make_loss("triplet", delta=0.05, sort_weight=0.0)(x, y)
    torch.testing.assert_close(t, losses.batch_hard_triplet_loss(x, y))
    with pytest.raises(ValueError, match="valid names"):
        ex.make_loss("nope")
    with pytest.raises(ValueError, match="delta"):
        ex.make_loss("drsl", delta=0.0)


def test_anchor_ranking_orders_by_distance_and_excludes_anchor():
    x, y = ex.toy_batch(4, 3, seed=3)
    order, dist, is_pos = ex.anchor_ranking(x, y, anchor=5)
    assert 5 not in order.tolist() and len(order) == 11
    assert torch.all(dist[1:] >= dist[:-1])
    torch.testing.assert_close(dist, (x[order] - x[5]).norm(dim=1), atol=1e-5, rtol=1e-5)
    assert is_pos.sum() == 2 and torch.equal(is_pos, y[order] == y[5])
    with pytest.raises(ValueError, match="anchor"):
        ex.anchor_ranking(x, y, anchor=12)


def test_summarize_batch_matches_the_losses():
    s = ex.summarize_batch(5, 3, delta=0.2, sort_weight=0.5, seed=1)
    x, y = ex.toy_batch(5, 3, seed=1)
    assert torch.equal(s.embeddings, x) and s.ratio == pytest.approx(2 / 12)
    assert set(s.values) == set(ex.LOSS_NAMES) == set(s.mass)
    ref = losses.drsl_loss(x, y, delta=0.2, sort_weight=0.5)
    assert s.values["drsl"] == pytest.approx(float(ref), abs=1e-6)
    assert s.values["drsl_smooth"] == pytest.approx(float(ref), abs=1e-6)
    m = losses.gradient_mass(losses.get_loss("contrastive"), x, y)
    assert s.mass["contrastive"]["pos"] == pytest.approx(m["pos"])
    assert 0.0 <= s.pos_share("triplet") <= 1.0


def test_identity_update_is_balanced_without_the_sort_term():
    # spec "Two ways to get a gradient": the ranking part moves positives as much as negatives
    for P in (2, 6, 12):
        s = ex.summarize_batch(P, 4, losses=("drsl",), sort_weight=0.0, separation=1.0)
        assert s.mass["drsl"]["pos"] > 0
        assert s.pos_share("drsl") == pytest.approx(0.5, abs=1e-6)


def test_summarize_batch_rejects_batches_without_positives_or_negatives():
    with pytest.raises(ValueError, match="K"):
        ex.summarize_batch(4, 1)
    with pytest.raises(ValueError, match="P"):
        ex.summarize_batch(1, 4)


def test_ratio_curves_are_ordered_and_consistent_with_summaries():
    c = ex.ratio_curves(3, P_values=(6, 2, 4), losses=("drsl", "contrastive"), seeds=(0, 1))
    assert c.P.tolist() == [2, 4, 6]
    np.testing.assert_allclose(c.ratio, [2 / 3, 2 / 9, 2 / 15])
    s = [ex.summarize_batch(4, 3, losses=("contrastive",), seed=k) for k in (0, 1)]
    mean_value = np.mean([t.values["contrastive"] for t in s])
    assert c.values["contrastive"][1] == pytest.approx(mean_value, rel=1e-6)
    share = c.pos_share("drsl")
    assert share.shape == (3,) and np.all((share >= 0) & (share <= 1))
    with pytest.raises(ValueError, match="P_values"):
        ex.ratio_curves(3, P_values=())


def test_contrastive_positive_pull_is_diluted_as_P_grows():
    # a mean over all pairs: more negatives, less pull on each positive pair
    c = ex.ratio_curves(4, P_values=(2, 16), losses=("contrastive",), separation=1.0)
    assert c.pos["contrastive"][1] < c.pos["contrastive"][0]


@pytest.mark.parametrize("name", ["drsl", "triplet", "contrastive"])
def test_train_toy_lowers_the_loss(name):
    run = ex.train_toy(name, 4, 3, steps=25, lr=0.05, separation=0.8, noise=1.0)
    assert run.positions.shape == (26, 12, 2) and run.losses.shape == (26,)
    assert run.steps == 25 and run.loss == name
    assert run.losses[-1] < run.losses[0]
    # every step moves the most-pushed point by lr at most
    step = (run.positions[1:] - run.positions[:-1]).norm(dim=2).amax(dim=1)
    assert torch.all(step <= 0.05 + 1e-5)


def test_train_toy_on_the_sphere_stays_on_it():
    run = ex.train_toy("drsl_smooth", 3, 3, steps=10, sphere=True)
    assert run.positions.shape == (11, 9, 3) and run.sphere
    torch.testing.assert_close(run.positions.norm(dim=2), torch.ones(11, 9))


def test_thread_setting_is_restored():
    before = torch.get_num_threads()
    ex.summarize_batch(3, 2, losses=("triplet",))
    ex.ratio_curves(2, P_values=(2, 3), losses=("triplet",))
    ex.train_toy("triplet", 2, 2, steps=2)
    assert torch.get_num_threads() == before


def test_train_toy_rejects_bad_values():
    with pytest.raises(ValueError, match="steps"):
        ex.train_toy("drsl", 3, 3, steps=-1)
    with pytest.raises(ValueError, match="lr"):
        ex.train_toy("drsl", 3, 3, lr=0.0)


@settings(max_examples=15, deadline=None)
@given(P=st.integers(2, 6), K=st.integers(2, 4), seed=st.integers(0, 1000))
def test_summary_invariants(P, K, seed):
    s = ex.summarize_batch(P, K, losses=("drsl", "triplet"), seed=seed, anchor=seed % (P * K))
    assert len(s.distances) == P * K - 1 and int(s.is_positive.sum()) == K - 1
    for name in ("drsl", "triplet"):
        assert s.values[name] >= 0
        assert s.mass[name]["pos"] >= 0 and s.mass[name]["neg"] >= 0


# ---- figures --------------------------------------------------------------------------------


def test_plot_ranked_list_colours_positives():
    fig = pe.plot_ranked_list(torch.tensor([0.1, 0.4, 0.9]), torch.tensor([True, False, True]))
    bars = fig.axes[0].patches
    assert [b.get_height() for b in bars] == pytest.approx([0.1, 0.4, 0.9])
    colours = [b.get_facecolor() for b in bars]
    assert colours[0] == colours[2] != colours[1]
    with pytest.raises(ValueError, match="one length"):
        pe.plot_ranked_list([0.1, 0.2], [True])


def test_plot_gradient_share_bars_sum_to_one():
    fig = pe.plot_gradient_share(
        {"drsl": {"pos": 3.0, "neg": 1.0}, "triplet": {"pos": 0, "neg": 0}}
    )
    widths = [p.get_width() for p in fig.axes[0].patches]
    assert widths == pytest.approx([0.75, 0.0, 0.25, 0.0])


def test_batch_panel_curves_and_grids_draw():
    s = ex.summarize_batch(4, 2)
    c = ex.ratio_curves(2, P_values=(2, 4), losses=("drsl", "triplet"))
    fig = pe.plot_batch_panel(s, highlight="drsl")
    assert len(fig.axes) == 3
    fig = pe.plot_ratio_curves(c, highlight="triplet", current_ratio=s.ratio)
    assert len(fig.axes) == 3
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), c.values["drsl"])
    fig = pe.plot_explorer_grid([s, s], c)
    assert len(fig.axes) == 9
    runs = [
        ex.train_toy("triplet", 2, 2, steps=4),
        ex.train_toy("drsl", 2, 2, steps=4, sphere=True),
    ]
    fig = pe.plot_toy_grid(runs)
    assert len(fig.axes) == 8
    with pytest.raises(ValueError, match="step"):
        pe.plot_toy_embedding(runs[0], 9)


def test_public_names_live_in_one_submodule_each():
    """drsl.explore is a package: each public name is re-exported from the one submodule
    that defines it, and the old flat import path keeps working."""
    import importlib

    from drsl.explore import BatchSummary, summarize_batch, train_toy  # the public path

    assert summarize_batch is ex.summarize_batch and BatchSummary is ex.BatchSummary
    assert train_toy.__module__ == "drsl.explore.toy"
    for name in ex.__all__:
        obj = getattr(ex, name)
        home = getattr(obj, "__module__", None)
        if home is not None and callable(obj):
            assert home.startswith("drsl.explore."), (name, home)
            assert getattr(importlib.import_module(home), name) is obj
