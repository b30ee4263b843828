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
# # 06 Explore: move P, K and delta and watch who gets the gradient
#
# *Part of the drsl course. Our reading of the paper is in `docs/drsl-loss-spec.md`
# ("our reading": the paper's full text is not available to us).*
#
# ## Goals
# - Explain, with the explorer's curves, why a loss averaged over pairs lets the negatives
#   dilute the pull on the positives as the batch grows, and why DRSL's identity update does not.
# - Read one anchor's ranked list and tell which positives cost DRSL its ranking error.
# - Run the same explorer as a standalone app (Voila) and as static figures.
#
# The batches are notebook 00's PK batches (its PK ratio: `K - 1` positives against
# `(P - 1) K` negatives per anchor; the setup cell prints the range the explorer spans). The
# explorer computes every loss of the course on a toy batch of that shape and shows where each
# loss puts its gradient.

# %% [markdown]
# ## Setup
# One cell: the explorer and the functions behind it come from `drsl` (the notebook defines
# none of its own). Fast mode (`DRSL_FAST=1`, used by the test suite) trains the toy embedding
# for fewer steps and draws a smaller static grid; the code path is the same.

# %%
import matplotlib.pyplot as plt
import torch

import drsl
from drsl import explore
from drsl.config import data_dir, fast_mode
from drsl.plotting import plot_explorer_grid, plot_toy_grid
from drsl.widgets import make_explorer

FAST = fast_mode()
STEPS = 30 if FAST else 60
P_GRID = (2, 8) if FAST else (2, 4, 8, 16)
torch.manual_seed(0)
print(f"drsl {drsl.__version__}, torch {torch.__version__}, fast mode: {FAST}, data: {data_dir()}")
span = [explore.pos_neg_ratio(P, 4) for P in explore.DEFAULT_P_VALUES]
print(f"K = 4, P = {min(explore.DEFAULT_P_VALUES)}..{max(explore.DEFAULT_P_VALUES)}: "
      f"ratio from {max(span):.3g} down to {min(span):.3g}")  # fmt: skip

# %% [markdown]
# ## 1. The explorer
# Two tabs. **Batch** builds a toy batch: `P` identities, each a Gaussian cluster of `K`
# points in 8 dimensions; `separation` is the RMS distance between two identities' centres and
# `noise` the RMS distance between two images of one identity. It shows
# - one anchor's **ranked list**: the other `P K - 1` items by distance, positives green,
#   negatives orange (move `anchor` to change the query);
# - each loss's **value** on the batch (`delta` and `sort_weight` act on DRSL only);
# - each loss's **gradient mass**: the total `|dL/d distance|` over all anchors, on positive
#   pairs vs negative pairs (for Smooth-AP, w.r.t. the cosine similarity it ranks by);
# - below the table, the same quantities **against the positive:negative ratio**, for
#   `P = 2 ... 16` at the current `K` (the table's caption gives the current ratio).
#
# **Toy embedding** trains the points of a small 2-D batch (or 3-D, on the unit sphere)
# directly for `N` steps under the chosen loss; press play to watch them move. Every step moves
# the most-pushed point by `step size`, so the losses move at the same speed and what differs is
# *which* points they push. Each change recomputes in about a second or less.

# %%
explorer = make_explorer(fast=FAST)
explorer

# %% [markdown]
# The explorer's numbers are plain function calls: its batch view holds a
# `drsl.explore.BatchSummary`, and calling `explore.summarize_batch` with the same settings
# gives the same values. (This is also what the static grid in section 3 draws.)

# %%
b = explorer.batch
same = explore.summarize_batch(
    b.controls["P"].value,
    b.controls["K"].value,
    delta=b.controls["delta"].value,
    sort_weight=b.controls["sort_weight"].value,
    separation=b.controls["separation"].value,
    noise=b.controls["noise"].value,
)
assert same.values == b.summary.values and same.mass == b.summary.mass
print({name: round(v, 4) for name, v in b.summary.values.items()})

