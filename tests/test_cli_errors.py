"""The error policy, in one place: every user error through the real command line (a subprocess
each) is one line on stderr naming the culprit and the fix, no traceback, and the documented exit
status (``drsl.cli``: 2 for a user error, 1 for a diverged run or a failed write). The
documented statuses that need an injected fault are tested where the fault is made: a full disk
(1) in ``tests/test_disk_full.py``, SIGTERM (143) and Ctrl-C (130) in ``tests/test_signals.py``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_checkpoint_safety import craft
from test_cli import write_market

from drsl.fsutil import lock_folder

IMBALANCE = str(Path(__file__).resolve().parents[1] / "experiments" / "imbalance.py")
TINY = ["-P", "3", "-K", "2", "--epochs", "1", "--base-width", "2", "--height", "32",
        "--width", "16", "--device", "cpu", "--threads", "1", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Build every broken input, run all the commands at once, return their results."""
    root = tmp_path_factory.mktemp("cli_errors")
    good = write_market(root / "good")
    jpgs = sorted((good / "bounding_box_train").glob("*.jpg"))
    trunc = root / "truncated"
    shutil.copytree(good, trunc)
    t = trunc / "bounding_box_train" / jpgs[3].name
    t.write_bytes(t.read_bytes()[:200])
    empty = root / "empty"
    shutil.copytree(good, empty)
    (empty / "bounding_box_train" / jpgs[5].name).write_bytes(b"")
    (empty / "bounding_box_train" / jpgs[6].name).write_bytes(b"")
    (root / "a_file").write_text("not a folder")
    damaged = root / "damaged"
    damaged.mkdir()
    (damaged / "last.pt").write_bytes(b"PK\x03\x04 half a zip")
    (root / "ckdir").mkdir()
    (root / "bad.toml").write_text("lr = 0.002\nbogus_key = 1\n")
    locked = root / "locked"
    data = ["--data", str(good)]
    ck = _checkpoints(root, good)
    symlinked = root / "symlinked"
    shutil.copytree(good, symlinked)
    broken = symlinked / "bounding_box_train" / "0001_c1s1_999999_00.jpg"
    broken.symlink_to(root / "gone.jpg")
    (root / "fast_no.toml").write_text('P = 3\n[run]\nfast = "no"\n')
    (root / "threads.toml").write_text("P = 3\n[run]\nthreads = 1.5\n")
    grid = root / "grid"
    grid.mkdir()
    (grid / "grid.toml").write_text("cells = [[4, 2\n")
    commands = {
        "truncated jpeg": (["train", "--data", str(trunc), *TINY, "--out", str(root / "r1")],
                           2, [str(t), "unreadable"]),
        "zero-byte jpeg": (["train", "--data", str(empty), *TINY, "--out", str(root / "r2")],
                           2, [jpgs[5].name, "1 other"]),
        "--out is a file": (["train", *data, *TINY, "--out", str(root / "a_file")],
                            2, [str(root / "a_file"), "folder"]),
        "damaged last.pt": (["train", *data, *TINY, "--out", str(damaged)],
                            2, [str(damaged / "last.pt"), "--no-resume"]),
        "checkpoint is a directory": (["eval", str(root / "ckdir"), *data],
                                      2, [str(root / "ckdir"), "is a directory"]),
        "checkpoint damaged": (["eval", str(damaged / "last.pt"), *data],
                               2, ["not a readable checkpoint"]),
        "data is a file": (["train", "--data", str(root / "a_file"), *TINY],
                           2, [str(root / "a_file"), "is a file"]),
        "folder in use": (["train", *data, *TINY, "--out", str(locked)],
                          2, [str(locked), f"process {os.getpid()}"]),
        "config unknown key": (["train", "--config", str(root / "bad.toml"), *TINY],
                               2, ["bogus_key", "valid"]),
        "config missing": (["train", "--config", str(root / "nope.toml")],
                           2, ["config file not found"]),
        "diverged": (["train", *data, *TINY, "--lr", "1e6", "--epochs", "30",
                      "--warmup-steps", "0", "--eval-every", "0", "--out", str(root / "div")],
                     1, ["at step", "lower the learning rate"]),
        "checkpoint runs code": (["eval", str(ck["crafted"]), *data],
                                 2, [str(ck["crafted"]), "refused", "loaded as data"]),
        "last.pt runs code": (["train", *data, *TINY, "--out", str(ck["crafted_run"])],
                              2, [str(ck["crafted_run"] / "last.pt"), "refused", "--no-resume"]),
        "checkpoint lacks num_classes": (["eval", str(ck["no_classes"]), *data],
                                         2, [str(ck["no_classes"]), "no num_classes"]),
        "checkpoint config differs": (["eval", str(ck["other_width"]), *data],
                                      2, [str(ck["other_width"]), "do not fit", "size mismatch"]),
        "last.pt lacks rng": (["train", *data, *TINY, "--out", str(ck["no_rng_run"])],
                              2, [str(ck["no_rng_run"] / "last.pt"), "no rng", "--no-resume"]),
        "seed -1": (["train", *data, *TINY, "--seed=-1"], 2, ["seed must be an integer >= 0"]),
        "config fast = 'no'": (["train", "--config", str(root / "fast_no.toml"), *TINY],
                               2, ["fast_no.toml", "fast must be bool"]),
        "config threads = 1.5": (["train", "--config", str(root / "threads.toml"), *TINY],
                                 2, ["threads.toml", "threads must be int"]),
        "DRSL_DATA is a file": (["train", "--fast", *TINY], 2, ["DRSL_DATA=", "is a file"]),
        "broken symlink image": (["train", "--data", str(symlinked), *TINY,
                                  "--out", str(root / "r3")], 2, [str(broken), "symlink"]),
        "grid.toml invalid": ([IMBALANCE, "status", "--configs", str(grid), "--results",
                               str(root / "res")], 2, [str(grid / "grid.toml"), "not valid TOML"]),
        "imbalance --max-runs -1": ([IMBALANCE, "run", "--max-runs", "-1"],
                                    2, ["--max-runs", "must be >= 1"]),
    }  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    envs = {"DRSL_DATA is a file": {**env, "DRSL_DATA": str(root / "a_file")}}
    results = {}
    with lock_folder(locked, what="run folder"):
        names = list(commands)
        for start in range(0, len(names), 8):  # a few at a time: each process imports torch
            procs = {
                name: subprocess.Popen(
                    _command(commands[name][0]),
                    env=envs.get(name, env),
                    text=True,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )  # fmt: skip
                for name in names[start : start + 8]
            }
            for name, p in procs.items():
                out, err = p.communicate(timeout=600)
                results[name] = (p.returncode, out, err)
    assert not (root / "pwned").exists(), "a crafted checkpoint ran its code"
    return {name: (results[name], code, words) for name, (_, code, words) in commands.items()}


