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
# # 03 Data: synthetic identities across cameras, PK batches and the evaluation protocol
#
# *Part of the drsl course. Our reading of the paper is in `docs/drsl-loss-spec.md`
# ("our reading": the paper's full text is not available to us).*
#
# ## Goals
# - Explain what makes re-ID data hard: identities that share most attributes, and cameras
#   that change colour, light, viewpoint and background more than identities differ.
# - Read a dataset's statistics, and count by hand the positives and negatives one anchor sees
#   in a PK batch.
# - Evaluate a ranking under the Market-1501 protocol by hand (same-camera matches and junk
#   dropped, distractors kept) and check it against `drsl.metrics`, for both AP conventions.
# - Point the same loaders at your own Market-1501, DukeMTMC-reID, CUHK03-np or MSMT17 folder.

# %% [markdown]
# ## Setup
# One cell: imports from `drsl` (the notebook defines no function the package should own),
# paths, and the fast-mode switch (`DRSL_FAST=1`, used by the test suite, shrinks the work
# without changing the code path). `ensure_dataset` draws the synthetic set on first use
# (a small one in fast mode, the full one otherwise, in `data/`; the cell prints its size) and
# reuses it afterwards.

# %%
import inspect
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

import drsl
from drsl.config import data_dir, fast_mode
from drsl.data.datasets import check_command, load_dataset
from drsl.data.features import color_histogram_features, load_images, raw_pixel_features
from drsl.data.sampler import PKSampler, pk_pos_neg_ratio
from drsl.data.synth import ensure_dataset, generate, read_manifest
from drsl.distances import pairwise_euclidean
from drsl.metrics import average_precision, evaluate_embeddings, evaluate_rank
from drsl.metrics.reference import evaluate_market
from drsl.plotting import (
    plot_dataset_statistics,
    plot_identities_across_cameras,
    plot_protocol_example,
)

FAST = fast_mode()
torch.manual_seed(0)
root = ensure_dataset(fast=FAST)
splits = load_dataset(root)
print(f"drsl {drsl.__version__}, torch {torch.__version__}, fast mode: {FAST}, data: {data_dir()}")
print(splits)

# %% [markdown]
# ## 1. Synthetic people, real problems
# Each identity is a combination of attributes drawn from small palettes: skin tone, hair colour
# and style, upper-body colour, texture (plain, stripes, checks, a chest logo, a back print, an
# open jacket) and sleeves, lower-body colour and cut, shoes, a bag (backpack, shoulder bag,
# handbag) with its side and colour, and a body build. Identities come in **families** whose
# members re-draw only one to three attributes of a shared prototype: the task is fine-grained.
# The generator writes the attributes of every pid to `identities.csv`; here are two families.

# %%
people = pd.read_csv(root / "identities.csv")
people = people[people.split != "distractor"]
two_families = people[people.family.isin(people.family.unique()[:2])]
two_families.drop(columns=["skin", "hair"]).sort_values(["family", "pid"]).set_index(
    ["family", "pid"]
)

# %% [markdown]
# A **camera** is a set of nuisances: a colour cast and brightness, contrast and gamma, blur,
# noise, its own background scene and clutter, a preferred viewpoint (a front view shows the
# chest logo and the straps of a backpack, a back view shows the backpack and the back print,
# a side view hides the bag on the far side), the detector's scale and crop jitter, and
# sometimes an occluder (a pole, a car, a passer-by). Look at one identity along a row: the
# camera changes the picture more than the family member next to it would.

# %%
fig = plot_identities_across_cameras(splits.train, num_ids=4 if FAST else 6, seed=1)

# %% [markdown]
# ## 2. Dataset statistics
# The layout and the file names are those of Market-1501 (`PPPP_cCsS_FFFFFF_NN.jpg`), so the
# loader that reads this folder reads the real dataset too. Train pids are relabelled
# `0..n-1`; query and gallery keep theirs, with distractors (pid 0) and junk (pid -1) in the
# gallery. The manifest records the settings, the counts and a sha256 of every file.

# %%
manifest = read_manifest(root)
print("settings:", {k: manifest["settings"][k] for k in ("seed", "num_cams", "difficulty")})
print(f"{len(manifest['files'])} files, {manifest['bytes'] / 2**20:.1f} MiB of JPEG")
splits.statistics()

