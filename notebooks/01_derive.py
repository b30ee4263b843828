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
# # 01 Derive: from average precision to the ranking error, the sorting error and DRSL
#
# *Part of the drsl course. Our reading of the paper is in `docs/drsl-loss-spec.md`
# ("our reading": the paper's full text is not available to us).*
#
# ## Goals
# - Explain how DRSL grows out of average precision: AP, then the ranking error of every
#   positive, then the sorting error inside the positives, then the loss of one anchor.
# - Recompute every equation of the spec by hand on one anchor with 3 positives and 4
#   negatives, and check each number against `drsl.losses`.
# - Say what the smoothed step does, how our self-term convention differs from the RS Loss
#   code, what happens with L2-normalised embeddings, and what the identity update moves.

# %% [markdown]
# ## Setup
# One cell: imports from `drsl` (the notebook defines no function the package should own),
# paths, and the fast-mode switch (`DRSL_FAST=1`, used by the test suite, shrinks the work
# without changing the code path).

# %%
import inspect

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display

import drsl
from drsl import losses as L
from drsl.config import data_dir, fast_mode
from drsl.distances import pairwise_cosine, pairwise_euclidean
from drsl.losses.reference import drsl_loss_dense
from drsl.metrics import average_precision
from drsl.plotting import losses as PL
from drsl.plotting import plot_update_row

FAST = fast_mode()
torch.manual_seed(0)
torch.set_default_dtype(torch.float64)  # hand calculations: compare to 1e-12
print(f"drsl {drsl.__version__}, torch {torch.__version__}, fast mode: {FAST}, data: {data_dir()}")

# %% [markdown]
# ## 1. The worked example: one anchor, 3 positives, 4 negatives
# Eight 2-D embeddings. Item 0 is the **anchor** (the query); items `p1, p2, p3` share its
# identity (its **positives**), items `n1..n4` are four other people (its **negatives**, one
# identity each, so they have no positives of their own and are skipped as anchors).
# The retrieval score of item $j$ is $s_j = -\lVert f_a - f_j \rVert_2$: the nearer, the
# earlier it is retrieved. The **angle target** of a positive is
# $t_j = (1 + \cos(f_a, f_j)) / 2 \in [0, 1]$: 1 when it points exactly like the anchor.

# %%
names = ["anchor", "p1", "n1", "p2", "n2", "n3", "p3", "n4"]
f = torch.tensor([[1.00, 0.00], [0.84, 0.63], [0.74, -0.76], [0.08, 0.39],  # in names' order
                  [0.00, -0.66], [-0.26, 0.60], [1.19, -1.59], [-0.87, -1.16]])  # fmt: skip
labels = torch.tensor([0, 0, 1, 0, 2, 3, 0, 4])
a = 0
others = torch.arange(1, 8)
dist = pairwise_euclidean(f)[a, others]
s = -dist  # retrieval scores
t = (1 + pairwise_cosine(f)[a, others]) / 2  # angle targets
is_pos = labels[others] == labels[a]
for n, dj, tj, pj in zip(names[1:], dist, t, is_pos, strict=True):
    print(f"{n}: distance {dj:.3f}, target t {tj:.3f}, {'positive' if pj else 'negative'}")

# %% [markdown]
# The picture of the ranked list: left is retrieved first. The positives are coloured by
# their angle target. Two things are wrong: negatives `n1`, `n2`, `n3` are retrieved before
# some positives (a **ranking** problem), and `p2` comes before `p3` although its angle
# target is lower, against the angle order (a **sorting** problem inside the positives).

# %%
fig = PL.plot_anchor_list(dist, is_pos, t, names=names[1:], delta=L.DEFAULT_DELTA)
plt.show()

