# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 Overview: person re-identification as retrieval, and why its batches are imbalanced
#
# *Part of the drsl course on the Differentiable Retrieval-Sort Loss ("rank-in-rank loss").
# The paper's full text is not available to us: what the course teaches is **our reading** of
# it, written down in `docs/drsl-loss-spec.md` and derived step by step in notebook 01.*
#
# ## Goals
# - Explain person re-identification (re-ID) as a retrieval problem: a query image, a gallery,
#   a ranked list by embedding distance.
# - Compute average precision (AP), mAP and the CMC curve by hand on a tiny example, and check
#   them against `drsl.metrics`.
# - Count positives and negatives in a P x K mini-batch and see why the ratio
#   $(K-1) : (P-1)K$ becomes extreme, which is the problem DRSL is built for.
# - Know the map of the course.

# %% [markdown]
# ## Setup
# One cell: imports from `drsl`, the fast-mode switch (`DRSL_FAST=1` shrinks the work of the
# later notebooks; this one is small either way) and a seed.

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

import drsl
from drsl.config import fast_mode
from drsl.data.sampler import PKSampler, pk_pos_neg_ratio
from drsl.distances import pairwise_euclidean
from drsl.metrics import average_precision, evaluate_rank
from drsl.plotting import plot_pk_ratio

FAST = fast_mode()
torch.manual_seed(0)
print(f"drsl {drsl.__version__}, torch {torch.__version__}, fast mode: {FAST}")

# %% [markdown]
# ## 1. Re-ID is retrieval
# A camera network sees people. Given a **query** image of a person seen by one camera, re-ID
# returns the **gallery** images sorted by how likely they show the same person, nearest first.
# A network maps every image to an embedding $f \in \mathbb{R}^D$; the ranking is by the
# Euclidean distance $\|f_q - f_g\|_2$ (our retrieval score is its negative, $s = -\|f_q - f_g\|$).
#
# Here is a toy world in two dimensions: one query (person 7, camera 0) and a gallery of nine
# images of persons 7, 3 and 5 from cameras 0, 1 and 2.

# %%
query = torch.tensor([[0.0, 0.0]])
q_pid, q_cam = 7, 0
gallery = torch.tensor(
    [[0.3, 0.1], [0.5, -0.4], [0.9, 0.2], [-0.2, 1.0], [1.2, -0.9],
     [1.5, 0.3], [-1.3, -1.1], [0.1, -1.9], [2.0, 1.5]]
)  # fmt: skip
g_pids = np.array([7, 3, 7, 5, 7, 3, 5, 7, 3])
g_cams = np.array([0, 1, 1, 2, 2, 0, 1, 1, 2])
dist = pairwise_euclidean(query, gallery)[0]
order = torch.argsort(dist, stable=True).numpy()
for rank, g in enumerate(order, start=1):
    same = "  <- same person" + (", same camera" if g_cams[g] == q_cam else "")
    print(f"rank {rank}: gallery {g} (person {g_pids[g]}, cam {g_cams[g]}) "
          f"d={dist[g]:.2f}{same if g_pids[g] == q_pid else ''}")  # fmt: skip

# %% [markdown]
# The nearest gallery image is person 7 **seen by the same camera** as the query. In the
# Market-1501 protocol that image is removed before scoring: the same camera at nearly the same
# moment makes the match trivial (same background, same light), and the task is to find the
# person *across* cameras. Notebook 03 shows the protocol in full (junk images, distractors).
#
# Let us draw the toy world: matches in green, others in red, the removed one hollow.

# %%
fig, ax = plt.subplots(figsize=(5, 4))
match = g_pids == q_pid
removed = match & (g_cams == q_cam)
keep = ~removed
ax.scatter(*gallery[keep & match].T, c="tab:green", s=80, label="same person, other camera")
ax.scatter(*gallery[~match].T, c="tab:red", s=80, label="other person")
ax.scatter(*gallery[removed].T, facecolors="none", edgecolors="tab:green", s=80,
           label="same person, same camera (removed)")  # fmt: skip
