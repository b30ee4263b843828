"""Ranking grids under the Market protocol: queries with their top-k gallery images (green
border: a true match, red: not) and a strip with the ranks of all their true matches.

The function takes ``ax=None``, draws into it or into a new figure, and returns the matplotlib
Figure; it saves no file and prints nothing. The rankings come from :mod:`drsl.geometry`
(which takes every AP from :mod:`drsl.metrics`).

Reference: Market-1501 protocol (Zheng et al., ICCV 2015).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from drsl.data.datasets import read_image
from drsl.geometry import rank_queries, select_queries

from ._style import NEG_COLOR, POS_COLOR
from ._util import to_numpy

__all__ = ["plot_ranking"]


def _load_image(img) -> np.ndarray:
    """An ``H x W x 3`` array from a path (read by the package's one image reader) or an array.

    A path that cannot be decoded raises :class:`drsl.data.datasets.BadImageError`, one line
    naming the file.
    """
    if isinstance(img, (str, Path)):
        return np.asarray(read_image(img))
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().numpy()
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"an image must be a path or an H x W x 3 array, got shape {a.shape}")
    return a


def plot_ranking(
    distmat,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    q_images: Sequence,
    g_images: Sequence,
    *,
    order: str = "random",
    num_queries: int = 4,
    topk: int = 8,
    query_indices: Sequence[int] | None = None,
    seed: int = 0,
    ap_mode: str = "noninterp",
    ax=None,
    title: str | None = None,
) -> Figure:
    """Queries with their top-k gallery images (green border: true match, red: not) and a
    strip with the ranks of all their true matches.

    The Market protocol of :func:`drsl.metrics.evaluate_rank` applies: gallery items of the
    query's identity and camera, and junk (pid ``-1``), are left out of the ranking; ranks
    count only the kept items. The queries are ``query_indices``, else ``num_queries`` valid
    queries chosen by ``order`` (:func:`drsl.geometry.select_queries`): ``"random"``, or by
    AP, ``"best"`` or ``"worst"`` first; the title says which, and the mAP over all queries,
    since the worst queries alone misrepresent a model.

    Args:
        distmat (array-like, nq x ng): query-gallery distances.
        q_pids, g_pids, q_camids, g_camids (array-like): identities and cameras.
        q_images, g_images (sequence): per query / gallery item an image path or an
            ``H x W x 3`` array (only the displayed ones are read).
        order (str): ``"random"``, ``"best"`` or ``"worst"``. Default random.
        num_queries (int): queries shown when ``query_indices`` is None. Default 4.
        topk (int): gallery images per query (>= 1). Default 8.
        query_indices (sequence of int, optional): the queries to show, in this order.
        seed (int): seed of the random order. Default 0.
        ap_mode (str): AP definition, as in :mod:`drsl.metrics`. Default ``"noninterp"``.
        ax (matplotlib Axes, optional): a region to draw in (its frame is hidden and the grid
            drawn inside it); default a new figure.
        title (str, optional): a prefix for the title (e.g. the model's name).

    Returns:
        matplotlib.figure.Figure: the figure. Its inner axes carry labels
        ``"query:<row>"``, ``"gallery:<row>:<k>"`` and ``"strip:<row>"``.

    Reference: Market-1501 protocol (Zheng et al., ICCV 2015); AP from :mod:`drsl.metrics`.
    """
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    dm = to_numpy(distmat)
    nq, ng = dm.shape
    if len(q_images) != nq or len(g_images) != ng:
        raise ValueError(
            f"need one image per query and gallery item: {nq} and {ng}, got "
            f"{len(q_images)} and {len(g_images)}"
        )
    sel = select_queries(
        dm,
        q_pids,
        g_pids,
        q_camids,
        g_camids,
        order=order,
        num=num_queries,
        query_indices=query_indices,
        seed=seed,
        ap_mode=ap_mode,
    )
    rankings = rank_queries(dm, q_pids, g_pids, q_camids, g_camids, sel.indices, ap_mode=ap_mode)
    qp, gp = to_numpy(q_pids).astype(np.int64), to_numpy(g_pids).astype(np.int64)
    qc, gc = to_numpy(q_camids).astype(np.int64), to_numpy(g_camids).astype(np.int64)
    rows = len(rankings)
    if ax is None:
        fig = plt.figure(figsize=(1.05 * (topk + 1.5), 2.75 * rows + 0.6))
        ax = fig.add_axes((0.02, 0.02, 0.96, 1 - 0.5 / (2.75 * rows + 0.6) - 0.02))
    fig = ax.figure
    ax.set_axis_off()
    col_w = 1.0 / (topk + 1.4)
    row_h = 1.0 / rows
    describe = {
        "random": f"{rows} random queries (seed {seed})",
        "best": f"the {rows} best queries by AP, best first",
        "worst": f"the {rows} worst queries by AP, worst first",
        "given": f"{rows} chosen queries",
    }[sel.order]
    head = f"{title}: " if title else ""
    ax.set_title(
        f"{head}{describe} of {sel.valid.size} valid; mAP over all = {sel.mAP:.3f}",
        fontsize=10,
    )
    for r, rk in enumerate(rankings):
        top = 1.0 - r * row_h
        # per row, top to bottom: images 60%, their two-line labels, the strip's title,
        # the strip 9%, its tick labels
        img_h, strip_h = 0.60 * row_h, 0.09 * row_h
        img_y = top - 0.02 * row_h - img_h
        strip_y = img_y - 0.23 * row_h - strip_h
        qax = ax.inset_axes((0.0, img_y, col_w * 0.95, img_h))
        qax.imshow(_load_image(q_images[rk.query]), aspect="auto")
        qax.set_label(f"query:{r}")
        _frame(qax, "#1f4e9c", 3.0)
        qax.set_xlabel(f"query {rk.query}\nid {qp[rk.query]} · cam {qc[rk.query]}", fontsize=7)
        for k in range(min(topk, rk.gallery.size)):
            g = int(rk.gallery[k])
            gax = ax.inset_axes(((1.4 + k) * col_w, img_y, col_w * 0.92, img_h))
            gax.imshow(_load_image(g_images[g]), aspect="auto")
            gax.set_label(f"gallery:{r}:{k}")
            _frame(gax, POS_COLOR if rk.matches[k] else NEG_COLOR, 4.0)
            gax.set_xlabel(f"#{k + 1}\nid {gp[g]} · cam {gc[g]}", fontsize=7)
        sax = ax.inset_axes((1.4 * col_w, strip_y, 1.0 - 1.4 * col_w, strip_h))
        sax.set_label(f"strip:{r}")
        _rank_strip(sax, rk.match_ranks, rk.gallery.size, topk, rk.ap)
    return fig


def _frame(ax, colour: str, width: float) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(width)


def _rank_strip(ax, ranks: np.ndarray, n: int, topk: int, ap: float) -> None:
    """Ranks of all true matches as ticks along 1..n (log axis when n > 50)."""
    ax.axvspan(0.5, min(topk, n) + 0.5, color="0.88", zorder=0)
    ax.vlines(ranks, 0, 1, colors=POS_COLOR, linewidth=2.0, zorder=2)
    ax.set_xlim(0.5 if n <= 50 else 0.9, n + 0.5)
    if n > 50:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.tick_params(axis="x", labelsize=7, length=2, pad=1)
    for spine in ("top", "right", "left"):
        ax.spines[spine].set_visible(False)
    first = f", first at {ranks[0]}" if ranks.size else ""
    ap_text = f"{ap:.3f}" if ap >= 0.01 else f"{ap:.1e}"
    ax.set_title(
        f"ranks of all {ranks.size} true matches among {n} (grey: top-{topk}){first};"
        f" AP = {ap_text}",
        fontsize=7,
        loc="left",
        pad=2,
    )