# %% [markdown]
# ## 2. Average precision and the ranking error
# Ranked by score, the list reads `p1 n1 p2 n2 n3 p3 n4`. Write $P_a$ and $N_a$ for the
# anchor's positives and negatives (in the code, the lists `pos` and `neg`; the letter $P$
# alone means identities per batch everywhere in the course). With the exact step
# $H(x) = [x \ge 0]$ ("is $j$ retrieved before $i$?"; a tie counts as retrieved before,
# pessimistically, as in RS Loss), every positive $i$ has a rank among all items and a rank
# among the positives:
#
# $$\begin{aligned}
#   \mathrm{rank}(i) &= 1 + \sum_{j \in P_a \cup N_a} H(s_j - s_i), \\
#   \mathrm{rank}^+(i) &= 1 + \sum_{j \in P_a} H(s_j - s_i), \\
#   N_{FP}(i) &= \sum_{j \in N_a} H(s_j - s_i).
# \end{aligned}$$
#
# The precision at positive $i$ is $\mathrm{rank}^+(i) / \mathrm{rank}(i)$ and AP is its mean
# over the positives. One minus the precision is the **ranking error**
# $\ell_R(i) = N_{FP}(i) / \mathrm{rank}(i)$ (as $\mathrm{rank} = \mathrm{rank}^+ + N_{FP}$),
# so $1 - \mathrm{AP}$ is the mean ranking error. The next cell computes all of it with
# plain loops (sums over $j \ne i$: the item itself is the "1" that starts each rank).

# %%
pos = [j for j in range(7) if is_pos[j]]
neg = [j for j in range(7) if not is_pos[j]]
# H(s_j - s_i), exact step: a tie counts as "retrieved before"
hard = {(i, j): float(s[j] >= s[i]) for i in range(7) for j in range(7) if i != j}
rank = {i: 1 + sum(hard[i, j] for j in pos + neg if j != i) for i in pos}
rank_pos = {i: 1 + sum(hard[i, j] for j in pos if j != i) for i in pos}
n_fp = {i: sum(hard[i, j] for j in neg) for i in pos}
l_rank = {i: n_fp[i] / rank[i] for i in pos}
ap = np.mean([rank_pos[i] / rank[i] for i in pos])
for i in pos:
    terms_i = f"rank {rank[i]:.0f}, rank+ {rank_pos[i]:.0f}, N_FP {n_fp[i]:.0f}"
    print(f"{names[i + 1]}: {terms_i}, l_R {l_rank[i]:.4f}")
print(f"AP = {ap:.4f}, 1 - AP = {1 - ap:.4f}, mean l_R = {np.mean(list(l_rank.values())):.4f}")

# %% [markdown]
# Checks: AP equals the metrics module's AP of the ranked list (the same formula the
# evaluation uses), and every term equals `drsl.losses.drsl_terms` (row = anchor 0, slots =
# its positives in index order), with the exact step.

# %%
order = torch.argsort(dist)
assert abs(ap - average_precision(is_pos[order].numpy())) < 1e-12
scores, targets = L.retrieval_scores(f), L.angle_targets(f)
terms_hard = L.drsl_terms(scores, labels, targets, smoothing="hard")
slots = terms_hard.pos_index[a].tolist()
assert [j - 1 for j in slots] == pos
for p_, i in enumerate(pos):
    assert terms_hard.rank[a, p_] == rank[i] and terms_hard.rank_pos[a, p_] == rank_pos[i]
    assert terms_hard.n_fp[a, p_] == n_fp[i] and abs(terms_hard.l_rank[a, p_] - l_rank[i]) < 1e-12
l_rank_only = L.drsl_terms(scores, labels, targets, smoothing="hard", sort_weight=0.0)
assert abs(l_rank_only.anchor_loss[a].item() - (1 - ap)) < 1e-12
print("AP and ranking errors match drsl.losses")

# %% [markdown]
# Why count a tie as "before"? Were it counted as "after", a network that maps every image to
# the same point (a *collapsed* embedding, a real failure mode early in training) would have no
# negative strictly ahead of any positive: ranking error 0, a perfect score for a useless
# model. Counted as "before", the collapsed batch gets the **largest** ranking error instead:
# for each positive, every other item is ahead of it, so
# $\ell_R(i) = |N_a| / (|P_a| + |N_a|)$ (spec, "Step function").

# %%
collapsed = torch.zeros_like(f)
t_col = L.drsl_terms(L.retrieval_scores(collapsed), labels, targets, smoothing="hard")
worst = len(neg) / (len(pos) + len(neg))
print(f"collapsed batch, anchor 0: l_R = {t_col.l_rank[a].tolist()}")
print(f"|N_a| / (|P_a| + |N_a|) = {worst:.4f}")
assert torch.allclose(t_col.l_rank[a], torch.full((len(pos),), worst))
assert L.drsl_loss(collapsed, labels, angle_embeddings=f, smoothing="hard") > 0

