"""The decisive experiment's reading as data: the learning rates by the runner's own rule, the
count of final runs against the plan, one line per endpoint and the headline (a planted effect
is found, a null says "no difference shown", a partial table makes no claim), and its figure."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomllib
from experiment_scripts import load_experiment

from drsl.endpoints import (
    decisive_verdict,
    endpoint_table,
    final_runs_done,
    planned_final_runs,
    tuned_rates,
)

ROOT = Path(__file__).resolve().parents[1]
PLAN = tomllib.loads((ROOT / "configs/decisive/plan.toml").read_text())


def _final_rows(effect, noise=0.2, seeds=None, plan=PLAN) -> pd.DataFrame:
    """Final rows of every planned run: test mAP = 50 + a seed offset + ``effect(cell, loss)``
    (points) + noise; a validation row beside each test row, as the runner writes them."""
    rng = np.random.default_rng(0)
    rows = []
    for seed in plan["seeds"] if seeds is None else seeds:
        offset = rng.normal(0, 4)
        for cell in plan["cells"]:
            for loss in plan["losses"]:
                v = 50 + offset + effect(cell, loss) + rng.normal(0, noise)
                for split in ("val", "test"):
                    rows.append(dict(phase="final", cell=cell, loss=loss, with_ce=False,
                                     seed=seed, split=split, mAP=v / 100))  # fmt: skip
    return pd.DataFrame(rows)


def _planted(cell: str, loss: str) -> float:
    """The more imbalanced cell of E1 and E2 costs every baseline 12 points, DRSL nothing;
    E4's batch-only move costs nothing to anyone."""
    if cell in ("E1_neg", "E2_mem") and loss != "drsl":
        return -12.0
    return 0.0


def test_planned_runs_are_cells_times_losses_times_seeds_times_arms():
    assert planned_final_runs(PLAN) == PLAN["estimate"]["final_runs"] == 210
    rows = _final_rows(_planted)
    assert final_runs_done(rows, PLAN) == 210  # val and test rows of a run count once
    tune = rows.assign(phase="tune")
    assert final_runs_done(pd.concat([rows, tune]), PLAN) == 210


def test_a_planted_cost_is_found_and_drsl_outlasts_every_baseline():
    v = decisive_verdict(_final_rows(_planted), PLAN)
    assert v.complete and (v.done, v.planned) == (210, 210)
    t = v.table.set_index(["endpoint", "loss", "versus", "of"])
    assert t.loc[("E1", "contrastive", "", ""), "mean"] == pytest.approx(-12.0, abs=0.5)
    assert t.loc[("E1", "contrastive", "", ""), "rejects"]
    assert not t.loc[("E1", "drsl", "", ""), "rejects"]
    assert set(v.lines) == {"E1", "E2", "E3", "E4"}
    assert re.search(r"contrastive: costs 1[12]\.\d points \[-1\d\.\d, -1\d\.\d\]", v.lines["E1"])
    assert re.search(r"DRSL: no difference shown \[-\d\.\d, \+\d\.\d\]", v.lines["E1"])
    assert "costs" not in v.lines["E4"] and v.lines["E4"].count("no difference shown") == 7
    assert "in E1 DRSL's cost is within ±3 points" in v.lines["E3"]
    assert "points smaller than circle's" in v.lines["E3"]
    assert v.within == ("E1", "E2") and v.outlasted_by == ()
    assert set(v.outlasted) == set(PLAN["endpoints"][2]["versus"])
    assert v.headline.startswith("On our data the claim holds: with the metric loss alone,")
    assert "DRSL loses less than Smooth-AP, contrastive, soft-margin triplet," in v.headline
    assert not re.search(r"\d", v.headline.replace("E1", "").replace("E2", ""))


def test_a_null_effect_says_no_difference_and_claims_no_lead():
    v = decisive_verdict(_final_rows(lambda cell, loss: 0.0), PLAN)
    plus_minus = v.table[v.table["versus"] == ""]
    assert not v.table["rejects"].any()
    assert ((plus_minus["low"] < 0) & (plus_minus["high"] > 0)).all()
    for ep in ("E1", "E2", "E4"):
        assert v.lines[ep].count("no difference shown") == len(PLAN["losses"]), v.lines[ep]
        assert "costs" not in v.lines[ep] and "gains" not in v.lines[ep]
    assert v.lines["E3"].count("no difference shown from") == 2 * 5
    assert v.outlasted == () and v.outlasted_by == ()
    assert "DRSL loses less than no baseline beyond noise" in v.headline
    assert "claim holds:" not in v.headline


def test_a_cost_larger_than_the_margin_and_a_baseline_that_loses_less_are_said():
    def effect(cell, loss):
        if cell not in ("E1_neg", "E2_mem"):
            return 0.0
        return {"drsl": -10.0, "circle": 0.0}.get(loss, -10.0)

    v = decisive_verdict(_final_rows(effect), PLAN)
    assert v.within == () and v.outlasted == () and v.outlasted_by == ("circle",)
    assert v.headline.startswith("On our data the claim is not shown:")
    assert "not shown within the plan's equivalence margin" in v.headline
    assert v.headline.endswith("; circle loses less than DRSL.")
    assert "in E2 DRSL's cost is not shown within ±3 points" in v.lines["E3"]


