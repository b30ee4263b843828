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
# # 05 Imbalance: does DRSL train better when an anchor's positives are few?
#
# *Part of the drsl course. Our reading of the paper is in `docs/drsl-loss-spec.md`
# ("our reading": the paper's full text is not available to us).*
#
# ## Goals
# - State the paper's claim as a question an experiment can answer, with its two endpoints.
# - Read an experiment's plan and results from its CSV files: choices made on a validation
#   split, the test split scored once, every loss with and without cross-entropy.
# - Compare losses seed by seed with paired differences and Student-t intervals.
# - Say the verdict once, computed from the data (`drsl.analysis.imbalance_verdict`), and
#   know how the earlier, weaker studies led to this design.

# %% [markdown]
# ## Setup
# One cell: imports from `drsl`, the experiment's files and its **endpoints**. Another
# experiment reuses this notebook by changing only these lines: the result files, the losses,
# the loss the claim is about, and the reference and extreme cells $(P, K, M)$ ($M$: the
# cross-batch memory's size). Nothing here trains, so fast mode changes nothing.

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display

import drsl
from drsl.analysis import (
    LOSS_LABELS,
    cell_effects,
    imbalance_verdict,
    markdown_table,
    paired_differences,
    select_lr,
    sweep_history,
)
from drsl.config import fast_mode, repo_root
from drsl.data.synth import SynthConfig
from drsl.plotting import (
    plot_imbalance,
    plot_paired_differences,
    plot_result_heatmap,
    plot_sweep,
    plot_val_curves,
)

FAST = fast_mode()
RESULTS = repo_root() / "experiments" / "results"
RUNS_CSV, CELLS_CSV, CURVES_CSV = (
    RESULTS / f"imbalance{part}.csv" for part in ("", "_cells", "_curves")
)
LOSSES = ["triplet", "contrastive", "smooth_ap", "drsl_rank", "drsl"]
LOSS = "drsl"  # the loss the claim is about
REFERENCE, EXTREME = (16, 4, 0), (16, 4, 8192)  # (P, K, memory_size): same batches, seed for seed
runs, cells, curves = (pd.read_csv(p) for p in (RUNS_CSV, CELLS_CSV, CURVES_CSV))
final = runs[runs.phase == "final"]
print(f"drsl {drsl.__version__}; {RUNS_CSV.name}: {len(runs)} rows; fast mode: {FAST}")

# %% [markdown]
# ## 1. The question
# The paper says DRSL alleviates the imbalance of positives and negatives in a mini-batch:
# with few positives per anchor among many negatives, a loss that sums over pairs is
# dominated by the negatives, while DRSL's ranking and sorting errors are normalised per
# positive (notebooks 01 and 02). Notebook 00 measured the imbalance of a $P \times K$ batch
# as the PK ratio $(K-1) : (P-1)K$; a cross-batch memory adds negatives (and some positives)
# from earlier batches and takes it much further.
#
# An experiment can answer a sharper question: **from a reference cell to an extreme cell, does
# DRSL lose less of its test mAP than the other losses, and end above them?** We say that DRSL
# **outlasts** a baseline when both hold beyond noise (paired intervals that exclude zero). We
# ask it twice: with the metric loss alone, and in the usual recipe with cross-entropy on a
# BNNeck, which can do the work the metric loss is credited with.

# %% [markdown]
# ## 2. The plan
# `python experiments/imbalance.py run` trains every run the plan needs:
#
# - **A validation split.** Some training identities are held out and laid out as the test
#   split is (`drsl.data.validation.split_validation`). Learning rates and the budget are
#   chosen on validation; the test split is scored **once** per final run. Choosing on test
#   would pick the luckiest of several noisy outcomes on the very identities we report.
# - **Losses**: batch-hard triplet, a pair-summing contrastive loss (every pair weighs the
#   same, so the negatives outweigh the positives by the ratio: the loss that should suffer
#   most), Smooth-AP, DRSL rank only and DRSL; each with and without CE + BNNeck.
# - **Cells** of growing imbalance, the memory cells drawing the very batches of their
#   reference cell, seed for seed (notebook 08 teaches the memory).
# - **Protocol**: each variant's learning rate is the best of a grid by mean validation mAP
#   (`drsl.analysis.select_lr`); a budget check runs the best variant at twice the images;
#   then every cell, variant and seed runs at its rate on the same number of images.
#
# The next cell reads the design and its cost back from the CSV files.