# %% [markdown]
# ## 3. Smoothing the step
# The exact step has a zero derivative almost everywhere, so it cannot train anything by
# gradient descent. The spec offers two smoothed steps of width $\delta$:
# the **linear** ramp $H(x) = \mathrm{clamp}(x / 2\delta + 1/2, 0, 1)$ of AP-Loss and RS Loss,
# and the **sigmoid** $H(x) = 1 / (1 + e^{-x/\delta})$ of Smooth-AP. Items closer than
# $\delta$ to each other now count as "partly before". The default
# $\delta = 0.3$ (`L.DEFAULT_DELTA`) is in distance units: a (positive, negative) pair stops
# contributing once the negative is $\delta$ farther, exactly the zero-loss condition of a
# triplet hinge whose margin equals $\delta$. The plot is drawn from `L.step_function`.

# %%
x = torch.linspace(-1, 1, 401)
delta = L.DEFAULT_DELTA
curves = {k: L.step_function(x, k, delta) for k in ("hard", "linear", "sigmoid")}
fig = PL.plot_step_functions(x, curves, delta=delta)
plt.show()
zero = torch.tensor(0.0)
assert L.step_function(zero, "linear", delta) == 0.5 == L.step_function(zero, "sigmoid", delta)

# %% [markdown]
# With the linear ramp and $\delta = 0.3$ the same terms become fractional. The teaching
# loop below repeats section 2 with `L.step_function`, and checks against the package.

# %%
H = {(i, j): float(L.step_function(s[j] - s[i], "linear", delta)) for (i, j) in hard}
rank_l = {i: 1 + sum(H[i, j] for j in pos + neg if j != i) for i in pos}
rank_pos_l = {i: 1 + sum(H[i, j] for j in pos if j != i) for i in pos}
n_fp_l = {i: sum(H[i, j] for j in neg) for i in pos}
l_rank_l = {i: n_fp_l[i] / rank_l[i] for i in pos}
terms = L.drsl_terms(scores, labels, targets, smoothing="linear", delta=delta)
for p_, i in enumerate(pos):
    print(f"{names[i + 1]}: rank {rank_l[i]:.4f}, N_FP {n_fp_l[i]:.4f}, l_R {l_rank_l[i]:.4f}")
    assert abs(terms.rank[a, p_] - rank_l[i]) < 1e-12
    assert abs(terms.rank_pos[a, p_] - rank_pos_l[i]) < 1e-12
    assert abs(terms.n_fp[a, p_] - n_fp_l[i]) < 1e-12
    assert abs(terms.l_rank[a, p_] - l_rank_l[i]) < 1e-12

# %% [markdown]
# ## 4. The sorting error: rank inside the rank
# Among the positives DRSL wants a second order: by angle target, highest first. The
# **sorting error** of positive $i$ is the mean of $1 - t$ over the positives retrieved up to
# $i$ (itself included):
#
# $$\ell_S(i) = \frac{(1 - t_i) + \sum_{j \in P_a} H(s_j - s_i)(1 - t_j)}{\mathrm{rank}^+(i)}.$$
#
# The **target sorting error** $\ell^*_S(i)$ is the same mean with the positives of *lower*
# target ($t_j < t_i$) left out: what $i$ would see if they were not ranked above it
# (RS Loss, Eq. 8). Removing the largest values of $1 - t$ can only lower a mean, so
# $\ell_S(i) - \ell^*_S(i) \ge 0$, and it is 0 exactly when no lower-target positive is above $i$.

# %%
l_sort = {
    i: ((1 - t[i]) + sum(H[i, j] * (1 - t[j]) for j in pos if j != i)) / rank_pos_l[i] for i in pos
}
l_sort_t = {}
for i in pos:
    higher = [j for j in pos if j != i and t[j] >= t[i]]
    num = (1 - t[i]) + sum(H[i, j] * (1 - t[j]) for j in higher)
    l_sort_t[i] = num / (1 + sum(H[i, j] for j in higher))
