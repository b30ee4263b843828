"""Cross-batch memory in training: ``memory_size`` / ``memory_warmup`` /
``--memory-size``: read as references, filled after the loss, exact resume, recorded configs."""

from __future__ import annotations

import pytest
import torch

from drsl.cli import build_parser, resolve_train
from drsl.data.images import make_random_data
from drsl.train import TrainConfig, build_criterion, build_model, train
from drsl.train.step import train_step

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(**kw) -> TrainConfig:
    base = dict(loss="ce+drsl", P=3, K=2, num_epochs=3, base_width=2, height=16, width=8,
                warmup_steps=2, dtype="float64", eval_every=2, checkpoint_every=2, seed=2,
                memory_size=10, memory_warmup=2)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def data():
    return make_random_data(num_ids=9, per_id=3, height=16, width=8)


class Kill(RuntimeError):
    pass


def _killer(at: int):
    def hook(step, parts):
        if step == at:
            raise Kill(at)

    return hook


@pytest.mark.parametrize("loss", ["ce+drsl", "triplet"])
def test_resume_with_a_memory_gives_bit_identical_weights(tmp_path, data, loss):
    cfg = _config(loss=loss)
    ref = train(cfg, data, out_dir=tmp_path / "ref", progress=False)
    n = len(ref.history["train"])
    # kills mid-epoch, one step after a checkpoint (the memory is not empty by then)
    for at in (5, n - 1):
        with pytest.raises(Kill):
            train(cfg, data, out_dir=tmp_path / "b", progress=False, on_step=_killer(at))
    res = train(cfg, data, out_dir=tmp_path / "b", progress=False)
    for k, v in ref.model.state_dict().items():
        assert torch.equal(res.model.state_dict()[k], v), k
    assert res.history == ref.history
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert len(state["memory"]["labels"]) == 10  # full: the FIFO keeps the last 10 rows


def test_memory_changes_training_only_after_its_warm_up(data):
    plain = train(_config(memory_size=0, memory_warmup=0), data, progress=False)
    warm = train(_config(), data, progress=False)  # warm-up 2 steps
    now = train(_config(memory_warmup=0), data, progress=False)
    loss = lambda res: [r["loss"] for r in res.history["train"]]  # noqa: E731
    # step 1: an empty memory adds nothing; had the batch been enqueued before its loss, it
    # would be its own reference (positives at distance 0) and the loss would differ
    assert loss(now)[0] == loss(plain)[0]
    assert loss(now)[1] != loss(plain)[1]  # step 2 sees step 1's batch as references
    assert loss(warm)[:2] == loss(plain)[:2]  # neither read nor filled during the warm-up
    assert loss(warm)[2] == loss(plain)[2]  # step 3: the memory was empty until then
    assert loss(warm)[3] != loss(plain)[3]


def test_step_enqueues_after_the_loss():
    from drsl.losses.memory import CrossBatchMemory

    torch.manual_seed(0)
    cfg = TrainConfig(loss="ce+drsl", base_width=2, memory_size=6)
    net = build_model(cfg, num_classes=2)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)  # lr 0: the weights stay put
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    crit, mem = build_criterion(cfg), CrossBatchMemory(6)
    x, y = torch.randn(4, 3, 16, 8), torch.tensor([0, 0, 1, 1])
    # the same batch three times with fixed weights: only the memory can change the loss
    first = train_step(net, crit, opt, sched, x, y, memory=mem)
    assert len(mem) == 4
    second = train_step(net, crit, opt, sched, x, y, memory=mem)
    alone = train_step(net, crit, opt, sched, x, y)
    assert first["metric"] == alone["metric"] != second["metric"]
    emb, labels, angle = mem.references()
    assert labels.tolist() == [1, 1, 0, 0, 1, 1] and angle is not None  # FIFO, DRSL angles


def test_memory_options_and_errors():
    argv = ["train", "--memory-size", "4096", "--memory-warmup", "100", "--amp", "bf16"]
    cfg, _ = resolve_train(build_parser().parse_args(argv))
    assert (cfg.memory_size, cfg.memory_warmup, cfg.amp) == (4096, 100, "bf16")
    with pytest.raises(ValueError, match="needs a metric loss"):
        TrainConfig(loss="ce", memory_size=8).validate()
    with pytest.raises(ValueError, match="memory_size must be an integer >= 0"):
        TrainConfig(memory_size=-1).validate()


def test_scale_fields_enter_the_saved_config_only_when_set():
    plain = TrainConfig().to_dict()
    assert not {"memory_size", "memory_warmup", "amp"} & set(plain)  # older states still match
    cfg = TrainConfig(memory_size=64, amp="bf16")
    d = cfg.to_dict()
    assert d["memory_size"] == 64 and d["amp"] == "bf16" and "memory_warmup" not in d
    assert TrainConfig.from_dict(d) == cfg


def test_a_resume_state_of_another_memory_size_is_refused(tmp_path, data):
    train(_config(num_epochs=1), data, out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="different config"):
        train(_config(num_epochs=1, memory_size=20), data, out_dir=tmp_path, progress=False)
