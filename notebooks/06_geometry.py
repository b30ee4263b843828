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
# # 05 Geometry: look at the embedding space that DRSL trains, next to CE+triplet
#
# *Part of the drsl course. Our reading of the paper is in `docs/drsl-loss-spec.md`
# ("our reading": the paper's full text is not available to us).*
#
# The paper's argument is geometric: DRSL should keep positives ahead of negatives by
# **distance** (the ranking term) while ordering the positives among themselves by their
# **angle** to the query (the sorting, "rank-in-rank" term). This notebook measures both on the
# test split, for two models trained on the same data with the same network: one with
# cross-entropy + DRSL, one with cross-entropy + batch-hard triplet (the strong baseline).
#
# ## Goals
# - Read a t-SNE map, positive/negative distance and angle histograms, a rank-in-rank plot and
#   ranking grids, and say what each can and cannot show.
# - Compute the overlap statistics by hand (ROC-AUC of negatives vs positives, the share of
#   queries whose nearest negative beats their farthest positive, per-query Spearman between
#   distance order and angle order) and check them against `drsl.geometry`.
# - Compare two checkpoints side by side and state, with numbers, where DRSL and triplet differ
#   and where they do not.

# %% [markdown]
# ## Setup
# One cell: imports from `drsl`, the two checkpoints, and the fast-mode switch (`DRSL_FAST=1`,
# used by the test suite, takes the small synthetic test split; the code path is the same).
# The checkpoints are the shipped ones in `data/checkpoints/` (notebook 04). Where one is
# missing, `drsl.train.load_or_train` trains a stand-in once and keeps it under
# `data/cache/geometry/`; the next cell says which happened, and the reading of the figures
# below holds only for the shipped checkpoints.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display
from scipy.stats import spearmanr

import drsl
from drsl import geometry, plotting
from drsl.config import data_dir, fast_mode
from drsl.data.datasets import load_dataset
from drsl.data.images import preload
from drsl.data.synth import ensure_dataset
from drsl.geometry_reading import geometry_reading
from drsl.metrics import evaluate_rank, rerank_distances
from drsl.train import TrainConfig, embed, load_or_train

FAST = fast_mode()
torch.manual_seed(0)
MODELS = {"DRSL": "ce+drsl", "CE+triplet": "ce+triplet"}  # display name -> training loss
CHECKPOINTS = data_dir() / "checkpoints"
SHIPPED = {n: CHECKPOINTS / f"{loss.replace('+', '_')}.pt" for n, loss in MODELS.items()}
STAND_IN = {"max_steps": 30, "eval_every": 0} if FAST else {}  # only when none is shipped
NUM_IDS, TOPK, SEED = 8, 8, 0
NUM_QUERIES = 1 if FAST else 3  # random ranking rows per model (drawing images is the slow part)
NUM_EXTREME = 1 if FAST else 2  # worst and best rows per model
print(f"drsl {drsl.__version__}, torch {torch.__version__}, fast mode: {FAST}, data: {data_dir()}")

# %% [markdown]
# ## 1. Two models, one test split
# Load (or, failing that, train) both models, read the test split's query and gallery images
# only, embed them in eval mode (the post-BNNeck features, the ones retrieval uses), and
# compute every pair's distance and angle once with `drsl.geometry.pair_geometry`, under the
# Market protocol of notebook 03 (as `drsl.metrics.evaluate_rank` applies it): a **positive**
# pair is a query and a gallery image of its identity from another camera; every other kept
# pair (distractors included) is a **negative**.

# %%
runs, feats, geo = {}, {}, {}
for name, loss in MODELS.items():
    stand_in = data_dir() / "cache" / "geometry" / f"{loss}{'-fast' if FAST else ''}.pt"
    ckpt = SHIPPED[name] if SHIPPED[name].is_file() else stand_in
    runs[name] = load_or_train(TrainConfig(loss=loss, **STAND_IN), ckpt, progress=False)
    how = "shipped" if ckpt == SHIPPED[name] else "stand-in"  # where the path points
    print(f"{name:>10}: {ckpt.relative_to(data_dir())} ({how}, loaded: {runs[name].loaded})")