# %%
fig = plot_dataset_statistics(splits)

# %% [markdown]
# ## 3. PK batches on the synthetic set
# Notebook 00 taught the PK ratio: in a batch of $P$ identities with $K$ images each, an
# anchor has $K-1$ positives and $(P-1)K$ negatives. Here we draw a real batch from the
# synthetic train split with `PKSampler` and check that every anchor sees exactly that.

# %%
P, K = (8, 4) if FAST else (16, 4)
train_pids, _ = splits.arrays("train")
sampler = PKSampler(train_pids, P=P, K=K, seed=0)
batch = np.asarray(sampler.batches(epoch=0)[0])
labels = train_pids[batch]
same = labels[:, None] == labels[None, :]
positives = same.sum(axis=1) - 1  # the anchor itself is not its own positive
negatives = (~same).sum(axis=1)
print(
    f"{len(sampler)} batches per epoch of {sampler.batch_size} images, identities: "
    f"{len(np.unique(labels))}"
)
print(f"per anchor: {positives[0]} positives, {negatives[0]} negatives (P = {P}, K = {K})")
assert np.all(positives == K - 1) and np.all(negatives == (P - 1) * K)
assert sampler.pos_neg_ratio == pk_pos_neg_ratio(P, K)
assert np.all(positives / negatives == sampler.pos_neg_ratio)

# %% [markdown]
# ## 4. The evaluation protocol on a tiny example
# A query of identity 7 seen by camera 0, and eight gallery items sorted by distance. The
# Market-1501 protocol, per query:
# 1. drops gallery items of the **same identity and the same camera**: they are frames of the
#    same tracklet, near duplicates that say nothing about finding a person *across* cameras;
# 2. drops **junk** (pid -1): badly cropped boxes that count neither way;
# 3. keeps **distractors** (pid 0) as negatives;
# 4. skips a query that has no match left.
#
# The kept items get ranks $1, 2, \dots$; the matches sit at ranks $r_1 < r_2 < \dots < r_N$.

# %%
distances = np.array([0.20, 0.35, 0.40, 0.50, 0.55, 0.70, 0.80, 0.90])
g_pids = np.array([7, 7, 3, 0, 7, -1, 5, 7])
g_camids = np.array([0, 1, 1, 2, 2, 1, 0, 3])
q_pid, q_camid = 7, 0
fig = plot_protocol_example(distances, g_pids, g_camids, q_pid, q_camid)

# %% [markdown]
# Two AP conventions are in use. The **non-interpolated** AP of torchreid and fast-reid (our
# default) averages the precision at each match,
# $\mathrm{AP} = \frac1N \sum_k k / r_k$. The **official Market-1501 code** uses the trapezoid
# rule between the precision just before and at each match,
# $\mathrm{AP} = \frac1N \sum_k \tfrac12\big(\tfrac{k-1}{r_k-1} + \tfrac{k}{r_k}\big)$ (the
# first term is 1 when $r_k = 1$). We compute both by hand and check `drsl.metrics`.

# %%
order = np.argsort(distances, kind="stable")
keep = ~(((g_pids == q_pid) & (g_camids == q_camid)) | (g_pids == -1))[order]
matches = (g_pids[order] == q_pid)[keep]
r = np.flatnonzero(matches) + 1  # ranks of the matches among the kept items
k = np.arange(1, len(r) + 1)
ap_noninterp = np.mean(k / r)
ap_market = np.mean((np.where(r > 1, (k - 1) / np.maximum(r - 1, 1), 1.0) + k / r) / 2)
inp = len(r) / r[-1]  # mINP's term: matches / rank of the last one
print(f"match ranks {r.tolist()}: AP {ap_noninterp:.4f} (non-interp.), {ap_market:.4f} (Market)")
assert np.isclose(ap_noninterp, average_precision(matches))
assert np.isclose(ap_market, average_precision(matches, mode="market"))
res = evaluate_rank(distances[None], [q_pid], g_pids, [q_camid], g_camids, max_rank=5)
assert np.isclose(res.mAP, ap_noninterp) and np.isclose(res.mINP, inp)
print("CMC (rank 1..5):", res.cmc.tolist())

