"""Data-parallel training (drsl.train.distributed): 2 gloo processes equal 1 process.

One launch of 2 processes (torch.multiprocessing, a free localhost port) runs every case: a
DistributedDataParallel step of a small float64 model whose loss and parameter gradients must
equal a one-process step on the concatenated batch (spec, "Beyond the batch", properties 1 and
2), for DRSL in both gradient modes and each baseline, with the CE term, on equal and unequal
shards, and with a cross-batch memory over two steps.
"""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from drsl.explore.parallel import launch, toy_run
from drsl.losses import cross_entropy_label_smooth, get_loss
from drsl.losses.names import record
from drsl.train.distributed import (
    DistributedContext,
    GatheredBatch,
    data_parallel_loss,
    distributed,
    gather_batch,
    reduce_means,
    wrap_model,
)

pytestmark = pytest.mark.usefixtures("one_thread")

ATOL = 1e-10
# (loss name, CE term, split of the 12 rows between rank 0 and rank 1)
CASES = [
    ("drsl", True, 6),
    ("drsl_smooth", True, 6),
    ("drsl", False, 6),  # no CE: the classifier gets no gradient (find_unused_parameters)
    ("triplet", True, 6),
    ("smooth_ap", True, 6),
    ("contrastive", True, 6),
    ("drsl", True, 8),  # unequal shards and anchor counts: the scale is not 1
    ("drsl_smooth", True, 8),
    ("triplet", True, 8),
    ("smooth_ap", True, 8),
    ("contrastive", True, 8),
]
_EQUAL = torch.arange(4).repeat_interleave(3)  # ids 0, 1 on rank 0, ids 2, 3 on rank 1 (PK)
_MIXED = torch.tensor([0, 0, 0, 1, 1, 1, 2, 3, 2, 2, 3, 4])  # ids across ranks, a lone 4