for p_, i in enumerate(pos):
    sort_terms = f"l_S {l_sort[i]:.4f}, l*_S {l_sort_t[i]:.4f}"
    print(f"{names[i + 1]}: t {t[i]:.3f}, {sort_terms}, l_S - l*_S {l_sort[i] - l_sort_t[i]:.4f}")
    assert abs(terms.l_sort[a, p_] - l_sort[i]) < 1e-12
    assert abs(terms.l_sort_target[a, p_] - l_sort_t[i]) < 1e-12
    assert l_sort[i] - l_sort_t[i] >= 0

# %% [markdown]
# Only `p3` has a sorting error: `p2`, of lower target, is ranked above it.

# %% [markdown]
# ## 5. DRSL for one anchor and for the batch
# The anchor's loss is the mean over its positives of the ranking error plus $\lambda$ times
# the sorting error in excess of its target:
#
# $$L_a = \frac{1}{|P_a|} \sum_{i \in P_a}
#   \left[\ell_R(i) + \lambda\,(\ell_S(i) - \ell^*_S(i))\right].$$
#
# The batch loss is the mean of $L_a$ over all anchors that have a positive; here those are the
# anchor and its three positives (each of `n1..n4` is alone with its identity).

# %%
lam = 1.0
L_a = np.mean([l_rank_l[i] + lam * (l_sort[i] - l_sort_t[i]) for i in pos])
print(f"L_a (anchor 0) = {L_a:.6f}")
assert abs(terms.anchor_loss[a] - L_a) < 1e-12
batch = L.drsl_loss(f, labels, delta=delta, sort_weight=lam)
has_pos = terms.num_pos > 0
assert abs(batch - terms.anchor_loss[has_pos].mean()) < 1e-12
assert torch.equal(has_pos, torch.tensor([True, True, False, True, False, False, True, False]))
print(f"batch loss = mean of L_a over the {has_pos.sum()} anchors with a positive = {batch:.6f}")
slots = ["p1", "p2", "p3"]
fig = PL.plot_loss_terms(terms.l_rank[a], terms.l_sort[a], terms.l_sort_target[a], names=slots)
plt.show()

# %% [markdown]
# ## 6. A readable version: every equation as one tensor expression
# The loops above follow one anchor. `drsl.losses.reference.drsl_loss_dense` computes the
# same equations for **every** anchor at once, with dense tensors: `H[a, i, j]` is
# $H(s_j - s_i)$ for anchor $a$ (a $B \times B \times B$ tensor), masks pick $P_a$ and $N_a$,
# and each line of the spec becomes one sum over the last axis. It is short enough to read
# in one go (its source is printed below) and fine for teaching batches, but its memory grows
# like $B^3$. The package's `drsl_loss` computes the same sums in blocks, only over each
# anchor's positives ($B \times |P_a| \times B$), with its own backward pass: fast, but long.
# The two must agree, and the cell checks it on the worked example and on a random batch, for
# the three steps.

# %% tags=["remove-input"]
display(Markdown(f"```python\n{inspect.getsource(drsl_loss_dense)}```"))
emb_r = torch.randn(12, 4, generator=torch.Generator().manual_seed(1))
lab_r = torch.arange(4).repeat_interleave(3)
for smoothing in ("hard", "linear", "sigmoid"):
    for emb, lab in ((f, labels), (emb_r, lab_r)):
        dense = drsl_loss_dense(emb, lab, smoothing=smoothing, delta=delta, sort_weight=lam)
        fast = L.drsl_loss(emb, lab, smoothing=smoothing, delta=delta, sort_weight=lam)
        assert abs(dense - fast) < 1e-12, (smoothing, float(dense), float(fast))
print("drsl_loss_dense equals drsl.losses.drsl_loss (hard, linear and sigmoid steps)")

# %% [markdown]
# ## 7. The self term: our convention and the RS Loss code
# Every rank above starts at 1 for the item itself, as in AP-Loss: the sums run over
# $j \ne i$. The RS Loss reference code instead sums $H(x_{ij})$ over *all* positives
# including $j = i$, where $x_{ii} = 0$: with its linear ramp that self term is
# $H(0) = 1/2$, not 1 (with its exact step, written `>= 0` like ours, it is 1). The ranks, and
# so the errors, then differ: most near the top of the list, where the ranks are small (the
# same half point weighs more in a small rank). The cell checks that the difference shrinks
# down the list, largest for the first positive.

