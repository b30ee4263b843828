"""The decisive imbalance experiment: its validation split, the measured pos/neg ratio with a
memory, the analysis of its results table, its figures, and the runner end to end on a tiny
grid (tune on validation, choose the lr, budget check, final runs scored once on test)."""

import csv
import fcntl
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from experiment_scripts import load_experiment

from drsl.analysis import cell_effects, paired_differences, select_lr, summary, t_interval
from drsl.data.images import make_random_data
from drsl.data.sampler import PKSampler, memory_pos_neg, pk_pos_neg_ratio
from drsl.data.validation import split_validation
from drsl.losses import CrossBatchMemory

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def _data_with_cams(num_ids=12, per_id=6, seed=0):
    d = make_random_data(num_ids, per_id, seed=seed)
    g = torch.Generator().manual_seed(seed)
    d.train.camids = torch.randint(0, 3, (len(d.train),), generator=g)
    return d


# ---------------------------------------------------------------------------- validation split
def test_split_validation_holds_out_whole_identities_with_the_market_layout():
    data = _data_with_cams()
    fit, test = split_validation(data, 4, seed=3)
    orig = data.train.pids.numpy()
    assert fit.num_classes == 8 and sorted(set(fit.train.pids.tolist())) == list(range(8))
    assert len(fit.train) + len(fit.query) + len(fit.gallery) == len(data.train)
    held = set((fit.query.pids - 1).tolist()) | set((fit.gallery.pids - 1).tolist())
    assert len(held) == 4 and held.isdisjoint(set(orig[~np.isin(orig, list(held))]) - held)
    assert int(fit.query.pids.min()) >= 1  # pid 0 would read as a distractor
    # one query per held-out identity and camera with >= 2 images, the rest in the gallery
    qp, qc = fit.query.pids.numpy() - 1, fit.query.camids.numpy()
    for pid in held:
        cams, counts = np.unique(data.train.camids.numpy()[orig == pid], return_counts=True)
        assert sorted(qc[qp == pid].tolist()) == sorted(cams[counts >= 2].tolist())
    # the images of a held-out identity are its training images, none lost or repeated
    imgs = torch.cat([fit.query.images, fit.gallery.images])
    assert sorted(map(bytes, imgs.flatten(1).numpy())) == sorted(
        map(bytes, data.train.images[np.isin(orig, list(held))].flatten(1).numpy())
    )
    assert test.query is data.query and test.train is fit.train
    assert fit.fingerprint.endswith("+val4s3") and test.fingerprint == fit.fingerprint


def test_split_validation_is_seeded_and_checks_its_input():
    data = _data_with_cams()
    a, _ = split_validation(data, 4, seed=1)
    b, _ = split_validation(data, 4, seed=1)
    c, _ = split_validation(data, 4, seed=2)
    assert torch.equal(a.query.images, b.query.images) and torch.equal(a.train.pids, b.train.pids)
    assert not torch.equal(a.gallery.pids.sort()[0], c.gallery.pids.sort()[0])
    for bad in (0, 11, -1):
        with pytest.raises(ValueError, match="num_ids must be in 1..10"):
            split_validation(data, bad)
    one_cam = make_random_data(4, 1)  # every identity has a single image: no query possible
    with pytest.raises(ValueError, match="no query"):
        split_validation(one_cam, 1)


# ------------------------------------------------------------------------ ratio with a memory
def test_memory_pos_neg_without_memory_is_the_pk_ratio():
    labels = np.repeat(np.arange(20), 5)
    for P, K in ((4, 4), (8, 2), (16, 4)):
        pos, neg = memory_pos_neg(labels, P, K)
        assert pos / neg == pytest.approx(pk_pos_neg_ratio(P, K))


def test_memory_pos_neg_counts_what_the_cross_batch_memory_holds():
    """Brute force with the package's own CrossBatchMemory fed the same batches."""
    labels = np.repeat(np.arange(10), np.arange(3, 13))
    P, K, M = 4, 3, 30
    memory = CrossBatchMemory(M)
    sampler = PKSampler(labels, P, K, seed=5)
    pos = neg = n = 0
    for epoch in range(3):
        for batch in sampler.batches(epoch):
            b = torch.as_tensor(labels[batch])
            _, ref_labels, _ = memory.references()
            if ref_labels is not None and len(ref_labels) == M:
                for a in b:
                    same = int((b == a).sum()) - 1 + int((ref_labels == a).sum())
                    pos, neg, n = pos + same, neg + len(b) + M - 1 - same, n + 1
            memory.enqueue(torch.zeros(len(b), 2), b)
    got = memory_pos_neg(labels, P, K, M, seed=5, epochs=3)
    assert got == pytest.approx((pos / n, neg / n))
    assert got[0] > K - 1  # the memory holds positives too: the ratio is not (K-1)/(... + M)