cfg = runs["DRSL"].config
splits = load_dataset(ensure_dataset())  # (path, pid, camid) items of every split
query, gallery = (preload(items, cfg.height, cfg.width) for items in (splits.query, splits.gallery))
q_pids, g_pids = query.pids.numpy(), gallery.pids.numpy()
q_camids, g_camids = query.camids.numpy(), gallery.camids.numpy()
q_images, g_images = ([path for path, _, _ in items] for items in (splits.query, splits.gallery))

for name, run in runs.items():
    assert (run.config.height, run.config.width) == (cfg.height, cfg.width)
    q, g = embed(run.model, query.images), embed(run.model, gallery.images)
    feats[name] = (q, g)
    geo[name] = geometry.pair_geometry(q, g, q_pids, g_pids, q_camids, g_camids)

res = {n: evaluate_rank(geo[n].dist, q_pids, g_pids, q_camids, g_camids) for n in MODELS}
pairs = f"{geo['DRSL'].num_pos:,} positive and {geo['DRSL'].num_neg:,} negative pairs"
print(f"{len(q_pids)} queries, {len(g_pids)} gallery images, {pairs}")
pd.DataFrame(
    {n: {"mAP": r.mAP, "rank-1": r.cmc[0], "mINP": r.mINP} for n, r in res.items()}
).T.round(3)

# %% [markdown]
# ## 2. A t-SNE map of a few identities
# t-SNE places points in 2-D so that near neighbours stay near; distances between clusters and
# the size of a cluster mean little. Eight identities, the same ones for both models; colour is
# the identity, the marker the camera, queries have a black edge. A good re-ID embedding shows
# one tight cluster per colour with **all markers mixed** inside it (camera invariance). The
# t-SNE runs once per input and is cached (`drsl.geometry.tsne`).

# %%
both = {n: np.concatenate([q.numpy(), g.numpy()]) for n, (q, g) in feats.items()}
all_pids, all_cams = np.concatenate([q_pids, g_pids]), np.concatenate([q_camids, g_camids])
is_query = np.arange(all_pids.size) < q_pids.size
who = {"pids": all_pids, "camids": all_cams, "is_query": is_query}  # for every t-SNE map
ids = geometry.select_identities(all_pids, num_ids=NUM_IDS, seed=SEED)
fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), layout="constrained")
for ax, name in zip(axes, MODELS, strict=True):
    title = f"{name}: t-SNE of {NUM_IDS} identities (mAP {res[name].mAP:.3f})"
    plotting.plot_tsne(both[name], **who, ids=ids, seed=SEED, ax=ax, title=title)

# %% [markdown]
# ## 3. Distances: positives against negatives
# For every positive and every negative pair, the Euclidean distance of the two embeddings.
# The histograms are normalised (each sums to 1: there are far more negative pairs). Two
# numbers summarise the overlap:
#
# - **ROC-AUC** $= P(d_{neg} > d_{pos})$ over all (positive, negative) pairs of pairs, ties
#   counting one half: 1 when every negative is farther than every positive, one half by chance.
# - **overlap**: the share of queries whose nearest negative is closer than their farthest
#   positive, i.e. whose ranked list is not perfect. Across queries, not pooled.
#
# First, the AUC by its definition on the DRSL model's pairs (one comparison per pair of
# pairs, on a random subset to keep it small), against `drsl.geometry.separation_auc`.

# %%
rng = np.random.default_rng(SEED)
pos_d = rng.choice(geo["DRSL"].pos_dist, size=min(300, geo["DRSL"].num_pos), replace=False)
neg_d = rng.choice(geo["DRSL"].neg_dist, size=min(3000, geo["DRSL"].num_neg), replace=False)
by_hand = ((neg_d[None, :] > pos_d[:, None]) + 0.5 * (neg_d[None, :] == pos_d[:, None])).mean()
package = geometry.separation_auc(pos_d, neg_d)
assert np.isclose(by_hand, package)
print(f"ROC-AUC on a subset: by hand {by_hand:.4f}, drsl.geometry {package:.4f}")