# %%
half = float(L.step_function(torch.tensor(0.0), "linear", delta))  # = 1/2
rank_rs = {i: half + sum(H[i, j] for j in pos + neg if j != i) for i in pos}
l_rank_rs = {i: n_fp_l[i] / rank_rs[i] for i in pos}
for i in pos:
    print(f"{names[i + 1]}: l_R ours {l_rank_l[i]:.4f}, RS-code convention {l_rank_rs[i]:.4f}")
assert half == 0.5
gap = [l_rank_rs[i] - l_rank_l[i] for i in sorted(pos, key=lambda i: rank_l[i])]  # top first
print("RS-code minus ours, top of the list first:", np.round(gap, 4).tolist())
assert min(gap) > 0 and np.all(np.diff(gap) < 0)  # largest at the top, shrinking down

# %% [markdown]
# ## 8. L2-normalised embeddings
# On the unit sphere $\lVert f_a - f_j \rVert^2 = 2 - 2\cos(f_a, f_j)$: distance order and
# angle order coincide, so with the exact step no lower-target positive can be ranked above a
# higher-target one and the sorting term is exactly 0. With a smoothed step, only pairs of
# positives closer than $\delta$ to each other still add to it (each counts as "partly
# before" the other). The package shows it on the worked example:

# %%
fn = torch.nn.functional.normalize(f, dim=1)
sn, tn = L.retrieval_scores(fn), L.angle_targets(fn)
th = L.drsl_terms(sn, labels, tn, smoothing="hard")
assert torch.allclose(th.l_sort, th.l_sort_target, atol=1e-12)
for dl in (0.01, 0.05, 0.3):
    tl = L.drsl_terms(sn, labels, tn, smoothing="linear", delta=dl)
    sort_part = (tl.l_sort - tl.l_sort_target)[a]
    d_pos = -sn[a, terms.pos_index[a]]
    gaps = (d_pos[:, None] - d_pos[None, :]).abs() + 10 * torch.eye(3)
    closest = f"smallest gap between positives {gaps.min():.3f}"
    print(f"delta {dl}: {closest}, sorting part {sort_part.tolist()}")
    if gaps.min() >= dl:
        assert torch.all(sort_part.abs() < 1e-12)

# %% [markdown]
# ## 9. The identity update
# DRSL can be trained by autograd through the smoothed step (`gradient="smooth"`), or, as in
# RS Loss, by the **identity update** (`gradient="identity"`), which hands each error directly
# to the items that caused it. For anchor $a$, positive $i$
# - owes its ranking error $\ell_R(i)$ to the negatives ranked before it, split in proportion
#   to $H(s_j - s_i)$;
# - owes its sorting error $\lambda(\ell_S(i) - \ell^*_S(i))$ to the positives of lower target
#   ranked before it, split the same way;
#
# and $\partial L_a / \partial s_k = (\text{what } k \text{ receives} - \text{what } k
# \text{ owes}) / |P_a|$, divided once more by the number of anchors. A negative entry raises
# the score (moves the item up the list), a positive entry lowers it. The next cell builds
# row 0 by hand and checks it against `L.identity_update`.

# %%
n_anchors = int(has_pos.sum())
rank_part = torch.zeros(8)
sort_part = torch.zeros(8)
for i in pos:
    rank_part[i + 1] -= l_rank_l[i]
    if n_fp_l[i] > 0:
        for j in neg:
            rank_part[j + 1] += l_rank_l[i] * H[i, j] / n_fp_l[i]
    lower = [j for j in pos if j != i and t[j] < t[i]]
    den = sum(H[i, j] for j in lower)
    if den > 0:
        sort_part[i + 1] -= lam * (l_sort[i] - l_sort_t[i])
        for j in lower:
            sort_part[j + 1] += lam * (l_sort[i] - l_sort_t[i]) * H[i, j] / den
