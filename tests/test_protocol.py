"""drsl.metrics.protocol: the one implementation of the Market-1501 gallery roles, against the
rules written out one pair at a time, and its use by the evaluation and the geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drsl import geometry, metrics
from drsl.metrics import protocol as P
from drsl.metrics.queries import rank_queries


def role_by_hand(q_pid, q_cam, g_pid, g_cam):
    """The protocol for one pair, as the docs state it (cameras None: no same-camera role)."""
    if g_pid == -1 or q_pid == -1:
        return "junk"
    if g_pid == q_pid:
        return "same_camera" if q_cam is not None and g_cam == q_cam else "match"
    return "distractor" if g_pid == 0 else "negative"


def random_ids(seed, nq, ng, num_ids=4, num_cams=3):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(-1, num_ids + 1, nq),  # junk and distractor queries too
        rng.integers(-1, num_ids + 1, ng),
        rng.integers(0, num_cams, nq),
        rng.integers(0, num_cams, ng),
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    nq=st.integers(0, 9),
    ng=st.integers(0, 25),
    cams=st.booleans(),
)
def test_role_codes_follow_the_rules_pair_by_pair(seed, nq, ng, cams):
    qp, gp, qc, gc = random_ids(seed, nq, ng)
    if not cams:
        qc = gc = None
    codes = P.role_codes(qp, gp, qc, gc)
    assert codes.shape == (nq, ng) and codes.dtype == np.int8
    for i in range(nq):
        for j in range(ng):
            want = role_by_hand(
                qp[i], None if qc is None else qc[i], gp[j], None if gc is None else gc[j]
            )
            assert P.ROLES[codes[i, j]] == want
    pos, neg = P.pair_masks(qp, gp, qc, gc)
    np.testing.assert_array_equal(pos, codes == P.MATCH)
    np.testing.assert_array_equal(neg, np.isin(codes, [P.NEGATIVE, P.DISTRACTOR]))


def test_gallery_roles_by_name_and_junk_query():
    roles = P.gallery_roles(4, 1, [4, 4, 0, -1, 9], [1, 2, 1, 2, 1])
    assert roles.tolist() == ["same_camera", "match", "distractor", "junk", "negative"]
    assert set(P.gallery_roles(-1, 0, [4, 0, -1], [1, 1, 1]).tolist()) == {"junk"}
    with pytest.raises(ValueError, match="differ in length"):
        P.gallery_roles(4, 1, [4, 4], [1])


def test_gallery_groups_same_id_pairs_like_a_scan():
    qp, gp, qc, gc = (torch.as_tensor(a) for a in random_ids(3, 30, 200))
    rows, cols, is_match = P.Gallery(gp, gc).same_id(qp, qc)
    want = [(i, j) for i in range(30) for j in range(200) if qp[i] == gp[j] and qp[i] != -1]
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == want
    np.testing.assert_array_equal(is_match.numpy(), (gc[cols] != qc[rows]).numpy())
    empty = P.Gallery(torch.zeros(0, dtype=torch.long)).same_id(qp)
    assert all(t.numel() == 0 for t in empty)


def test_pair_masks_exclude_self_and_errors():
    pos, neg = P.pair_masks([1, 1, 2], [1, 1, 2], exclude_self=True)
    assert not np.diagonal(pos).any() and not np.diagonal(neg).any()
    assert pos[0, 1] and neg[0, 2]
    with pytest.raises(ValueError, match="both"):
        P.pair_masks([1], [1], [0], None)
    with pytest.raises(ValueError, match="exclude_self"):
        P.pair_masks([1], [1, 2], exclude_self=True)


@pytest.mark.parametrize(
    "values, message",
    [
        (["a", "b"], "ids must hold integers, got dtype <U1, e.g. 'a'"),
        ([1.5, 2.0], r"ids must hold integers, got 1.5 at index 0"),
        ([1.0, np.inf], r"got inf at index 1"),
        ([np.nan], r"got nan at index 0"),
        ([True, False], "must hold integers, got dtype bool"),
        (torch.tensor([True]), "must hold integers, got a tensor of dtype torch.bool"),
        ([1, 2, 3], "ids has length 3, expected 2"),
        ([None, 1], "must hold integers, got dtype object"),
    ],
)
def test_as_ids_errors_are_one_line(values, message):
    with pytest.raises(ValueError, match=message) as err:
        P.as_ids(values, "ids", 2)
    assert "\n" not in str(err.value)


def test_as_ids_accepts_integers_in_any_container():
    want = torch.tensor([3, -1, 0])
    for values in ([3, -1, 0], np.array([3.0, -1.0, 0.0]), torch.tensor([[3], [-1], [0]]),
                   np.array([3, -1, 0], dtype=np.int16), (3, -1, 0)):  # fmt: skip
        got = P.as_ids(values, "ids", 3)
        assert got.dtype == torch.long and torch.equal(got, want)


def test_evaluation_geometry_and_display_share_the_protocol():
    """No second implementation: the valid queries of evaluate_rank, the geometry masks and the
    ranked lists shown by the plots all follow role_codes."""
    qp, gp, qc, gc = random_ids(7, 40, 120, num_ids=6)
    qp = np.where(qp == 0, 1, qp)  # Market has no distractor queries
    d = np.random.default_rng(8).integers(0, 5, (40, 120)).astype(np.float32)
    codes = P.role_codes(qp, gp, qc, gc)
    res = metrics.evaluate_rank(d, qp, gp, qc, gc)
    np.testing.assert_array_equal(res.valid_queries, np.flatnonzero((codes == P.MATCH).any(1)))
    assert geometry.protocol_masks is P.pair_masks and metrics.gallery_roles is P.gallery_roles
    for rk in rank_queries(d, qp, gp, qc, gc, res.valid_queries[:5]):
        kept = np.flatnonzero(np.isin(codes[rk.query], [P.MATCH, P.NEGATIVE, P.DISTRACTOR]))
        np.testing.assert_array_equal(
            rk.gallery, kept[np.argsort(d[rk.query, kept], kind="stable")]
        )
        np.testing.assert_array_equal(rk.matches, codes[rk.query, rk.gallery] == P.MATCH)