# %% tags=["remove-input"]
tune, check = runs[runs.phase == "tune"], runs[runs.phase == "budget"]
final_test = final[final.split == "test"]
RUN = ["P", "K", "memory_size", "loss", "with_ce", "lr", "seed", "images"]
reused = final_test.merge(tune[RUN], on=RUN)  # seed 0 in a tuning cell: that tuning run
assert set(tune.split) == set(check.split) == {"val"}  # choices saw validation only
assert not final_test.duplicated(RUN).any()  # each final run scored once on test
cpu_h = (tune.seconds.sum() + check.seconds.sum() + final_test.seconds.sum()) / 3600
steps = final.groupby(["P", "K"]).steps.first()
display(
    Markdown(
        f"**{len(tune) + len(check) + len(final_test) - len(reused)} trained runs**: "
        f"{len(tune)} tuning runs at learning rates "
        f"{', '.join(f'{x:g}' for x in sorted(tune.lr.unique()))}, {len(check)} budget checks, "
        f"{len(final_test)} final runs ({len(reused)} of them a reused tuning run); seeds "
        f"{sorted(final.seed.unique().tolist())}; {int(final.images.iloc[0]):,} training "
        f"images per run ({', '.join(f'{n} steps at {p} x {k}' for (p, k), n in steps.items())})"
        f"; {cpu_h - reused.seconds.sum() / 3600:.1f} h of single-thread compute."
    )
)
cells.assign(
    nominal=(1 / cells.nominal_ratio).map(lambda v: f"1:{v:.0f}"),
    measured=(1 / cells.ratio).map(lambda v: f"1:{v:.0f}"),
)[["P", "K", "memory_size", "pos_per_anchor", "neg_per_anchor", "nominal", "measured"]]

# %% [markdown]
# **What the memory does to the ratio.** The table is measured by replaying the PK sampler
# with the memory's queue (`drsl.data.sampler.memory_pos_neg`). "Nominal" counts the memory
# as negatives only, $(K-1)/((P-1)K + M)$; but the spec takes positives *and* negatives by
# label over the whole retrieval set, and a memory drawn from $C$ training identities holds
# about $M/C$ positives of every anchor, so the ratio cannot fall below about $1/(C-1)$,
# however large the memory. The next cell checks that floor.

# %% tags=["remove-input"]
held_out = int(final.data.iloc[0].split("+val")[1].split("s")[0])  # the data tag: +val<n>s<seed>
C = SynthConfig().num_train_ids - held_out  # training identities left for every run
mem = cells[cells.memory_size > 0]
assert (mem.ratio > 1 / (C - 1)).all() and (mem.ratio > 3 * mem.nominal_ratio).all()
display(
    Markdown(
        f"With {C} training identities ({held_out} held out for validation) the floor is "
        f"1:{C - 1}; the memory cells measure "
        + ", ".join(f"1:{1 / r.ratio:.0f} at M = {r.memory_size:,}" for r in mem.itertuples())
        + ", with "
        + ", ".join(f"{r.pos_per_anchor:.1f}" for r in mem.itertuples())
        + " positives per anchor."
    )
)

# %% [markdown]
# ## 3. Choices made on validation
# Left and middle: the validation mAP of every tuning run (seed 0) in the two tuning cells;
# each variant keeps the rate with the best mean over them (the table). Right: the validation
# curves at the chosen rates, dashed for the budget check at twice the images: a curve that
# still rises at the end says the budget is short.

# %%
chosen = select_lr(tune)
fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
for ax, (M, part) in zip(axes, tune.groupby("memory_size"), strict=True):
    cell = f"{part.P.iloc[0]} x {part.K.iloc[0]}" + (f" + memory {M}" if M else "")
    plot_result_heatmap(
        part, index=("loss", "with_ce"), columns=("lr",), ax=ax, title=f"validation mAP, {cell}"
    )
plt.show()
fig = plot_val_curves(curves, chosen)
plt.show()
chosen

# %% [markdown]
# ## 4. Results on test
# Test mAP of every final run, mean ± std over the seeds, in percent: first with CE + BNNeck,
# then the metric loss alone. Each cell shows its *measured* ratio and its number of steps;
# the last line is the learning rate each variant got on validation. The figure draws the
# same data against the ratio (log axis).

# %% tags=["hide-input"]
for ce in (True, False):
    display(Markdown(markdown_table(runs, cells, with_ce=ce, losses=LOSSES)))
fig = plot_imbalance(runs, cells, metric="mAP", losses=LOSSES)
plt.show()

# %% [markdown]
# ## 5. Paired differences
# A seed fixes the initial weights and the batches for every loss alike, so a difference
# *at the same seed* removes what the seed does to both. Left: DRSL minus each baseline in
# every cell, with a Student-t interval over the seeds (`level=0.95`; an interval
# that holds zero: no difference shown). Right: what the move from the reference cell to
# the extreme cell costs each loss, same seed, same batches.