class _Net(nn.Module):
    """A tiny BatchNorm-free embedder: features, angle features, identity logits."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5))
        self.neck = nn.Linear(5, 5)
        self.classifier = nn.Linear(5, 5)

    def forward(self, x):
        f = self.trunk(x)
        g = self.neck(f)
        return f, g, self.classifier(g)


def _data(split: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = _EQUAL if split == 6 else _MIXED
    x = torch.randn(12, 6, generator=g, dtype=torch.float64) + y[:, None].double() * 0.3
    return x, y


def _model() -> _Net:
    torch.manual_seed(0)
    return _Net().to(torch.float64)


def _terms(name, use_ce, f, g, logits, y, gb=None):
    """CE + metric; with ``gb`` (a GatheredBatch) the data-parallel versions."""
    fn = get_loss(name)
    angle = g if record(name).takes_angle else None
    if gb is None:
        metric = fn(f, y, **({"angle_embeddings": angle} if angle is not None else {}))
        ce = cross_entropy_label_smooth(logits, y) if use_ce else 0.0
        return metric + ce
    metric = data_parallel_loss(
        fn, f, y, angle_embeddings=angle, normaliser=record(name).normaliser, gathered=gb
    )
    ce = cross_entropy_label_smooth(logits, y) * gb.scale("items") if use_ce else 0.0
    return metric + ce


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
        for n, p in getattr(model, "module", model).named_parameters()
    }


def _shard(ctx: DistributedContext, split: int, n: int = 12) -> slice:
    return slice(0, split) if ctx.rank == 0 else slice(split, n)


def _worker(ctx: DistributedContext) -> dict:
    """Runs in each of the 2 processes: every case, the memory case and the toy run."""
    out = {"cases": [], "rank": ctx.rank}
    for name, use_ce, split in CASES:
        x, y = _data(split)
        rows = _shard(ctx, split)
        model = wrap_model(_model(), ctx, find_unused_parameters=not use_ce)
        f, g, logits = model(x[rows])
        angle = g if record(name).takes_angle else None
        gb = gather_batch(f, y[rows], angle)
        loss = _terms(name, use_ce, f, g, logits, y[rows], gb)
        loss.backward()
        scale = float(gb.scale(record(name).normaliser))
        out["cases"].append(
            {"loss": reduce_means({"loss": loss})["loss"], "grads": _grads(model), "scale": scale}
        )
    out["memory"] = _memory_steps(ctx)
    out["toy"] = toy_run(ctx, loss="drsl", steps=3, P=2, K=2)
    return out


def _memory_steps(ctx: DistributedContext | None) -> dict:
    """Two SGD steps with a cross-batch memory: the second step's loss and gradients.

    Distributed: each rank enqueues the global batch (rank order) after its loss, so every
    rank's memory equals the one-process memory of the concatenated batches.
    """
    from drsl.losses.memory import CrossBatchMemory

    model = _model()
    if ctx is not None:
        model = wrap_model(model, ctx, find_unused_parameters=True)  # no CE: classifier idle
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    mem = CrossBatchMemory(64)
    fn = get_loss("drsl")
    result = {}
    for step in range(2):
        x, y = _data(6, seed=step + 1)
        rows = slice(None) if ctx is None else _shard(ctx, 6)
        f, g, _ = model(x[rows])
        if ctx is None:
            ref, ref_y, ref_g = mem.references()
            kw = {"ref_embeddings": ref, "ref_labels": ref_y, "ref_angle_embeddings": ref_g}
            loss = fn(f, y, angle_embeddings=g, **(kw if ref is not None else {}))
            value = loss.item()
        else:
            gb = gather_batch(f, y[rows], g)
            loss = data_parallel_loss(
                fn, f, y[rows], angle_embeddings=g, gathered=gb, extra_references=mem.references()
            )
            value = reduce_means({"loss": loss})["loss"]
        opt.zero_grad()
        loss.backward()
        result = {"loss": value, "grads": _grads(model), "memory": len(mem)}
        opt.step()
        if ctx is None:
            mem.enqueue(f.detach(), y, g.detach())
        else:
            mem.enqueue(*gb.global_batch())
    return result


@pytest.fixture(scope="module")
def two_processes():
    # DistributedDataParallel's constructor imports torch._dynamo (and sympy): seconds per
    # process, tens of seconds where bytecode caching is off (PYTHONDONTWRITEBYTECODE). On
    # Linux the children are forked from this process after one import here, so they inherit
    # torch, drsl and torch._dynamo instead of importing them again (CPU only, no CUDA here).
    import torch._dynamo  # noqa: F401

    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return launch(_worker, 2, timeout_s=240, start_method=method)


def _reference(name, use_ce, split):
    x, y = _data(split)
    model = _model()
    f, g, logits = model(x)
    loss = _terms(name, use_ce, f, g, logits, y)
    loss.backward()
    return loss.item(), _grads(model)


@pytest.mark.parametrize(
    "case", range(len(CASES)), ids=lambda i: "{}-ce{}-split{}".format(*CASES[i])
)
def test_two_processes_equal_one_process_on_the_concatenated_batch(two_processes, case):
    name, use_ce, split = CASES[case]
    want_loss, want_grads = _reference(name, use_ce, split)
    for rank_out in two_processes:
        got = rank_out["cases"][case]
        assert got["loss"] == pytest.approx(want_loss, abs=ATOL, rel=0)
        for n, want in want_grads.items():
            torch.testing.assert_close(got["grads"][n], want, atol=ATOL, rtol=0, msg=n)
    assert any(g.abs().max() > 1e-3 for g in want_grads.values())  # a gradient worth comparing
    scales = [r["cases"][case]["scale"] for r in two_processes]
    assert sum(scales) == pytest.approx(2.0, abs=1e-12)  # sum_r c_r = W
    if split == 8 and name != "contrastive":
        assert scales[0] != pytest.approx(1.0)  # unequal anchor counts: the scale matters


def test_gradient_flows_into_the_classifier_only_with_ce(two_processes):
    no_ce = CASES.index(("drsl", False, 6))
    grads = two_processes[0]["cases"][no_ce]["grads"]
    assert torch.all(grads["classifier.weight"] == 0)
    assert grads["trunk.0.weight"].abs().max() > 0


def test_memory_of_global_batches_equals_one_process_memory(two_processes):
    want = _memory_steps(None)
    assert want["memory"] == 12  # the second step saw the first batch as references
    for rank_out in two_processes:
        got = rank_out["memory"]
        assert got["memory"] == 12
        assert got["loss"] == pytest.approx(want["loss"], abs=ATOL, rel=0)
        for n, w in want["grads"].items():
            torch.testing.assert_close(got["grads"][n], w, atol=ATOL, rtol=0, msg=n)


def test_toy_run_sharded_sampler_equals_one_process_with_twice_p(two_processes):
    one = toy_run(loss="drsl", steps=3, P=4, K=2)
    for rank_out in two_processes:
        got = rank_out["toy"]
        assert got["world_size"] == 2
        assert got["losses"] == pytest.approx(one["losses"], abs=ATOL, rel=0)
        torch.testing.assert_close(got["weights"], one["weights"], atol=ATOL, rtol=0)
    assert one["losses"][0] != one["losses"][-1]  # the weights moved


# ------------------------------------------------------------------------------------------
# without processes
# ------------------------------------------------------------------------------------------


def test_context_from_the_torchrun_environment():
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    ctx = DistributedContext.from_env(env, device="cpu")
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.backend) == (1, 2, 1, "gloo")
    assert not ctx.is_main and ctx.is_distributed
    assert ctx.sampler_kwargs() == {"rank": 1, "world_size": 2}
    plain = DistributedContext.from_env({}, device="cpu")
    assert plain.is_main and not plain.is_distributed and plain.backend is None


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"RANK": "x"}, "RANK='x' is not an integer"),
        ({"RANK": "2", "WORLD_SIZE": "2"}, "need 0 <= RANK < WORLD_SIZE"),
    ],
)
def test_bad_environment_fails_with_one_line(env, match):
    with pytest.raises(ValueError, match=match):
        DistributedContext.from_env(env, device="cpu")


def test_init_without_master_address_says_how_to_launch():
    with (
        pytest.raises(ValueError, match="MASTER_ADDR, MASTER_PORT unset: launch with torchrun"),
        distributed("cpu", environ={"RANK": "0", "WORLD_SIZE": "2"}),
    ):
        pass


def test_gathered_batch_references_counts_and_scale():
    e = [torch.zeros(3, 2), torch.ones(2, 2)]
    lab = [torch.tensor([0, 0, 1]), torch.tensor([1, 2])]
    gb0, gb1 = GatheredBatch(0, e, lab), GatheredBatch(1, e, lab)
    ref, ref_y, ref_g = gb0.references()
    assert torch.equal(ref, e[1]) and torch.equal(ref_y, lab[1]) and ref_g is None
    # anchors with a positive in the whole set: rank 0 all 3 (the 1 has one on rank 1),
    # rank 1 only its 1
    assert gb0.counts("anchors").tolist() == [3.0, 1.0]
    assert gb0.counts("items").tolist() == [3.0, 2.0]
    assert gb0.counts("pairs").tolist() == [12.0, 8.0]
    assert float(gb0.scale("anchors")) == pytest.approx(2 * 3 / 4)
    assert float(gb0.scale("anchors")) + float(gb1.scale("anchors")) == pytest.approx(2.0)
    mem_y = torch.tensor([2])
    assert gb1.counts("anchors", extra_labels=mem_y).tolist() == [3.0, 2.0]
    emb, y, ang = gb1.global_batch()
    assert emb.shape == (5, 2) and y.tolist() == [0, 0, 1, 1, 2] and ang is None
    with pytest.raises(ValueError, match="unknown normaliser 'rows'"):
        gb0.counts("rows")


def test_one_process_is_the_plain_loss_and_extra_references_pass_through():
    g = torch.Generator().manual_seed(3)
    f = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    mem = (torch.randn(5, 4, generator=g, dtype=torch.float64), torch.tensor([0, 1, 3, 3, 2]), None)
    fn = get_loss("drsl")
    assert data_parallel_loss(fn, f, y) == fn(f, y)
    want = fn(f, y, ref_embeddings=mem[0], ref_labels=mem[1])
    assert data_parallel_loss(fn, f, y, extra_references=mem) == want
    assert data_parallel_loss(fn, f, y, extra_references=(None, None, None)) == fn(f, y)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork: Linux only")
def test_the_notebooks_forked_toy_run_equals_one_process_and_names_its_torchrun_command():
    import torch._dynamo  # noqa: F401  (imported once here, inherited by the forked children)

    from drsl.explore.parallel import torchrun_toy

    two, command = torchrun_toy(steps=2, P=2, K=2, fork=True, timeout_s=240)
    one = toy_run(steps=2, P=4, K=2)
    assert two["world_size"] == 2 and len(two["losses"]) == 2
    assert two["losses"] == pytest.approx(one["losses"], abs=1e-10, rel=0)
    assert command == (
        "torchrun --standalone --nproc_per_node=2 -m drsl.explore.parallel --steps 2 --P 2 --K 2"
    )