def test_a_partial_table_reads_no_endpoint_and_makes_no_claim():
    rows = _final_rows(_planted, seeds=PLAN["seeds"][:2])
    rows = rows[~((rows["seed"] == PLAN["seeds"][1]) & (rows["cell"] == "E4_64x2"))]
    v = decisive_verdict(rows, PLAN)
    assert not v.complete and (v.done, v.planned) == (84 - 7, 210)
    assert v.table is None and v.lines == {} and v.outlasted == ()
    assert v.headline == (
        "The decisive imbalance experiment is in progress (77 of 210 final runs): "
        "it makes no claim yet."
    )
    assert not re.search(r"holds|shown|outlast|costs|less than", v.headline)


def test_a_diverged_final_run_counts_as_done_and_drops_its_pairs():
    rows = _final_rows(_planted)
    bad = (rows["cell"] == "E1_neg") & (rows["loss"] == "circle") & (rows["seed"] == 3)
    rows = rows[~(bad & (rows["split"] == "test"))].copy()
    rows.loc[bad, "mAP"] = np.nan
    v = decisive_verdict(rows, PLAN)
    assert v.complete
    t = v.table.set_index(["endpoint", "loss", "versus", "of"])
    assert t.loc[("E1", "circle", "", ""), "n"] == 4 and t.loc[("E1", "drsl", "", ""), "n"] == 5
    assert t.loc[("E3", "drsl", "circle", "E1"), "n"] == 4


def test_the_endpoint_figure_draws_every_comparison_with_its_interval():
    import matplotlib.pyplot as plt

    from drsl.plotting import plot_endpoints

    table = endpoint_table(_final_rows(_planted), PLAN)
    fig = plot_endpoints(table)
    ax = fig.axes[0]
    assert len(ax.get_yticks()) == len(table) == 31
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "E1: drsl" and "E3 (E2): drsl minus circle" in labels
    points = [line for line in ax.lines if line.get_marker() == "o"]
    x = np.sort(np.concatenate([np.asarray(line.get_xdata(), float) for line in points]))
    assert x == pytest.approx(np.sort(table["mean"].to_numpy()))
    filled = [line for line in points if line.get_markerfacecolor() != "white"]
    assert sum(len(line.get_xdata()) for line in filled) == table["rejects"].sum()
    assert [p.get_label() for p in ax.patches] == ["± 3 points (E3)"]
    with pytest.raises(ValueError, match="no comparison"):
        plot_endpoints(table.iloc[:0])
    plt.close("all")


# ---------------------------------------------------------------- the runner's learning rates
def _runner():
    return load_experiment("decisive")


TUNE_PLAN = """
losses = ["drsl", "contrastive", "circle"]
with_ce = [false]
lrs = [0.002, 0.006, 0.018]
lr_factor = 3.0
lr_extensions = 2
tune_seed = 0
tune_cells = ["a", "b"]
seeds = [1]
budget = 64
[data.small]
val_ids = 4
train_ids = 8
[cells.a]
data = "small"
P = 4
K = 2
memory_size = 0
[cells.b]
data = "small"
P = 4
K = 2
memory_size = 16
memory_role = "negatives"
"""

#: validation mAP per rate: drsl peaks past the top edge (two extensions), contrastive inside,
#: circle at the bottom edge after one extension (0.002 / 3 beats 0.002, 0.002 / 9 loses)
SCORES = {
    "drsl": lambda lr: lr,
    "contrastive": lambda lr: -abs(np.log(lr / 0.006)),
    "circle": lambda lr: -abs(np.log(lr / 0.0006)),
}


def test_tuned_rates_follow_the_runners_rule_edge_extensions_included(tmp_path):
    dec = _runner()
    (tmp_path / "plan.toml").write_text(TUNE_PLAN)
    dec.set_paths(tmp_path / "plan.toml", tmp_path / "res", tmp_path / "work")
    p = dec.plan()
    for _ in range(4):  # tune what the runner asks for, one round at a time
        best, open_runs = dec.chosen(p)
        rows = pd.read_csv(dec.rows_path()) if dec.rows_path().exists() else None
        mine = tuned_rates(rows, p).set_index("loss") if rows is not None else None
        for loss in p["losses"]:
            lrs, complete = dec.lr_grid(p, loss, False)
            if mine is not None:
                assert mine.loc[loss, "grid"] == tuple(lrs)
                assert mine.loc[loss, "complete"] == complete
        if best is not None:
            break
        dec.append_rows(dec.rows_path(), [
            {**r.fields(), "steps": r.steps, "split": "val", "status": "ok", "seconds": "1",
             "mAP": f"{SCORES[r.loss](r.lr):.6f}"}
            for r in open_runs], dec.FIELDS)  # fmt: skip
    assert best is not None
    mine = tuned_rates(pd.read_csv(dec.rows_path()), p).set_index("loss")
    for r in best.itertuples():
        assert mine.loc[r.loss, "lr"] == r.lr and mine.loc[r.loss, "val_mAP"] == r.val_mAP
    assert mine.loc["contrastive", "lr"] == pytest.approx(0.006)
    assert not mine.loc["contrastive", "on_edge"]
    assert len(mine.loc["drsl", "grid"]) == 5 and mine.loc["drsl", "on_edge"]  # still on it
    assert mine.loc["circle", "lr"] == pytest.approx(0.002 / 3)
    assert mine.loc["circle", "grid"][0] == pytest.approx(0.002 / 9)
    assert not mine.loc["circle", "on_edge"]
    assert (mine["runs"] == mine["planned"]).all()