# %% [markdown]
# `evaluate_rank` is vectorised over queries (and long). The same protocol as a short loop,
# one query at a time, is `drsl.metrics.reference.evaluate_market`: its source is below, and
# it must give the same CMC, mAP and mINP (checked here on the tiny example; section 4's end
# checks it on the whole synthetic test split).

# %% tags=["remove-input"]
display(Markdown(f"```python\n{inspect.getsource(evaluate_market)}```"))
ref = evaluate_market(distances[None], np.array([q_pid]), g_pids, np.array([q_camid]), g_camids,
                      max_rank=5)  # fmt: skip
assert np.allclose(ref["cmc"], res.cmc) and np.isclose(ref["mAP"], res.mAP)
assert np.isclose(ref["mINP"], res.mINP)

# %% [markdown]
# Why drop same-camera matches? Because they make the task trivial. Below, the raw pixels of
# the synthetic query and gallery images are compared directly (nearest neighbour): first under
# the protocol, then pretending every gallery image comes from another camera, so that the
# query's own tracklet counts.

# %%
q_pids, q_camids = splits.arrays("query")
g_pids_all, g_camids_all = splits.arrays("gallery")
q_img = load_images([p for p, _, _ in splits.query])
g_img = load_images([p for p, _, _ in splits.gallery])
q_raw, g_raw = (
    torch.from_numpy(raw_pixel_features(q_img)),
    torch.from_numpy(raw_pixel_features(g_img)),
)
protocol = evaluate_embeddings(q_raw, g_raw, q_pids, g_pids_all, q_camids, g_camids_all)
no_camera = evaluate_embeddings(
    q_raw, g_raw, q_pids, g_pids_all, q_camids, np.full_like(g_camids_all, -9)
)
print(f"raw pixels, Market protocol:          mAP {protocol.mAP:.1%}, rank-1 {protocol.cmc[0]:.1%}")
print(
    f"raw pixels, same camera counted too:  mAP {no_camera.mAP:.1%}, rank-1 {no_camera.cmc[0]:.1%}"
)
assert no_camera.mAP > protocol.mAP  # the same-camera frames inflate the score
ref = evaluate_market(pairwise_euclidean(q_raw, g_raw).numpy(), q_pids, g_pids_all, q_camids,
                      g_camids_all)  # fmt: skip
assert np.isclose(ref["mAP"], protocol.mAP) and np.isclose(ref["mINP"], protocol.mINP)
assert np.allclose(ref["cmc"][: len(protocol.cmc)], protocol.cmc)
print(f"drsl.metrics.reference.evaluate_market agrees on all {len(q_pids)} queries")

# %% [markdown]
# ## 5. Hand-made baselines stay poor
# A colour histogram is the classic hand-made re-ID feature. On this set it does no better than
# raw pixels: identities share palettes, the camera's colour cast and background dominate the
# histogram, and the nearest neighbours are images of *other* people seen by the same camera.
# A learned embedding has to discover what does not change across cameras (notebook 04).

# %%
rows = []
for name, features in [
    ("raw pixels (16x32)", raw_pixel_features),
    ("HSV histogram", color_histogram_features),
    ("HSV histogram, 6 stripes", lambda x: color_histogram_features(x, stripes=6)),
]:
    res = evaluate_embeddings(
        torch.from_numpy(features(q_img)),
        torch.from_numpy(features(g_img)),
        q_pids,
        g_pids_all,
        q_camids,
        g_camids_all,
    )
    rows.append(
        {
            "feature": name,
            "mAP": res.mAP,
            "rank-1": res.cmc[0],
            "rank-5": res.cmc[4],
            "mINP": res.mINP,
        }
    )
baselines = pd.DataFrame(rows).set_index("feature")
assert (baselines["mAP"] < 0.3).all()
baselines.style.format("{:.1%}")

# %% [markdown]
# ## 6. Your own data
# The loaders never download anything; point them at a folder you have. `load_dataset`
# recognises the layout (Market-1501 and DukeMTMC-reID folders, CUHK03-np's `detected/` and
# `labeled/`, MSMT17's list files, V1 or V2) and says what it expected when it finds nothing,
# in one line (a `FileNotFoundError`; here caught and printed):