# %%
vs = pd.concat(
    [
        paired_differences(final, base).query("loss == @LOSS").assign(loss=f"{LOSS} - {base}")
        for base in LOSSES
        if base != LOSS
    ]
).reset_index(drop=True)
move = cell_effects(final, EXTREME, REFERENCE).assign(
    P=EXTREME[0], K=EXTREME[1], memory_size=EXTREME[2]
)
fig, axes = plt.subplots(1, 3, figsize=(12, 6), layout="constrained")
for ax, ce in zip(axes[:2], (True, False), strict=True):
    plot_paired_differences(vs[vs.with_ce == ce], ax=ax)
    ax.set_title(("with CE + BNNeck" if ce else "metric loss alone") + f": {LOSS} minus")
plot_paired_differences(move, ax=axes[2])
axes[2].set_title("extreme minus reference cell, same seed")
plt.show()

# %% [markdown]
# ## 6. The verdict
# `drsl.analysis.imbalance_verdict` reads the final runs and returns the verdict as data:
# each loss's cost of the move, each baseline's extra cost over DRSL, DRSL's gap to each
# baseline in the extreme cell, and the baselines DRSL outlasts in each regime. Its headline
# is the one sentence every other mention of the claim in the course and the README quotes
# (a test checks them). Where the experiment has a longer-budget phase, the same function
# reads it too.

# %% tags=["remove-input"]
verdict = imbalance_verdict(runs, reference=REFERENCE, extreme=EXTREME, loss=LOSS)
ci = "{:+.1f} [{:+.1f}, {:+.1f}]".format  # points: mean [95 % interval]
lines = [f"**Verdict.** {verdict.headline}", ""]
for ce, regime in ((False, "metric loss alone"), (True, "with CE + BNNeck")):
    cost = verdict.costs[verdict.costs.with_ce == ce].set_index("loss")
    gaps = verdict.gaps[verdict.gaps.with_ce == ce].set_index("baseline")
    lines.append(
        f"- *{regime}*: the move costs "
        + "; ".join(
            f"{LOSS_LABELS[x]} {ci(*(100 * cost.loc[x, ['diff', 'low', 'high']]))}" for x in LOSSES
        )
        + f"; in the extreme cell {LOSS_LABELS[LOSS]} minus "
        + "; ".join(
            f"{LOSS_LABELS[b]} {ci(*(100 * gaps.loc[b, ['diff', 'low', 'high']]))}"
            for b in gaps.index
        )
        + "."
    )
if "long" in set(runs.phase):
    longer = imbalance_verdict(runs, reference=REFERENCE, extreme=EXTREME, loss=LOSS, phase="long")
    lines.append(
        f"- *twice the budget* ({int(runs[runs.phase == 'long'].images.iloc[0]):,} images): "
        f"{LOSS_LABELS[LOSS]} outlasts "
        + (", ".join(LOSS_LABELS[b] for b in longer.outlasted[False]) or "no loss")
        + " with the metric loss alone."
    )
display(Markdown("\n".join(lines)))

# %% [markdown]
# **Caveats.** A memory changes more than the ratio: its embeddings are stale (from earlier
# steps), and a memory larger than the training set repeats images. The ratio's floor above
# caps how extreme the imbalance gets with this many identities. Batch-hard triplet alone
# trains poorly at its validated rate, so it is a weak baseline for the metric-loss-alone
# half. One model size, one synthetic data set.

# %% [markdown]
# ## 7. How we got here
# Two earlier studies asked the question less well, and their doubts shaped the plan above.
# `experiments/sweep.py` fixed a budget of images and one learning rate while $P$ and $K$
# moved, so a smaller batch also got more optimiser steps; `experiments/sensitivity.py`
# varied the learning rate and `delta`, and fixed the number of steps. Their files stay in
# `experiments/results/`; the cell reads what they found (`drsl.analysis.sweep_history`).

