"""PKSampler: full batches of P distinct identities x K, coverage, determinism, ratio."""

from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from drsl.data.sampler import PKSampler, pk_pos_neg_ratio


def check_epoch(sampler, labels, epoch):
    labels = np.asarray(labels)
    batches = sampler.batches(epoch)
    assert len(batches) == len(sampler)
    seen = set()
    for batch in batches:
        assert len(batch) == sampler.P * sampler.K
        counts = Counter(labels[batch].tolist())
        # P distinct identities, each exactly K times: no identity twice in a batch
        assert len(counts) == sampler.P
        assert set(counts.values()) == {sampler.K}
        seen |= set(counts)
        for pid in counts:
            idx = [i for i in batch if labels[i] == pid]
            n = int((labels == pid).sum())
            # sampled without replacement when the identity has enough images
            if n >= sampler.K:
                assert len(set(idx)) == sampler.K
            else:  # fewer than K: all of its images, topped up with replacement
                assert set(idx) == set(np.flatnonzero(labels == pid).tolist())
    assert seen == set(np.unique(labels).tolist())  # every identity covered this epoch
    return batches


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(1, 12), min_size=2, max_size=30),
    P=st.integers(2, 8),
    K=st.integers(1, 5),
    seed=st.integers(0, 1000),
)
def test_epoch_invariants(counts, P, K, seed):
    labels = np.repeat(np.arange(len(counts)) * 3 + 7, counts)  # non-contiguous label values
    if len(counts) < P:
        with pytest.raises(ValueError, match="identities"):
            PKSampler(labels, P, K, seed=seed)
        return
    sampler = PKSampler(labels, P, K, seed=seed)
    check_epoch(sampler, labels, 0)
    check_epoch(sampler, labels, 5)