ax.scatter(*query.T, marker="*", c="k", s=250, label="query")
for g, (x, y) in enumerate(gallery.tolist()):
    ax.annotate(str(g), (x, y), textcoords="offset points", xytext=(6, 4))
ax.set_aspect("equal")
ax.set_title("A query and its gallery in embedding space")
ax.legend(loc="upper left", fontsize=8, bbox_to_anchor=(1.02, 1))
plt.show()

# %% [markdown]
# ## 2. Average precision and the CMC curve, by hand
# After the removal, the ranked list reads as a sequence of hits (1) and misses (0). The
# **average precision** is the mean, over the hits, of the precision at each hit:
# $$\mathrm{AP} = \frac{1}{|H|} \sum_{k \in H} \frac{\#\{\text{hits in top } k\}}{k},$$
# where $H$ is the set of ranks that hold a hit.
# The **CMC** at rank $k$ is 1 if at least one hit is in the top $k$, else 0 (averaged over
# queries it gives "rank-1", "rank-5" accuracy). **mINP** looks at the hardest hit: the number
# of hits divided by the rank of the last hit.

# %%
valid = order[keep[order]]  # ranked list without the same-camera match
hits = (g_pids[valid] == q_pid).astype(int)
print("hits in rank order:", hits.tolist())
precision_at_hits = [hits[: k + 1].sum() / (k + 1) for k in np.flatnonzero(hits)]
ap_by_hand = float(np.mean(precision_at_hits))
inp_by_hand = hits.sum() / (np.flatnonzero(hits)[-1] + 1)
cmc_by_hand = (np.cumsum(hits) > 0).astype(float)
print(f"precision at each hit: {np.round(precision_at_hits, 3).tolist()}")
print(f"AP = {ap_by_hand:.4f}, INP = {inp_by_hand:.4f}, CMC = {cmc_by_hand.tolist()}")

# %% [markdown]
# The package computes the same numbers: `average_precision` for one ranked list and
# `evaluate_rank` for the whole protocol (it does the same-camera removal itself).

# %%
assert np.isclose(average_precision(hits.astype(bool)), ap_by_hand)
res = evaluate_rank(
    dist[None].numpy(), np.array([q_pid]), g_pids, np.array([q_cam]), g_cams, max_rank=len(hits)
)
print(f"drsl.metrics: mAP = {res.mAP:.4f}, mINP = {res.mINP:.4f}, CMC = {res.cmc.tolist()}")
assert np.isclose(res.mAP, ap_by_hand) and np.isclose(res.mINP, inp_by_hand)
assert np.allclose(res.cmc, cmc_by_hand)

# %% [markdown]
# mAP is the mean of AP over queries. AP rewards putting **every** true match early, not just
# the first one: this is why ranking losses such as AP-Loss, Smooth-AP and DRSL optimise a
# smoothed version of it directly, and why the course reports mAP first and CMC rank-1 second.
#
# ## 3. Why mini-batches are imbalanced
# This section is the course's one lesson on the **PK ratio**; notebooks 03, 04, 05 and 07
# refer back here. Metric losses are trained on mini-batches of $P$ identities with $K$ images
# each (a "PK
# batch"). Every image is in turn the anchor. It has $K - 1$ **positives** (the other images of
# its identity) and $(P-1)K$ **negatives**. With the common $P = 16, K = 4$: $K - 1 = 3$
# positives against $(P-1)K = 60$ negatives. Let us count them in a real batch from
# `drsl.data.sampler.PKSampler`.