# %% [markdown]
# Now the histograms, one panel per model. The two models' distances need not share a scale
# (nothing fixes the norm of a BNNeck feature; section 7 gives the norms), so compare shapes
# and the statistics in the legends, not positions on the x-axis.

# %%
fig = plotting.plot_pair_histograms_by_model(geo, kind="distance")

# %% [markdown]
# ## 4. Angles: positives against negatives
# The same for the angle between the two embeddings, in degrees
# ($\arccos$ of the cosine, `drsl.distances.pairwise_angle`). Angles need no common scale,
# so both models share the same bins, spanning the angles of both; and both fit on one axes:
# the empirical CDFs of the positive (solid) and negative (dashed) pairs' angles, one colour
# per model. Where the two solid curves (or the two dashed ones) lie on each other, the
# models' angle distributions agree.

# %%
fig = plotting.plot_pair_histograms_by_model(geo, kind="angle", bins=60)

# %%
fig = plotting.plot_pair_ecdf(geo, kind="angle", title="Angles of positive and negative pairs")

# %% [markdown]
# The statistics of both sections, side by side (`overlap_stats`; `spearman_*` belong to the
# next section):

# %%
stats = pd.DataFrame({name: g.stats() for name, g in geo.items()})
rows = "auc_distance overlap_distance auc_angle overlap_angle pos_angle_mean neg_angle_mean"
stats.loc[rows.split() + ["spearman_median", "spearman_queries"]].round(3)

# %% [markdown]
# ## 5. Rank in rank: do the positives sit in the order of their angles?
# DRSL's sorting term asks that, for each anchor, the positives come in the order of their
# angle targets $t = (1 + \cos)/2$: the smaller the angle, the nearer. Per query we rank its
# positives by distance and by angle and take Spearman's $\rho$ between the two orders
# (queries with at least 3 positives). $\rho = 1$: distance order = angle order. One query by
# hand against `drsl.geometry.spearman_per_query`:

# %%
rho, rho_q = geometry.spearman_per_query(geo["DRSL"].dist, geo["DRSL"].angle, geo["DRSL"].pos_mask)
i = int(rho_q[0])
mask = geo["DRSL"].pos_mask[i]
by_hand = spearmanr(geo["DRSL"].dist[i, mask], geo["DRSL"].angle[i, mask]).statistic
assert np.isclose(by_hand, rho[0])
print(f"query {i}: {mask.sum()} positives, rho by hand {by_hand:.3f}, package {rho[0]:.3f}")

# %% [markdown]
# A reference point: on L2-normalised embeddings distance is $\sqrt{2 - 2\cos}$, a monotone
# function of the angle (notebook 01, section 8), so $\rho = 1$ for every query whatever the
# model (the spec notes that the sorting term then has nothing to do; `tests/test_geometry.py`
# checks it). Our features are not normalised, so how far $\rho$ is from 1 measures how much
# the feature norms reorder the positives (section 7's reading gives how much they vary).
#
# Which distance? Retrieval ranks by the post-BNNeck features, the ones used so far. DRSL's
# loss, though, scored by distances between the **pre**-BNNeck features $f$ and took its angle
# targets from the post-BNNeck ones (`angle_source="bn"` in `TrainConfig`, see notebook 04).
# So the order its sorting term asked for is "pre-BN distance order = post-BN angle order".
# At test time the BNNeck is a fixed affine map per coordinate (notebook 04), so
# `ReIDNet.pre_bn_features` maps the post-BN features back, with no second pass over the
# images (the cell checks the round trip). We measure both versions for both models (for
# CE+triplet, whose triplet term also used the pre-BN features, it is the same question asked
# of a model that was never told about angles).