# %%
try:
    load_dataset(data_dir() / "Market-1501-v15.09.15")
except FileNotFoundError as err:
    print(f"{type(err).__name__}: {err}")

# %% [markdown]
# **Your own images** need no special file names: one folder per identity, any folder name,
# in `ROOT/train/<identity>/` and `ROOT/test/<identity>/` (`drsl.data.folders`). Below, a few
# synthetic people are copied into that layout under plain names (`img0.jpg`, ...), so they
# carry no camera. The protocol then is **leave-one-out**: every test image queries all the
# other test images, and only the query itself is dropped (with Market-style names the
# cameras are read from them and Market's same-camera rule applies; a `ROOT/query/` folder,
# when present, holds the queries). `drsl data check ROOT` (here `check_command`) reports the
# identities, the images per identity, the cameras, the protocol and any problem.

# %%
own = Path(tempfile.mkdtemp()) / "my_people"
for split, items in (("train", splits.train), ("test", splits.gallery)):
    people = {}
    for path, pid, _ in items:
        if pid > 0 or split == "train":
            people.setdefault(pid, []).append(path)
    for pid in sorted(people)[:6]:
        folder = own / split / f"person_{pid:04d}"
        folder.mkdir(parents=True)
        for i, path in enumerate(people[pid][:5]):
            shutil.copy(path, folder / f"img{i}.jpg")
mine = load_dataset(own)
assert mine.name == "folders" and mine.query is mine.gallery and "leave-one-out" in mine.protocol
check_command(own)

# %% [markdown]
# ## Summary
# - The synthetic set behaves like re-ID data: families of identities that share most
#   attributes, cameras that change colour, view and background, Market-1501 file names.
# - A PK batch of the synthetic set gives each anchor exactly the $K-1$ positives and
#   $(P-1)K$ negatives of notebook 00's PK ratio.
# - The Market protocol drops same-identity same-camera items and junk and keeps distractors;
#   without it, near-duplicate frames inflate the scores. The two AP conventions differ and
#   `drsl.metrics` computes both, vectorised over queries; the short per-query loop of
#   `drsl.metrics.reference.evaluate_market` gives the same numbers.
# - Your own images load from one folder per identity (`drsl.data.folders`), with cameras
#   from Market-style names or a leave-one-out protocol without them; `drsl data check`
#   reports what a folder holds.
#
# ## Exercises
# Each exercise is followed by its solution (hidden in the student edition).
#
# **Exercise 1.** Set `q_camid = 1` in section 4. Which items are dropped now, and how do
# both APs change?

# %% [markdown] tags=["solution"]
# **Solution 1.** The same-camera match is now item 1 (identity 7, camera 1), and item 0, the
# camera-0 match, comes back. Item 0 is the nearest item and item 1 the next, so the kept
# list is the same sequence of hits and misses: both APs are unchanged. The cell lists the
# dropped items and recomputes both APs with `drsl.metrics` (the protocol is applied by
# `evaluate_rank`, so no hand masks are needed).

# %% tags=["solution"]
for cam in (0, 1):
    dropped = np.flatnonzero(((g_pids == q_pid) & (g_camids == cam)) | (g_pids == -1))
    aps = {
        mode: evaluate_rank(distances[None], [q_pid], g_pids, [cam], g_camids, ap_mode=mode).mAP
        for mode in ("noninterp", "market")
    }
    print(f"q_camid = {cam}: dropped items {dropped.tolist()}, AP {aps['noninterp']:.4f} "
          f"(non-interp.), {aps['market']:.4f} (Market)")  # fmt: skip
    if cam == 1:
        assert dropped.tolist() == [1, 5] and np.isclose(aps["noninterp"], ap_noninterp)
        assert np.isclose(aps["market"], ap_market)

# %% [markdown]
# **Exercise 2.** Show that with a single match at rank $r$ the Market AP is
# $\frac12(\frac{0}{r-1} + \frac1r)$ for $r > 1$, half the non-interpolated AP. Check it with
# `average_precision`.