# %% [markdown]
# ## 2. What to try
# 1. **Grow the batch.** Move `P` from its smallest to its largest value at `K = 4`. The DRSL
#    bars stay close to an even split between positives and negatives; the contrastive loss,
#    a mean over all `B (B - 1)` pairs, pulls each positive pair less and less (middle curve
#    panel: the solid red line falls towards the left, where `P` is large).
# 2. **Switch the sort off.** Set `sort_weight = 0`: DRSL is then its ranking term alone, and
#    the bars show notebook 02's balance property: its identity update moves the positives up
#    exactly as much as it moves the negatives down, an even share whatever `P` and `K`. With
#    the sort on, the extra push goes to positives among themselves.
# 3. **Shrink delta.** With the linear ramp, a (positive, negative) pair stops counting once
#    the negative is `delta` farther than the positive; a small `delta` leaves only the pairs
#    that are actually mis-ranked. Compare the smooth gradient with the identity update.
# 4. **Blur the identities.** Lower `separation` or raise `noise`: the ranked list mixes, every
#    loss rises, and in the toy tab the points have more to sort out.

# %% [markdown]
# The explorer's even split is notebook 02's balance property read off the bars (notebook 02 derives
# and checks it). It is a property of the update; whether it makes *training* resist
# imbalance is what notebook 05 measures, and its verdict is computed there. The next cell
# reads the share
# the explorer shows for the current `P` and `K` with the sort off.

# %%
s0 = explore.summarize_batch(b.controls["P"].value, b.controls["K"].value, losses=("drsl",),
                             sort_weight=0.0)  # fmt: skip
print(
    f"P={s0.P} K={s0.K}: ratio {s0.ratio:.3f}, DRSL share on positives {s0.pos_share('drsl'):.4f}"
)
assert abs(s0.pos_share("drsl") - 0.5) < 1e-6

# %% [markdown]
# ## 3. The same content as static figures
# For readers on GitHub or nbviewer, where widgets do not render: the batch view for several
# values of `P` at `K = 4` (one row each), then the curves against the ratio. Each row is what
# the explorer shows for that `P` with its default settings.

# %%
summaries = [explore.summarize_batch(P, 4) for P in P_GRID]
curves = explore.ratio_curves(4)
fig = plot_explorer_grid(summaries, curves, highlight="drsl")
plt.show()

# %% [markdown]
# Read the rows top to bottom: with more identities the ranked list gets more negatives ahead
# of the positives and DRSL's value (one minus a precision) rises, while the gradient shares
# barely move; the last row puts all `P` on one axis. Below, the toy embedding trained under
# each loss, from the start (left) to step `N`, with its loss curve.

# %%
runs = [explore.train_toy(name, 5, 4, steps=STEPS) for name in explore.LOSS_NAMES]
fig = plot_toy_grid(runs)
plt.show()

# %% [markdown]
# ## 4. As a standalone app
# The explorer runs without JupyterLab, as a web page served by Voila (code hidden). From the
# repository root:
#
# ```
# make explore
# ```
#
# then open the address it prints (`http://127.0.0.1:8866/?token=...`): the app listens on this
# machine only and answers only the address with its token, since whoever reaches it drives a
# Python kernel.

# %% [markdown]
# ## Summary
# - One anchor sees `K - 1` positives against `(P - 1) K` negatives; the explorer shows every
#   loss of the course on such a batch, and its curves against that ratio.
# - A loss averaged over all pairs (contrastive) spreads its gradient over the pairs, so more
#   negatives means less pull on each positive; DRSL's ranking term hands the positives exactly
#   as much total push as the negatives (notebook 02's balance property, visible in the bars).
#   Whether it makes training resist imbalance is the question of notebook 05.
# - The same functions draw the widgets, the static grid and the Voila app.
#
# ## Exercises
# Each exercise has an answer cell (a stub in the student edition) and a check cell that
# grades it (`make assignments`: nbgrader); the solution's explanation comes first here.
#
# **Exercise 1.** In the explorer, at `K = 2`, move `P` from `2` to `16`. By what factor does the
# contrastive loss's mass on positives fall? Predict it from the number of pairs before you
# look.
#
# *Your answer* (the next code cell) defines `factor` and `predicted`;
# the cell after it checks them.

# %% [markdown] tags=["solution"]
# **Solution 1.** The contrastive loss is a mean over all $B(B-1)$ ordered pairs, of which
# $PK(K-1)$ are positive. With $K = 2$ the positives' share of the pairs is $1/(2P-1)$: $1/3$ at
# $P = 2$, $1/31$ at $P = 16$, so the prediction is a factor $31/3 \approx 10.3$ if each
# positive pair kept its own pull. Each pull is proportional to the pair's distance, which
# varies a little between the two toy batches, so the measured factor is close, not equal.