def test_memory_pos_neg_ratio_floor_is_one_over_identities_minus_one():
    labels = np.repeat(np.arange(12), 8)
    pos, neg = memory_pos_neg(labels, 4, 4, 80, epochs=4)
    assert 1 / 11 * 0.8 < pos / neg < 1 / 11 * 1.25  # close to 1/(C-1), far from 3/(12+80)
    with pytest.raises(ValueError, match="never filled"):
        memory_pos_neg(labels, 4, 4, 10_000, epochs=1)


# ------------------------------------------------------------------------------ the analysis
def _tune_frame():
    rows = []
    for loss, best in (("a", 1e-2), ("b", 1e-3)):
        for lr in (1e-3, 1e-2):
            for P in (4, 16):
                score = 0.5 if lr == best else 0.3 + 0.01 * P
                rows.append(
                    dict(
                        loss=loss,
                        with_ce=True,
                        lr=lr,
                        P=P,
                        K=4,
                        memory_size=0,
                        split="val",
                        mAP=score,
                    )
                )
    return pd.DataFrame(rows)


def test_select_lr_takes_the_best_mean_validation_score_and_never_reads_test():
    t = _tune_frame()
    best = select_lr(t).set_index("loss")
    assert best.loc["a", "lr"] == 1e-2 and best.loc["b", "lr"] == 1e-3
    assert best.loc["a", "val_mAP"] == pytest.approx(0.5) and best.loc["a", "cells"] == 2
    poisoned = pd.concat([t, t.assign(split="test", mAP=1.0 - t["mAP"])])
    assert select_lr(poisoned).equals(select_lr(t))
    diverged = t.copy()
    diverged.loc[
        (diverged["loss"] == "a") & (diverged["lr"] == 1e-2) & (diverged["P"] == 4), "mAP"
    ] = np.nan
    assert select_lr(diverged).set_index("loss").loc["a", "lr"] == 1e-3


def test_t_interval_matches_scipy_and_covers_the_mean():
    from scipy import stats

    x = np.array([0.3, -0.1, 0.5, 0.2, 0.1])
    m, lo, hi = t_interval(x, 0.95)
    ref = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert (lo, hi) == pytest.approx(ref) and lo < m < hi
    assert math.isnan(t_interval([1.0])[1])


def _final_frame(shift=0.02):
    rows = []
    rng = np.random.default_rng(0)
    for seed in range(4):
        base = rng.normal(0.3, 0.05)  # what a seed does to every loss alike
        for loss, gain in (("triplet", 0.0), ("drsl", shift)):
            for split in ("val", "test"):
                rows.append(
                    dict(
                        phase="final",
                        P=16,
                        K=4,
                        memory_size=0,
                        loss=loss,
                        with_ce=True,
                        seed=seed,
                        split=split,
                        mAP=base + gain,
                        R1=base,
                        mINP=base / 2,
                    )
                )
    return pd.DataFrame(rows)


def test_paired_differences_remove_the_seed_effect():
    d = paired_differences(_final_frame(0.02), "triplet")
    assert len(d) == 1 and d.loc[0, "loss"] == "drsl" and d.loc[0, "n"] == 4
    assert d.loc[0, "diff"] == pytest.approx(0.02)
    assert d.loc[0, "low"] == pytest.approx(0.02) and d.loc[0, "high"] == pytest.approx(0.02)
    s = summary(_final_frame(0.02))
    assert set(s["n"]) == {4} and s["mAP_std"].gt(0.01).all()  # unpaired: the seed noise stays


def test_cell_effects_pair_the_seeds_of_two_cells():
    rows = []
    rng = np.random.default_rng(1)
    for seed in range(3):
        base = rng.normal(0.4, 0.05)
        for M, cost in (
            (0, {"triplet": 0.0, "contrastive": 0.0}),
            (64, {"triplet": -0.01, "contrastive": -0.05}),
        ):
            for loss in ("triplet", "contrastive"):
                rows.append(
                    dict(
                        P=16,
                        K=4,
                        memory_size=M,
                        loss=loss,
                        with_ce=False,
                        seed=seed,
                        split="test",
                        mAP=base + cost[loss] + 0.001 * seed * (M > 0),
                    )
                )
    rows = pd.DataFrame(rows)
    eff = cell_effects(rows, (16, 4, 64), (16, 4, 0)).set_index("loss")
    assert eff.loc["contrastive", "diff"] == pytest.approx(-0.049)
    assert eff.loc["triplet", "low"] < -0.01 < eff.loc["triplet", "high"]
    rel = cell_effects(rows, (16, 4, 64), (16, 4, 0), baseline="triplet")
    assert list(rel["loss"]) == ["contrastive"] and rel.loc[0, "diff"] == pytest.approx(-0.04)
    assert rel.loc[0, "high"] == pytest.approx(-0.04)  # the seed effects cancel exactly


