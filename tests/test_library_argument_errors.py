"""The library's inputs: a bad argument is a one-line ValueError that names it, at the call
that received it (not a raw torch error, a silent constant, or an error one loss later)."""

from __future__ import annotations

import math

import pytest
import torch

from drsl.losses import CrossBatchMemory, drsl_loss, get_loss
from drsl.metrics import evaluate_rank

F = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize("delta", [math.inf, "0.3", True, math.nan, -0.1, None])
def test_delta_must_be_a_finite_positive_number(delta):
    """delta=inf was accepted (a constant 0.75 with zero gradient); "0.3" gave a TypeError."""
    with pytest.raises(ValueError, match=r"^delta must be a finite number > 0, got "):
        drsl_loss(F, Y, delta=delta)


@pytest.mark.parametrize("sort_weight", [math.inf, "1", -1.0])
def test_sort_weight_must_be_a_finite_number_at_least_zero(sort_weight):
    with pytest.raises(ValueError, match=r"^sort_weight must be a finite number >= 0"):
        drsl_loss(F, Y, sort_weight=sort_weight)


def test_numbers_of_any_real_type_are_still_accepted():
    import numpy as np

    a = drsl_loss(F, Y, delta=np.float32(0.3), sort_weight=np.int64(1))
    assert torch.allclose(a, drsl_loss(F, Y, delta=0.3, sort_weight=1.0))


@pytest.mark.parametrize("name", ["drsl", "drsl_smooth", "drsl_rank", "triplet", "smooth_ap",
                                  "contrastive"])  # fmt: skip
def test_meta_device_inputs_are_named(name):
    with pytest.raises(ValueError, match=r"^embeddings are on the 'meta' device"):
        get_loss(name)(F.to("meta"), Y.to("meta"))


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"angle_embeddings": "x"}, "angle_embeddings must be B x D' with B = 6, got str"),
        ({"angle_embeddings": torch.randn(5, 4)}, "angle_embeddings must be B x D'"),
        ({"ref_angle_embeddings": torch.randn(3, 4)}, "ref_angle_embeddings given without"),
    ],
)
def test_drsl_rank_checks_the_angle_arguments_drsl_checks(kw, words):
    """drsl_rank (sort weight 0) ignored angle arguments that drsl rejects."""
    for name in ("drsl", "drsl_rank"):
        with pytest.raises(ValueError, match=words.replace("(", r"\(")):
            get_loss(name)(F, Y, **kw)


@pytest.mark.parametrize(
    "args, words",
    [
        ((F, Y.float()), "labels must be integers, got dtype torch.float32"),
        ((F.int(), Y), "embeddings must be floating point"),
        ((torch.where(torch.arange(6)[:, None] == 2, math.nan, F), Y),
         "embeddings hold NaN or inf in 1 row(s) (the first: row 2); nothing was stored"),
        ((F, Y, torch.full((6, 2), math.inf)), "angle_embeddings hold NaN or inf in 6 row(s)"),
    ],
)  # fmt: skip
def test_memory_refuses_float_labels_and_non_finite_rows_at_enqueue(args, words):
    """Float labels and NaN rows were stored; the error came at the next loss."""
    mem = CrossBatchMemory(16)
    with pytest.raises(ValueError) as info:
        mem.enqueue(*args)
    assert words in str(info.value)
    assert len(mem) == 0


@pytest.mark.parametrize("distmat", ["abc", None, [[0.1], [0.2, 0.3]], {"a": 1}])
def test_evaluate_rank_names_a_distmat_that_is_not_numbers(distmat):
    with pytest.raises(ValueError, match=r"^distmat must be a num_query x num_gallery array"):
        evaluate_rank(distmat, [1], [1, 2], [0], [1, 1])


def test_evaluate_rank_names_a_meta_distmat():
    with pytest.raises(ValueError, match=r"^distmat is on the 'meta' device"):
        evaluate_rank(torch.zeros(1, 2, device="meta"), [1], [1, 2], [0], [1, 1])