rank_part /= len(pos) * n_anchors
sort_part /= len(pos) * n_anchors
upd = L.identity_update(scores, labels, targets, delta=delta, sort_weight=lam)
assert torch.allclose(upd.ranking[a], rank_part, rtol=0, atol=1e-15)
assert torch.allclose(upd.sorting[a], sort_part, rtol=0, atol=1e-15)
fig = plot_update_row(
    {"ranking part": upd.ranking[a, 1:], "sorting part": upd.sorting[a, 1:]}, names=names[1:]
)
plt.show()

# %% [markdown]
# By construction each part sums to zero over the items, for every anchor (what is owed is
# received), and the loss value is the same in both modes; only the backward pass differs.
# That the ranking part pushes the positives up exactly as hard as it pushes the negatives
# down, whatever the number of negatives (RS Loss's balance property), is notebook 02's
# lesson (section 6).

# %% tags=["remove-input"]
for part in (upd.ranking, upd.sorting):
    assert torch.allclose(part.sum(dim=1), torch.zeros(8), atol=1e-15)
assert L.drsl_loss(f, labels, gradient="identity") == L.drsl_loss(f, labels, gradient="smooth")

# %% [markdown]
# ## Summary
# - DRSL's ranking error is one minus the precision at each positive; its mean over the
#   positives is $1 - \mathrm{AP}$ with the exact step, and a smooth surrogate with a ramp or
#   sigmoid of width $\delta$. With the exact step a tie counts as "retrieved before", so a
#   collapsed batch gets the largest ranking error, never 0.
# - The sorting error measures, inside the positives, how far the distance order is from the
#   angle order; $\ell_S - \ell^*_S \ge 0$ and is 0 when no lower-target positive is above.
# - Every number of the worked example was recomputed by hand and matched `drsl.losses`,
#   including the identity update, whose parts sum to zero (their balance of positives
#   against negatives: notebook 02). The readable dense version
#   `drsl.losses.reference.drsl_loss_dense` equals the package's fast `drsl_loss`.
#
# ## Exercises
# Each exercise has an answer cell (a stub in the student edition) and a check cell that
# grades it (`make assignments`: nbgrader); the solution's explanation comes first here.
#
# **Exercise 1.** Move `n3` beyond `p3` (edit its coordinates in section 1) and re-run: which
# terms of `p3` change, and by how much does the anchor's loss drop?
#
# *Your answer* (the next code cell) defines `moved`, `d_lr` and `drop`;
# the cell after it checks them.

# %% [markdown] tags=["solution"]
# **Solution 1.** Only `p3`'s ranking terms change: `n3` was partly before `p3` (their scores
# differ by less than $\delta$), and it was never within $\delta$ of `p1` or `p2`. Moved
# beyond `p3` (here to `[-1.0, 1.2]`, farther than `p3` by more than $\delta$), it leaves
# $N_{FP}$ and the rank of `p3`; the sorting terms use positives only and do not move. The
# anchor's loss drops by a third of the drop of $\ell_R$(`p3`) (a mean over 3 positives).

# %% tags=["answer"]
### BEGIN SOLUTION
f_moved = f.clone()
f_moved[names.index("n3")] = torch.tensor([-1.0, 1.2])
moved = L.drsl_terms(L.retrieval_scores(f_moved), labels, L.angle_targets(f_moved), delta=delta)
d_lr = terms.l_rank[a] - moved.l_rank[a]  # per positive p1, p2, p3
drop = float(terms.anchor_loss[a] - moved.anchor_loss[a])
print(f"drop of l_R per positive (p1, p2, p3): {d_lr.tolist()}; anchor loss drops by {drop:.4f}")
### END SOLUTION

# %% tags=["check"]
assert {"moved", "d_lr", "drop"} <= set(globals()), "your answer defines moved, d_lr and drop"
### BEGIN HIDDEN TESTS
assert torch.all(d_lr[:2].abs() < 1e-12) and d_lr[2] > 0
assert torch.allclose(terms.l_sort[a], moved.l_sort[a], atol=1e-12)
assert abs(drop - float(d_lr[2]) / 3) < 1e-12
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 2.** Show that with the exact step $\ell_S(i) = \ell^*_S(i)$ whenever the
# positives ranked above $i$ all have $t_j \ge t_i$. Check it with `L.drsl_terms` on a batch
# you build.
#
# *Your answer* (the next code cell) defines `ok` and `excess`;
# the cell after it checks them.