def _command(argv: list[str]) -> list[str]:
    """``python -m drsl ARGS``, or ``python experiments/X.py ARGS`` for an experiment script."""
    if argv[0].endswith(".py"):
        return [sys.executable, *argv]
    return [sys.executable, "-m", "drsl", *argv]


def _checkpoints(root, good):
    """A real model.pt and last.pt of a tiny run, and damaged or crafted copies of them."""
    from drsl.cli import main

    run = root / "tiny_run"
    assert main(["train", "--data", str(good), *TINY, "--out", str(run)]) == 0
    model = torch.load(run / "model.pt", weights_only=True)
    state = torch.load(run / "last.pt", weights_only=True)
    out = {"crafted": craft(root / "crafted.pt", root / "pwned", model)}
    out["crafted_run"] = root / "crafted_run"
    out["crafted_run"].mkdir()
    craft(out["crafted_run"] / "last.pt", root / "pwned", state)
    out["no_classes"] = root / "no_classes.pt"
    torch.save({k: v for k, v in model.items() if k != "num_classes"}, out["no_classes"])
    out["other_width"] = root / "other_width.pt"
    torch.save({**model, "config": {**model["config"], "base_width": 4}}, out["other_width"])
    out["no_rng_run"] = root / "no_rng_run"
    out["no_rng_run"].mkdir()
    torch.save({k: v for k, v in state.items() if k != "rng"}, out["no_rng_run"] / "last.pt")
    return out


CASES = ["truncated jpeg", "zero-byte jpeg", "--out is a file", "damaged last.pt",
         "checkpoint is a directory", "checkpoint damaged", "data is a file", "folder in use",
         "config unknown key", "config missing", "diverged", "checkpoint runs code",
         "last.pt runs code", "checkpoint lacks num_classes", "checkpoint config differs",
         "last.pt lacks rng", "seed -1", "config fast = 'no'", "config threads = 1.5",
         "DRSL_DATA is a file", "broken symlink image", "grid.toml invalid",
         "imbalance --max-runs -1"]  # fmt: skip
#: the experiment scripts answer in their own name
PREFIX = {"imbalance --max-runs -1": "imbalance.py: error: "}


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_user_error_is_one_line(cases, name):
    (code, out, err), want_code, words = cases[name]
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith(PREFIX.get(name, "drsl: error: ")), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert code == want_code, (code, err)
    assert "trained" not in out
