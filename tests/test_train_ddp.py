"""Data-parallel training through the training loop itself: 2 gloo processes.

One launch of 2 forked processes runs (a) the loop's step function ``drsl.train.step.train_step``
with ``build_criterion``'s objective on a BatchNorm-free float64 model, whose loss and parameter
gradients must equal one process on the concatenated batch (1e-10; DRSL in both gradient modes
and each baseline, with and without CE, equal and unequal shards, and a cross-batch memory over
three steps with a warm-up); and (b) ``drsl.train.train`` itself: an uninterrupted 2-process run
against one killed twice and resumed (bit-identical weights, memory included), the world size in
every record, and evaluation broadcast from rank 0. A last test launches the real command line,
``torchrun --nproc_per_node=2 -m drsl train --fast``, for a few steps.

PyTorch's SyncBatchNorm runs on GPUs only, so a CPU run of ``ReIDNet`` (BatchNorm) over 2
processes is deterministic but not equal to one process: (b) compares 2 processes with 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from drsl.data.images import make_random_data
from drsl.explore.parallel import launch
from drsl.models import ReIDOutput
from drsl.train import CheckpointError, TrainConfig, build_criterion, train
from drsl.train.distributed import DistributedContext, wrap_model
from drsl.train.step import train_step

pytestmark = pytest.mark.usefixtures("one_thread")

ATOL = 1e-10
# (loss, rows of the 12 on rank 0): 6 = a sharded PK batch (ids 0, 1 | 2, 3), 8 = unequal
STEP_CASES = [
    ("ce+drsl", 6),
    ("ce+drsl_smooth", 6),
    ("drsl", 6),  # no CE: the classifier gets no gradient (find_unused_parameters)
    ("drsl_smooth", 6),
    ("ce+drsl_rank", 6),
    ("ce+triplet", 6),
    ("ce+triplet_soft", 6),
    ("ce+smooth_ap", 6),
    ("ce+contrastive", 6),
    ("ce+multi_similarity", 6),
    ("circle", 6),
    ("ce+drsl", 8),
    ("ce+triplet", 8),
    ("ce+smooth_ap", 8),
    ("ce+circle", 8),
]
_EQUAL = torch.arange(4).repeat_interleave(3)
_MIXED = torch.tensor([0, 0, 0, 1, 1, 1, 2, 3, 2, 2, 3, 4])
MEMORY = {"loss": "ce+drsl", "memory_size": 20, "memory_warmup": 1, "steps": 3}
# a negatives-only memory (the gathered batches stay "all"): unequal shards, the counts differ
MEMORY_NEG = {"loss": "contrastive", "memory_size": 20, "memory_warmup": 1, "steps": 3}


class _Net(nn.Module):
    """A BatchNorm-free stand-in for ReIDNet: features, BNNeck-like features, logits."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5))
        self.neck = nn.Linear(5, 5)
        self.classifier = nn.Linear(5, 5)

    def forward(self, x):
        f = self.trunk(x)
        g = self.neck(f)
        return ReIDOutput(f, g, self.classifier(g))


def _model() -> _Net:
    torch.manual_seed(0)
    return _Net().to(torch.float64)


