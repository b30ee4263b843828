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
# # 04 Train: a compact re-ID model and DRSL in a training loop
#
# *Part of the drsl course. Our reading of the paper is in `docs/drsl-loss-spec.md`
# ("our reading": the paper's full text is not available to us).*
#
# ## Goals
# - Describe the model: a narrow ResNet with a BNNeck, and which features feed which loss.
# - Train it on the synthetic set with PK batches and CE + DRSL, on a laptop CPU, and read its
#   learning curves (loss, mAP, rank-1, mINP).
# - Load the shipped checkpoints instead of training, and re-check their scores.
# - Interrupt a run and resume it to the same weights.

# %% [markdown]
# ## Setup
# One cell: imports from `drsl` (the notebook defines no function the package should own),
# paths, and the fast-mode switch (`DRSL_FAST=1`, used by the test suite, shrinks the work
# without changing the code path). Small convolutions run faster on one CPU thread than on
# two threads that fight over a busy machine, so fast mode pins one thread.

# %%
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch

import drsl
from drsl.config import data_dir, fast_mode, repo_root
from drsl.data.images import load_data
from drsl.data.sampler import PKSampler, pk_pos_neg_ratio
from drsl.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms
from drsl.models import ReIDNet, count_parameters
from drsl.plotting import plot_learning_curves
from drsl.train import TrainConfig, evaluate, load_or_train, train

FAST = fast_mode()
if FAST:
    torch.set_num_threads(1)
torch.manual_seed(0)
CHECKPOINTS = data_dir() / "checkpoints"
print(f"drsl {drsl.__version__}, torch {torch.__version__}, fast mode: {FAST}, data: {data_dir()}")

# %% [markdown]
# ## 1. The model: a narrow ResNet with a BNNeck
# The backbone is torchvision's `BasicBlock` in four stages whose widths double from
# `base_width` (the cell prints them; a ResNet-18 is eight times as wide and has twice the
# blocks), with the last stage at stride 1 as in the strong baseline of Luo et al. Global
# average pooling gives the **features** $f$, as many as the last stage's width.
# The **BNNeck** is a BatchNorm1d after them: the metric loss (triplet, Smooth-AP or DRSL) sees
# $f$, the identity classifier sees the normalised $\mathrm{BN}(f)$, and so does retrieval at
# test time. DRSL's angle targets $t_j = (1 + \cos(g_a, g_j))/2$ take $g = \mathrm{BN}(f)$:
# the directions that cross-entropy shapes (spec, "Words"; `angle_source="bn"` in the config).
#
# In training mode the network returns `(features, bn_features, logits)`; in eval mode only
# `bn_features`. The next cell checks that the eval output is the BNNeck applied with its
# running statistics.