# %% tags=["answer"]
### BEGIN SOLUTION
few_ids, many_ids = explore.summarize_batch(2, 2), explore.summarize_batch(16, 2)
factor = few_ids.mass["contrastive"]["pos"] / many_ids.mass["contrastive"]["pos"]
predicted = (2 * 16 - 1) / (2 * 2 - 1)
print(f"measured factor {factor:.2f}, predicted from the pair counts {predicted:.2f}")
### END SOLUTION

# %% tags=["check"]
assert {"factor", "predicted"} <= set(globals()), "your answer defines factor and predicted"
### BEGIN HIDDEN TESTS
assert abs(factor / predicted - 1) < 0.2
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 2.** Set `sort_weight = 2` and `P = 2`. Where does the extra gradient go, and why
# is it zero when `sort_weight = 0`? (Hint: spec, the sorting error `l_S - l*_S`.)
#
# *Your answer* (the next code cell) defines `m0` and `m2`;
# the cell after it checks them.

# %% [markdown] tags=["solution"]
# **Solution 2.** All of it goes to positive pairs: the sorting error $\ell_S - \ell^*_S$ of
# a positive is owed to the lower-target positives ranked above it, so the sort moves
# positives against positives and leaves the negatives' mass unchanged. With
# `sort_weight = 0` its weight $\lambda$ multiplies it away.

# %% tags=["answer"]
### BEGIN SOLUTION
m0 = explore.summarize_batch(2, 4, losses=("drsl",), sort_weight=0.0).mass["drsl"]
m2 = explore.summarize_batch(2, 4, losses=("drsl",), sort_weight=2.0).mass["drsl"]
print(f"sort_weight 0: positives {m0['pos']:.5f}, negatives {m0['neg']:.5f}")
print(f"sort_weight 2: positives {m2['pos']:.5f}, negatives {m2['neg']:.5f}")
### END SOLUTION

# %% tags=["check"]
assert {"m0", "m2"} <= set(globals()), "your answer defines m0 and m2"
### BEGIN HIDDEN TESTS
assert m2["pos"] > m0["pos"] and abs(m2["neg"] - m0["neg"]) < 1e-9
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 3.** In the toy tab, train with the triplet loss and with Smooth-AP. Which one
# keeps pushing once every identity is separated, and why? (Hint: the step function each one
# uses.)
#
# *Your answer* (the next code cell) defines `last_move` and `trip`;
# the cell after it checks them.

# %% [markdown] tags=["solution"]
# **Solution 3.** Smooth-AP keeps pushing: its sigmoid step is never exactly flat, so every
# pair keeps a small gradient. The batch-hard triplet's hinge is exactly zero once every
# anchor's hardest negative is a margin farther than its hardest positive, and then nothing
# moves. On well separated identities (the cell starts from `separation = 4`, `noise = 0.3`)
# the triplet loss reaches 0 and its points stop; Smooth-AP's still move at the last step.

# %% tags=["answer"]
### BEGIN SOLUTION
easy = dict(separation=4.0, noise=0.3, steps=STEPS)
trip, sap = (explore.train_toy(n, 5, 4, **easy) for n in ("triplet", "smooth_ap"))
last_move = {r.loss: float((r.positions[-1] - r.positions[-2]).abs().max()) for r in (trip, sap)}
print(f"final losses: triplet {trip.losses[-1]:.4f}, Smooth-AP {sap.losses[-1]:.2e}; "
      f"last step moved a point by {last_move}")  # fmt: skip
### END SOLUTION

# %% tags=["check"]
assert {"last_move", "trip"} <= set(globals()), "your answer defines last_move and trip"
### BEGIN HIDDEN TESTS
assert trip.losses[-1] == 0 and last_move["triplet"] == 0 and last_move["smooth_ap"] > 0
### END HIDDEN TESTS

# %% [markdown]
# ## References
# - Rank-in-Rank Loss for Person Re-identification, ACM TOMM, doi:10.1145/3532866.
# - K. Oksuz et al., Rank & Sort Loss for Object Detection and Instance Segmentation, ICCV 2021.
# - A. Brown et al., Smooth-AP: Smoothing the Path Towards Large-Scale Image Retrieval, ECCV 2020.
# - R. Hadsell, S. Chopra, Y. LeCun, Dimensionality Reduction by Learning an Invariant Mapping,
#   CVPR 2006.