# %% tags=["remove-input"]
sweep = pd.read_csv(RESULTS / "sweep.csv")
studies = pd.read_csv(RESULTS / "sensitivity_studies.csv")
past = sweep_history(sweep, studies)
steps_txt = ", ".join(f"{n} at {p} x {k}" for (p, k), n in past["steps"].items())
display(
    Markdown(
        f"- **The sweep** ({past['runs']} runs, lr {past['lr']:g}; steps {steps_txt}): CE + DRSL "
        + ("led" if past["few_steps_lead"] else "did not lead")
        + " CE + triplet beyond noise in every few-step cell, and the two were "
        + ("level" if past["many_steps_level"] else "apart")
        + " wherever runs got more steps: the number of steps, not the ratio, told them apart."
        "\n- **The learning rate**: CE + triplet's best rate in the sensitivity study was "
        + ", ".join(f"{lr:g} at {p} x {k}" for (p, k), lr in past["triplet_best_lr"].items())
        + (
            ", all above"
            if min(past["triplet_best_lr"].values()) > past["lr"]
            else ", not all above"
        )
        + f" the sweep's {past['lr']:g}: one rate for all losses had favoured DRSL."
        "\n- **At a fixed number of steps**, of two cells with the same batch size the more "
        "imbalanced one was "
        + ("no worse" if past["imbalanced_no_worse"] else "worse")
        + " for every loss ("
        + "; ".join(f"{x}: {a:.1f} -> {b:.1f} %" for x, (a, b) in past["equal_batch"].items())
        + ").\n\nHence the plan: rates chosen per loss on validation, the same images and steps "
        "at both endpoints, and every loss with and without cross-entropy."
    )
)
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), layout="constrained")
plot_result_heatmap(sweep, index=("loss",), columns=("P", "K"), ax=axes[0], title="sweep: mAP")
plot_sweep(sweep, metric="mAP", losses=sorted(set(sweep.loss)), axes=axes[1:])
plt.show()

# %% [markdown]
# ## Summary
# - The claim becomes a question with two endpoints: from a reference cell to an extreme cell
#   of the same batches, does DRSL lose less and end above the other losses, beyond noise?
# - Learning rates come from a validation split; test is scored once; paired differences
#   over seeds separate the losses from the seeds.
# - The verdict, computed in section 6: *On our data the claim holds in one regime only: with
#   the metric loss alone, under extreme imbalance contrastive and Smooth-AP lose more of
#   their mAP than DRSL and end below it, beyond noise; with cross-entropy and a BNNeck, DRSL
#   outlasts no other loss.*
#
# ## Exercises
# Each exercise has an answer cell (a stub in the student edition) and a check cell that
# grades it (`make assignments`: nbgrader); the solution's explanation comes first here.
#
# **Exercise 1.** Seed by seed, in the extreme cell with the metric loss alone: in what share
# of the seeds is DRSL's test mAP above the contrastive loss's? Store it in `share`.

# %% [markdown] tags=["solution"]
# **Solution 1.** Pivot the final test rows of the extreme cell to one row per seed and one
# column per loss, compare the two columns, and average the booleans.

# %% tags=["answer"]
### BEGIN SOLUTION
at = final[(final.split == "test") & ~final.with_ce.astype(bool)]
at = at[at.P.eq(EXTREME[0]) & at.K.eq(EXTREME[1]) & at.memory_size.eq(EXTREME[2])]
by_seed = at.pivot_table(index="seed", columns="loss", values="mAP")
share = float((by_seed[LOSS] > by_seed["contrastive"]).mean())
### END SOLUTION
print(f"{LOSS} above contrastive in {share:.0%} of the seeds")

# %% tags=["check"]
assert 0 <= share <= 1, "a share lies between 0 and 1"
### BEGIN HIDDEN TESTS
_at = final[(final.split == "test") & (final.with_ce.astype(str) == "False")]
_at = _at.set_index(["P", "K", "memory_size"]).sort_index().loc[EXTREME]
_w = _at.pivot_table(index="seed", columns="loss", values="mAP")
assert abs(share - (_w[LOSS] > _w["contrastive"]).mean()) < 1e-9
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 2.** With $C$ training identities and a memory far larger than one epoch, each
# anchor's positives and negatives in the retrieval set approach $(M/C) : M(C-1)/C$. Compute
# the limit of the ratio for this experiment's $C$ and store it in `floor`.

# %% [markdown] tags=["solution"]
# **Solution 2.** $M$ cancels: the ratio tends to $1/(C-1)$, the floor of section 2.

# %% tags=["answer"]
### BEGIN SOLUTION
floor = 1 / (C - 1)
### END SOLUTION
print(f"floor 1:{1 / floor:.0f} with C = {C}")

# %% tags=["check"]
assert 0 < floor < 1, "a ratio of positives to negatives"
assert (cells.ratio > floor).all(), "no cell of the experiment lies below the floor"
### BEGIN HIDDEN TESTS
assert abs(floor * (C - 1) - 1) < 1e-12
### END HIDDEN TESTS

# %% [markdown]
# ## References
# - Rank-in-Rank Loss for Person Re-identification, ACM TOMM, doi:10.1145/3532866.
# - Hermans et al., In Defense of the Triplet Loss for Person Re-Identification, 2017.
# - Brown et al., Smooth-AP: Smoothing the Path Towards Large-Scale Image Retrieval, ECCV 2020.
# - Wang et al., Cross-Batch Memory for Embedding Learning, CVPR 2020.
# - Wasserman, All of Statistics, 2004 (Student-t intervals of paired differences).