# %%
rho_table = {}
for name, run in runs.items():
    q, g = feats[name]
    pre_q, pre_g = (run.model.pre_bn_features(x) for x in (q, g))  # the BNNeck undone
    for pre, post in ((pre_q, q), (pre_g, g)):
        torch.testing.assert_close(run.model.eval().bnneck(pre).detach(), post)
    mixed = geometry.pair_geometry(
        pre_q, pre_g, q_pids, g_pids, q_camids, g_camids, q_angle_feats=q, g_angle_feats=g
    ).stats()
    rho_table[name] = {
        "median rho, post-BN distance vs post-BN angle": stats.loc["spearman_median", name],
        "median rho, pre-BN distance vs post-BN angle": mixed["spearman_median"],
        "AUC of pre-BN distances": mixed["auc_distance"],
    }
pd.DataFrame(rho_table).round(3)

# %% [markdown]
# The distribution of $\rho$ over queries, one violin per model (quartiles inside), then the
# rank-in-rank view of each model: left, every query's $\rho$ over a box of its quartiles;
# right, every pair as a point (distance, angle), negatives red, positives green (a random
# subset of the negatives, as the legend says).

# %%
fig = plotting.plot_spearman_by_model(geo)
fig, axes = plt.subplots(2, 2, figsize=(13, 8.4), layout="constrained")
for row, name in zip(axes, MODELS, strict=True):
    plotting.plot_rank_in_rank(geo[name], axes=row, title=name)

# %% [markdown]
# ## 6. Ranking grids
# Queries with their top-8 gallery images: a green border is a true match, red a false one;
# under each row, ticks mark the ranks of **all** its true matches (grey: the top-8 shown).
# First a few random queries, the same for both models (which queries are valid depends only
# on identities and cameras, so one seed draws the same ones); a random draw is the fair view.
# Then each model's **worst** queries by AP, and its **best**. The title says which: the worst
# queries alone make any model look hopeless, and the best alone flatter it; the mAP printed
# in the title is the average over all queries.

# %%
shown = (q_pids, g_pids, q_camids, g_camids, q_images, g_images)  # the protocol, the pictures
grid = {"num_queries": NUM_QUERIES, "seed": SEED, "topk": TOPK}
fig, axes = plt.subplots(2, 1, figsize=(10, 5.6 * NUM_QUERIES))
for ax, name in zip(axes, MODELS, strict=True):
    plotting.plot_ranking(geo[name].dist, *shown, order="random", ax=ax, title=name, **grid)

# %%
fig, axes = plt.subplots(2, 2, figsize=(16, 5.6 * NUM_EXTREME))
for col, name in enumerate(MODELS):
    for row, order in enumerate(("worst", "best")):
        kw = {"order": order, "num_queries": NUM_EXTREME, "topk": TOPK, "title": name}
        plotting.plot_ranking(geo[name].dist, *shown, ax=axes[row, col], **kw)

# %% [markdown]
# ## 7. Reading the figures
# Which differences between the two models are larger than the noise of this query set?
# `geometry.paired_comparison` compares them on the same queries: per query, the AUC of its
# own positives against its own negatives (distances, then angles) and its Spearman $\rho$;
# then the mean difference DRSL $-$ CE+triplet and its standard error (a difference under
# about two standard errors could come from which queries the set holds).
# `drsl.geometry_reading` gathers these with the metrics, statistics and norms above.

# %%
norms = {name: torch.cat(feats[name]).norm(dim=1) for name in MODELS}  # per model, every image
reading = geometry_reading(geo, res, norms, stats=stats)
paired = reading.paired_table()
paired.round(4)

# %% [markdown]
# **What the figures say.** The next cell writes the reading from the numbers
# (`GeometryReading.bullets`: fast mode's small split gives other numbers, so each word,
# higher or lower, is chosen by the data). What no cell computes is in the pictures: does each
# identity of the t-SNE maps form one cluster with several cameras inside it? Eight identities
# and one t-SNE run cannot separate two models whose numbers are close.

# %% tags=["remove-input"]
display(*(Markdown(bullet) for bullet in reading.bullets()))  # one by one: a slide splits them

