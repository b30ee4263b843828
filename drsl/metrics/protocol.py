"""The Market-1501 evaluation protocol: the role of every gallery item for a query.

The one implementation of the protocol in drsl: the evaluation (:mod:`drsl.metrics.rank`),
the geometry statistics (:mod:`drsl.geometry`) and, through them, the plots all call it.
For a query with identity (pid) ``q`` seen by camera ``c``, a gallery item with pid ``p`` and
camera ``k`` is

- ``"junk"`` when ``p == -1`` (a bad detection), or when the query itself is junk (``q == -1``):
  dropped, it counts neither way;
- ``"same_camera"`` when ``p == q`` and ``k == c``: the same person seen by the same camera is
  a near duplicate from the same tracklet, which says nothing about re-identification across
  cameras: dropped;
- ``"match"`` when ``p == q`` and ``k != c``: a true match;
- ``"distractor"`` when ``p == 0`` (Market-1501's distractors): a negative;
- ``"negative"`` otherwise.

A query left without any match is skipped by the evaluation (it contributes nothing, not a
zero). Camera ids are optional for the geometry statistics: without them no pair is
``"same_camera"``.

Reference: Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015 (the
protocol and its evaluation code). torchreid's ``eval_market1501`` drops only the same-id,
same-camera items itself: its dataset loaders drop junk images when they read Market-1501.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "as_matrix",
    "JUNK_PID",
    "DISTRACTOR_PID",
    "ROLES",
    "NEGATIVE",
    "DISTRACTOR",
    "MATCH",
    "SAME_CAMERA",
    "JUNK",
    "as_ids",
    "Gallery",
    "role_codes",
    "gallery_roles",
    "pair_masks",
]

JUNK_PID = -1
"""The pid of junk gallery items (bad detections): dropped for every query."""
DISTRACTOR_PID = 0
"""The pid of Market-1501's distractors: negatives for every query."""

ROLES = ("negative", "distractor", "match", "same_camera", "junk")
"""The role names; :func:`role_codes` returns their indices."""
NEGATIVE, DISTRACTOR, MATCH, SAME_CAMERA, JUNK = range(len(ROLES))

ArrayLike = np.ndarray | Tensor | Sequence


def as_matrix(values: ArrayLike, name: str) -> np.ndarray:
    """A 2-D NumPy view of a matrix (a distance matrix ``nq x ng``, a table of values), checked.

    Args:
        values (array-like or Tensor): 2-D; a tensor is detached and moved to the CPU.
        name (str): the argument's name, for the error message.

    Returns:
        np.ndarray: the values, 2-D, without a copy where NumPy allows.

    Raises:
        ValueError: the input is not 2-D.

    Example:
        >>> as_matrix(torch.zeros(2, 3), "distmat").shape
        (2, 3)
    """
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    a = np.asarray(values)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (nq x ng), got shape {a.shape}")
    return a


def as_ids(
    values: ArrayLike, name: str, n: int | None = None, *, device: torch.device | None = None
) -> Tensor:
    """Identities or cameras as a 1-D int64 tensor, checked.

    Args:
        values (array-like, Tensor or sequence): integers (floats with integral values are
            accepted); any shape with ``n`` entries (flattened).
        name (str): the argument's name, for the error message.
        n (int, optional): the required number of entries.
        device (torch.device, optional): where the result lives; default the input's (CPU for
            NumPy input).

    Returns:
        Tensor: ``n`` int64 values.

    Raises:
        ValueError: strings, booleans, non-integral or non-finite numbers, or the wrong length.

    Example:
        >>> as_ids([3, 4.0], "q_pids", 2)
        tensor([3, 4])
    """
    if isinstance(values, Tensor):
        v = values.detach()
        if v.dtype == torch.bool or v.is_complex():
            raise ValueError(f"{name} must hold integers, got a tensor of dtype {v.dtype}")
    else:
        a = np.asarray(values)
        if a.dtype.kind not in "iuf":
            first = a.flat[0] if a.size else None
            first = first.item() if isinstance(first, np.generic) else first
            example = f", e.g. {first!r}" if a.size else ""
            raise ValueError(
                f"{name} must hold integers, got dtype {a.dtype}{example}; map labels to "
                "integers first (e.g. np.unique(labels, return_inverse=True)[1])"
            )
        v = torch.from_numpy(
            np.ascontiguousarray(a, np.float64 if a.dtype.kind == "f" else np.int64)
        )
    v = v.reshape(-1)
    if v.is_floating_point():
        bad = ~torch.isfinite(v) | (v != v.round())
        if bool(bad.any()):
            first = int(torch.nonzero(bad)[0])
            raise ValueError(f"{name} must hold integers, got {float(v[first])!r} at index {first}")
    if n is not None and v.numel() != n:
        raise ValueError(f"{name} has length {v.numel()}, expected {n}")
    return v.to(device=v.device if device is None else device, dtype=torch.long)