# %%
P, K = 16, 4
labels_pool = np.repeat(np.arange(40), 6)  # 40 identities with 6 images each
sampler = PKSampler(labels_pool, P=P, K=K, seed=0)
batch = next(iter(sampler))
labels = torch.as_tensor(labels_pool[batch])
same = labels[:, None] == labels[None, :]
n_pos = (same.sum(1) - 1).float()
n_neg = (~same).sum(1).float()
print(f"batch of {len(batch)}: positives per anchor {n_pos.unique().tolist()}, "
      f"negatives per anchor {n_neg.unique().tolist()}")  # fmt: skip
assert torch.all(n_pos == K - 1) and torch.all(n_neg == (P - 1) * K)
assert np.isclose(sampler.pos_neg_ratio, (K - 1) / ((P - 1) * K))
print(
    f"positive:negative ratio = {sampler.pos_neg_ratio:.3f} (1 : {1 / sampler.pos_neg_ratio:.0f})"
)

# %% [markdown]
# Larger batches (more identities $P$) give better estimates but a worse ratio; fewer images
# per identity (small $K$, common in re-ID where many people are seen only a few times) make it
# worse still. A loss that **sums over pairs** is then dominated by the negatives. The ratio
# as $P$ and $K$ vary (`drsl.data.sampler.pk_pos_neg_ratio` is the formula, the sampler's
# `pos_neg_ratio` uses it):

# %%
fig = plot_pk_ratio(P_values=range(2, 65), K_values=(2, 4, 8))
plt.show()

# %% [markdown]
# DRSL's answer (notebook 01): for each positive, measure a **ranking error** that is a
# precision (normalised by the rank, so it does not grow with the number of negatives), and
# split the update so that positives receive exactly as much push as the negatives get
# (notebook 02 checks this balance). Notebook 05 then tests whether it helps as the ratio
# becomes extreme; notebook 07 lets you move $P$ and $K$ and watch; notebook 08 adds a
# cross-batch memory and more processes, which push the ratio far lower
# (notebook 08 computes how far).
#
# ## 4. The map of the course
# | # | notebook | what it teaches |
# |---|----------|-----------------|
# | 00 | overview | re-ID as retrieval, mAP and CMC, why batches are imbalanced |
# | 01 | derive | AP -> ranking error -> sorting error -> DRSL, on a worked example |
# | 02 | gradients | finite differences, gradcheck, identity update vs smooth gradient |
# | 03 | data | synthetic identities and cameras, PK batches, the evaluation protocol |
# | 04 | train | a compact model, training, the shipped checkpoints, resuming a run |
# | 05 | imbalance | the decisive experiment: endpoints planned ahead, one computed verdict |
# | 06 | geometry | t-SNE, distance and angle distributions, rank-in-rank, ranking plots |
# | 07 | explore | the positive/negative ratio explorer (widgets) and a static fallback |
# | 08 | scale | reference items, cross-batch memory, data-parallel training (`torchrun`) |

# %% [markdown]
# ## Summary
# - Re-ID ranks a gallery by embedding distance to a query; matches from the query's own
#   camera are removed before scoring.
# - AP averages the precision at every true match; mAP, CMC and mINP summarise a test set, and
#   `drsl.metrics.evaluate_rank` reproduces the hand computation.
# - A P x K batch gives each anchor $K-1$ positives and $(P-1)K$ negatives: $3 : 60$ at the
#   usual $16 \times 4$, which is the imbalance DRSL is designed to withstand.
#
# ## Exercises
# Each exercise has an answer cell (a stub in the student edition) and a check cell that
# grades it (`make assignments`: nbgrader); the solution's explanation comes first here.
#
# **Exercise 1.** Move gallery item 0 to the far corner (e.g. `[3.0, 3.0]`): does AP change?
# Why not?
#
# *Your answer* (the next code cell) defines `res_moved`;
# the cell after it checks it.

# %% [markdown] tags=["solution"]
# **Solution 1.** No: item 0 is person 7 seen by the query's own camera 0, which the protocol
# removes before scoring, so wherever it sits it never enters the ranked list.