# %% [markdown]
# ## 8. Re-ranking: what k-reciprocal neighbours change
# A ranking can be improved after the fact, without training. k-reciprocal re-ranking (Zhong et
# al., CVPR 2017; `drsl.metrics.rerank_distances`, `drsl eval --rerank`) takes two images that
# sit in *each other's* `k1` nearest neighbours (queries and gallery together), or share many
# neighbours, for the same person even when their own distance is not the smallest: the new
# distance mixes the Jaccard distance of the two neighbourhoods (weight $1 - \lambda$) with the
# original one (weight $\lambda$; defaults `k1=20`, `lambda_value=0.3`). Junk images are left
# out first, as `drsl eval --rerank` does. The table gives the scores before and after; the
# same random queries then show where it acts: matches ranked just below a look-alike move up
# when their neighbourhoods agree.

# %%
keep = g_pids != -1
kept = (q_pids, g_pids[keep], q_camids, g_camids[keep])  # the protocol without junk
reranked = {n: rerank_distances(q, g[torch.from_numpy(keep)]) for n, (q, g) in feats.items()}
res_rr = {n: evaluate_rank(d, *kept) for n, d in reranked.items()}
columns = ["mAP", "mAP re-ranked", "rank-1", "rank-1 re-ranked"]
rr_rows = {n: [res[n].mAP, res_rr[n].mAP, res[n].cmc[0], res_rr[n].cmc[0]] for n in MODELS}
pd.DataFrame.from_dict(rr_rows, orient="index", columns=columns).round(3)

# %%
g_kept = [path for path, k in zip(g_images, keep, strict=True) if k]
fig, axes = plt.subplots(2, 1, figsize=(10, 5.6 * NUM_QUERIES))
before_after = [("DRSL", geo["DRSL"].dist[:, keep]), ("DRSL, re-ranked", reranked["DRSL"])]
for ax, (title, dist) in zip(axes, before_after, strict=True):
    plotting.plot_ranking(dist, *kept, q_images, g_kept, order="random", ax=ax, title=title, **grid)

# %% [markdown]
# ## Summary
# - The separation of positives from negatives, by distance and by angle, is measured by pooled
#   ROC-AUCs and an overlap share that one hard negative per query is enough to raise.
# - The rank-in-rank agreement (Spearman rho between the positives' distance and angle orders)
#   is compared query by query; a difference beyond this query set's noise is still one seed
#   per model. The reading of section 7 gives the numbers of the split that was run.
# - `drsl.geometry` (`pair_geometry`, `overlap_stats`, `per_query_auc`, `spearman_per_query`,
#   `paired_comparison`) and the four plots of `drsl.plotting` work on any model's query and
#   gallery embeddings under the Market protocol.
# - k-reciprocal re-ranking (`rerank_distances`, `drsl eval --rerank`) re-orders a ranking by
#   how much the neighbourhoods of query and gallery images agree; section 8 shows its effect.
#
# ## Exercises
# Each exercise has an answer cell (a stub in the student edition) and a check cell that
# grades it (`make assignments`: nbgrader); the solution's explanation comes first here.
#
# **Exercise 1.** Change `SEED` (or pass `ids=[...]` to `plot_tsne`) and redraw section 2 a
# few times. Which impressions survive a new draw of identities? Which numbers of the
# statistics table change?
#
# *Your answer* (the next code cell) defines `ids_new` and `again`; the cell after it checks them.

# %% [markdown] tags=["solution"]
# **Solution 1.** None of the statistics change (the check tests it): they use every pair,
# while the t-SNE shows eight identities, so an impression from one map (a tight cluster, a
# camera split off its identity) speaks for those eight only: see whether it comes back when
# the cell redraws with another seed (other identities) and recomputes the table.

