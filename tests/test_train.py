"""Tests of drsl.train: exact resume after a kill, atomic saves, config checks, load-or-train."""

from __future__ import annotations

import pytest
import torch

from drsl.data.images import make_random_data
from drsl.train import (
    TrainConfig,
    atomic_save,
    build_criterion,
    load_model,
    load_or_train,
    select_device,
    train,
)

# tiny models: one torch thread for the whole module (the fixture is in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


class Kill(RuntimeError):
    """Raised by the test's on_step hook to simulate a kill."""


def tiny_config(**kw) -> TrainConfig:
    base = dict(
        loss="ce+triplet",
        P=3,
        K=2,
        num_epochs=3,
        base_width=2,
        height=16,
        width=8,
        warmup_steps=2,
        dtype="float64",
        eval_every=1,
        checkpoint_every=3,
        seed=3,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def data():
    return make_random_data(num_ids=9, per_id=3, height=16, width=8)


def _killer(at: int):
    def hook(step, parts):
        if step == at:
            raise Kill(f"killed at step {at}")

    return hook


@pytest.mark.parametrize("loss", ["ce+triplet", "ce+drsl"])
def test_resume_after_kill_gives_identical_weights(tmp_path, data, loss):
    cfg = tiny_config(loss=loss)
    ref = train(cfg, data, out_dir=tmp_path / "ref", progress=False)
    n = len(ref.history["train"])
    assert n >= 6
    out = tmp_path / "killed"
    # two kills: one right after a periodic checkpoint + 1, one later; each resume replays
    for at in (4, n - 1):
        with pytest.raises(Kill):
            train(cfg, data, out_dir=out, progress=False, on_step=_killer(at))
    res = train(cfg, data, out_dir=out, progress=False)
    ref_sd, res_sd = ref.model.state_dict(), res.model.state_dict()
    assert ref_sd.keys() == res_sd.keys()
    for k in ref_sd:
        torch.testing.assert_close(res_sd[k], ref_sd[k], rtol=0, atol=0, msg=k)
    assert [r["loss"] for r in res.history["train"]] == [r["loss"] for r in ref.history["train"]]
    assert res.history["eval"] == ref.history["eval"]
    assert (out / "train_log.csv").read_text() == (tmp_path / "ref" / "train_log.csv").read_text()


def test_resume_is_not_a_restart(tmp_path, data):
    """A resumed run must not replay from step 0: the second run sees only the missing steps."""
    cfg = tiny_config()
    with pytest.raises(Kill):
        train(cfg, data, out_dir=tmp_path, progress=False, on_step=_killer(4))
    seen = []
    train(cfg, data, out_dir=tmp_path, progress=False, on_step=lambda s, p: seen.append(s))
    assert seen[0] == 4  # last checkpoint at step 3
    assert seen == list(range(4, seen[-1] + 1))


def test_resume_with_other_config_refuses(tmp_path, data):
    train(tiny_config(num_epochs=1), data, out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="different config"):
        train(tiny_config(num_epochs=1, lr=0.5), data, out_dir=tmp_path, progress=False)


def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    path = atomic_save({"a": 1}, tmp_path / "x.pt")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"b": Unpicklable()}, path)
    assert torch.load(path, weights_only=True) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]  # no temporary file left


def test_training_lowers_the_loss(data):
    cfg = tiny_config(
        dtype="float32", num_epochs=12, checkpoint_every=0, eval_every=0, lr=3e-3, base_width=4
    )
    res = train(cfg, data, progress=False)
    losses = [r["loss"] for r in res.history["train"]]
    k = max(2, len(losses) // 4)
    assert sum(losses[-k:]) / k < sum(losses[:k]) / k
    assert set(res.metrics) >= {"mAP", "R1", "mINP"}


def test_load_or_train_trains_once_then_loads(tmp_path, data):
    cfg = tiny_config(num_epochs=1)
    ck = tmp_path / "m.pt"
    first = load_or_train(cfg, ck, data, progress=False)
    assert not first.loaded and ck.is_file()
    calls = []
    second = load_or_train(cfg, ck, lambda: calls.append(1), progress=False)
    assert second.loaded and calls == []
    assert second.config == cfg and second.metrics == first.metrics
    x = data.query.images[:2]
    from drsl.train import embed

    torch.testing.assert_close(embed(second.model, x), embed(first.model, x).float())


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_model(bad)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"P": 1}, "P must be"),
        ({"K": 1}, "K must be"),
        ({"loss": "nope"}, "unknown loss"),
        ({"loss": "ce+nope"}, "unknown loss"),
        ({"lr": 0.0}, "lr must be"),
        ({"dtype": "float16"}, "dtype"),
        ({"angle_source": "x"}, "angle_source"),
    ],
)
def test_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw).validate()