# ------------------------------------------------------------------------------ the figures
def test_imbalance_figures_draw_from_the_tables():
    from drsl.plotting.imbalance import plot_imbalance, plot_paired_differences, plot_val_curves

    rows = _final_frame()
    cells = pd.DataFrame({"P": [16], "K": [4], "memory_size": [0], "ratio": [0.05]})
    fig = plot_imbalance(rows, cells, metric="mINP")
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) > 0
    with pytest.raises(ValueError, match="no final val rows"):
        plot_imbalance(rows[rows["split"] == "test"], cells, split="val")
    fig = plot_paired_differences(paired_differences(rows, "triplet"))
    assert len(fig.axes[0].get_yticklabels()) == 1
    curves = pd.DataFrame(
        {
            "phase": "tune",
            "P": 16,
            "K": 4,
            "memory_size": 0,
            "loss": "drsl",
            "with_ce": True,
            "lr": 1e-3,
            "images": 640,
            "step": [5, 10],
            "mAP": [0.1, 0.2],
        }
    )
    assert len(plot_val_curves(curves).axes[0].lines) == 1


# -------------------------------------------------------------------- the runner, end to end
def _runner():
    return load_experiment("imbalance")


GRID = """val_ids = 16
budget = 256
warmup_fraction = 0.1
cells = [[4, 2, 0], [8, 2, 64]]
tune_cells = [[4, 2, 0], [8, 2, 64]]
losses = ["drsl"]
with_ce = [true, false]
lrs = [0.002, 0.02]
seeds = [0, 1]
budget_check = 2

[long]
multiple = 2
cells = [[8, 2, 64]]
with_ce = [false]
seeds = [1]
"""