# %%
net = ReIDNet(num_classes=400)
x = torch.randn(8, 3, 64, 32)
out = net(x)
n_params = count_parameters(net)
widths = [
    stage[-1].conv2.out_channels for stage in net.backbone if isinstance(stage, torch.nn.Sequential)
]
print(f"stage widths {widths}, features {out.features.shape[1]}-d")
print(
    f"{n_params / 1e6:.2f} M parameters ({count_parameters(net.classifier) / 1e6:.2f} M of them in "
    f"the classifier), {n_params * 4 / 2**20:.1f} MB in float32"
)
print({k: tuple(v.shape) for k, v in out._asdict().items()})
net.eval()
bn = net.bnneck
expected = (net.backbone(x) - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight
torch.testing.assert_close(net(x), expected + bn.bias)

# %% [markdown]
# ## 2. Data, augmentation and PK batches
# Images are held in memory at $64 \times 32$ (a quarter of Market's usual $128 \times 64$: enough
# for the synthetic people, and four times cheaper). Training images get the strong baseline's
# augmentations: horizontal flip, pad-and-crop, random erasing. Batches are the PK batches of
# notebook 00 (its PK ratio gives each anchor's positives and negatives).

# %%
data = load_data(fast=FAST)
print(
    f"{data.name}: {len(data.train)} train images of {data.num_classes} identities, "
    f"{len(data.query)} queries, {len(data.gallery)} gallery images"
)
aug = build_transforms(train=True, height=64, width=32)
plain = build_transforms(train=False, height=64, width=32)
fig, axes = plt.subplots(2, 8, figsize=(10, 3.2))
for j in range(8):
    for row, tf in enumerate((plain, aug)):
        img = tf(data.train.images[j * 5])
        img = (
            img * torch.tensor(IMAGENET_STD)[:, None, None]
            + torch.tensor(IMAGENET_MEAN)[:, None, None]
        )
        axes[row, j].imshow(img.clamp(0, 1).permute(1, 2, 0))  # undo the normalisation to show
        axes[row, j].axis("off")
axes[0, 0].set_title("plain", loc="left", fontsize=9)
axes[1, 0].set_title("augmented", loc="left", fontsize=9)
plt.show()

sampler = PKSampler(data.train.pids.tolist(), P=16, K=4, seed=0)
batch = next(iter(sampler))
counts = torch.bincount(data.train.pids[batch]).tolist()
print(
    f"{len(sampler)} batches per epoch; one batch: {len(set(data.train.pids[batch].tolist()))} "
    f"identities x {max(counts)} images; positives/negatives per anchor = "
    f"{sampler.pos_neg_ratio:.3f}"
)
assert sampler.pos_neg_ratio == pk_pos_neg_ratio(16, 4)

# %% [markdown]
# ## 3. A short training run
# `drsl.train.train` runs the loop: PK batches, augmentation, the loss (here label-smoothed
# cross-entropy on the logits + DRSL on the features), Adam with warm-up and cosine decay,
# evaluation under the Market protocol, a CSV/JSON log, and an atomic checkpoint from which a
# killed run resumes to the exact same weights (give it `out_dir=`). The progress bar is
# `tqdm.auto`: a widget here, a text bar in a terminal. This run is short on purpose.

# %%
short = TrainConfig(
    loss="ce+drsl",
    base_width=8,
    num_epochs=6 if FAST else 4,
    max_steps=60 if FAST else None,
    eval_every=2,
)
t0 = time.perf_counter()
run = train(short, data)
print(
    f"{len(run.history['train'])} steps in {time.perf_counter() - t0:.1f} s; "
    f"last evaluation: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in run.metrics.items())
)
first, last = run.history["train"][:10], run.history["train"][-10:]
print(
    f"mean loss, first 10 steps {sum(r['loss'] for r in first) / 10:.3f} -> "
    f"last 10 steps {sum(r['loss'] for r in last) / 10:.3f}"
)

# %% [markdown]
# ## 4. The full models, from the shipped checkpoints
# The course ships two checkpoints trained on the default synthetic set with the default
# `TrainConfig`: CE + DRSL and CE + triplet (the cell prints their settings, steps and
# training time). `bash experiments/train_checkpoints.sh --no-resume` trains them again, with
# the same weights bit for bit on one thread (`data/README.md`). `load_or_train` loads a
# checkpoint with `drsl.train.load_model` when it exists and trains (then saves) when it does
# not. Their learning curves come with them. In full mode the next cell re-evaluates each model
# on the data it was trained on, as `python -m drsl eval data/checkpoints/ce_drsl.pt` does
# (`load_model`, then `evaluate`), and asserts that the stored metrics are those numbers; fast
# mode, whose small data set is not the checkpoints' data, reads the stored ones.

# %%
models = {}
for name in ("ce_drsl", "ce_triplet"):
    path = CHECKPOINTS / f"{name}.pt"
    cfg = TrainConfig(loss=name.replace("_", "+", 1))
    if FAST and not path.exists():  # no shipped checkpoint here: a small stand-in, fast
        cfg, path = replace(short, loss=cfg.loss), repo_root() / "runs" / "nb04-fast" / f"{name}.pt"
    models[name] = load_or_train(cfg, path)
    res = models[name]
    c = res.config
    stored = ", ".join(f"{k} {100 * v:.1f}%" for k, v in res.metrics.items())
    print(
        f"{name}: {len(res.history['train'])} steps ({c.num_epochs} epochs, P = {c.P}, "
        f"K = {c.K}, lr {c.lr:g}) in {res.seconds / 60:.1f} min; stored: {stored}"
    )
    if FAST:
        continue  # the fast data is not the data the checkpoints were trained on
    if res.data_fingerprint != data.fingerprint:
        print(f"  trained on data {res.data_fingerprint}, not {data.fingerprint}: retrain it")
        continue
    again = evaluate(res.model, data, batch_size=c.eval_batch_size)  # = python -m drsl eval
    assert all(abs(again[k] - res.metrics[k]) < 1e-4 for k in res.metrics), (again, res.metrics)
    print(f"  re-evaluated here: mAP {100 * again['mAP']:.1f}%")
fig = plot_learning_curves({k: v.history for k, v in models.items()}, metrics=("mAP", "mINP"))
plt.show()

# %% [markdown]
# ## Summary
# - The model is a narrow ResNet with a BNNeck (section 1 prints its size): the metric loss
#   acts on the pooled features, cross-entropy and retrieval on the batch-normalised ones.
# - `drsl.train` trains it with PK batches, logs, evaluates and resumes exactly; the shipped
#   checkpoints hold the full runs and their curves, and re-evaluate to their stored metrics.
# - Two checkpoints of one seed each compare two training runs, not two losses: whether DRSL
#   trains better under imbalance is the question of notebook 05, which answers it with many
#   seeds, a validation split and paired intervals.
#
# ## Exercises
# Each exercise is followed by its solution (hidden in the student edition). In fast mode
# the solutions train for `quick.max_steps` steps each (about a second per run); in full
# mode they take the length of section 3's run.
#
# **Exercise 1.** Train the short run of section 3 with `loss="ce+triplet"`, then with
# `loss="drsl"` (no cross-entropy at all). Which learns faster in the first steps?

# %% [markdown] tags=["solution"]
# **Solution 1.** The cell trains the three losses with the settings of section 3 (in fast
# mode for the first `quick.max_steps` steps only) and prints the last evaluation of each;
# the answer is the order it prints (computed here: on so few steps it can depend on the
# seed). Without cross-entropy, DRSL alone gets no identity labels beyond the batch, and
# usually starts slower.

# %% tags=["solution"]
quick = replace(short, max_steps=12) if FAST else short  # fast mode: the first 12 steps
ex1 = {"ce+drsl": train(quick, data, progress=False) if FAST else run}
for loss in ("ce+triplet", "drsl"):
    ex1[loss] = train(replace(quick, loss=loss), data, progress=False)
mAP1 = {k: r.metrics["mAP"] for k, r in ex1.items()}
ranked = sorted(mAP1, key=mAP1.get, reverse=True)
print(
    f"after {len(ex1['drsl'].history['train'])} steps: "
    + ", ".join(f"{k}: mAP {100 * mAP1[k]:.1f}%" for k in ranked),
    f"-> fastest: {ranked[0]}",
)
assert all(len(r.history["train"]) == len(ex1["ce+drsl"].history["train"]) for r in ex1.values())
assert all(0 <= v <= 1 for v in mAP1.values())

# %% [markdown]
# **Exercise 2.** Set `angle_source="features"` in the config of section 3. What changes in
# DRSL's sorting term, and does the mAP move?

# %% [markdown] tags=["solution"]
# **Solution 2.** The angle targets $t = (1 + \cos)/2$ then come from the same pre-BNNeck
# features $f$ as the distances, instead of the post-BN features that cross-entropy shapes:
# the sorting term asks the distance order of the positives to follow their own angle order,
# a weaker constraint (for features of nearly equal norms the two orders nearly coincide).
# The cell trains it with solution 1's settings and prints the change in mAP against
# solution 1's CE + DRSL run (one seed: read it as an anecdote).

# %% tags=["solution"]
feat_run = train(replace(quick, angle_source="features"), data, progress=False)
assert feat_run.config.angle_source == "features" and quick.angle_source == "bn"
print(
    f"angle targets from the post-BN features: mAP {100 * mAP1['ce+drsl']:.1f}%, "
    f"from the pre-BN features: {100 * feat_run.metrics['mAP']:.1f}%"
)

# %% [markdown]
# **Exercise 3.** Kill a run: call `train(short, data, out_dir="runs/kill-me")`, interrupt the
# kernel half way, and call it again. Check with `train_log.csv` that no step was repeated.

# %% [markdown] tags=["solution"]
# **Solution 3.** Here the interruption is simulated: an `on_step` callback raises
# `KeyboardInterrupt` (what the kernel's interrupt raises) past half way. The second call
# resumes from the last checkpoint in the run folder (written every `checkpoint_every`
# steps), replays the steps after it, and the log holds every step exactly once. On one
# thread (fast mode) the resumed run also ends with exactly the metrics of solution 1's
# uninterrupted CE + DRSL run, which had the same settings.

# %% tags=["solution"]
whole = ex1["ce+drsl"]  # uninterrupted, same settings
killed = replace(whole.config, checkpoint_every=5 if FAST else 10)
n_steps = len(whole.history["train"])
half = n_steps // 2 + 2  # between two checkpoints: some steps are done twice, logged once
with tempfile.TemporaryDirectory() as tmp:

    def interrupt(step, parts):  # a callback, not package code: the kernel's interrupt, on cue
        if step == half:
            raise KeyboardInterrupt

    try:
        train(killed, data, out_dir=Path(tmp), progress=False, on_step=interrupt)
    except KeyboardInterrupt:
        print(f"interrupted after step {half}")
    resumed = train(killed, data, out_dir=Path(tmp), progress=False)
    log = pd.read_csv(Path(tmp) / "train_log.csv")
print(f"train_log.csv: {len(log)} rows, steps {log.step.min()}..{log.step.max()}")
assert log.step.is_unique and log.step.tolist() == list(range(1, n_steps + 1))
if FAST:  # one thread: the resumed run is the uninterrupted one, bit for bit
    assert resumed.metrics == whole.metrics

# %% [markdown]
# ## References
# - Rank-in-Rank Loss for Person Re-identification, ACM TOMM, doi:10.1145/3532866.
# - Luo et al., Bag of Tricks and a Strong Baseline for Deep Person Re-identification,
#   CVPR Workshops 2019 (BNNeck, last stride 1, label smoothing, random erasing).
# - Hermans et al., In Defense of the Triplet Loss for Person Re-Identification, 2017 (PK
#   batches, batch-hard triplet).
# - Brown et al., Smooth-AP: Smoothing the Path Towards Large-Scale Image Retrieval, ECCV 2020.