def test_config_round_trip():
    cfg = TrainConfig(loss="ce+drsl_rank", loss_kwargs={"delta": 0.5})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown TrainConfig"):
        TrainConfig.from_dict({"bogus": 1})


def test_criterion_parts_and_angle_source(data):
    from drsl.models import ReIDNet

    torch.manual_seed(0)
    net = ReIDNet(data.num_classes, base_width=2)
    x = torch.randn(9, 3, 16, 8)
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])  # K = 3: two positives to sort per anchor
    out = net(x)
    for loss in ("ce+drsl", "drsl", "ce"):
        total, parts = build_criterion(TrainConfig(loss=loss))(out, y)
        assert torch.isfinite(total) and parts["loss"] == pytest.approx(float(total.detach()))
        assert ("ce" in parts) == loss.startswith("ce")
        assert ("metric" in parts) == (loss != "ce")
    bn = build_criterion(TrainConfig(loss="drsl", angle_source="bn"))(out, y)[1]["metric"]
    ft = build_criterion(TrainConfig(loss="drsl", angle_source="features"))(out, y)[1]["metric"]
    assert bn != pytest.approx(ft)  # the angle targets really come from different tensors


def test_select_device():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(None).type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="invalid device"):
        select_device("nodevice")


@pytest.mark.slow
def test_sweep_script_is_resumable(tmp_path):
    """experiments/sweep.py appends rows and skips the runs its CSV already holds."""
    import importlib.util

    from drsl.config import repo_root

    spec = importlib.util.spec_from_file_location("sweep", repo_root() / "experiments/sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    out = tmp_path / "sweep.csv"
    argv = [
        "--fast",
        "--out",
        str(out),
        "--budget",
        "64",
        "--losses",
        "ce+drsl",
        "--seeds",
        "0",
        "--max-runs",
        "1",
    ]
    assert sweep.main(argv) == 0
    assert sweep.main(argv) == 0  # the next missing run, not the same one again
    rows = out.read_text().splitlines()
    assert len(rows) == 3 and rows[1] != rows[2]
    fp = rows[1].split(",")[-1]
    assert fp.startswith("drsl.data.synth-v")
    keys = sweep.done_keys(out, 64, 8, 2e-3, fp)
    assert len(keys) == 2 and all(k[2] == "ce+drsl" for k in keys)
    assert sweep.done_keys(out, 128, 8, 2e-3, fp) == set()  # another budget: nothing done
    assert sweep.done_keys(out, 64, 8, 2e-3, "other-data") == set()
    assert (tmp_path / "sweep_mAP.png").is_file() and (tmp_path / "sweep_summary.csv").is_file()


def _load_experiment(name: str):
    import importlib.util

    from drsl.config import repo_root

    path = repo_root() / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sensitivity_plans_and_reuses_sweep_runs(tmp_path):
    """The studies' runs: margins become the right keyword, a sweep run counts for every
    study it belongs to, and no run is planned twice within a study."""
    import pandas as pd

    sens = _load_experiment("sensitivity")
    assert sens.kwargs_str("ce+drsl", 0.1) == "delta=0.1"
    assert sens.kwargs_str("ce+triplet", 1.0) == "margin=1"
    assert sens.kwargs_str("ce+drsl", 0.3) == ""  # the default is written as no keyword
    with pytest.raises(ValueError, match="no margin"):
        sens.kwargs_str("ce+smooth_ap", 0.1)
    for study in sens.STUDIES:
        plans = sens.planned(study, budget=1024, lr=2e-3, seeds=[0, 1])
        keys = [sens.key(p) for p in plans]
        assert len(set(keys)) == len(plans)
        shards = [sens.shard_of(k, 3) for k in keys]  # stable, and every run in one shard
        assert set(shards) == {0, 1, 2} and shards == [sens.shard_of(k, 3) for k in keys]
    margin = sens.planned("margin", budget=1024, lr=2e-3, seeds=[0])
    assert {(p["loss"], p["loss_kwargs"]) for p in margin if p["P"] == 4} == {
        ("ce+drsl", "delta=0.1"),
        ("ce+drsl", ""),
        ("ce+drsl", "delta=1"),
        ("ce+triplet", "margin=0.1"),
        ("ce+triplet", ""),
        ("ce+triplet", "margin=1"),
    }
    # a sweep row (no loss_kwargs column): 4 x 4, 1024 / 16 = 64 steps, lr 2e-3, default margin
    row = dict(P=4, K=4, ratio=0.25, loss="ce+drsl", seed=0, steps=64, images=1024,
               budget=1024, base_width=8, lr=0.002, mAP=0.5, R1=0.6, mINP=0.2, seconds=1.0,
               data="d1")  # fmt: skip
    sweep_csv = tmp_path / "sweep.csv"
    pd.DataFrame([row, {**row, "data": "d2"}, {**row, "base_width": 16}]).to_csv(sweep_csv)
    other = tmp_path / "sens.csv"
    pd.DataFrame([{**row, "loss_kwargs": "delta=0.1", "mAP": 0.4}]).to_csv(other, index=False)
    runs = sens.load_runs([sweep_csv, other], data="d1", base_width=8)
    assert len(runs) == 2  # other data and other width dropped
    studies = sens.study_rows(runs, budget=1024, lr=2e-3, seeds=[0])
    got = sorted(zip(studies["study"], studies["value"], studies["mAP"], strict=True))
    assert got == [("lr", 2e-3, 0.5), ("margin", 0.1, 0.4), ("margin", 0.3, 0.5)]


@pytest.mark.slow
def test_sensitivity_script_runs_and_resumes(tmp_path):
    """experiments/sensitivity.py trains the missing runs with their keywords, appends them,
    skips them next time, and writes the study table, the summary and the figures."""
    import pandas as pd

    sens = _load_experiment("sensitivity")
    out = tmp_path / "sens.csv"
    argv = ["--fast", "--out", str(out), "--sweep-csv", str(tmp_path / "none.csv"),
            "--budget", "32", "--study", "margin", "--seeds", "0", "--max-runs", "2"]  # fmt: skip
    assert sens.main(argv) == 0
    assert sens.main(argv) == 0  # the next two missing runs
    runs = pd.read_csv(out, keep_default_na=False)
    assert list(runs["loss_kwargs"]) == ["margin=0.1", "", "margin=1", "delta=0.1"]
    assert set(runs["steps"]) == {2}  # 32 images in 4 x 4 batches
    studies = pd.read_csv(tmp_path / "sens_studies.csv")
    margin = studies[studies["study"] == "margin"]
    assert sorted(margin["value"]) == [0.1, 0.1, 0.3, 1.0]
    # the default-margin triplet run is also the lr study's 2e-3 point: shared, not rerun
    lr = studies[studies["study"] == "lr"]
    assert len(lr) == 1 and lr["value"].iloc[0] == 2e-3 and lr["loss"].iloc[0] == "ce+triplet"
    summary = pd.read_csv(tmp_path / "sens_summary.csv")
    assert set(summary["n"]) == {1}
    assert (tmp_path / "sens_mAP.png").is_file()
    with pytest.raises(SystemExit):
        sens.main(["--shard", "2/2"])


def test_plot_sensitivity_and_grouped_table():
    import pandas as pd

    from drsl.plotting import plot_sensitivity, sweep_table

    df = pd.DataFrame({"value": [1e-3, 1e-3, 1e-2, 1e-3, 1e-2], "P": [4, 4, 4, 32, 32],
                       "K": 4, "ratio": [0.25, 0.25, 0.25, 0.024, 0.024], "loss": "a",
                       "seed": [0, 1, 0, 0, 0], "mAP": [0.1, 0.3, 0.5, 0.2, 0.4]})  # fmt: skip
    t = sweep_table(df, metrics=("mAP",), by=("value", "P", "K", "ratio", "loss"))
    assert len(t) == 4 and t["n"].tolist() == [2, 1, 1, 1]
    fig = plot_sensitivity(df, param="lr")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "lr"
    assert len(ax.get_legend().get_texts()) == 2  # one line per (loss, cell)
    ys = sorted(tuple(round(float(y), 6) for y in c.lines[0].get_ydata()) for c in ax.containers)
    assert ys == [(20.0, 40.0), (20.0, 50.0)]
    with pytest.raises(ValueError, match="no runs"):
        plot_sensitivity(df.iloc[:0])
