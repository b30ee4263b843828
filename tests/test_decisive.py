"""The decisive experiment: Holm's correction, the endpoints' paired differences on a synthetic
results table, the committed plan, and the runner end to end on a tiny plan (tune on validation
with the grid extended past an edge, budget check, fresh-seed final runs scored once on test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from experiment_scripts import load_experiment

from drsl.endpoints import endpoint_markdown, endpoint_table, holm

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------- holm
def test_holm_adjusts_step_down_and_freezes_the_level_at_the_first_acceptance():
    p = [0.001, 0.04, 0.013, np.nan, 0.02]
    adj, level = holm(p, 0.05)
    # sorted: 0.001 (x5), 0.013 (x4), 0.02 (x3), 0.04 (x2), nan (tested last, as 1)
    assert adj.tolist() == pytest.approx([0.005, 0.08, 0.052, 1.0, 0.06])
    assert level.tolist() == pytest.approx([0.01, 0.0125, 0.0125, 0.0125, 0.0125])
    rejected = adj < 0.05
    assert rejected.tolist() == [True, False, False, False, False]
    assert (np.asarray(p)[rejected] < level[rejected]).all()


# -------------------------------------------------------------------------------- endpoints
PLAN_ENDPOINTS = {
    "losses": ["drsl", "contrastive", "circle"],
    "analysis": {"metric": "mAP", "split": "test", "level": 0.95, "equivalence_margin": 3.0},
    "endpoints": [
        {"id": "E1", "plus": "neg", "minus": "all"},
        {"id": "E3", "of": ["E1"], "loss": "drsl", "versus": ["contrastive", "circle"]},
    ],
}


def _results(seeds=(1, 2, 3, 4, 5, 6)):
    """drsl: no cost; contrastive: -20 points; circle: -1 point; each seed its own offset."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in seeds:
        offset = rng.normal(0, 5)
        for loss, cost in (("drsl", 0.0), ("contrastive", -20.0), ("circle", -1.0)):
            for cell in ("all", "neg"):
                noise = rng.normal(0, 0.5)
                v = 50 + offset + noise + (cost if cell == "neg" else 0.0)
                for split in ("val", "test"):
                    rows.append(dict(phase="final", cell=cell, loss=loss, with_ce=False,
                                     seed=seed, split=split,
                                     mAP=v / 100 if split == "test" else 0.0))  # fmt: skip
    rows.append(dict(phase="tune", cell="neg", loss="drsl", with_ce=False, seed=0,
                     split="val", mAP=0.99))  # fmt: skip
    return pd.DataFrame(rows)


def test_endpoints_are_paired_differences_with_holm_intervals():
    from scipy import stats

    rows = _results()
    t = endpoint_table(rows, PLAN_ENDPOINTS).set_index(["endpoint", "loss", "versus"])
    assert len(t) == 5 and (t["n"] == 6).all()
    test = rows[rows["split"] == "test"].pivot_table(
        index=["cell", "loss"], columns="seed", values="mAP"
    )
    for loss in PLAN_ENDPOINTS["losses"]:
        d = 100 * (test.loc[("neg", loss)] - test.loc[("all", loss)])
        r = t.loc[("E1", loss, "")]
        assert r["mean"] == pytest.approx(d.mean())
        want_p = stats.ttest_rel(100 * test.loc[("neg", loss)], 100 * test.loc[("all", loss)])
        assert r["p"] == pytest.approx(want_p.pvalue)
    assert t.loc[("E1", "contrastive", ""), "rejects"]
    assert not t.loc[("E1", "drsl", ""), "rejects"]
    assert t.loc[("E1", "drsl", ""), "within_margin"]
    assert not t.loc[("E1", "contrastive", ""), "within_margin"]
    # E3: drsl's cost minus the other's, seed by seed
    e3 = t.loc[("E3", "drsl", "contrastive")]
    diff = t.loc[("E1", "drsl", ""), "mean"] - t.loc[("E1", "contrastive", ""), "mean"]
    assert e3["mean"] == pytest.approx(diff) and e3["rejects"] and e3["mean"] > 15
    # an interval excludes 0 exactly when Holm rejects
    assert ((t["p_holm"] < 0.05) == t["rejects"]).all()
    assert (t["level"] >= 0.95).all()  # each interval at least as wide as an uncorrected one
    md = endpoint_markdown(t.reset_index()).splitlines()
    assert next(x for x in md if x.startswith("| E1 | contrastive |")).endswith("| lower |")
    assert next(x for x in md if x.startswith("| E1 | drsl |")).endswith("no difference shown |")


def test_endpoints_drop_a_diverged_seed_and_ignore_tuning_rows():
    rows = _results()
    bad = (rows["loss"] == "circle") & (rows["seed"] == 3) & (rows["cell"] == "neg")
    rows.loc[bad, "mAP"] = np.nan
    t = endpoint_table(rows, PLAN_ENDPOINTS).set_index(["endpoint", "loss", "versus"])
    assert t.loc[("E1", "circle", ""), "n"] == 5 and t.loc[("E1", "drsl", ""), "n"] == 6
    assert t.loc[("E3", "drsl", "circle"), "n"] == 5


# ---------------------------------------------------------------------------------- runner
def _runner():
    return load_experiment("decisive")


