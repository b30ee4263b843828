"""Reliability of drsl.train: final metrics after a resume, the run-folder lock,
divergence, damaged resume states, stale temporaries."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

import drsl.train.loop as loop
from drsl.data.images import make_random_data
from drsl.fsutil import FolderLockedError, lock_folder
from drsl.train import (
    CheckpointError,
    DivergenceError,
    LossGuard,
    TrainConfig,
    load_model,
    train,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kw) -> TrainConfig:
    base = dict(loss="ce+triplet", P=3, K=2, num_epochs=2, base_width=2, height=16, width=8,
                warmup_steps=2, dtype="float64", eval_every=1, checkpoint_every=3,
                seed=3)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def data():
    return make_random_data(num_ids=9, per_id=2, height=16, width=8)  # 3 steps per epoch


def test_final_metrics_after_a_stop_before_the_final_evaluation(tmp_path, data, monkeypatch):
    """--checkpoint-every divides the steps, the run stops between the last
    checkpoint and the final evaluation; the same command again must evaluate the final model
    (before the fix it skipped the evaluation and kept the previous epoch's metrics)."""
    cfg = tiny()
    ref = train(cfg, data, out_dir=tmp_path / "ref", progress=False)
    total = len(ref.history["train"])
    assert total % cfg.checkpoint_every == 0 and ref.history["eval"][-1]["step"] == total
    real, calls = loop.evaluate, []

    def stop_at_final(model, d, **kw):
        calls.append(1)
        if len(calls) == cfg.num_epochs:  # the final evaluation
            raise KeyboardInterrupt
        return real(model, d, **kw)

    monkeypatch.setattr(loop, "evaluate", stop_at_final)
    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, out_dir=out, progress=False)
    monkeypatch.setattr(loop, "evaluate", real)
    res = train(cfg, data, out_dir=out, progress=False)
    assert res.metrics == ref.metrics
    assert res.history["eval"] == ref.history["eval"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics_step"] == total and saved["metrics"] == ref.metrics
    assert load_model(out / "model.pt").metrics == ref.metrics
    for name in ("eval_log.csv", "train_log.csv"):
        assert (out / name).read_text() == (tmp_path / "ref" / name).read_text()


def test_metrics_json_names_the_step_of_its_metrics(tmp_path, data):
    res = train(tiny(num_epochs=3, eval_every=2), data, out_dir=tmp_path, progress=False)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics_step"] == saved["step"] == len(res.history["train"]) == 9
    assert [e["step"] for e in saved["eval"]] == [6, 9]


def test_a_second_training_in_the_same_folder_fails_at_once(tmp_path, data):
    """the run folder is locked; the error names the folder and the process."""
    import os

    with lock_folder(tmp_path / "run", what="run folder"):
        with pytest.raises(FolderLockedError) as err:
            train(tiny(), data, out_dir=tmp_path / "run", progress=False)
    msg = str(err.value)
    assert str(tmp_path / "run") in msg and str(os.getpid()) in msg and "\n" not in msg
    assert not (tmp_path / "run" / "last.pt").exists()  # nothing was trained
    train(tiny(num_epochs=1), data, out_dir=tmp_path / "run", progress=False)  # free again


def test_out_dir_that_is_a_file_is_refused(tmp_path, data):
    f = tmp_path / "taken"
    f.write_text("mine")
    with pytest.raises(NotADirectoryError, match="is an existing file"):
        train(tiny(), data, out_dir=f, progress=False)
    assert f.read_text() == "mine"


def test_damaged_resume_state_suggests_no_resume(tmp_path, data):
    (tmp_path / "last.pt").write_bytes(b"\x80\x04 truncated")
    with pytest.raises(CheckpointError, match="--no-resume") as err:
        train(tiny(), data, out_dir=tmp_path, progress=False)
    assert "\n" not in str(err.value)
    res = train(tiny(num_epochs=1), data, out_dir=tmp_path, progress=False, resume=False)
    assert len(res.history["train"]) == 3


def test_stale_temporaries_are_removed_on_start(tmp_path, data):
    """temporaries of killed writers (dead pid, or the old mkstemp names)."""
    tmp_path.mkdir(exist_ok=True)
    stale = [tmp_path / "last.pt.tmp-999999999", tmp_path / "last.pt.abc123.tmp",
             tmp_path / "train_log.csv.tmp"]  # fmt: skip
    for p in stale:
        p.write_bytes(b"half")
    train(tiny(num_epochs=1), data, out_dir=tmp_path, progress=False)
    assert not any(p.exists() for p in stale)
    assert not [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_loss_guard():
    g = LossGuard()
    for s, v in enumerate([5.0, 4.0, 3.0, 0.0, 0.0, 0.0], 1):  # a loss may fall to 0 ...
        g.check(s, v)
    g.check(7, 2.0)  # ... and an ordinary batch after it is not an explosion
    with pytest.raises(DivergenceError, match="step 8"):
        g.check(8, math.nan)
    with pytest.raises(DivergenceError, match="step 9"):
        g.check(9, math.inf)
    with pytest.raises(DivergenceError, match="exploded at step 10"):
        g.check(10, 1e5)
    rebuilt = LossGuard.from_history([{"loss": v} for v in [5.0, 4.0, 3.0, 0.0, 0.0, 0.0, 2.0]])
    assert rebuilt == g  # the failed checks recorded nothing: resume rebuilds the same guard


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, data):
    """lr 1e6 drove the loss to 2e13 and the run still ended 'trained'."""
    cfg = tiny(lr=1e6, num_epochs=20, checkpoint_every=1, eval_every=0, warmup_steps=0,
               dtype="float32")  # fmt: skip
    with pytest.raises(DivergenceError, match=r"at step (\d+)") as err:
        train(cfg, data, out_dir=tmp_path, progress=False)
    msg = str(err.value)
    bad = int(re.search(r"at step (\d+)", msg).group(1))
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["step"] == bad - 1  # the step before the bad loss, nothing after it
    assert all(math.isfinite(r["loss"]) for r in state["history"]["train"])
    assert "last good checkpoint" in msg and "lower the learning rate" in msg
    assert not (tmp_path / "model.pt").exists()


def test_logs_follow_last_pt_after_a_kill_between_them(tmp_path, data, monkeypatch):
    """Found by the fault-injection test: a kill after the final last.pt but before its logs
    left an eval_log.csv without the final evaluation, and the resumed run (nothing left to
    do) kept it. The resumed run rewrites the logs from last.pt."""
    from drsl.train.run_folder import RunFolder

    cfg = tiny()
    ref = train(cfg, data, out_dir=tmp_path / "ref", progress=False)
    real, calls = RunFolder.write_logs, []

    def killed_at_the_last(self, history, extra):
        calls.append(1)
        if len(history["eval"]) == cfg.num_epochs and len(calls) > 1:
            raise KeyboardInterrupt  # last.pt holds the final state, the logs do not
        return real(self, history, extra)

    monkeypatch.setattr(RunFolder, "write_logs", killed_at_the_last)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, out_dir=out, progress=False)
    assert len((out / "eval_log.csv").read_text().splitlines()) == cfg.num_epochs  # stale
    monkeypatch.setattr(RunFolder, "write_logs", real)
    train(cfg, data, out_dir=out, progress=False)
    for name in ("eval_log.csv", "train_log.csv", "metrics.json"):
        got, want = (out / name).read_text(), (tmp_path / "ref" / name).read_text()
        if name == "metrics.json":
            got, want = json.loads(got), json.loads(want)
            got.pop("seconds"), want.pop("seconds")
        assert got == want, name
    assert ref.metrics == load_model(out / "model.pt").metrics