# %% tags=["answer"]
### BEGIN SOLUTION
moved = gallery.clone()
moved[0] = torch.tensor([3.0, 3.0])
res_moved = evaluate_rank(
    pairwise_euclidean(query, moved).numpy(), np.array([q_pid]), g_pids, np.array([q_cam]),
    g_cams, max_rank=len(hits),
)  # fmt: skip
print(f"AP with item 0 moved: {res_moved.mAP:.4f} (before: {res.mAP:.4f})")
### END SOLUTION

# %% tags=["check"]
assert {"res_moved"} <= set(globals()), "your answer defines res_moved"
### BEGIN HIDDEN TESTS
assert removed[0] and res_moved.mAP == res.mAP
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 2.** Swap the labels of gallery items 1 and 2 and predict AP before running the
# cell.
#
# *Your answer* (the next code cell) defines `ap_sw` and `res_sw`;
# the cell after it checks them.

# %% [markdown] tags=["solution"]
# **Solution 2.** Item 1, first in the list after the removal, becomes a match and item 2,
# second, a miss: the first hit moves up by one rank, the others stay, so AP rises. By hand
# and by the package:

# %% tags=["answer"]
### BEGIN SOLUTION
swapped = g_pids.copy()
swapped[[1, 2]] = swapped[[2, 1]]
hits_sw = (swapped[valid] == q_pid).astype(int)
ranks_sw = np.flatnonzero(hits_sw) + 1
ap_sw = np.mean(np.arange(1, len(ranks_sw) + 1) / ranks_sw)
res_sw = evaluate_rank(dist[None].numpy(), np.array([q_pid]), swapped, np.array([q_cam]), g_cams)
print(f"hit ranks {ranks_sw.tolist()}: AP by hand {ap_sw:.4f}, drsl.metrics {res_sw.mAP:.4f}")
### END SOLUTION

# %% tags=["check"]
assert {"ap_sw", "res_sw"} <= set(globals()), "your answer defines ap_sw and res_sw"
### BEGIN HIDDEN TESTS
assert np.isclose(ap_sw, res_sw.mAP) and res_sw.mAP > res.mAP
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 3.** For a fixed batch size $B = PK = 64$, which $(P, K)$ gives the most balanced
# batch? What do you lose with it?
#
# *Your answer* (the next code cell) defines `ratios`;
# the cell after it checks it.

# %% [markdown] tags=["solution"]
# **Solution 3.** The ratio $(K-1)/((P-1)K)$ grows as $P$ shrinks, so the fewest identities
# that still give negatives, $P = 2$ ($K = 32$), is the most balanced. What is lost: every
# anchor meets negatives of one other identity only, so the batch says little about the rest
# of the gallery (and batch-hard mining has nothing to choose from).

# %% tags=["answer"]
### BEGIN SOLUTION
shapes = [(p, 64 // p) for p in range(2, 65) if 64 % p == 0]
ratios = {pk: pk_pos_neg_ratio(*pk) for pk in shapes}
for (p, k), r in ratios.items():
    print(f"P = {p:2d}, K = {k:2d}: ratio {r:.3f}")
### END SOLUTION

# %% tags=["check"]
assert {"ratios"} <= set(globals()), "your answer defines ratios"
### BEGIN HIDDEN TESTS
assert max(ratios, key=ratios.get) == (2, 32)
### END HIDDEN TESTS

# %% [markdown]
# ## References
# - Rank-in-Rank Loss for Person Re-identification, ACM TOMM, doi:10.1145/3532866.
# - L. Zheng et al., Scalable Person Re-identification: A Benchmark (Market-1501), ICCV 2015.
# - A. Hermans, L. Beyer, B. Leibe, In Defense of the Triplet Loss for Person Re-Identification,
#   arXiv:1703.07737 (PK batches).
# - M. Ye et al., Deep Learning for Person Re-identification: A Survey and Outlook, TPAMI 2021
#   (mINP).
