"""Figures for the data notebook: identities across cameras, dataset statistics, the
positive:negative ratio of PK batches, and the evaluation protocol on one ranked list.

Every function takes ``ax=None`` (or ``axes=None``) and returns the matplotlib Figure; none
saves a file or prints. Numbers come from :mod:`drsl.data` and :mod:`drsl.metrics`.

Reference: Zheng et al., ICCV 2015 (Market-1501 protocol); Hermans et al. 2017 (PK batches).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from ._style import NEG_COLOR, POS_COLOR
from ._util import new_axes

__all__ = [
    "plot_identities_across_cameras",
    "plot_dataset_statistics",
    "plot_pk_ratio",
    "plot_protocol_example",
]

ROLE_COLORS = {
    "match": POS_COLOR,
    "negative": NEG_COLOR,
    "distractor": "#fc8d59",
    "same_camera": "#9e9ac8",
    "junk": "#bdbdbd",
}
ROLE_LABELS = {
    "match": "match (other camera): counts",
    "negative": "other identity: negative",
    "distractor": "distractor (pid 0): negative",
    "same_camera": "same id, same camera: dropped",
    "junk": "junk (pid -1): dropped",
}


def plot_identities_across_cameras(
    items: Sequence[tuple[str, int, int]],
    *,
    pids: Sequence[int] | None = None,
    num_ids: int = 5,
    seed: int = 0,
    axes=None,
) -> Figure:
    """A grid of crops: one row per identity, one column per camera (blank: not seen).

    Args:
        items (Sequence[tuple[str, int, int]]): ``(img_path, pid, camid)``, e.g.
            ``splits.train`` or ``splits.gallery``; pids ``<= 0`` are skipped.
        pids (Sequence[int], optional): identities to show; default ``num_ids`` identities
            among those seen by the most cameras (chosen with ``seed``).
        num_ids (int): rows when ``pids`` is None. Default 5.
        seed (int): picks the identities and the image of each camera. Default 0.
        axes (np.ndarray of Axes, optional): ``rows x cameras`` axes to draw into.

    Returns:
        matplotlib.figure.Figure: the grid.

    Reference: Zheng et al., ICCV 2015 (one identity, several cameras).
    """
    from drsl.data.datasets import read_image

    by_id: dict[int, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path, pid, cam in items:
        if pid > 0:
            by_id[int(pid)][int(cam)].append(path)
    if not by_id:
        raise ValueError("items hold no identity (all pids <= 0)")
    cams = sorted({c for per_cam in by_id.values() for c in per_cam})
    rng = np.random.default_rng(seed)
    if pids is None:
        most = max(len(v) for v in by_id.values())
        pool = sorted(p for p, v in by_id.items() if len(v) >= min(most, len(cams) - 1))
        pids = rng.choice(pool, size=min(num_ids, len(pool)), replace=False).tolist()
    missing = [p for p in pids if p not in by_id]
    if missing:
        raise ValueError(f"pids {missing} are not in items")
    if axes is None:
        fig, axes = plt.subplots(
            len(pids),
            len(cams),
            figsize=(0.9 * len(cams) + 0.6, 1.75 * len(pids) + 0.3),
            squeeze=False,
            layout="constrained",
        )
    else:
        axes = np.asarray(axes).reshape(len(pids), len(cams))
        fig = axes[0, 0].figure
    for r, pid in enumerate(pids):
        for c, cam in enumerate(cams):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            paths = by_id[pid].get(cam)
            if paths:
                ax.imshow(read_image(paths[int(rng.integers(len(paths)))]))
            if r == 0:
                ax.set_title(f"cam {cam + 1}", fontsize=9)
            if c == 0:
                ax.set_ylabel(f"id {pid}", fontsize=9)
    fig.suptitle("the same identity across cameras (blank: not seen there)", fontsize=10)
    return fig


def plot_dataset_statistics(splits, *, axes=None) -> Figure:
    """Images per identity (train, test) and images per camera (each split).

    Args:
        splits (drsl.data.datasets.ReIDSplits): the dataset.
        axes (Sequence[Axes], optional): two axes.

    Returns:
        matplotlib.figure.Figure: two panels.

    Reference: Zheng et al., ICCV 2015 (dataset statistics as reported for Market-1501).
    """
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
    else:
        fig = axes[0].figure
    ax0, ax1 = axes
    tr, _ = splits.arrays("train")
    qp, _ = splits.arrays("query")
    gp, _ = splits.arrays("gallery")
    test = np.concatenate([qp, gp])
    test = test[test > 0] if splits.distractor_pid is not None else test[test >= 0]
    per_train = np.bincount(np.unique(tr, return_inverse=True)[1])
    per_test = np.bincount(np.unique(test, return_inverse=True)[1])
    top = int(max(per_train.max(), per_test.max()))
    bins = np.arange(0.5, top + 1.5)
    ax0.hist(per_train, bins=bins, alpha=0.6, label=f"train ({len(per_train)} ids)")
    ax0.hist(per_test, bins=bins, alpha=0.6, label=f"test ({len(per_test)} ids)")
    ax0.set_xlabel("images per identity")
    ax0.set_ylabel("identities")
    ax0.legend(frameon=False)
    ax0.set_title(f"{splits.name}: images per identity", fontsize=10)
    names = ("train", "query", "gallery")
    cams = sorted({c for s in names for c in splits.arrays(s)[1].tolist()})
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        counts = np.bincount(splits.arrays(name)[1], minlength=max(cams) + 1)[cams]
        ax1.bar(np.arange(len(cams)) + (i - 1) * width, counts, width, label=name)
    ax1.set_xticks(np.arange(len(cams)), [f"cam {c + 1}" for c in cams])
    ax1.set_ylabel("images")
    ax1.legend(frameon=False)
    ax1.set_title("images per camera", fontsize=10)
    return fig


def plot_pk_ratio(
    P_values: Sequence[int] = tuple(range(2, 65)),
    K_values: Sequence[int] = (2, 4, 8),
    *,
    mark: tuple[int, int] | None = (16, 4),
    memory: Mapping[int, float] | None = None,
    ax=None,
) -> Figure:
    """Positives per negative of one anchor in a PK batch, ``(K-1)/((P-1)K)``, against P.

    With ``memory``, each ratio that a cross-batch memory of ``R`` rows gives the ``mark``
    batch is a square on the ``K`` curve, at the ``P`` of the batch-only PK batch with the same
    ratio, ``1 + (K-1) / (K * ratio)``: a memory is worth that many identities in the batch.

    Args:
        P_values (Sequence[int]): identities per batch (each >= 2).
        K_values (Sequence[int]): instances per identity, one curve each.
        mark (tuple[int, int], optional): a ``(P, K)`` to point at (the usual 16 x 4).
        memory (Mapping[int, float], optional): ``{R: positives per negative}`` of the ``mark``
            batch with a memory of ``R`` rows (needs ``mark``); the x-axis turns logarithmic.
        ax (Axes, optional): where to draw.

    Returns:
        matplotlib.figure.Figure: the curves on a log scale.

    Reference: Hermans et al. 2017 (PK batches); spec, batch imbalance.
    """
    from drsl.data.sampler import pk_pos_neg_ratio

    fig, ax = new_axes(ax, (5.5, 3.4))
    P = np.asarray(list(P_values))
    for K in K_values:
        if K < 2:
            continue  # no positive at all: the ratio is 0, off a log axis
        ax.plot(P, pk_pos_neg_ratio(P, K), label=f"K = {K}")
    if mark is not None:
        p, k = mark
        r = pk_pos_neg_ratio(p, k)
        ax.plot([p], [r], "ko")
        ax.annotate(
            f"P={p}, K={k}: 1 : {1 / r:.0f}",
            (p, r),
            textcoords="offset points",
            xytext=(8, 8),
            fontsize=9,
        )
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("P (identities per batch)")
    ax.set_ylabel("positives : negatives per anchor")
    ax.set_title("PK batches are imbalanced: (K-1) / ((P-1) K)", fontsize=10)
    if memory:
        _mark_memory(ax, memory, mark, P)
    ax.legend(frameon=False)
    return fig


def _mark_memory(ax, memory: Mapping[int, float], mark, P: np.ndarray) -> None:
    if mark is None:
        raise ValueError("memory needs mark: the (P, K) batch the memory is added to")
    k = mark[1]
    for rows, ratio in memory.items():
        p_equiv = 1 + (k - 1) / (k * ratio)  # the batch-only P with the same ratio
        ax.scatter([p_equiv], [ratio], marker="s", zorder=3)
        ax.annotate(f"memory R = {rows}", (p_equiv, ratio), textcoords="offset points",
                    xytext=(4, 4), fontsize=9)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlim(P.min(), P.max())
    ax.set_title("positives per negative: batch only (line) and with a memory (squares)",
                 fontsize=10)  # fmt: skip


def plot_protocol_example(
    distances: Sequence[float],
    g_pids: Sequence[int],
    g_camids: Sequence[int],
    q_pid: int,
    q_camid: int,
    *,
    ax=None,
) -> Figure:
    """One query's ranked gallery, each item coloured by its role under the Market protocol,
    with the rank each kept item gets and the AP of both conventions.

    Args:
        distances (Sequence[float]): ``ng`` query-to-gallery distances.
        g_pids (Sequence[int]): ``ng`` gallery identities (0 distractor, -1 junk).
        g_camids (Sequence[int]): ``ng`` gallery cameras.
        q_pid (int): the query's identity.
        q_camid (int): the query's camera.
        ax (Axes, optional): where to draw.

    Returns:
        matplotlib.figure.Figure: one row of boxes in rank order; dropped items are hatched
        and get no rank.

    Reference: Zheng et al., ICCV 2015 (protocol, trapezoid AP); torchreid (non-interpolated
    AP); computed by :func:`drsl.metrics.gallery_roles` and :func:`drsl.metrics.average_precision`.
    """
    from drsl.metrics import average_precision, gallery_roles

    d = np.asarray(distances, dtype=float)
    roles = gallery_roles(q_pid, q_camid, g_pids, g_camids)
    if len(roles) != len(d):
        raise ValueError(f"distances has {len(d)} entries, g_pids {len(roles)}")
    order = np.argsort(d, kind="stable")
    fig, ax = new_axes(ax, (max(5.0, 0.62 * len(d) + 1), 2.3))
    rank = 0
    for x, j in enumerate(order):
        role = roles[j]
        dropped = role in ("same_camera", "junk")
        ax.add_patch(
            Rectangle(
                (x + 0.05, 0),
                0.9,
                1,
                facecolor=ROLE_COLORS[role],
                hatch="///" if dropped else None,
                edgecolor="white" if dropped else "none",
                alpha=0.55 if dropped else 1.0,
            )
        )
        ax.text(x + 0.5, 0.62, f"id {g_pids[j]}", ha="center", fontsize=8)
        ax.text(x + 0.5, 0.38, f"cam {g_camids[j] + 1}", ha="center", fontsize=8)
        ax.text(x + 0.5, -0.18, f"{d[j]:.2f}", ha="center", fontsize=7, color="0.3")
        if not dropped:
            rank += 1
            ax.text(x + 0.5, 1.1, f"#{rank}", ha="center", fontsize=8, weight="bold")
    kept = [roles[j] for j in order if roles[j] not in ("same_camera", "junk")]
    matches = np.array([r == "match" for r in kept])
    title = f"query: id {q_pid}, cam {q_camid + 1}"
    if matches.any():
        ap = average_precision(matches)
        ap_m = average_precision(matches, mode="market")
        title += f"  |  AP = {ap:.3f} (non-interpolated), {ap_m:.3f} (Market trapezoid)"
    ax.set_title(title, fontsize=9)
    ax.set_xlim(0, len(d))
    ax.set_ylim(-0.3, 1.3)
    ax.axis("off")
    present = [r for r in ROLE_COLORS if r in set(roles)]
    ax.legend(
        handles=[Patch(facecolor=ROLE_COLORS[r], label=ROLE_LABELS[r]) for r in present],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02),
        ncol=min(3, len(present)),
        fontsize=7,
        frameon=False,
    )
    return fig