@pytest.mark.slow
def test_runner_tunes_on_validation_then_scores_each_final_run_once_on_test(tmp_path):
    imb = _runner()
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "grid.toml").write_text(GRID)
    (configs / "base.toml").write_text((ROOT / "configs/imbalance/base.toml").read_text())
    paths = [
        "--configs",
        str(configs),
        "--results",
        str(tmp_path / "res"),
        "--work",
        str(tmp_path / "work"),
    ]
    assert imb.main(["run", "--max-runs", "3", *paths]) == 0
    rows = pd.read_csv(tmp_path / "res/imbalance.csv")
    assert len(rows) == 3 and set(rows["phase"]) == {"tune"} and set(rows["split"]) == {"val"}
    # a run held by another worker (its claim locked) is left to that worker
    open_run = [r for r in imb.tune_runs(imb.grid()) if r.key() not in imb.done()][0]
    claim = tmp_path / "work/claims" / f"{open_run.name}.lock"
    with open(claim, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        assert imb._try(open_run, None, None) is False
    assert imb.main(["run", *paths]) == 0
    rows = pd.read_csv(tmp_path / "res/imbalance.csv")
    tune, final = rows[rows["phase"] == "tune"], rows[rows["phase"] == "final"]
    assert len(tune) == 8 and (tune["split"] == "val").all()  # 2 cells x 2 variants x 2 lrs
    assert len(rows[rows["phase"] == "budget"]) == 2
    assert rows[rows["phase"] == "budget"]["images"].eq(512).all()
    # final: 2 cells x 2 variants x 2 seeds, each once on val and once on test
    assert len(final) == 16 and final.groupby("split").size().to_dict() == {"test": 8, "val": 8}
    assert not rows.duplicated(imb.KEY + ["split"]).any()
    long_ = rows[rows["phase"] == "long"]  # the [long] table: 8x2+64, alone, seed 1, 2x images
    assert sorted(long_["split"]) == ["test", "val"] and long_["images"].eq(512).all()
    assert (long_["with_ce"] == False).all() and long_["seed"].eq(1).all()  # noqa: E712
    chosen = select_lr(tune).set_index(["loss", "with_ce"])["lr"]
    for r in final.itertuples():
        assert r.lr == chosen[(r.loss, r.with_ce)]
    # a final run at seed 0 in a tuning cell is that tuning run (its model reused, not retrained)
    twin = final[(final["seed"] == 0) & (final["split"] == "val")].merge(
        tune, on=["P", "K", "memory_size", "loss", "with_ce", "lr", "seed"], suffixes=("", "_t")
    )
    assert len(twin) == 4 and np.allclose(twin["mAP"], twin["mAP_t"])
    with open(tmp_path / "res/imbalance_cells.csv", newline="") as fh:
        cells = list(csv.DictReader(fh))
    assert [float(c["ratio"]) for c in cells][0] == pytest.approx(pk_pos_neg_ratio(4, 2), rel=1e-5)
    curves = pd.read_csv(tmp_path / "res/imbalance_curves.csv")
    assert (
        set(curves["phase"]) == {"tune", "budget", "final", "long"}
        and curves["mAP"].between(0, 1).all()
    )
    assert imb.main(["run", *paths]) == 0  # all done: nothing added
    assert len(pd.read_csv(tmp_path / "res/imbalance.csv")) == len(rows)
    out = subprocess.run(
        [sys.executable, "experiments/imbalance.py", "status", *paths],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    assert "tune: 8 / 8 runs" in out and "long: 1 / 1 runs" in out  # the script itself
    table = imb.tables()
    assert "| 4x2 (1:6) [32] |" in table and "| 8x2 + memory 64 (1:" in table
    assert "| chosen lr (validation) | " + f"{chosen[('drsl', True)]:g} |" in table
    assert imb.main(["plot", *paths]) == 0
    assert (tmp_path / "res/imbalance_mAP.png").stat().st_size > 10_000


def test_readme_holds_no_hand_typed_table_of_the_first_experiment():
    """The first experiment's tables are ``experiments/imbalance.py table``'s output on the
    committed results; the README, which now summarises that experiment in prose, may show
    them only as printed, character for character (no hand-typed number)."""
    imb = _runner()
    readme = (ROOT / "README.md").read_text()
    blocks = (imb.tables() + "\n\n" + imb.tables(phase="long")).split("\n\n")
    tables = [b for b in blocks if b.startswith("|")]
    assert len(tables) == 3
    shown = [b for b in readme.split("\n\n") if b.startswith("| cell (pos:neg per anchor)")]
    for table in shown:
        assert table in tables, table.splitlines()[2]


def test_a_kill_between_a_runs_curve_and_its_result_adds_no_curve_row_twice(tmp_path, monkeypatch):
    """The curve is written before the result rows; a worker killed between the two leaves the
    run open, and the next worker runs it again: its curve rows must not be appended twice."""
    import drsl.train

    imb = _runner()
    imb.set_paths(ROOT / "configs/imbalance", tmp_path / "res", tmp_path / "work")
    run = imb.Run("tune", 4, 2, 0, "drsl", True, 0.002, 0, 256)
    history = {"train": [], "eval": [{"step": s, "epoch": s, "mAP": 0.5, "R1": 0.5,
                                      "mINP": 0.2} for s in (1, 2)]}  # fmt: skip
    fake = type("Res", (), {"model": torch.nn.Linear(2, 2), "seconds": 1.0, "history": history,
                            "metrics": {"mAP": 0.5, "R1": 0.5, "mINP": 0.2}})  # fmt: skip
    monkeypatch.setattr(drsl.train, "train", lambda *a, **kw: fake)
    real = imb.append_rows

    def killed_at_the_results(path, rows, fields):
        if path == imb.ROWS:
            raise KeyboardInterrupt
        real(path, rows, fields)

    fit = make_random_data(num_ids=4, per_id=2)
    monkeypatch.setattr(imb, "append_rows", killed_at_the_results)
    with pytest.raises(KeyboardInterrupt):
        imb.execute(run, fit, None)
    assert run.key() not in imb.done()
    monkeypatch.setattr(imb, "append_rows", real)
    imb.execute(run, fit, None)
    assert run.key() in imb.done()
    curves = pd.read_csv(tmp_path / "res/imbalance_curves.csv")
    assert list(curves["step"]) == [1, 2]


def test_grid_errors_name_the_file_and_max_runs_must_be_positive(tmp_path):
    imb = _runner()
    (tmp_path / "grid.toml").write_text("val_ids = 16\ncells = [[4, 2\n")
    with pytest.raises(ValueError, match=r"grid\.toml is not valid TOML") as info:
        imb.main(["status", "--configs", str(tmp_path), "--results", str(tmp_path / "r")])
    assert str(tmp_path / "grid.toml") in str(info.value)
    with pytest.raises(SystemExit) as code:
        imb.main(["run", "--max-runs", "-1", "--configs", str(tmp_path)])
    assert code.value.code == 2
