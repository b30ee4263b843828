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
    """Run configs validate; the grids and the plan (not run configs) hold what the scripts read."""
    import tomllib

    if path.name == "grid.toml" and path.parent.name == "sweep":
        assert set(tomllib.loads(path.read_text())) == {"budget", "cells", "losses", "seeds"}
    elif path.name == "grid.toml":  # the decisive experiment's (experiments/imbalance.py)
        keys = {"val_ids", "budget", "warmup_fraction", "cells", "tune_cells", "losses"}
        keys |= {"with_ce", "lrs", "seeds", "budget_check", "long"}
        assert set(tomllib.loads(path.read_text())) == keys
    elif path.name == "plan.toml":  # the decisive plan (experiments/decisive.py reads it)
        assert {"cells", "losses", "seeds", "endpoints", "estimate"} <= set(
            tomllib.loads(path.read_text())
        )
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
    from drsl.data.images import make_random_data
    from drsl.train import train

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


@pytest.mark.parametrize(
    "run, words",
    [
        ('threads = "x"', ["threads must be int"]),
        ("threads = 1.5", ["threads must be int"]),
        ("threads = 0", ["threads must be >= 1"]),
        ("threads = true", ["threads must be int"]),
        ("out = 123", ["out must be str"]),
        ('out = ["a", "b"]', ["out must be str"]),
        ("data = 5", ["data must be str"]),
        ('fast = "no"', ["fast must be bool", "without quotes"]),
        ("fast = 0", ["fast must be bool"]),
        ('device = ""', ["device must not be empty"]),
        ("world_size = -2", ["world_size must be >= 1"]),
    ],
)
def test_run_table_values_are_typed(tmp_path, run, words):
    """Every [run] key has a type; a quoted "no" is not taken for true (it trained the small
    set without a word), and a wrong type is one line naming the file and the key."""
    f = tmp_path / "c.toml"
    f.write_text(f"P = 8\n[run]\n{run}\n")
    with pytest.raises(ConfigFileError) as info:
        read_config(f)
    msg = str(info.value)
    assert "c.toml" in msg and "\n" not in msg, msg
    for w in words:
        assert w in msg, msg


def test_run_must_be_a_table(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('run = "fast"\n')
    with pytest.raises(ConfigFileError, match=r"run must be a table"):
        read_config(f)


def test_run_table_of_the_right_types_reads(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[run]\nout = "runs/x"\ndata = "d"\nfast = false\ndevice = "cpu"\nthreads = 2\n')
    assert read_config(f)["run"] == {"out": "runs/x", "data": "d", "fast": False,
                                     "device": "cpu", "threads": 2}  # fmt: skip


@pytest.mark.parametrize("seed, words", [(-1, "seed must be an integer >= 0"),
                                         (2**32, "seed must be < 2**32")])  # fmt: skip
def test_seed_out_of_range_is_refused_before_any_work(seed, words):
    """--seed=-1 used to pass, write config.toml and fail seconds later in numpy's seeding."""
    with pytest.raises(ValueError, match=words.replace("*", r"\*")):
        resolve_train(build_parser().parse_args(["train", f"--seed={seed}"]))
