"""drsl.plotting.data: the figures build from real inputs and show what they claim."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from drsl.data.datasets import ReIDSplits
from drsl.data.sampler import pk_pos_neg_ratio
from drsl.plotting import data as plots


@pytest.fixture
def items(tmp_path):
    out = []
    for pid in (1, 2, 3):
        for cam in (0, 1, 2):
            if pid == 3 and cam == 2:
                continue
            path = tmp_path / f"{pid:04d}_c{cam + 1}.png"
            Image.new("RGB", (4, 8), (40 * pid, 60 * cam, 90)).save(path)
            out.append((str(path), pid, cam))
    out.append((str(tmp_path / "junk.png"), -1, 0))  # skipped: pid <= 0
    return out


def test_identities_across_cameras(items):
    fig = plots.plot_identities_across_cameras(items, pids=[1, 3])
    axes = np.array(fig.axes).reshape(2, 3)
    assert [ax.get_title() for ax in axes[0]] == ["cam 1", "cam 2", "cam 3"]
    assert axes[1, 0].get_ylabel() == "id 3"
    assert len(axes[1, 2].images) == 0 and len(axes[1, 1].images) == 1  # id 3 not in cam 3
    fig = plots.plot_identities_across_cameras(items, num_ids=2, seed=0)
    assert len(fig.axes) == 6
    with pytest.raises(ValueError, match="not in items"):
        plots.plot_identities_across_cameras(items, pids=[9])
    plt.close("all")


def test_dataset_statistics(items):
    splits = ReIDSplits(items[:4], items[4:6], items[6:], name="toy")
    fig = plots.plot_dataset_statistics(splits)
    assert len(fig.axes) == 2
    bars = fig.axes[1].patches
    assert sum(b.get_height() for b in bars) == len(items)
    plt.close("all")


def test_pk_ratio_curves_follow_the_formula():
    fig = plots.plot_pk_ratio(P_values=range(2, 10), K_values=(1, 2, 4))
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("K =")]
    assert [ln.get_label() for ln in lines] == ["K = 2", "K = 4"]  # K = 1 has no positive
    np.testing.assert_allclose(lines[1].get_ydata(), pk_pos_neg_ratio(np.arange(2, 10), 4))
    plt.close("all")


def test_memory_squares_sit_on_the_curve_at_the_batch_with_the_same_ratio():
    memory = {1024: 0.01, 4096: 0.002}
    fig = plots.plot_pk_ratio(np.arange(2, 4000), K_values=(4,), mark=(16, 4), memory=memory)
    ax = fig.axes[0]
    squares = [c.get_offsets()[0] for c in ax.collections]
    assert len(squares) == 2 and ax.get_xscale() == "log"
    for (p, ratio), want in zip(squares, memory.values(), strict=True):
        assert ratio == pytest.approx(want)
        assert pk_pos_neg_ratio(p, 4) == pytest.approx(want)  # on the K = 4 curve
    with pytest.raises(ValueError, match="needs mark"):
        plots.plot_pk_ratio(mark=None, memory=memory)
    plt.close("all")


def test_protocol_example_ranks_only_kept_items():
    d = [0.2, 0.35, 0.4, 0.5, 0.55, 0.7]
    gp = [7, 7, 3, 0, -1, 7]
    gc = [0, 1, 1, 2, 1, 3]
    fig = plots.plot_protocol_example(d, gp, gc, 7, 0)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert [t for t in texts if t.startswith("#")] == ["#1", "#2", "#3", "#4"]
    assert "AP = 0.750" in fig.axes[0].get_title()  # matches at ranks 1 and 4: (1 + 2/4) / 2
    with pytest.raises(ValueError, match="distances has"):
        plots.plot_protocol_example(d[:2], gp, gc, 7, 0)
    plt.close("all")
