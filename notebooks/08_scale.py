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
# # 07 Scale: reference items, cross-batch memory, data-parallel training
#
# *Part of the drsl course. Our reading of the paper is in `docs/drsl-loss-spec.md`
# ("our reading": the paper's full text is not available to us); this notebook follows its
# section "Beyond the batch: reference items".*
#
# ## Goals
# - See why a larger retrieval set (a cross-batch memory, more processes) pushes the
#   positive:negative imbalance of notebook 00 to extremes, and compute the ratio it gives.
# - Use the **reference items** of every loss (`ref_embeddings`, `ref_labels`) and check them
#   against a brute-force, one-anchor-at-a-time computation.
# - Run a cross-batch memory for a few steps, and see why the batch is enqueued *after* the loss.
# - Launch a 2-process data-parallel run (`torchrun`, gloo on the CPU) whose losses equal the
#   one-process run on the concatenated batches, and know how to launch it on GPUs.

# %% [markdown]
# ## Setup
# One cell: imports from `drsl` (the notebook defines no function the package should own),
# and the fast-mode switch (`DRSL_FAST=1`, used by the test suite: fewer steps and batches,
# same code path). Everything here runs on the CPU in float64 unless said otherwise.

# %%
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pytorch_metric_learning import losses as pml_losses

import drsl
from drsl.config import fast_mode, repo_root
from drsl.data.sampler import PKSampler, memory_pos_neg, pk_pos_neg_ratio
from drsl.explore.parallel import torchrun_toy, toy_run
from drsl.integrations.pml import DRSLoss as PMLDRSLoss
from drsl.losses import drsl_loss, get_loss
from drsl.losses.memory import CrossBatchMemory
from drsl.losses.reference import drsl_loss_dense
from drsl.models import ReIDNet
from drsl.plotting import plot_pk_ratio
from drsl.train.checkpoint import load_model
from drsl.train.distributed import DistributedContext, GatheredBatch
from drsl.train.evaluation import embed
from drsl.train.export import export_onnx, onnx_embed
from drsl.train.precision import resolve_precision, to_float32

FAST = fast_mode()
torch.manual_seed(0)
gen = torch.Generator().manual_seed(0)
print(f"drsl {drsl.__version__}, torch {torch.__version__}, fast mode: {FAST}")

# %% [markdown]
# ## 1. More negatives: the imbalance becomes extreme
# Notebook 00 (section 3) counted what one anchor of a $P \times K$ batch sees: $K-1$
# positives and $(P-1)K$ negatives. Now give the loss $R$ **reference items** as well: items
# that are retrieved, like the other batch rows, but are never anchors. If $R_+$ of them share
# the anchor's identity, the anchor sees
#
# $$ (K - 1 + R_+) \;:\; \big((P-1)K + R - R_+\big). $$
#
# Two sources of references:
# - **$W$ data-parallel processes**, each with its own $P \times K$ batch of distinct
#   identities: $R = (W-1)PK$ and $R_+ = 0$, so the ratio is $(K-1) : (WP-1)K$, the PK ratio of
#   one batch of $W P$ identities;
# - a **cross-batch memory** of the last $R$ items from a training set of $N$ equally sized
#   identities: in the long run a share $1/N$ of the memory belongs to the anchor's identity,
#   so $R_+ \approx R/N$ and the ratio is about $(K - 1 + R/N) : ((P-1)K + R - R/N)$. Within
#   one epoch it is a little less (section 2).

# %%
P, K = 16, 4
rows = [{"setting": f"one batch {P} x {K}", "R": 0, "ratio": pk_pos_neg_ratio(P, K)}]
rows.append({"setting": "one batch 32 x 4", "R": 0, "ratio": pk_pos_neg_ratio(32, K)})
for W in (2, 8, 64):
    R = (W - 1) * P * K
    ratio = (K - 1) / ((P - 1) * K + R)
    assert np.isclose(ratio, pk_pos_neg_ratio(W * P, K))  # W processes = one batch of W P ids
    rows.append({"setting": f"{W} processes of {P} x {K}", "R": R, "ratio": ratio})