# %% [markdown] tags=["solution"]
# **Solution 2.** With the exact step, $H(s_j - s_i) = 1$ for the positives ranked above $i$
# and 0 below. The two numerators and denominators then differ only by the positives above
# $i$ with $t_j < t_i$; when there are none, the sums are identical. A batch of unit vectors
# (distance order = angle order) has none; pulling a low-target positive close to the
# anchor makes one, and then $\ell_S > \ell^*_S$ for the positive it jumps over.

# %% tags=["answer"]
### BEGIN SOLUTION
deg = torch.deg2rad(torch.tensor([0.0, 10.0, 30.0, 60.0, 180.0]))
unit = torch.stack([torch.cos(deg), torch.sin(deg)], 1)  # anchor, 3 positives, 1 negative
lab2 = torch.tensor([0, 0, 0, 0, 1])
ok = L.drsl_terms(L.retrieval_scores(unit), lab2, L.angle_targets(unit), smoothing="hard")
jumped = unit.clone()
jumped[2] *= 2.0  # the 30-degree positive moves away ...
jumped[3] *= 0.5  # ... and the 60-degree one (lower target) comes nearer than it
bad = L.drsl_terms(L.retrieval_scores(jumped), lab2, L.angle_targets(jumped), smoothing="hard")
excess = (bad.l_sort - bad.l_sort_target)[0]
print("sorted by angle:   l_S - l*_S =", (ok.l_sort - ok.l_sort_target)[0].tolist())
print("one jumped ahead:  l_S - l*_S =", excess.tolist())
### END SOLUTION

# %% tags=["check"]
assert {"ok", "excess"} <= set(globals()), "your answer defines ok and excess"
### BEGIN HIDDEN TESTS
assert torch.allclose(ok.l_sort, ok.l_sort_target, atol=1e-12)
assert excess.max() > 0
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 3.** Change $\delta$ to $0.05$ and to $1.0$ in section 3: which pairs enter the ramp,
# and how do the ranking errors move?
#
# *Your answer* (the next code cell) defines `counts`;
# the cell after it checks it.

# %% [markdown] tags=["solution"]
# **Solution 3.** A pair enters the ramp when its scores differ by less than $\delta$. No two
# items of the worked example are that close at $\delta = 0.05$, so every $H$ is 0 or 1 and
# the ranking errors are those of the exact step; at $\delta = 1$ most pairs are in the ramp
# and every error moves towards the "half before, half after" value. The cell counts the
# pairs and prints the errors.

# %% tags=["answer"]
### BEGIN SOLUTION
for dl in (0.05, delta, 1.0):
    in_ramp = sum(1 for (i, j) in hard if abs(s[j] - s[i]) < dl)
    t_dl = L.drsl_terms(scores, labels, targets, smoothing="linear", delta=dl)
    print(f"delta {dl}: {in_ramp} ordered pairs in the ramp, l_R = {t_dl.l_rank[a].tolist()}")
    if in_ramp == 0:
        assert torch.allclose(t_dl.l_rank[a], terms_hard.l_rank[a], atol=1e-12)
counts = [sum(1 for (i, j) in hard if abs(s[j] - s[i]) < dl) for dl in (0.05, delta, 1.0)]
### END SOLUTION

# %% tags=["check"]
assert {"counts"} <= set(globals()), "your answer defines counts"
### BEGIN HIDDEN TESTS
assert counts[0] == 0 and counts[0] < counts[1] < counts[2]
### END HIDDEN TESTS

# %% [markdown]
# ## References
# - Rank-in-Rank Loss for Person Re-identification, ACM TOMM, doi:10.1145/3532866.
# - K. Oksuz et al., "Rank & Sort Loss for Object Detection and Instance Segmentation",
#   ICCV 2021 (sorting error, identity update, balance).
# - K. Chen et al., "Towards Accurate One-Stage Object Detection with AP-Loss", CVPR 2019.
# - A. Brown et al., "Smooth-AP: Smoothing the Path Towards Large-Scale Image Retrieval",
#   ECCV 2020.