# %% tags=["answer"]
### BEGIN SOLUTION
ids_new = geometry.select_identities(all_pids, num_ids=NUM_IDS, seed=SEED + 1)
kw = {"max_iter": 250 if FAST else 1000, "title": "DRSL: another draw of identities"}
fig = plotting.plot_tsne(both["DRSL"], **who, ids=ids_new, seed=SEED + 1, **kw)
again = pd.DataFrame({name: g.stats() for name, g in geo.items()})
### END SOLUTION

# %% tags=["check"]
assert {"ids_new", "again"} <= set(globals()), "your answer defines ids_new and again"
### BEGIN HIDDEN TESTS
assert set(ids_new) != set(ids) and again.equals(stats)
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 2.** The overlap share is above one half for both models here. Explain why it
# saturates as a query gets more negatives (one hard negative is enough), then compute a finer
# number from `geo[name].dist`, `pos_mask` and `neg_mask`: per query, the share of its
# negatives nearer than its farthest positive, averaged over queries.
#
# *Your answer* (the next code cell) defines `growth` (per model, the overlap share with a
# growing random share of the negatives, then all of them) and `finer` (per model, the mean
# share of negatives nearer than the farthest positive); the cell after it checks it.

# %% [markdown] tags=["solution"]
# **Solution 2.** A query counts as "overlapping" as soon as a single negative beats its
# farthest positive, and the more negatives it has, the likelier one of them does: keeping a
# growing random share of each query's negatives (the cell's fractions), then all, the share
# grows. The share of negatives that do so is a graded version, small when only a few
# negatives intrude: here it is less than a fifth of the overlap share, for both models.

# %% tags=["answer"]
### BEGIN SOLUTION
keep = np.random.default_rng(SEED).random(geo["DRSL"].dist.shape)  # one draw, nested subsets
finer, growth = {}, {}
for name, g in geo.items():
    far_pos = np.where(g.pos_mask, g.dist, -np.inf).max(axis=1)
    has = g.pos_mask.any(axis=1)
    intrude = (g.dist < far_pos[:, None]) & g.neg_mask
    growth[name] = [float(((intrude & (keep < f)).any(axis=1))[has].mean()) for f in (0.1, 0.3, 1)]
    nearer = intrude.sum(axis=1) / g.neg_mask.sum(axis=1)
    finer[name] = float(nearer[has].mean())
### END SOLUTION
print("overlap share with 10%, 30%, all negatives:", {k: np.round(v, 3) for k, v in growth.items()})
overlap = stats.loc["overlap_distance"].round(3).to_dict()
print({k: round(v, 4) for k, v in finer.items()}, "against the overlap shares", overlap)

# %% tags=["check"]
assert set(growth) == set(finer) == set(geo), "growth and finer hold one entry per model"
### BEGIN HIDDEN TESTS
for name in geo:
    assert growth[name] == sorted(growth[name])  # more negatives: more overlapping queries
    assert np.isclose(growth[name][-1], stats.loc["overlap_distance", name])  # all: the share
    assert 5 * finer[name] < stats.loc["overlap_distance", name]
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 3.** With exactly 3 positives, which values can Spearman's $\rho$ take? Use it to
# explain the spikes in the left panels of section 5, then rerun with `min_positives=5`.
#
# *Your answer* (the next code cell) defines `exactly3` and `rho3`; the cell after it checks them.

# %% [markdown] tags=["solution"]
# **Solution 3.** With $n = 3$ and no ties, $\rho = 1 - 6\sum d_i^2 / (n(n^2-1))$ with
# $\sum d_i^2 \in \{0, 2, 6, 8\}$: $\rho \in \{1, 0.5, -0.5, -1\}$. Queries with few
# positives pile up on those values.

# %% tags=["answer"]
### BEGIN SOLUTION
g = geo["DRSL"]
rho3, q3 = geometry.spearman_per_query(g.dist, g.angle, g.pos_mask, min_positives=3)
exactly3 = g.pos_mask[q3].sum(axis=1) == 3
values = sorted(set(np.round(rho3[exactly3], 6).tolist()))
print(f"{exactly3.sum()} queries with exactly 3 positives; their rho values:", values)
fig = plotting.plot_rank_in_rank(g, min_positives=5, title="DRSL, queries with >= 5 positives")
### END SOLUTION

