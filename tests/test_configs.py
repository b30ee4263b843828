"""Run configs as files: configs/*.toml read, validate, reproduce the shipped
checkpoints' configs, the sweep cells, flags override files, a run records its config."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from drsl.cli import build_parser, resolve_train
from drsl.config import repo_root
from drsl.train.config import ConfigFileError, TrainConfig, config_to_toml, read_config

CONFIGS = repo_root() / "configs"


def _cfg(path) -> TrainConfig:
    return TrainConfig(**read_config(path)["train"]).validate()


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.toml")), ids=lambda p: p.name)
def test_every_config_file_reads(path):
    """Run configs validate; the two grids (not run configs) hold what the scripts read."""
    import tomllib

    if path.name == "grid.toml" and path.parent.name == "sweep":
        assert set(tomllib.loads(path.read_text())) == {"budget", "cells", "losses", "seeds"}
    elif path.name == "grid.toml":  # the decisive experiment's (experiments/imbalance.py)
        keys = {"val_ids", "budget", "warmup_fraction", "cells", "tune_cells", "losses"}
        keys |= {"with_ce", "lrs", "seeds", "budget_check", "long"}
        assert set(tomllib.loads(path.read_text())) == keys
    elif path.name == "sensitivity.toml":
        for spec in tomllib.loads(path.read_text()).values():
            assert set(spec) == {"cells", "losses", "values"}
    else:
        _cfg(path)  # unknown keys and bad types raise


@pytest.mark.parametrize("name", ["ce_drsl", "ce_triplet"])
def test_shipped_checkpoint_configs(name):
    """configs/<name>.toml is exactly the config stored in data/checkpoints/<name>.pt, and it
    runs as train_checkpoints.sh ran it (one CPU thread into runs/ckpt_<name>)."""
    ck = torch.load(repo_root() / f"data/checkpoints/{name}.pt", weights_only=True)
    assert _cfg(CONFIGS / f"{name}.toml").to_dict() == ck["config"]
    argv = ["train", "--config", str(CONFIGS / f"{name}.toml")]
    cfg, run = resolve_train(build_parser().parse_args(argv))
    assert cfg.to_dict() == ck["config"]
    assert run["threads"] == 1 and run["device"] == "cpu"
    assert run["out"] == Path(f"runs/ckpt_{name}")


def test_flags_override_the_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('loss = "ce+triplet"\nP = 8\nloss_kwargs = {margin = 0.5}\n[run]\nthreads = 2\n')
    argv = ["train", "--config", str(f), "-P", "4", "--loss-arg", "swap=true", "--threads", "1"]
    cfg, run = resolve_train(build_parser().parse_args(argv))
    assert (cfg.loss, cfg.P, cfg.K) == ("ce+triplet", 4, 4)
    assert cfg.loss_kwargs == {"margin": 0.5, "swap": True}
    assert run["threads"] == 1 and run["out"] == Path("runs/c")


def test_inherit_and_errors(tmp_path):
    (tmp_path / "base.toml").write_text("lr = 0.002\nP = 8\n")
    (tmp_path / "cell.toml").write_text('inherit = "base.toml"\nP = 32\n')
    assert read_config(tmp_path / "cell.toml")["train"] == {"lr": 0.002, "P": 32}
    (tmp_path / "loop.toml").write_text('inherit = "loop.toml"\n')
    with pytest.raises(ConfigFileError, match="inherits itself"):
        read_config(tmp_path / "loop.toml")
    (tmp_path / "bad.toml").write_text("lr = \n")
    with pytest.raises(ConfigFileError, match="not valid TOML"):
        read_config(tmp_path / "bad.toml")
    (tmp_path / "key.toml").write_text("[run]\nbogus = 1\n")
    with pytest.raises(ConfigFileError, match=r"run\.bogus"):
        read_config(tmp_path / "key.toml")
    with pytest.raises(ConfigFileError, match="is a directory"):
        read_config(tmp_path)


def test_toml_round_trip(tmp_path):
    cfg = TrainConfig(loss="ce+drsl_rank", loss_kwargs={"delta": 0.5, "smoothing": "hard"},
                      max_steps=7, lr=3.2e-2)  # fmt: skip
    f = tmp_path / "x.toml"
    f.write_text(config_to_toml(cfg, run={"out": "runs/x", "threads": 1, "data": None}))
    back = read_config(f)
    assert TrainConfig(**back["train"]) == cfg
    assert back["run"] == {"out": "runs/x", "threads": 1}


def test_a_run_records_its_config(tmp_path):
    from drsl.train import make_random_data, train

    cfg = TrainConfig(loss="ce+triplet", P=3, K=2, num_epochs=1, base_width=2, height=16,
                      width=8, warmup_steps=0, loss_kwargs={"margin": 0.2})  # fmt: skip
    with torch.random.fork_rng():
        train(cfg, make_random_data(9, 2), out_dir=tmp_path, progress=False)
    assert _cfg(tmp_path / "config.toml") == cfg


def test_sweep_cells_are_the_sweeps_runs():
    """configs/sweep/p<P>_k<K>.toml is base.toml plus the cell's P, K and steps: the very
    config experiments/sweep.py trains (loss and seed added)."""
    spec = importlib.util.spec_from_file_location("sweep", repo_root() / "experiments/sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    base = sweep.base_config()
    assert (base.base_width, base.lr, base.eval_every) == (8, 2e-3, 0)
    for P, K in sweep.SETTINGS:
        steps = max(1, round(sweep.BUDGET / (P * K)))
        want = sweep.cell_config(base, P=P, K=K, loss="ce+drsl", seed=1, steps=steps)
        got = TrainConfig(**{**read_config(sweep.cell_file(P, K))["train"], "loss": "ce+drsl",
                             "seed": 1})  # fmt: skip
        assert got == want, (P, K)
