"""drsl.plotting.train's heatmap: the colours and annotations are the table's means and
standard deviations over seeds (in percent), cell by cell, and it draws into a given axes."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from drsl.plotting import train as PT

matplotlib.use("Agg")


@pytest.fixture
def runs():
    rng = np.random.default_rng(0)
    rows = []
    for P, K in ((4, 4), (16, 4), (32, 4)):
        for loss in ("ce+triplet", "ce+drsl"):
            for seed in range(3):
                rows.append(
                    {"P": P, "K": K, "ratio": (K - 1) / ((P - 1) * K), "loss": loss,
                     "seed": seed, "mAP": rng.uniform(0.05, 0.3)}
                )  # fmt: skip
    return pd.DataFrame(rows).iloc[:-1]  # (32, 4, ce+drsl) has two seeds only


def test_heatmap_shows_the_table(runs):
    fig = PT.plot_result_heatmap(runs, index=("loss",), columns=("P", "K"))
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    mesh = ax.collections[0].get_array().reshape(2, 3)  # rows: losses sorted; cols: P x K
    table = PT.sweep_table(runs, metrics=("mAP",))
    texts = iter(t.get_text() for t in ax.texts)
    for r, loss in enumerate(("ce+drsl", "ce+triplet")):
        for c, P in enumerate((4, 16, 32)):
            row = table[(table["loss"] == loss) & (table["P"] == P)].iloc[0]
            assert mesh[r, c] == pytest.approx(100 * row["mAP_mean"])
            assert next(texts) == f"{100 * row['mAP_mean']:.1f}\n± {100 * row['mAP_std']:.1f}"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ce+drsl", "ce+triplet"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["4-4", "16-4", "32-4"]
    plt.close("all")


def test_heatmap_into_axes_with_a_missing_cell_and_a_single_seed(runs):
    one = runs[(runs["seed"] == 0) & ~((runs["P"] == 4) & (runs["loss"] == "ce+drsl"))]
    fig, axes = plt.subplots(1, 2)
    assert PT.plot_result_heatmap(one, columns=("P",), ax=axes[1], title="t") is fig
    ax = axes[1]
    mesh = np.ma.getdata(ax.collections[0].get_array()).reshape(2, 3)
    assert np.isnan(mesh[0, 0])  # no run in that cell: blank, no annotation
    assert all(t.get_text().endswith("± n/a") for t in ax.texts)  # one seed: no spread
    assert len(ax.texts) == 5 and ax.get_title() == "t"
    with pytest.raises(ValueError, match="no runs"):
        PT.plot_result_heatmap(runs.iloc[:0])
    plt.close("all")