# %% tags=["check"]
assert {"exactly3", "rho3"} <= set(globals()), "your answer defines exactly3 and rho3"
### BEGIN HIDDEN TESTS
assert set(np.round(rho3[exactly3], 6)) <= {1.0, 0.5, -0.5, -1.0}
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 4.** Normalise the DRSL model's features to unit length and recompute the pooled
# ROC-AUC of distances and of angles. Why are the two now equal?
#
# *Your answer* (the next code cell) defines `on_sphere`; the cell after it checks it.

# %% [markdown] tags=["solution"]
# **Solution 4.** On the unit sphere $\lVert a - b \rVert = \sqrt{2 - 2\cos}$ is an
# increasing function of the angle, and an AUC depends only on the order of the values.

# %% tags=["answer"]
### BEGIN SOLUTION
qd, gd = (torch.nn.functional.normalize(x.double(), dim=1) for x in feats["DRSL"])
on_sphere = geometry.pair_geometry(qd, gd, q_pids, g_pids, q_camids, g_camids).stats()
auc = {kind: round(on_sphere[f"auc_{kind}"], 6) for kind in ("distance", "angle")}
print("unit features, pooled AUC:", auc)
### END SOLUTION

# %% tags=["check"]
assert {"on_sphere"} <= set(globals()), "your answer defines on_sphere"
### BEGIN HIDDEN TESTS
assert abs(on_sphere["auc_distance"] - on_sphere["auc_angle"]) < 1e-6
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 5.** On one P x K batch of embeddings, `geometry.batch_geometry(embeddings,
# labels)` counts ordered pairs: check that `num_pos = P K (K - 1)` and `num_neg = P K (P - 1) K`
# (notebook 00's PK ratio, summed over anchors), and draw `plot_pair_histograms` of that batch.
#
# *Your answer* (the next code cell) defines `bg`, `P_b` and `K_b`; the cell after it checks them.

# %% [markdown] tags=["solution"]
# **Solution 5.** Each of the $PK$ anchors has $K-1$ positives and $(P-1)K$ negatives, and
# `batch_geometry` counts every ordered pair once per anchor. A batch of the DRSL model's
# gallery embeddings (8 identities with 4 images each) shows it.

# %% tags=["answer"]
### BEGIN SOLUTION
P_b, K_b = 8, 4
gal = feats["DRSL"][1]
pick = [np.flatnonzero(g_pids == pid)[:K_b] for pid in np.unique(g_pids[g_pids > 0])]
pick = np.concatenate([p_ for p_ in pick if len(p_) == K_b][:P_b])
bg = geometry.batch_geometry(gal[pick], torch.as_tensor(g_pids[pick]))
print(f"num_pos {bg.num_pos}, num_neg {bg.num_neg}")
fig = plotting.plot_pair_histograms(bg, title="one 8 x 4 batch of DRSL gallery embeddings")
### END SOLUTION

# %% tags=["check"]
assert {"bg", "P_b", "K_b"} <= set(globals()), "your answer defines bg, P_b and K_b"
### BEGIN HIDDEN TESTS
assert bg.num_pos == P_b * K_b * (K_b - 1) and bg.num_neg == P_b * K_b * (P_b - 1) * K_b
### END HIDDEN TESTS

# %% [markdown]
# ## References
# - Rank-in-Rank Loss for Person Re-identification, ACM TOMM, doi:10.1145/3532866.
# - L. van der Maaten, G. Hinton, "Visualizing Data using t-SNE", JMLR 9, 2008.
# - L. Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015 (Market-1501
#   and its evaluation protocol).
# - K. Oksuz et al., "Rank & Sort Loss for Object Detection and Instance Segmentation",
#   ICCV 2021 (the sorting error DRSL builds on).
# - H. Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification",
#   CVPR-W 2019 (BNNeck, the CE+triplet baseline).