class Gallery:
    """The gallery's pids and camids, grouped by pid once (CSR), so that a block of queries
    finds its same-id items without scanning the gallery.

    Args:
        g_pids (Tensor): ``ng`` int64 gallery identities (``-1`` junk, ``0`` distractor).
        g_camids (Tensor, optional): ``ng`` int64 gallery cameras; ``None``: no item is ever
            ``"same_camera"``.

    Attributes:
        pids, camids (Tensor): the inputs.
        junk (Tensor): ``ng`` bool, the junk items.
        junk_cols (Tensor): their indices, ascending.

    Example:
        >>> gal = Gallery(torch.tensor([7, 7, -1, 0, 3]), torch.tensor([0, 1, 1, 2, 0]))
        >>> [t.tolist() for t in gal.same_id(torch.tensor([7, -1]), torch.tensor([0, 0]))]
        [[0, 0], [0, 1], [False, True]]
    """

    def __init__(self, g_pids: Tensor, g_camids: Tensor | None = None) -> None:
        self.pids, self.camids = g_pids, g_camids
        self.junk = g_pids == JUNK_PID
        self.junk_cols = torch.nonzero(self.junk).reshape(-1)
        self._order = torch.sort(g_pids, stable=True).indices  # within a pid: gallery order
        self._uniq, self._counts = torch.unique_consecutive(g_pids[self._order], return_counts=True)
        self._starts = torch.cumsum(self._counts, 0) - self._counts

    def same_id(self, q_pids: Tensor, q_camids: Tensor | None = None) -> tuple[Tensor, ...]:
        """Every (query, gallery) pair with the same pid, and which of them are matches.

        A junk query (pid ``-1``) has none. The pairs that are not matches have the same pid
        and the same camera: the protocol drops them.

        Args:
            q_pids (Tensor): ``nq`` int64 query identities.
            q_camids (Tensor, optional): ``nq`` int64 query cameras (given when the gallery has
                cameras).

        Returns:
            tuple[Tensor, Tensor, Tensor]: ``(rows, cols, is_match)``; rows ascend, cols ascend
            within a row.
        """
        dev = q_pids.device
        if self._uniq.numel() == 0:
            empty = torch.zeros(0, dtype=torch.long, device=dev)
            return empty, empty, empty.bool()
        where = torch.searchsorted(self._uniq, q_pids).clamp_max(self._uniq.numel() - 1)
        found = (self._uniq[where] == q_pids) & (q_pids != JUNK_PID)
        n = torch.where(found, self._counts[where], 0)
        rows = torch.repeat_interleave(torch.arange(q_pids.numel(), device=dev), n)
        offset = torch.arange(rows.numel(), device=dev) - (torch.cumsum(n, 0) - n)[rows]
        cols = self._order[self._starts[where][rows] + offset]
        if self.camids is None or q_camids is None:
            return rows, cols, torch.ones_like(rows, dtype=torch.bool)
        return rows, cols, self.camids[cols] != q_camids[rows]


def _prepare(q_pids, g_pids, q_camids, g_camids) -> tuple[Tensor, Tensor | None, Gallery]:
    if (q_camids is None) != (g_camids is None):
        raise ValueError("give both q_camids and g_camids, or neither")
    qp = as_ids(q_pids, "q_pids", device="cpu")
    gp = as_ids(g_pids, "g_pids", device="cpu")
    qc = gc = None
    if q_camids is not None:
        qc = as_ids(q_camids, "q_camids", qp.numel(), device="cpu")
        gc = as_ids(g_camids, "g_camids", gp.numel(), device="cpu")
    return qp, qc, Gallery(gp, gc)