processes = pd.DataFrame(rows)
processes["1 : n"] = (1 / processes["ratio"]).round(0).astype(int)
processes

# %% [markdown]
# ## 2. The ratio a memory of size R gives
# We measure it on PK batches of a training set shaped like Market-1501 ($N = 751$ identities
# with $17$ images each, labels only): the memory holds the labels of the last $R$ items drawn,
# and for the anchors of every later batch of two epochs we count positives and negatives over
# the batch and the memory. The estimate refines section 1 for a memory shorter than an epoch:
# the sampler cuts each identity into $G = \lfloor 17 / K \rfloor$ groups of $K$ per epoch, one
# of which is the anchor's own batch, so the other $N G - 1$ groups hold $G - 1$ of its
# identity: $R_+ \approx R (G-1) / (NG - 1)$. The package's `memory_pos_neg` does the same
# replay (the imbalance experiment of notebook 05 uses it); the cell checks the two agree.

# %%
N_IDS, PER_ID = 751, 17
pool = np.repeat(np.arange(N_IDS), PER_ID)
sampler = PKSampler(pool, P=P, K=K, seed=0)
stream = np.concatenate([pool[b] for e in (0, 1) for b in sampler.batches(e)])  # 2 epochs
B, G = P * K, PER_ID // K
rows = []
for R in (0, 1024, 4096, 8192):
    ratios = []
    for t in range(R // B, len(stream) // B):  # every batch once the memory is full
        batch, memory = stream[t * B : (t + 1) * B], stream[t * B - R : t * B]
        pos = (batch[:, None] == batch[None, :]).sum(1) - 1 + (batch[:, None] == memory).sum(1)
        neg = (B - 1 + R) - pos
        ratios.append(np.mean(pos / neg))
    r_pos = R * (G - 1) / (N_IDS * G - 1)
    estimate = (K - 1 + r_pos) / ((P - 1) * K + R - r_pos)
    rows.append({"R": R, "measured ratio": np.mean(ratios), "estimate": estimate})
memory_table = pd.DataFrame(rows)
memory_table["1 : n (measured)"] = (1 / memory_table["measured ratio"]).round(0).astype(int)
assert memory_table["measured ratio"].is_monotonic_decreasing
assert np.isclose(memory_table["measured ratio"][0], pk_pos_neg_ratio(P, K))
assert np.allclose(memory_table["measured ratio"], memory_table["estimate"], rtol=0.1)
for R, measured in zip(memory_table["R"], memory_table["measured ratio"], strict=True):
    pos_mean, neg_mean = memory_pos_neg(pool, P, K, R, seed=0, epochs=2)  # the package's replay
    assert np.isclose(pos_mean / neg_mean, measured, rtol=0.02)  # its ratio of the means
memory_table

# %% [markdown]
# The same numbers as a picture: the batch-only curve of notebook 00 (positives per negative
# against P) and, marked on it (`plot_pk_ratio(..., memory=...)`), where each memory size puts
# one $16 \times 4$ batch: at the $P$ of the batch-only batch with the same ratio. A memory is
# worth as many extra identities in the batch as it holds negatives.

# %%
P_axis = np.unique(np.geomspace(2, 4000, 80).astype(int))
memory = dict(zip(memory_table["R"][1:], memory_table["measured ratio"][1:], strict=True))
fig = plot_pk_ratio(P_axis, K_values=(K,), mark=(P, K), memory=memory)

# %% [markdown]
# Each row of references adds one more negative for almost every anchor: the ratio falls
# roughly like $1/R$ until the memory spans the whole training set. Pairwise losses summed
# over pairs drown in these negatives; DRSL's ranking error is a precision, normalised by
# rank, and its identity update hands the positives as much push as all negatives together
# (spec, "Why it suits imbalance"), so this is the regime the loss was built for.
#
# ## 3. Reference items in the loss, checked by brute force
# A toy batch of six 2-d embeddings (three identities) and four references, one sharing an
# identity with the batch. `drsl_loss(..., ref_embeddings=..., ref_labels=...)` is the blocked
# kernel; `drsl.losses.reference.drsl_loss_dense` is the readable dense version of the spec.

# %%
f = torch.randn(6, 2, generator=gen, dtype=torch.float64)
y = torch.tensor([0, 0, 1, 1, 2, 2])
ref = torch.randn(4, 2, generator=gen, dtype=torch.float64)
ref_y = torch.tensor([0, 3, 3, 4])
fast_value = drsl_loss(f, y, ref_embeddings=ref, ref_labels=ref_y)
dense_value = drsl_loss_dense(f, y, ref_embeddings=ref, ref_labels=ref_y)
print(f"with references: kernel {fast_value:.12f}, dense {dense_value:.12f}")
print(f"batch only:      kernel {drsl_loss(f, y):.12f}")
assert torch.isclose(fast_value, dense_value, atol=1e-12, rtol=0)
assert drsl_loss(f, y, ref_embeddings=ref[:0], ref_labels=ref_y[:0]) == drsl_loss(f, y)  # R = 0

# %% [markdown]
# The brute force uses only the definition: anchor $a$'s retrieval set is every other batch row
# and every reference. Computing one anchor at a time (that anchor as a batch of one, all other
# items as its references) gives its $L_a$. The mean over the **batch** anchors that have a
# positive is the loss with references; the mean over **all ten** items is the batch-only loss
# of the concatenation, where the references become anchors too.

# %%
items, items_y = torch.cat([f, ref]), torch.cat([y, ref_y])
per_anchor = {}  # item -> L_a, for the items with a positive among the others
for a in range(len(items)):
    rest = torch.arange(len(items)) != a
    if (items_y[rest] == items_y[a]).any():
        refs = {"ref_embeddings": items[rest], "ref_labels": items_y[rest]}
        per_anchor[a] = drsl_loss(items[a : a + 1], items_y[a : a + 1], **refs)
brute_refs = torch.stack([v for a, v in per_anchor.items() if a < len(f)]).mean()
brute_concat = torch.stack(list(per_anchor.values())).mean()
print(f"anchors with a positive: {len(per_anchor)} of {len(items)} items")
print(f"one anchor at a time: with references {brute_refs:.12f}, concatenation {brute_concat:.12f}")
assert torch.isclose(brute_refs, fast_value, atol=1e-12, rtol=0)
assert torch.isclose(brute_concat, drsl_loss(items, items_y), atol=1e-12, rtol=0)

# %% [markdown]
# Data-parallel training relies on the spec's two properties. Split a batch between two
# "processes" (here: two halves in one process), each taking its half as anchors and the other
# half as references: (1) the mean of the two losses is the loss of the whole batch, and (2),
# because the references carry gradient, the gradient of that mean is the whole batch's
# gradient. With unequal anchor counts the mean must be weighted: process $r$'s loss is scaled
# by $c_r = W n_r / \sum_v n_v$ ($n_r$: its anchors with a positive), computed by
# `GatheredBatch.scale` from the gathered labels.

# %%
f2 = torch.randn(12, 3, generator=gen, dtype=torch.float64, requires_grad=True)
y2 = torch.arange(4).repeat_interleave(3)  # 4 identities x 3 images
whole = drsl_loss(f2, y2, gradient="identity")
(g_whole,) = torch.autograd.grad(whole, f2)
for split in (6, 8):  # equal halves, then 8 + 4 rows (8 and 4 anchors): scales 4/3 and 2/3
    parts, labels = [f2[:split], f2[split:]], [y2[:split], y2[split:]]
    shares = []
    for r in (0, 1):
        gb = GatheredBatch(r, parts, labels)
        ref_e, ref_l, _ = gb.references()
        loss_r = drsl_loss(
            parts[r], labels[r], ref_embeddings=ref_e, ref_labels=ref_l, gradient="identity"
        )
        shares.append(gb.scale("anchors") * loss_r)
        print(f"split {split}: process {r} loss {loss_r:.6f}, scale {gb.scale('anchors'):.4f}")
    mean = torch.stack(shares).mean()
    (g_mean,) = torch.autograd.grad(mean, f2)
    assert torch.isclose(mean, whole, atol=1e-12, rtol=0)
    assert torch.allclose(g_mean, g_whole, atol=1e-12, rtol=0)
print(f"whole batch: {whole:.6f}; both splits reproduce its value and gradient")

# %% [markdown]
# Why is the scale 1 for equal counts although DDP *averages* the gradients over processes?
# Process $v$'s loss reaches every process's embeddings (through the references), and the
# gather's backward sums those contributions into their owner: each process ends up with the
# gradient of $\sum_v c_v L_v$, and DDP's average divides by $W$, which is the gradient of
# the mean above. The derivation is written out in `GatheredBatch.scale`.
#
# ## 4. A cross-batch memory in a few steps
# `CrossBatchMemory(size)` keeps the detached embeddings and labels of the last `size` items,
# oldest first. Each step: the loss of the batch against the memory, **then** enqueue the
# batch. Toy embeddings: $12$ identities with $4$ fixed vectors each, PK batches of
# $3 \times 2$, a memory of $12$ rows.

# %%
toy_ids = torch.arange(12).repeat_interleave(4)
centres = torch.randn(12, 4, generator=gen, dtype=torch.float64)  # one per identity
toy_emb = centres[toy_ids] + 0.5 * torch.randn(48, 4, generator=gen, dtype=torch.float64)
mem = CrossBatchMemory(12)
fn = get_loss("drsl")
rows = []
for step, idx in enumerate(PKSampler(toy_ids, P=3, K=2, seed=0).batches(0)[: 4 if FAST else 8]):
    emb, lab = toy_emb[idx], toy_ids[idx]
    ref_e, ref_l, _ = mem.references()
    kw = {} if ref_e is None else {"ref_embeddings": ref_e, "ref_labels": ref_l}
    loss = fn(emb, lab, **kw)
    retrieved = lab if ref_l is None else torch.cat([lab, ref_l])
    pos = (lab[:, None] == retrieved[None, :]).sum(1) - 1
    neg = len(retrieved) - 1 - pos
    rows.append([step, len(mem), pos.float().mean().item(), neg.float().mean().item(), loss.item()])
    mem.enqueue(emb, lab)  # after the loss
columns = ["step", "memory rows", "positives / anchor", "negatives / anchor", "loss"]
steps_table = pd.DataFrame(rows, columns=columns)
assert steps_table["memory rows"].max() == 12 and steps_table["memory rows"][0] == 0
steps_table

# %% [markdown]
# The order matters. Enqueue first and every anchor finds its own (detached) copy among the
# references: a positive at distance 0, ranked first whatever the model does.

# %%
wrong = CrossBatchMemory(12)
wrong.enqueue(emb, lab)  # the mistake: enqueue the current batch before its loss
ref_e, ref_l, _ = wrong.references()
own_copy = (emb[:, None, :] == ref_e[None, :, :]).all(-1) & (lab[:, None] == ref_l[None, :])
wrong_loss = fn(emb, lab, ref_embeddings=ref_e, ref_labels=ref_l)
print(f"anchors with a copy of themselves at distance 0: {own_copy.any(1).sum()} of {len(lab)}")
print(f"last batch's loss, batch only: {fn(emb, lab):.4f}; with itself enqueued: {wrong_loss:.4f}")
assert own_copy.any(1).all() and wrong_loss != fn(emb, lab)

# %% [markdown]
# Under data parallelism every process enqueues the *global* batch (all processes' rows in
# rank order, `GatheredBatch.global_batch()`), so every process holds the same memory, the one
# a single process would hold with the concatenated batches; the test suite checks that two
# steps with a memory match one process to `1e-10`.
#
# ## 5. Two processes on the CPU, launched with torchrun
# `torchrun --nproc_per_node=2` starts two Python processes with `RANK`, `WORLD_SIZE` and
# `LOCAL_RANK` set; `python -m drsl.explore.parallel` then trains a tiny float64 network
# (no BatchNorm) for a few steps with `DistributedDataParallel` over gloo. Each process draws
# $P = 2$ identities of a sharded PK batch (`PKSampler(..., rank, world_size)`), embeds them,
# gathers the other process's embeddings with gradient and computes DRSL with them as
# references. One process with $P = 4$ sees the same batches, so its losses must be equal.
#
# The full run launches `torchrun` (three fresh Python processes that each import PyTorch:
# allow half a minute on a laptop); fast mode (the test suite) forks the same two processes
# from this kernel instead (`drsl.explore.parallel.torchrun_toy`): only the launcher differs.
# The suite also runs the real command line under `torchrun` (`tests/test_train_ddp.py`).

# %%
steps = 3 if FAST else 10
t0 = time.perf_counter()
two, command = torchrun_toy(steps=steps, P=2, K=2, fork=FAST)  # FAST: forked from this kernel
launch_s = time.perf_counter() - t0
print(command)
one = toy_run(steps=steps, P=4, K=2)
runs = pd.DataFrame({"2 processes, P = 2 each": two["losses"], "1 process, P = 4": one["losses"]})
runs["difference"] = runs.iloc[:, 0] - runs.iloc[:, 1]
how = "forked" if FAST else "torchrun"
print(f"{two['world_size']} processes ({how}) took {launch_s:.1f} s, mostly start-up")
assert two["world_size"] == 2 and np.allclose(two["losses"], one["losses"], atol=1e-10, rtol=0)
runs

# %% [markdown]
# ## 6. On GPUs
# The same command trains on GPUs: one process per GPU, `nccl` instead of `gloo`, each process
# on `cuda:LOCAL_RANK` (nothing in the package calls `.cuda()`; devices follow the inputs).
# The README's section "Several processes: `torchrun`" is the one home of the launch commands
# and of what to keep in mind: $P$ is per process, so the global batch is $W \cdot P \cdot K$
# images (a larger one usually wants a larger learning rate, Goyal et al. 2017); BatchNorm
# becomes `SyncBatchNorm` on CUDA only (the toy network above has none); rank 0 alone writes.
#
# The context each process reads from torchrun's variables (here for the fourth process of
# eight, on the CPU):

# %%
ctx = DistributedContext.from_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3"}, device="cpu")
print(ctx)
print("writes logs:", ctx.is_main, "| sampler keywords:", ctx.sampler_kwargs())
assert not ctx.is_main and ctx.backend == "gloo"

# %% [markdown]
# ## 7. Mixed precision
# `--amp` runs the model's forward pass under autocast (`drsl.train.precision`; the README's
# "Mixed precision" gives the types per device). The losses run outside autocast, on float32
# copies of the outputs (`to_float32`), so the loss is computed, and returned, in float32.

# %%
net = ReIDNet(8, base_width=4)
images = torch.randn(8, 3, 32, 16, generator=gen)
img_labels = torch.arange(4).repeat_interleave(2)
prec = resolve_precision("auto", "cpu")
with prec.autocast():
    out = net(images)
half_dtype = out.features.dtype
amp_loss = get_loss("drsl")(to_float32(out).features, img_labels)
full_loss = get_loss("drsl")(net(images).features, img_labels)
print(f"autocast {prec.name}: features in {half_dtype}, loss in {amp_loss.dtype}")
print(f"loss under autocast {amp_loss:.4f}, in float32 {full_loss:.4f}")
assert half_dtype == torch.bfloat16 and amp_loss.dtype == torch.float32

# %% [markdown]
# ## 8. Outside drsl: pytorch-metric-learning and ONNX
# Two doors out. **pytorch-metric-learning** (PML) users get DRSL as one of their own losses,
# `drsl.integrations.pml.DRSLoss` (here imported as `PMLDRSLoss`): on a batch it is
# `drsl_loss`, and it plugs into PML's `CrossBatchMemory`. PML's memory enqueues the batch
# *first* and then leaves each anchor's own copy out of its list, so a PML memory of
# $M + B$ rows holds exactly the references of section 4's memory of $M$: the losses agree.

# %%
pml_memory = pml_losses.CrossBatchMemory(PMLDRSLoss(), embedding_size=4, memory_size=12 + 6)
pml_memory.embedding_memory = pml_memory.embedding_memory.double()
ours = CrossBatchMemory(12)
pml_rows = []
for step, idx in enumerate(PKSampler(toy_ids, P=3, K=2, seed=0).batches(0)[: 4 if FAST else 8]):
    emb, lab = toy_emb[idx], toy_ids[idx]
    ref_e, ref_l, _ = ours.references()
    kw = {} if ref_e is None else {"ref_embeddings": ref_e, "ref_labels": ref_l}
    pml_rows.append([step, fn(emb, lab, **kw).item(), pml_memory(emb, lab).item()])
    ours.enqueue(emb, lab)
pml_table = pd.DataFrame(pml_rows, columns=["step", "drsl", "PML"])
assert np.allclose(pml_table["drsl"], pml_table["PML"], rtol=0, atol=1e-12)
assert torch.equal(PMLDRSLoss()(emb, lab), drsl_loss(emb, lab))  # the batch alone: identical
pml_table

# %% [markdown]
# **ONNX** takes a trained model out of Python: `drsl export CHECKPOINT --onnx OUT.onnx`
# (`drsl.train.export.export_onnx`; the README's section "Export" says what it writes), and
# onnxruntime gives the same embeddings as PyTorch.

# %%
shipped = repo_root() / "data" / "checkpoints" / "ce_drsl.pt"
onnx_file = export_onnx(shipped, Path(tempfile.mkdtemp()) / "ce_drsl.onnx")
shipped_model = load_model(shipped).model
some_images = torch.randint(0, 256, (5, 3, 64, 32), dtype=torch.uint8, generator=gen)
onnx_gap = (onnx_embed(onnx_file, some_images) - embed(shipped_model, some_images)).abs().max()
size_mb = onnx_file.stat().st_size / 1e6
print(f"{onnx_file.name}: {size_mb:.1f} MB; largest difference from PyTorch {onnx_gap:.1e}")
assert onnx_gap <= 1e-5

# %% [markdown]
# ## Summary
# - A reference item is retrieved but never an anchor. With references from other processes or
#   a memory, an anchor's retrieval set grows from $PK - 1$ to $PK - 1 + R$ items, and the
#   positive:negative ratio falls roughly like $1/R$ (section 2's table).
# - Every loss takes `ref_embeddings` / `ref_labels`; with $R = 0$ it is the batch-only loss,
#   and one anchor at a time reproduces it exactly.
# - A cross-batch memory is read by the loss and filled *after* it; under data parallelism each
#   process enqueues the global batch.
# - Data-parallel training: each process's batch as anchors, the others gathered with gradient
#   as references, the loss scaled by $c_r = W n_r / \sum_v n_v$ (1 for a sharded PK batch):
#   DDP's averaged gradient is then the one-process gradient of the concatenated batch.
# - Outside drsl: `drsl.integrations.pml.DRSLoss` is DRSL inside pytorch-metric-learning (and
#   its `CrossBatchMemory`), and `drsl export --onnx` takes a trained model out of Python.
#
# ## Exercises
# Each exercise has an answer cell (a stub in the student edition) and a check cell that
# grades it (`make assignments`: nbgrader); the solution's explanation comes first here.
#
# **Exercise 1.** Eight processes each draw a $16 \times 4$ batch of distinct identities.
# Count the positives and negatives one anchor of process 0 sees (batch plus gathered
# references) and compare the ratio with `pk_pos_neg_ratio`.
#
# *Your answer* (the next code cell) defines `W8`, `n_pos`, `n_neg`; the cell after it checks them.

# %% [markdown] tags=["solution"]
# **Solution 1.** The references are the other seven batches, all negatives: the anchor sees
# $K - 1$ positives against $(8 \cdot 16 - 1) K$ negatives, the ratio of one $128 \times 4$ batch.

# %% tags=["answer"]
### BEGIN SOLUTION
W8 = 8
labels_all = [torch.arange(r * 16, (r + 1) * 16).repeat_interleave(4) for r in range(W8)]
gb8 = GatheredBatch(0, [torch.zeros(64, 1)] * W8, labels_all)
_, ref_l8, _ = gb8.references()
anchor = labels_all[0][0]
n_pos = int((labels_all[0] == anchor).sum() - 1 + (ref_l8 == anchor).sum())
n_neg = len(labels_all[0]) - 1 + len(ref_l8) - n_pos
print(f"{n_pos} positives, {n_neg} negatives: ratio {n_pos / n_neg:.5f}")
### END SOLUTION

# %% tags=["check"]
assert {"W8", "n_pos", "n_neg"} <= set(globals()), "your answer defines W8, n_pos and n_neg"
### BEGIN HIDDEN TESTS
assert np.isclose(n_pos / n_neg, pk_pos_neg_ratio(W8 * 16, 4))
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 2.** Section 3's uneven split scaled each process's loss by $c_r$. Drop the
# scale (use $c_r = 1$): which property breaks, and by how much?
#
# *Your answer* (the next code cell) defines `unscaled`; the cell after it checks it.

# %% [markdown] tags=["solution"]
# **Solution 2.** The plain mean of the two per-process losses weighs process 1's four
# anchors as much as process 0's eight: the value (and so the gradient) no longer equals the
# whole batch's.

# %% tags=["answer"]
### BEGIN SOLUTION
parts, labels = [f2[:8].detach(), f2[8:].detach()], [y2[:8], y2[8:]]
plain = []
for r in (0, 1):
    ref_e, ref_l, _ = GatheredBatch(r, parts, labels).references()
    plain.append(drsl_loss(parts[r], labels[r], ref_embeddings=ref_e, ref_labels=ref_l))
unscaled = torch.stack(plain).mean()
print(f"unscaled mean {unscaled:.6f} vs whole batch {whole:.6f}: off by {unscaled - whole:+.6f}")
### END SOLUTION

# %% tags=["check"]
assert {"unscaled"} <= set(globals()), "your answer defines unscaled"
### BEGIN HIDDEN TESTS
assert not torch.isclose(unscaled, whole.detach(), atol=1e-6, rtol=0)
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 3.** What does the ratio tend to as the memory grows far beyond one epoch (with
# $N$ identities of equal size, section 1's estimate)? Could a memory ever reach $1 : 1000$ on a
# Market-sized set?
#
# *Your answer* (the next code cell) defines `limit` and `est`; the cell after it checks them.

# %% [markdown] tags=["solution"]
# **Solution 3.** For large $R$ the estimate tends to $(R/N) / (R - R/N) = 1/(N-1)$: the
# memory then mirrors the training set, where one identity faces $N - 1$ others. With $N = 751$
# identities it saturates near $1 : 750$ and never reaches $1 : 1000$.

# %% tags=["answer"]
### BEGIN SOLUTION
for R in (10**4, 10**5, 10**6):
    est = (K - 1 + R / N_IDS) / ((P - 1) * K + R - R / N_IDS)
    print(f"R = {R:>7}: 1 : {1 / est:.1f}")
limit = 1 / (N_IDS - 1)
print(f"limit 1 : {1 / limit:.0f}")
### END SOLUTION

# %% tags=["check"]
assert {"limit", "est"} <= set(globals()), "your answer defines limit and est"
### BEGIN HIDDEN TESTS
assert 1 / est < 1000 and np.isclose(est, limit, rtol=0.01)
### END HIDDEN TESTS

# %% [markdown]
# ## References
# - Rank-in-Rank Loss for Person Re-identification, ACM TOMM, doi:10.1145/3532866.
# - X. Wang, H. Zhang, W. Huang, M. R. Scott, Cross-Batch Memory for Embedding Learning,
#   CVPR 2020 (XBM).
# - K. Oksuz et al., Rank & Sort Loss for Object Detection and Instance Segmentation, ICCV 2021
#   (the identity update and its balance).
# - S. Li et al., PyTorch Distributed: Experiences on Accelerating Data Parallel Training,
#   VLDB 2020 (DistributedDataParallel); PyTorch documentation, `torchrun` (Elastic Launch).
# - P. Goyal et al., Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour,
#   arXiv:1706.02677 (learning rate and global batch size).
# - P. Micikevicius et al., Mixed Precision Training, ICLR 2018 (loss scaling).
# - K. Musgrave, S. Belongie, S.-N. Lim, A Metric Learning Reality Check, ECCV 2020
#   (pytorch-metric-learning, which gathers embeddings across processes the same way).