# %% [markdown] tags=["solution"]
# **Solution 2.** With one match ($N = 1$, $k = 1$) the trapezoid term reads
# $\frac12(\frac{k-1}{r-1} + \frac{k}{r}) = \frac12(0 + \frac1r)$, while the
# non-interpolated AP is $\frac{k}{r} = \frac1r$: half of it. At $r = 1$ both are 1.

# %% tags=["solution"]
for r_ in range(1, 8):
    one = np.zeros(10, dtype=bool)
    one[r_ - 1] = True
    ni, mk = average_precision(one), average_precision(one, mode="market")
    assert np.isclose(ni, 1 / r_) and np.isclose(mk, 1.0 if r_ == 1 else 0.5 / r_)
print("single match: Market AP = half the non-interpolated AP for every r > 1")

# %% [markdown]
# **Exercise 3.** With `generate` from `drsl.data.synth`, draw two small sets into fresh
# folders, one with clean cameras (`difficulty=0.0`) and one with the default difficulty
# (e.g. `num_train_ids=4, num_test_ids=30, num_distractors=20, num_junk=10`), and rerun
# section 5 on both. Which baseline profits most from clean cameras?

# %% [markdown] tags=["solution"]
# **Solution 3.** The cell draws both sets (a few seconds each) and evaluates the three
# hand-made features on each; the table's last column is the gain in mAP. With clean cameras
# the colour cast and the backgrounds no longer dominate, so every feature gains; which gains
# most is printed (computed, not assumed).

# %% tags=["solution"]
small = dict(num_train_ids=4, num_test_ids=30, num_distractors=20, num_junk=10, progress=False)
gains = {}
with tempfile.TemporaryDirectory() as tmp:
    for difficulty in (1.0, 0.0):
        sp = load_dataset(generate(Path(tmp) / f"d{difficulty}", difficulty=difficulty, **small))
        (qp, qc), (gp, gc) = sp.arrays("query"), sp.arrays("gallery")
        qi = load_images([p_ for p_, _, _ in sp.query])
        gi = load_images([p_ for p_, _, _ in sp.gallery])
        for name, feat in (("raw pixels", raw_pixel_features), ("HSV histogram",
                           color_histogram_features)):  # fmt: skip
            r_ = evaluate_embeddings(torch.from_numpy(feat(qi)), torch.from_numpy(feat(gi)),
                                     qp, gp, qc, gc)  # fmt: skip
            gains.setdefault(name, {})[f"mAP, difficulty {difficulty}"] = r_.mAP
table = pd.DataFrame(gains).T
table["gain"] = table["mAP, difficulty 0.0"] - table["mAP, difficulty 1.0"]
print(f"most helped by clean cameras: {table['gain'].idxmax()}")
assert (table["gain"] > 0).all()
table.style.format("{:.1%}")

# %% [markdown]
# **Exercise 4.** In the example of section 4, turn the distractor (pid 0) into junk
# (pid -1): how do AP and CMC change, and why?

# %% [markdown] tags=["solution"]
# **Solution 4.** The distractor is a negative ranked between matches; as junk it is dropped,
# so the matches after it move up one rank: AP rises and the CMC can only rise.

# %% tags=["solution"]
as_junk = np.where(g_pids == 0, -1, g_pids)
kept = evaluate_rank(distances[None], [q_pid], g_pids, [q_camid], g_camids, max_rank=5)
res_junk = evaluate_rank(distances[None], [q_pid], as_junk, [q_camid], g_camids, max_rank=5)
print(f"distractor kept: mAP {kept.mAP:.4f}, CMC {kept.cmc.tolist()}")
print(f"as junk:         mAP {res_junk.mAP:.4f}, CMC {res_junk.cmc.tolist()}")
assert res_junk.mAP > kept.mAP and np.all(res_junk.cmc >= kept.cmc)

# %% [markdown]
# ## References
# - Rank-in-Rank Loss for Person Re-identification, ACM TOMM, doi:10.1145/3532866.
# - L. Zheng et al., Scalable Person Re-identification: A Benchmark, ICCV 2015 (Market-1501).
# - A. Hermans, L. Beyer, B. Leibe, In Defense of the Triplet Loss for Person
#   Re-Identification, arXiv:1703.07737 (PK batches).
# - M. Ye et al., Deep Learning for Person Re-identification: A Survey and Outlook, TPAMI 2021
#   (mINP).
