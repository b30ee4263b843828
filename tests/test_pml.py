"""DRSL inside pytorch-metric-learning (drsl.integrations.pml.DRSLoss), and drsl's baselines
cross-checked against PML's own losses where their conventions match (documented where not)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from pml_parity import assert_pml_parity, pk_batch, value_and_grad

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
from pytorch_metric_learning import distances, miners, reducers  # noqa: E402
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu  # noqa: E402

from drsl.integrations.pml import DRSLoss  # noqa: E402
from drsl.losses import (  # noqa: E402
    CrossBatchMemory,
    batch_hard_triplet_loss,
    contrastive_loss,
    drsl_loss,
    smooth_ap_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")
EUCLIDEAN = distances.LpDistance(normalize_embeddings=False, p=2)


def without_self(b: int, r: int, labels, ref_labels):
    """PML's all-pairs tuple of a batch against ``[batch; references]``, self pairs removed."""
    tup = lmu.get_all_pairs_indices(labels, ref_labels)
    return lmu.remove_self_comparisons(tup, torch.arange(b), r)


@pytest.mark.parametrize("gradient", ["smooth", "identity"])
@pytest.mark.parametrize("seed", [0, 1])
def test_drsl_as_a_pml_loss_equals_drsl_loss_on_the_batch(seed, gradient):
    x, y = pk_batch(seed)
    assert_pml_parity(
        lambda e, lab: drsl_loss(e, lab, gradient=gradient),
        DRSLoss(gradient=gradient),
        x,
        y,
        atol=0.0,
    )


@pytest.mark.parametrize("sort_weight", [1.0, 0.0])
@pytest.mark.parametrize("gradient", ["smooth", "identity"])
def test_drsl_as_a_pml_loss_equals_drsl_loss_with_the_same_references(gradient, sort_weight):
    x, y = pk_batch(2, P=3, K=3)
    refs, ref_y = pk_batch(3, P=5, K=2)
    refs = refs.detach()
    opts = {"gradient": gradient, "sort_weight": sort_weight}
    loss_fn = DRSLoss(**opts)

    def pml(e):  # PML's convention: the anchors retrieve among ref_emb, self pairs removed
        allrefs, all_y = torch.cat([e, refs]), torch.cat([y, ref_y])
        tup = without_self(len(e), len(allrefs), y, all_y)
        return loss_fn(e, y, tup, allrefs, all_y)

    v_pml, g_pml = value_and_grad(pml, x)
    v_drsl, g_drsl = value_and_grad(
        lambda e: drsl_loss(e, y, ref_embeddings=refs, ref_labels=ref_y, **opts), x
    )
    assert abs(v_pml - v_drsl) <= 1e-12 and v_drsl > 0
    np.testing.assert_allclose(g_pml.numpy(), g_drsl.numpy(), rtol=0, atol=1e-12)


def test_pml_cross_batch_memory_equals_drsls_own_memory_path():
    """PML enqueues first and drops each anchor's own copy; drsl ranks against the memory of
    earlier batches, then enqueues: a PML memory of M + B holds what drsl's of M holds."""
    B, M = 8, 20
    pml_memory = pml_losses.CrossBatchMemory(DRSLoss(), embedding_size=6, memory_size=M + B)
    pml_memory.embedding_memory = pml_memory.embedding_memory.double()
    ours = CrossBatchMemory(M)
    for step in range(6):  # the memories fill up and wrap around
        x, y = pk_batch(10 + step, P=4, K=2, dim=6)
        x = x.detach()
        refs, ref_y, _ = ours.references()
        kw = {} if refs is None else {"ref_embeddings": refs, "ref_labels": ref_y}
        v_pml, g_pml = value_and_grad(lambda e: pml_memory(e, y), x)  # noqa: B023
        v_ours, g_ours = value_and_grad(lambda e: drsl_loss(e, y, **kw), x)  # noqa: B023
        ours.enqueue(x, y)
        assert abs(v_pml - v_ours) <= 1e-12, (step, v_pml, v_ours)
        # (gradients differ by design: PML's memory holds detached copies of the batch, so
        # the batch rows are pushed as anchors only; drsl's path pushes them as items too)
        assert float(g_ours.abs().sum()) > 0 and float(g_pml.abs().sum()) > 0


def test_pml_memory_refuses_an_unregistered_loss_and_accepts_drsl():
    class NotListed(pml_losses.BaseMetricLossFunction):
        pass

    with pytest.raises(Exception, match="not supported for NotListed"):
        pml_losses.CrossBatchMemory(NotListed(), embedding_size=4)
    assert "DRSLoss" in pml_losses.CrossBatchMemory.supported_losses()
    pml_losses.CrossBatchMemory(DRSLoss(), embedding_size=4)


