"""drsl.metrics.reference.evaluate_market, the readable loop, equals drsl.metrics.evaluate_rank."""

from __future__ import annotations

import numpy as np
import pytest

from drsl.metrics import evaluate_rank
from drsl.metrics.reference import evaluate_market


def market_case(seed, nq=40, ng=300, num_ids=12, levels=None):
    """Queries of real identities; a gallery with junk (-1), distractors (0) and same-camera
    copies; ``levels`` distinct distance values force ties (None: random floats)."""
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, num_ids + 1, nq)
    g_pids = rng.integers(-1, num_ids + 1, ng)
    q_camids, g_camids = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    if levels is None:
        distmat = rng.random((nq, ng)).astype(np.float32)
    else:
        distmat = rng.integers(0, levels, (nq, ng)) / levels
    return distmat, q_pids, g_pids, q_camids, g_camids


@pytest.mark.parametrize("levels", [None, 2, 5, 40])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_equals_evaluate_rank(seed, levels):
    args = market_case(seed, levels=levels)
    assert (args[2] == -1).any() and (args[2] == 0).any()
    ref = evaluate_market(*args, max_rank=20)
    got = evaluate_rank(*args, max_rank=20)
    np.testing.assert_allclose(ref["cmc"], got.cmc, rtol=0, atol=1e-12)
    assert ref["mAP"] == pytest.approx(got.mAP, abs=1e-12)
    assert ref["mINP"] == pytest.approx(got.mINP, abs=1e-12)


def test_reference_skips_queries_without_a_match_and_raises_when_none_is_left():
    d = np.array([[0.0, 1.0], [0.5, 0.2]])
    # query 0's only match is in its own camera: skipped; query 1's match is at rank 2
    assert evaluate_market(d, [1, 2], [1, 2], [0, 0], [0, 1], max_rank=2)["mAP"] == 1.0
    with pytest.raises(ValueError, match="no valid query"):
        evaluate_market(d, [1, 2], [1, 2], [0, 1], [0, 1])
