"""``--memory-role``: the config key, its check, and the objective passing it to the loss."""

from __future__ import annotations

import pytest
import torch

from drsl.cli import build_parser
from drsl.losses import drsl_loss
from drsl.models import ReIDOutput
from drsl.train import TrainConfig, build_criterion
from drsl.train.distributed import gather_batch


def test_memory_role_flag_reaches_the_config():
    args = build_parser().parse_args(["train", "--memory-role", "negatives"])
    assert args.memory_role == "negatives"
    assert TrainConfig(memory_role="negatives").validate().memory_role == "negatives"
    # at its default the key stays out of the saved config (older checkpoints still match)
    assert "memory_role" not in TrainConfig().to_dict()


def test_unknown_memory_role_fails_with_one_line():
    with pytest.raises(ValueError, match="memory_role must be one of"):
        TrainConfig(memory_role="positives").validate()


@pytest.mark.parametrize("role", ["all", "negatives"])
def test_objective_gives_the_memory_its_role(role):
    g = torch.Generator().manual_seed(0)
    f, y = torch.randn(8, 4, generator=g), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    mem, mem_y = torch.randn(6, 4, generator=g), torch.tensor([0, 5, 1, 6, 3, 7])
    crit = build_criterion(TrainConfig(loss="drsl", memory_role=role, angle_source="features"))
    out = ReIDOutput(f, f, torch.zeros(8, 4))
    total, _ = crit(out, y, gathered=gather_batch(f, y), extra_references=(mem, mem_y, None))
    want = crit.metric(f, y, ref_embeddings=mem, ref_labels=mem_y, ref_role=role)
    assert torch.equal(total, want)
    other = drsl_loss(f, y, ref_embeddings=mem, ref_labels=mem_y, gradient="identity",
                      ref_role="all" if role == "negatives" else "negatives")  # fmt: skip
    assert not torch.equal(total, other)