def test_groups_of_an_identity_do_not_reuse_images_within_an_epoch():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 60, 900)
    sampler = PKSampler(labels, P=8, K=4, seed=1)
    batches = sampler.batches(0)
    per_id = Counter()
    flat = [i for b in batches for i in b]
    for i, n in Counter(flat).items():
        per_id[labels[i]] += n > 1
    # only the (fewer than P) top-up groups may repeat an image
    assert sum(per_id.values()) <= sampler.P * sampler.K
    # an epoch uses most images: n // K groups of K per identity
    counts = np.bincount(labels)
    assert len(set(flat)) >= (counts // 4 * 4).sum() - sampler.P * sampler.K


def test_length_is_batches_per_epoch_and_matches_iteration():
    labels = np.repeat(np.arange(50), np.arange(50) % 9 + 1)
    sampler = PKSampler(labels, P=6, K=3, seed=0)
    groups = np.maximum(np.bincount(labels) // 3, 1).sum()
    assert len(sampler) == -(-groups // 6)
    assert len(list(iter(sampler))) == len(sampler)


def test_deterministic_with_seed_and_epoch():
    labels = np.repeat(np.arange(20), 5)
    a, b = PKSampler(labels, 4, 2, seed=3), PKSampler(labels, 4, 2, seed=3)
    assert list(a) == list(b)  # epoch 0 for both
    assert list(a) == list(b)  # both advanced to epoch 1
    assert a.epoch == 2
    a.set_epoch(0)
    assert list(a) == PKSampler(labels, 4, 2, seed=3).batches(0)
    assert a.batches(0) != a.batches(1)
    assert a.batches(0) != PKSampler(labels, 4, 2, seed=4).batches(0)


def test_dominant_identity_is_capped_to_one_group_per_batch():
    labels = np.concatenate([np.zeros(400, int), np.repeat(np.arange(1, 4), 4)])
    sampler = PKSampler(labels, P=2, K=4, seed=0)
    batches = check_epoch(sampler, labels, 0)
    # 100 groups of identity 0 cannot share 3 other identities: capped at one per batch,
    # and the batch count settles where cap + 3 groups fill it: 4 batches of 2 identities
    assert len(sampler) == 4
    assert all((labels[b] == 0).sum() == 4 for b in batches)


def test_pos_neg_ratio():
    s = PKSampler(np.repeat(np.arange(20), 4), P=16, K=4)
    assert s.pos_neg_ratio == pytest.approx(3 / 60)
    assert s.batch_size == 64 and s.num_identities == 20
    np.testing.assert_allclose(pk_pos_neg_ratio([2, 8], [[1], [4]]), [[0, 0], [0.75, 3 / 28]])
    # the ratio really is what one anchor sees in a batch
    labels = np.repeat(np.arange(20), 4)
    batch = np.asarray(labels[s.batches(0)[0]])
    same = batch[:, None] == batch[None, :]
    pos = same.sum(1) - 1
    neg = (~same).sum(1)
    np.testing.assert_allclose(pos / neg, s.pos_neg_ratio)


def test_dataloader_batch_sampler_and_tensor_labels():
    labels = torch.arange(12).repeat_interleave(3)
    ds = TensorDataset(torch.arange(36), labels)
    loader = DataLoader(ds, batch_sampler=PKSampler(labels, P=3, K=2))
    xs = [y for _, y in loader]
    assert len(xs) == len(loader.batch_sampler)
    assert all(x.shape == (6,) and len(x.unique()) == 3 for x in xs)


@pytest.mark.parametrize(
    "args, message",
    [
        (([], 2, 2), "empty"),
        (([0.5, 1.5], 2, 2), "integers"),
        (([0, 1], 1, 2), "P must be"),
        (([0, 1], 2, 0), "K must be"),
        (([0, 0, 1], 3, 2), "only 2"),
    ],
)
def test_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        PKSampler(*args)
    if message == "P must be":
        with pytest.raises(ValueError, match="P must be >= 2"):
            pk_pos_neg_ratio(1, 4)


# ----------------------------------------------------------------------------- rank sharding

# the draws of world_size=1 are those the shipped checkpoints were trained with (before the
# rank keywords existed): pinned here
PINNED = [[12, 11, 7, 8, 17, 13, 1, 0], [3, 4, 6, 5, 15, 19, 0, 1]]  # from the original sampler


def test_world_size_one_draws_are_pinned():
    labels = np.repeat(np.arange(6), [2, 3, 2, 3, 3, 7])
    s = PKSampler(labels, P=4, K=2, seed=5)
    assert s.batches(0)[:2] == PINNED
    assert PKSampler(labels, P=4, K=2, seed=5, rank=0, world_size=1).batches(0) == s.batches(0)


@settings(max_examples=30, deadline=None)
@given(
    counts=st.lists(st.integers(1, 12), min_size=8, max_size=40),
    P=st.integers(2, 4),
    K=st.integers(1, 4),
    W=st.integers(2, 4),
    seed=st.integers(0, 1000),
    epoch=st.integers(0, 5),
)
def test_ranks_are_disjoint_and_together_the_global_draw(counts, P, K, W, seed, epoch):
    labels = np.repeat(np.arange(len(counts)) * 5 + 1, counts)
    if len(counts) < W * P:
        with pytest.raises(ValueError, match=f"needs {W * P} identities"):
            PKSampler(labels, P, K, seed=seed, rank=0, world_size=W)
        return
    ranks = [PKSampler(labels, P, K, seed=seed, rank=r, world_size=W) for r in range(W)]
    whole = PKSampler(labels, W * P, K, seed=seed)
    per_rank = [r.batches(epoch) for r in ranks]
    assert {len(b) for b in per_rank} == {len(whole)} and all(len(r) == len(whole) for r in ranks)
    for step, global_batch in enumerate(whole.batches(epoch)):
        shares = [b[step] for b in per_rank]
        assert all(len(x) == P * K for x in shares)
        ids = [set(labels[x].tolist()) for x in shares]
        assert all(len(i) == P for i in ids)  # P identities on each rank ...
        assert len(set().union(*ids)) == W * P  # ... distinct across the ranks
        assert [i for x in shares for i in x] == global_batch  # union = one draw of W * P
    check_epoch(whole, labels, epoch)


def test_resume_state_is_exact_per_rank():
    labels = np.repeat(np.arange(30), 4)
    runs = [PKSampler(labels, 3, 2, seed=9, rank=r, world_size=2) for r in range(2)]
    for s in runs:
        next(iter(s))  # start epoch 0 (the generator advances the epoch)
        list(s)  # epoch 1 ... now at epoch 2
    states = [s.state_dict() for s in runs]
    assert states[0] == {"epoch": 2, "seed": 9, "P": 3, "K": 2, "rank": 0, "world_size": 2}
    for r, state in enumerate(states):
        fresh = PKSampler(labels, 3, 2, seed=9, rank=r, world_size=2)
        fresh.load_state_dict(state)
        assert list(fresh) == runs[r].batches(2)
    with pytest.raises(ValueError, match="world_size=2 but this sampler has world_size=1"):
        PKSampler(labels, 3, 2, seed=9).load_state_dict(states[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rank=2, world_size=2), r"rank must be an integer in 0..1"),
        (dict(rank=-1, world_size=2), r"rank must be"),
        (dict(rank=0, world_size=0), r"world_size must be an integer >= 1"),
        (dict(rank=0, world_size=4), r"P=2 identities per batch on each of 4 ranks needs 8"),
    ],
)
def test_bad_rank_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PKSampler(np.repeat(np.arange(6), 2), 2, 2, **kwargs)
