"""Tests of the command line: --help, one-line errors on bad values and paths, a short run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drsl.cli import main


def write_market(root, num_train=6, num_test=3, per_id=4, seed=0):
    """A tiny Market-1501-layout folder of random images (each identity one colour template)."""
    rng = np.random.default_rng(seed)
    for sub in ("bounding_box_train", "bounding_box_test", "query"):
        (root / sub).mkdir(parents=True)
    for pid in range(1, num_train + num_test + 1):
        tmpl = rng.integers(0, 200, size=(32, 16, 3))
        for i in range(per_id + 1):
            img = (tmpl + rng.integers(0, 55, size=tmpl.shape)).astype(np.uint8)
            cam = 1 + i % 2
            if pid <= num_train:
                sub = "bounding_box_train"
            else:
                sub = "query" if i == 0 else "bounding_box_test"
                cam = 1 if i == 0 else 2
            name = f"{pid:04d}_c{cam}s1_{i:06d}_00.jpg"
            Image.fromarray(img).save(root / sub / name)
    return root


# tiny models: one torch thread for the whole module (the fixture is in conftest.py)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    return write_market(tmp_path_factory.mktemp("market") / "Market-1501")


def run_err(capsys, argv):
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.err.strip()


@pytest.mark.parametrize(
    "argv, match",
    [
        (["train", "-P", "1"], "P must be >= 2"),
        (["train", "-K", "1"], "K must be >= 2"),
        (["train", "--loss", "bogus"], "unknown loss 'bogus'"),
        (["train", "--lr", "-1"], "lr must be"),
        (["train", "-P", "x"], "invalid int value"),
        (["train", "--data", "/no/such/folder"], "dataset folder not found"),
        (["train", "--device", "warp9"], "invalid device"),
        (["train", "--loss-arg", "delta"], "KEY=VALUE"),
        (["eval", "/no/such/model.pt"], "checkpoint not found"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_cli_errors_are_one_line(capsys, argv, match):
    code, err = run_err(capsys, argv)
    assert code == 2
    assert match in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_cli_bad_checkpoint_file(capsys, tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"garbage")
    code, err = run_err(capsys, ["eval", str(bad)])
    assert code == 2 and "not a readable checkpoint" in err


def test_an_experiment_script_shares_the_error_policy(capsys, tmp_path):
    """Experiments run as ``python experiments/X.py`` and fail like ``drsl`` does: one line."""

    def script_main(argv):
        raise FileNotFoundError(f"{tmp_path / 'grid.toml'} not found ({len(argv)} argument)")

    code = main(["x"], command=script_main)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"drsl: error: {tmp_path / 'grid.toml'} not found (1 argument)"
    assert main(["run"], command=lambda argv: 0) == 0


def test_experiments_are_scripts_of_the_checkout_not_subcommands(capsys):
    code, err = run_err(capsys, ["imbalance", "status"])
    assert code == 2 and "invalid choice: 'imbalance'" in err
    out = subprocess.run(
        [sys.executable, "experiments/imbalance.py", "status", "--configs", "/no/such/configs"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.returncode == 2 and "/no/such/configs/grid.toml" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_help_explains_every_option():
    from drsl.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, sp in sub.choices.items():
        for action in sp._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} lacks help"


def test_python_m_drsl_help_runs():
    out = subprocess.run(
        [sys.executable, "-m", "drsl", "train", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "--loss" in out.stdout and "-P" in out.stdout


def test_cli_train_lowers_loss_then_eval(capsys, market, tmp_path):
    out = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(market),
        "--loss",
        "ce+drsl",
        "-P",
        "3",
        "-K",
        "2",
        "--epochs",
        "12",
        "--base-width",
        "4",
        "--height",
        "32",
        "--width",
        "16",
        "--lr",
        "3e-3",
        "--warmup-steps",
        "2",
        "--eval-every",
        "0",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-progress",
        "--loss-arg",
        "delta=0.2",
    ]
    assert main(argv) == 0
    assert "trained ce+drsl" in capsys.readouterr().out
    rows = (out / "train_log.csv").read_text().splitlines()
    header, values = rows[0].split(","), [r.split(",") for r in rows[1:]]
    losses = [float(v[header.index("loss")]) for v in values]
    k = max(2, len(losses) // 4)
    assert np.mean(losses[-k:]) < np.mean(losses[:k])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["config"]["loss_kwargs"] == {"delta": 0.2}
    assert main(["eval", str(out / "model.pt"), "--data", str(market), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["mAP"] == pytest.approx(saved["eval"][-1]["mAP"], abs=1e-6)
    # the same command again resumes from the finished state: no new steps
    assert main(argv) == 0
    assert len((out / "train_log.csv").read_text().splitlines()) == len(rows)