def _batch(split: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = _EQUAL if split == 6 else _MIXED
    return torch.randn(12, 6, generator=g, dtype=torch.float64) + 0.3 * y[:, None].double(), y


def _rows(ctx: DistributedContext | None, split: int) -> slice:
    if ctx is None:
        return slice(None)
    return slice(0, split) if ctx.rank == 0 else slice(split, 12)


def _grads(model) -> dict[str, torch.Tensor]:
    return {
        n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
        for n, p in getattr(model, "module", model).named_parameters()
    }


def _steps(ctx, loss: str, split: int, steps: int = 1, memory_size: int = 0, warmup: int = 0,
           role: str = "all"):  # fmt: skip
    """``steps`` calls of the loop's train_step; each step's loss terms, gradients, weights."""
    from drsl.losses.memory import CrossBatchMemory

    cfg = TrainConfig(loss=loss, memory_size=memory_size, memory_warmup=warmup,
                      memory_role=role).validate()  # fmt: skip
    crit = build_criterion(cfg)
    model = _model()
    if ctx is not None:
        model = wrap_model(model, ctx, find_unused_parameters=not crit.use_ce)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    mem = CrossBatchMemory(memory_size) if memory_size else None
    out = []
    for step in range(steps):
        x, y = _batch(split, seed=step)
        rows = _rows(ctx, split)
        use = mem if mem is not None and step >= warmup else None
        parts = train_step(model, crit, opt, sched, x[rows], y[rows], memory=use)
        weights = {
            n: p.detach().clone() for n, p in getattr(model, "module", model).named_parameters()
        }
        out.append({"parts": parts, "grads": _grads(model), "weights": weights,
                    "memory": len(mem) if mem is not None else 0})  # fmt: skip
    return out


def _train_config(**kw) -> TrainConfig:
    base = dict(loss="ce+drsl", P=2, K=2, num_epochs=2, base_width=2, height=16, width=8,
                warmup_steps=1, eval_every=1, checkpoint_every=2, seed=4, memory_size=12,
                memory_warmup=1)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


class Kill(RuntimeError):
    pass


def _killer(at: int):
    def hook(step, parts):
        if step == at:
            raise Kill(f"killed at step {at}")

    return hook


def _runs(ctx: DistributedContext, tmp: str) -> dict:
    """An uninterrupted 2-process train() and one killed twice and resumed."""
    data = make_random_data(num_ids=8, per_id=3)
    cfg = _train_config()
    ref = train(cfg, data, out_dir=Path(tmp) / "ref", progress=False, ctx=ctx)
    n = len(ref.history["train"])
    for at in (3, n - 1):
        with pytest.raises(Kill):
            train(cfg, data, out_dir=Path(tmp) / "resumed", progress=False, ctx=ctx,
                  on_step=_killer(at))  # fmt: skip
    res = train(cfg, data, out_dir=Path(tmp) / "resumed", progress=False, ctx=ctx)
    return {
        "ref": {k: v.clone() for k, v in ref.model.state_dict().items()},
        "resumed": {k: v.clone() for k, v in res.model.state_dict().items()},
        "history": ref.history,
        "resumed_history": res.history,
        "world_size": ref.world_size,
    }


def _worker(ctx: DistributedContext, tmp: str) -> dict:
    out = {"steps": [_steps(ctx, loss, split) for loss, split in STEP_CASES]}
    m = MEMORY
    out["memory"] = _steps(ctx, m["loss"], 6, m["steps"], m["memory_size"], m["memory_warmup"])
    m = MEMORY_NEG
    out["memory_neg"] = _steps(ctx, m["loss"], 8, m["steps"], m["memory_size"],
                               m["memory_warmup"], "negatives")  # fmt: skip
    out["runs"] = _runs(ctx, tmp)
    return out


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    # forked after one import of torch._dynamo (DDP's constructor needs it): the children
    # inherit it instead of paying the import (see tests/test_distributed.py)
    import torch._dynamo  # noqa: F401

    tmp = tmp_path_factory.mktemp("ddp")
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return tmp, launch(_worker, 2, args=(str(tmp),), timeout_s=240, start_method=method)


def _assert_step_equal(got: dict, want: dict) -> None:
    for key in want["parts"]:
        assert got["parts"][key] == pytest.approx(want["parts"][key], abs=ATOL, rel=0), key
    for n, w in want["grads"].items():
        torch.testing.assert_close(got["grads"][n], w, atol=ATOL, rtol=0, msg=n)
    for n, w in want["weights"].items():
        torch.testing.assert_close(got["weights"][n], w, atol=ATOL, rtol=0, msg=n)


@pytest.mark.parametrize(
    "case", range(len(STEP_CASES)), ids=lambda i: "{}-split{}".format(*STEP_CASES[i])
)
def test_loop_step_on_two_processes_equals_one_process(two_processes, case):  # noqa: E501
    loss, split = STEP_CASES[case]
    (want,) = _steps(None, loss, split)
    assert any(g.abs().max() > 1e-3 for g in want["grads"].values())  # worth comparing
    for rank_out in two_processes[1]:
        _assert_step_equal(rank_out["steps"][case][0], want)


def test_memory_steps_on_two_processes_equal_one_process(two_processes):
    m = MEMORY
    want = _steps(None, m["loss"], 6, m["steps"], m["memory_size"], m["memory_warmup"])
    assert [w["memory"] for w in want] == [0, 12, 20]  # warm-up, then FIFO of 20 rows
    for rank_out in two_processes[1]:
        for got, w in zip(rank_out["memory"], want, strict=True):
            assert got["memory"] == w["memory"]
            _assert_step_equal(got, w)


def test_negatives_only_memory_on_two_processes_equals_one_process(two_processes):
    m = MEMORY_NEG
    want = _steps(None, m["loss"], 8, m["steps"], m["memory_size"], m["memory_warmup"],
                  "negatives")  # fmt: skip
    every = _steps(None, m["loss"], 8, m["steps"], m["memory_size"], m["memory_warmup"])
    assert want[2]["parts"]["metric"] != pytest.approx(every[2]["parts"]["metric"])  # a role
    for rank_out in two_processes[1]:
        for got, w in zip(rank_out["memory_neg"], want, strict=True):
            _assert_step_equal(got, w)


def test_two_process_resume_is_exact_and_records_the_world_size(two_processes):
    tmp, outs = two_processes
    for rank_out in outs:
        runs = rank_out["runs"]
        assert runs["world_size"] == 2
        for k, v in runs["ref"].items():
            assert torch.equal(runs["resumed"][k], v), k
        assert runs["resumed_history"]["train"] == runs["history"]["train"]
    # every rank holds the same log rows and the same (broadcast) evaluations
    assert outs[0]["runs"]["history"] == outs[1]["runs"]["history"]
    assert outs[0]["runs"]["history"]["eval"]
    for k, v in outs[0]["runs"]["ref"].items():
        assert torch.equal(outs[1]["runs"]["ref"][k], v), k
    run = tmp / "ref"
    assert json.loads((run / "metrics.json").read_text())["world_size"] == 2
    assert "world_size = 2" in (run / "config.toml").read_text()
    assert torch.load(run / "model.pt", weights_only=True)["world_size"] == 2
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2 and len(state["memory"]["labels"])


def test_resume_with_another_world_size_is_refused(two_processes):
    tmp, _ = two_processes
    data = make_random_data(num_ids=8, per_id=3)
    with pytest.raises(CheckpointError, match=r"2 process\(es\), this one has 1: launch with"):
        train(_train_config(), data, out_dir=tmp / "ref", progress=False)


def test_torchrun_cli_run_completes_with_one_checkpoint(tmp_path):
    """The real command line under torchrun: 2 CPU processes over gloo, a few steps."""
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = (
        [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    )
    out = tmp_path / "run"
    cmd = [*launcher, "--standalone", "--nproc_per_node=2", "-m", "drsl", "train", "--fast",
           "--device", "cpu", "--max-steps", "2", "-P", "2", "-K", "2", "--base-width", "2",
           "--memory-size", "8", "--out", str(out), "--no-progress"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained ce+drsl") == 1  # rank 0 alone prints
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".pt") == ["last.pt", "model.pt"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_batch"] == 8 and metrics["step"] == 2
    assert "world_size = 2" in (out / "config.toml").read_text()
    assert len((out / "train_log.csv").read_text().splitlines()) == 1 + 2
