"""Fault injection: SIGKILL a training at random moments, again and again, then
resume; the result must equal an uninterrupted run and no temporary file may be left.

The child processes are forked from the test process (torch already imported, one thread),
so a kill costs milliseconds instead of an interpreter start. Checkpoints are written every
step, so a good share of the kills land inside a checkpoint or log write; the test counts
those (a temporary file present right after the kill) and reports the counts.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time

import pytest
import torch

from drsl.data.images import make_random_data
from drsl.train import TrainConfig, train

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

KILLS = 16


def _config() -> TrainConfig:
    return TrainConfig(loss="ce+drsl", P=3, K=2, num_epochs=8, base_width=2, height=16, width=8,
                       warmup_steps=2, eval_every=2, checkpoint_every=1, seed=5)  # fmt: skip


def _child(out: str) -> None:  # pragma: no cover - runs in the forked child
    torch.set_num_threads(1)
    data = make_random_data(num_ids=9, per_id=3, height=16, width=8)
    train(_config(), data, out_dir=out, progress=False)
    os._exit(0)


def _temps(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name or ".old-" in p.name)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_random_sigkills_then_resume_equal_an_uninterrupted_run(tmp_path):
    data = make_random_data(num_ids=9, per_id=3, height=16, width=8)
    t0 = time.perf_counter()
    ref = train(_config(), data, out_dir=tmp_path / "ref", progress=False)
    one_run = time.perf_counter() - t0
    out = tmp_path / "killed"
    rng = random.Random(12)
    ctx = mp.get_context("fork")
    tried = mid_write = finished_early = 0
    for _ in range(KILLS):
        child = ctx.Process(target=_child, args=(str(out),))
        child.start()
        time.sleep(rng.uniform(0.0, 0.25 * one_run))
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
            tried += 1
        else:
            finished_early += 1
        child.join()
        if out.is_dir() and _temps(out):
            mid_write += 1
        if finished_early:
            break  # the run completed between kills: nothing left to interrupt
    res = train(_config(), data, out_dir=out, progress=False)
    print(f"\nfault injection: {tried} SIGKILLs, {mid_write} during a write, "
          f"{finished_early} child finished first; one run {one_run:.2f} s")  # fmt: skip
    assert tried >= KILLS // 2
    ref_sd, res_sd = ref.model.state_dict(), res.model.state_dict()
    assert ref_sd.keys() == res_sd.keys()
    assert all(torch.equal(ref_sd[k], res_sd[k]) for k in ref_sd)
    for name in ("train_log.csv", "eval_log.csv"):
        assert (out / name).read_text() == (tmp_path / "ref" / name).read_text()
    assert res.history == ref.history and res.metrics == ref.metrics
    assert _temps(out) == []
    assert not (tmp_path / ".killed.lock").exists()  # released by the last, clean run