def _tiny_plan(tmp_path: Path) -> str:
    large = tmp_path / "large-set"
    return f"""
losses = ["drsl", "contrastive"]
with_ce = [false]
lrs = [0.002, 0.02]
lr_factor = 10.0
lr_extensions = 1
tune_seed = 0
tune_cells = ["small_bal"]
seeds = [1]
budget = 64
budget_check = 2
warmup_fraction = 0.1

[train]
base_width = 4
eval_every = 1
num_epochs = 10000

[run]
threads = 1

[data.small]
val_ids = 16
train_ids = 32
[data.large]
root = "{large}"
num_train_ids = 40
val_ids = 8
train_ids = 32

[cells.small_bal]
data = "small"
P = 4
K = 2
memory_size = 0
[cells.small_neg]
data = "small"
P = 4
K = 2
memory_size = 32
memory_role = "negatives"
[cells.large_mem]
data = "large"
P = 4
K = 2
memory_size = 32

[analysis]
metric = "mAP"
split = "test"

[[endpoints]]
id = "E1"
plus = "small_neg"
minus = "small_bal"
"""


@pytest.mark.slow
def test_runner_tunes_extends_the_grid_then_runs_fresh_seeds_once_on_test(tmp_path, capsys):
    from drsl.analysis import select_lr

    dec = _runner()
    (tmp_path / "plan.toml").write_text(_tiny_plan(tmp_path))
    paths = ["--plan", str(tmp_path / "plan.toml"), "--results", str(tmp_path / "res"),
             "--work", str(tmp_path / "work")]  # fmt: skip
    assert dec.main(["run", "--phases", "final", *paths]) == 1  # no final run before tuning
    assert not (tmp_path / "res/decisive.csv").exists()
    assert dec.main(["run", "--max-runs", "2", *paths]) == 0
    rows = pd.read_csv(tmp_path / "res/decisive.csv")
    assert len(rows) == 2 and set(rows["phase"]) == {"tune"} and set(rows["split"]) == {"val"}
    assert dec.main(["run", "--phases", "tune", *paths]) == 0
    rows = pd.read_csv(tmp_path / "res/decisive.csv")
    assert set(rows["phase"]) == {"tune"}  # stopped before the budget check
    # two rates on the grid: the best is on an edge, so one more rate beyond it, per loss
    for _, runs in rows.groupby("loss"):
        lrs = sorted(runs["lr"])
        assert len(lrs) == 3 and {0.002, 0.02} <= set(lrs)
        best = float(select_lr(runs[runs["lr"].isin([0.002, 0.02])])["lr"].iloc[0])
        assert (0.2 if best == 0.02 else 0.0002) in lrs
    assert dec.main(["run", *paths]) == 0
    rows = pd.read_csv(tmp_path / "res/decisive.csv")
    tune, final = rows[rows["phase"] == "tune"], rows[rows["phase"] == "final"]
    assert (tune["split"] == "val").all() and (tune["seed"] == 0).all()
    budget = rows[rows["phase"] == "budget"]
    assert len(budget) == 1 and budget["images"].eq(128).all()
    # final: 3 cells x 2 losses x seed 1, each once on val and once on test
    assert len(final) == 12 and final.groupby("split").size().to_dict() == {"test": 6, "val": 6}
    assert (final["seed"] == 1).all()  # the tuning seed is never a final run
    assert not rows.duplicated(dec.KEY + ["split"]).any()
    chosen, _ = dec.chosen(dec.plan())
    lr = chosen.set_index("loss")["lr"]
    assert all(r.lr == lr[r.loss] for r in final.itertuples())
    cells = pd.read_csv(tmp_path / "res/decisive_cells.csv").set_index("cell")
    assert cells.loc["small_bal", "neg_per_pos"] == pytest.approx(6.0)  # (P - 1) K / (K - 1)
    assert cells.loc["small_neg", "pos_per_anchor"] == pytest.approx(1.0)  # memory: negatives
    assert cells.loc["large_mem", "pos_per_anchor"] > 1.0  # by label: the memory adds some
    for r in final.itertuples():
        assert r.neg_per_pos == pytest.approx(cells.loc[r.cell, "neg_per_pos"])
    assert set(final["memory_role"]) == {"all", "negatives"}
    assert set(final["train_ids"]) == {32}
    curves = pd.read_csv(tmp_path / "res/decisive_curves.csv")
    assert set(curves["phase"]) == {"tune", "budget", "final"}
    assert dec.main(["run", *paths]) == 0  # all done: nothing added
    assert len(pd.read_csv(tmp_path / "res/decisive.csv")) == len(rows)
    capsys.readouterr()
    assert dec.main(["status", *paths]) == 0
    assert "final: 6 / 6 runs" in capsys.readouterr().out
    assert dec.main(["endpoints", *paths]) == 0
    assert "E1" in capsys.readouterr().out


# --------------------------------------------------------------------- ratio, negatives only
def test_memory_pos_neg_with_a_negatives_only_memory_keeps_the_batch_positives():
    from drsl.data.sampler import memory_pos_neg

    labels = np.repeat(np.arange(12), 8)
    pos_all, neg_all = memory_pos_neg(labels, 4, 4, 80, epochs=4)
    pos_neg, neg_neg = memory_pos_neg(labels, 4, 4, 80, epochs=4, memory_role="negatives")
    assert pos_neg == 3.0 and neg_neg == neg_all  # K - 1 positives; the same negatives
    assert pos_all > 3.0
    with pytest.raises(ValueError, match="memory_role"):
        memory_pos_neg(labels, 4, 4, 80, memory_role="positives")