def test_drsl_pml_loss_follows_a_miners_pairs():
    """With a miner's tuple the anchors rank only the pairs it lists: listing every pair
    equals the default, and dropping pairs changes the value."""
    x, y = pk_batch(4)
    loss_fn = DRSLoss()
    every = lmu.get_all_pairs_indices(y)
    full = loss_fn(x, y, every)
    torch.testing.assert_close(full, drsl_loss(x, y), rtol=0, atol=1e-12)
    hard = miners.BatchHardMiner(distance=EUCLIDEAN)(x, y)
    assert abs(float(loss_fn(x, y, hard)) - float(full)) > 1e-6


def test_drsl_pml_loss_refuses_a_normalising_distance_and_missing_labels():
    with pytest.raises(ValueError, match="Euclidean distance of the embeddings as given"):
        DRSLoss(distance=distances.CosineSimilarity())
    with pytest.raises(ValueError, match="needs labels"):
        DRSLoss()(torch.zeros(3, 2))


def test_a_short_training_through_pml_memory_converges():
    torch.manual_seed(0)
    centres = torch.randn(6, 16) * 2
    net = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    memory = pml_losses.CrossBatchMemory(DRSLoss(), embedding_size=8, memory_size=64)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    values = []
    for _ in range(60):
        y = torch.randperm(6)[:3].repeat_interleave(4)
        loss = memory(net(centres[y] + torch.randn(12, 16)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        values.append(float(loss))
    assert np.mean(values[-10:]) < 0.5 * np.mean(values[:10])


def _ddp_worker(ctx):
    from pytorch_metric_learning.utils.distributed import DistributedLossWrapper

    x, y = pk_batch(7, P=4, K=3)
    rows = slice(0, 6) if ctx.rank == 0 else slice(6, 12)
    wrapper = DistributedLossWrapper(DRSLoss())
    value = wrapper(x.detach()[rows].clone(), y[rows])
    return float(value) / ctx.world_size  # PML multiplies by the world size


@pytest.mark.slow
def test_pml_distributed_wrapper_with_two_processes_equals_one_process():
    """Two gloo processes through PML's DistributedLossWrapper: each rank's loss over the
    gathered global batch equals drsl_loss of the whole batch in one process."""
    import torch._dynamo  # noqa: F401 - imported once here, inherited by the forked children

    from drsl.explore.parallel import launch

    method = "fork" if sys.platform.startswith("linux") else "spawn"
    per_rank = launch(_ddp_worker, 2, timeout_s=240, start_method=method)
    x, y = pk_batch(7, P=4, K=3)
    # rank 0 gathers [its rows; rank 1's]; rank 1 [its rows; rank 0's]: the same set
    expect = float(drsl_loss(x.detach(), y))
    assert max(abs(v - expect) for v in per_rank) <= 1e-12


# ------------------------------------------------------------------------- baselines vs PML


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_hard_triplet_equals_pml_triplet_margin_with_batch_hard_miner(seed):
    """Same convention once PML averages over every mined triplet (MeanReducer; its default
    AvgNonZeroReducer averages over the non-zero ones only) on unnormalised Euclidean
    distances (its default LpDistance normalises the embeddings)."""
    x, y = pk_batch(seed)
    pml = pml_losses.TripletMarginLoss(
        margin=0.3, distance=EUCLIDEAN, reducer=reducers.MeanReducer()
    )
    assert_pml_parity(
        lambda e, lab: batch_hard_triplet_loss(e, lab, margin=0.3),
        pml,
        x,
        y,
        miner=miners.BatchHardMiner(distance=EUCLIDEAN),
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_contrastive_equals_pml_contrastive_after_the_documented_mapping(seed):
    """PML's pair terms are hinges, ``max(0, d - pos_margin)`` and ``max(0, neg_margin - d)``,
    each averaged over its own non-zero pairs; drsl's are half their squares (Hadsell et al.),
    averaged over all ``B (B - 1)`` ordered pairs. With pos_margin 0 and PML's per-pair values
    (DoNothingReducer) the mapping is exact."""
    x, y = pk_batch(seed, spread=0.4)
    pml = pml_losses.ContrastiveLoss(
        pos_margin=0.0, neg_margin=1.0, distance=EUCLIDEAN, reducer=reducers.DoNothingReducer()
    )
    b = len(y)

    def to_drsl(out):
        pos, neg = out["pos_loss"]["losses"], out["neg_loss"]["losses"]
        return 0.5 * (pos.square().sum() + neg.square().sum()) / (b * (b - 1))

    assert_pml_parity(
        lambda e, lab: contrastive_loss(e, lab, margin=1.0), pml, x, y, map_value=to_drsl
    )


def test_smooth_ap_differs_from_pmls_by_the_anchor_counted_as_its_own_positive():
    """PML's SmoothAPLoss (the paper's code) counts the query as a positive of itself (rank
    1, in every sum) and needs equal class sizes and no ref_emb; drsl's smooth_ap_loss leaves
    the query out of its own retrieval set, takes any class sizes and references. Both are
    checked against the readable formula of their convention."""
    x, y = pk_batch(5, P=3, K=3)
    order = torch.argsort(y, stable=True)  # PML reads the classes as contiguous groups
    x, y = x.detach()[order], y[order]
    tau = 0.01
    s = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(x, dim=1).T

    def ap(a, with_self: bool) -> float:
        items = [j for j in range(len(y)) if with_self or j != a]
        pos = [i for i in items if y[i] == y[a]]
        g = lambda i, js: sum(float(torch.sigmoid((s[a, j] - s[a, i]) / tau)) for j in js if j != i)  # noqa: E731
        return float(np.mean([(1 + g(i, pos)) / (1 + g(i, items)) for i in pos]))

    # (PML builds its masks and APs in float32, whatever the input: hence its 1e-6)
    for with_self, value, tol in (
        (True, float(pml_losses.SmoothAPLoss(temperature=tau)(x, y)), 1e-6),
        (False, float(smooth_ap_loss(x, y, temperature=tau)), 1e-12),
    ):
        expect = 1 - np.mean([ap(a, with_self) for a in range(len(y))])
        assert value == pytest.approx(expect, abs=tol)
    with pytest.raises(ValueError, match="same number of elements"):
        pml_losses.SmoothAPLoss()(x[:-1], y[:-1])
    assert float(smooth_ap_loss(x[:-1], y[:-1])) >= 0  # any class sizes


# the imbalance-aware baselines: PML's implementations agree with drsl's for PK batches
MS_ARGS, CIRCLE_ARGS = {"alpha": 2.0, "beta": 50.0, "base": 0.5}, {"m": 0.25, "gamma": 256.0}


def _pml_ms_and_circle():
    ms = (pml_losses.MultiSimilarityLoss(**MS_ARGS), miners.MultiSimilarityMiner(epsilon=0.1))
    return {"multi_similarity": ms, "circle": (pml_losses.CircleLoss(**CIRCLE_ARGS), None)}


# circle's gamma = 256 scales every logit: float64 rounding of its log-sum-exp differs between
# the two codes by about gamma ulps of the loss, so the tolerance scales with gamma
TOLERANCE = {"multi_similarity": 1e-12, "circle": CIRCLE_ARGS["gamma"] * 1e-12}


@pytest.mark.parametrize("name", ["multi_similarity", "circle"])
@pytest.mark.parametrize(("seed", "P", "K"), [(0, 4, 3), (1, 3, 5), (2, 6, 2)])
def test_multi_similarity_and_circle_equal_pml_on_a_batch(name, seed, P, K):
    from drsl.losses import get_loss

    pml, miner = _pml_ms_and_circle()[name]
    x, y = pk_batch(seed, P=P, K=K)
    assert_pml_parity(get_loss(name), pml, x, y, miner=miner, atol=TOLERANCE[name])


@pytest.mark.parametrize("name", ["multi_similarity", "circle"])
def test_multi_similarity_and_circle_equal_pml_with_references(name):
    """drsl's retrieval set (the other batch rows and the references) is PML's ``ref_emb`` =
    ``[batch; references]`` with the self pairs removed; the miner mines over the same set."""
    from drsl.losses import get_loss

    pml, miner = _pml_ms_and_circle()[name]
    x, y = pk_batch(3, P=4, K=3)
    ref, ref_y = pk_batch(4, P=4, K=3)
    ref, ref_y = ref.detach(), ref_y + 2  # two identities shared with the batch, two new
    every = torch.cat([y, ref_y])

    def through_pml(e):
        full = torch.cat([e, ref])
        tup = miner(e, y, full, every) if miner is not None else None
        tup = without_self(len(y), len(every), y, every) if tup is None else tup
        return pml(
            e, y, lmu.remove_self_comparisons(tup, torch.arange(len(y)), len(every)), full, every
        )

    fn = get_loss(name)
    v_drsl, g_drsl = value_and_grad(lambda e: fn(e, y, ref_embeddings=ref, ref_labels=ref_y), x)
    v_pml, g_pml = value_and_grad(through_pml, x)
    assert abs(v_drsl - v_pml) <= TOLERANCE[name] and v_drsl > 0
    np.testing.assert_allclose(g_drsl.numpy(), g_pml.numpy(), rtol=0, atol=TOLERANCE[name])