def role_codes(q_pids, g_pids, q_camids=None, g_camids=None) -> np.ndarray:
    """The role of every (query, gallery) pair under the protocol, as codes into :data:`ROLES`.

    Args:
        q_pids (array-like, nq): query identities.
        g_pids (array-like, ng): gallery identities (``-1`` junk, ``0`` distractor).
        q_camids (array-like, nq, optional): query cameras; ``None`` (with ``g_camids``) makes
            no pair ``"same_camera"``.
        g_camids (array-like, ng, optional): gallery cameras.

    Returns:
        np.ndarray: ``nq x ng`` int8 codes (:data:`NEGATIVE`, :data:`DISTRACTOR`,
        :data:`MATCH`, :data:`SAME_CAMERA`, :data:`JUNK`).

    Reference: Zheng et al., ICCV 2015, the Market-1501 evaluation protocol.

    Example:
        >>> role_codes([7, -1], [7, 7, -1, 0, 3], [0, 0], [0, 1, 1, 2, 0])
        array([[3, 2, 4, 1, 0],
               [4, 4, 4, 4, 4]], dtype=int8)
    """
    qp, qc, gal = _prepare(q_pids, g_pids, q_camids, g_camids)
    codes = np.full((qp.numel(), gal.pids.numel()), NEGATIVE, dtype=np.int8)
    gp = gal.pids.numpy()
    codes[:, gp == DISTRACTOR_PID] = DISTRACTOR
    codes[:, gp == JUNK_PID] = JUNK
    rows, cols, is_match = gal.same_id(qp, qc)
    codes[rows.numpy(), cols.numpy()] = np.where(is_match.numpy(), MATCH, SAME_CAMERA)
    codes[qp.numpy() == JUNK_PID] = JUNK
    return codes


def gallery_roles(q_pid: int, q_camid: int, g_pids: ArrayLike, g_camids: ArrayLike) -> np.ndarray:
    """The role of each gallery item for one query under the protocol, by name.

    Args:
        q_pid (int): the query's identity (``-1``: a junk query, every item is ``"junk"``).
        q_camid (int): the query's camera.
        g_pids (array-like, shape ``(ng,)``): gallery identities (0 distractor, -1 junk).
        g_camids (array-like, shape ``(ng,)``): gallery cameras.

    Returns:
        np.ndarray: ``ng`` strings among :data:`ROLES`: ``"match"`` (same id, other camera:
        counts), ``"same_camera"`` (same id and camera: dropped), ``"junk"`` (dropped),
        ``"distractor"`` (pid 0: a negative) and ``"negative"``.

    Reference: Zheng et al., ICCV 2015, the Market-1501 evaluation protocol.

    Example:
        >>> gallery_roles(7, 0, [7, 7, -1, 0, 3], [0, 1, 1, 2, 0]).tolist()
        ['same_camera', 'match', 'junk', 'distractor', 'negative']
    """
    gp = as_ids(g_pids, "g_pids")
    gc = as_ids(g_camids, "g_camids")
    if gp.numel() != gc.numel():
        raise ValueError(f"g_pids and g_camids differ in length: {gp.numel()} vs {gc.numel()}")
    codes = role_codes([q_pid], gp, [q_camid], gc)[0]
    return np.asarray(ROLES)[codes]


def pair_masks(
    q_pids, g_pids, q_camids=None, g_camids=None, *, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Positive (``"match"``) and negative (``"negative"`` or ``"distractor"``) pairs.

    Args:
        q_pids (array-like, nq): query identities.
        g_pids (array-like, ng): gallery identities.
        q_camids, g_camids (array-like, optional): cameras, both or neither (see
            :func:`role_codes`).
        exclude_self (bool): also drop the diagonal, for a set ranked against itself (requires
            ``nq == ng``). Default False.

    Returns:
        tuple[np.ndarray, np.ndarray]: boolean ``nq x ng`` masks ``(positive, negative)``.

    Reference: Zheng et al., ICCV 2015, the Market-1501 evaluation protocol.

    Example:
        >>> pos, neg = pair_masks([1, 2], [1, 1, 2, -1], [0, 0], [0, 1, 1, 1])
        >>> pos.astype(int)
        array([[0, 1, 0, 0],
               [0, 0, 1, 0]])
        >>> neg.astype(int)
        array([[0, 0, 1, 0],
               [1, 1, 0, 0]])
    """
    codes = role_codes(q_pids, g_pids, q_camids, g_camids)
    if exclude_self:
        if codes.shape[0] != codes.shape[1]:
            raise ValueError(
                f"exclude_self needs as many queries as gallery items, got {codes.shape[0]} "
                f"and {codes.shape[1]}"
            )
        np.fill_diagonal(codes, JUNK)
    return codes == MATCH, (codes == NEGATIVE) | (codes == DISTRACTOR)
