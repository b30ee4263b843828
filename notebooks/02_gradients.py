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
# # 02 Gradients: finite differences, gradcheck, and the identity update vs the smooth gradient
#
# *Part of the drsl course. Our reading of the paper is in `docs/drsl-loss-spec.md`
# ("our reading": the paper's full text is not available to us).*
#
# ## Goals
# - Check DRSL's autograd gradient against central finite differences, and explain the
#   V-shaped error-versus-step curve (truncation against round-off).
# - Explain what the corners of the linear ramp do to finite differences and to
#   `torch.autograd.gradcheck`, and why the angle targets must be held fixed in a check.
# - Compare the identity update with the smooth gradient: where they agree in direction, and
#   how the identity update shares its push between positives and negatives as the batch
#   gets more imbalanced.

# %% [markdown]
# ## Setup
# One cell: imports from `drsl` (the notebook defines no function the package should own),
# paths, and the fast-mode switch (`DRSL_FAST=1`, used by the test suite, shrinks the work
# without changing the code path).

# %%
import inspect
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import torch

import drsl
from drsl import gradcheck as G
from drsl import losses as L
from drsl.config import data_dir, fast_mode
from drsl.losses.names import record
from drsl.plotting import gradients as PG

FAST = fast_mode()
torch.manual_seed(0)
torch.set_default_dtype(torch.float64)  # gradient checks need float64
FD_RTOL = 1e-6  # the one tolerance of this notebook: finite differences vs autograd, float64
P_ids, K = (3, 3) if FAST else (4, 4)  # identities and instances in the small batch
P_VALUES = (2, 4, 8) if FAST else (2, 4, 8, 16, 32)  # the imbalance sweep of section 6
gen = torch.Generator().manual_seed(0)
print(f"drsl {drsl.__version__}, torch {torch.__version__}, fast mode: {FAST}, data: {data_dir()}")

# %% [markdown]
# ## 1. Finite differences against autograd
# A small batch of $P \times K$ embeddings in 3-D. The central difference
# $g_k \approx (L(x + h e_k) - L(x - h e_k)) / 2h$ needs only loss values; autograd gives the
# exact gradient of what the code computes. With the sigmoid step DRSL is smooth everywhere,
# so in float64 the two must agree up to round-off: the cell asserts a relative error below
# `FD_RTOL`, the tolerance set in the setup cell, and prints both.
#
# One subtlety: the angle targets $t$ are **detached** (spec: "no gradient flows through
# them"). If they are computed from the same embeddings, moving $x$ moves the targets too:
# finite differences see that, autograd does not, and the two disagree. A check must hold the
# targets fixed, which `angle_embeddings=` does.

# %%
f = torch.randn(P_ids * K, 3, generator=gen)
y = torch.arange(P_ids).repeat_interleave(K)
kw = dict(smoothing="sigmoid", delta=0.5)
# the loss as a function of the embeddings alone: targets from f (fixed), or from x itself
loss_fixed = partial(L.drsl_loss, labels=y, angle_embeddings=f, **kw)
loss_moving = partial(L.drsl_loss, labels=y, **kw)

for name, fn in (("targets fixed", loss_fixed), ("targets follow x", loss_moving)):
    cmp = G.compare_gradients(G.numerical_gradient(fn, f), G.autograd_gradient(fn, f))
    print(f"{name}: relative error {cmp.relative_error:.2e} (FD_RTOL {FD_RTOL:.0e}), "
          f"cosine {cmp.cosine:.6f}")  # fmt: skip
    if name == "targets fixed":
        assert cmp.relative_error < FD_RTOL
    else:
        assert cmp.relative_error > 1e-3

# %% [markdown]
# ## 2. The V: truncation against round-off
# How good a finite difference is depends on the step $h$. Taylor's theorem gives a
# **truncation** error $\sim h^2$ for the central difference; subtracting two nearly equal
# loss values and dividing by $h$ gives a **round-off** error $\sim \varepsilon / h$, with
# $\varepsilon$ the machine epsilon ($2.2\times10^{-16}$ in float64, $1.2\times10^{-7}$ in
# float32). Their sum is a V on log-log axes, with its bottom near $h \sim \varepsilon^{1/3}$.
# `G.step_sweep` measures the relative error of the directional derivative along a random
# direction, for many $h$, in both precisions.

# %%
sw64 = G.step_sweep(loss_fixed, f)
f32 = f.float()
sw32 = G.step_sweep(partial(L.drsl_loss, labels=y, angle_embeddings=f32, **kw), f32)
fig = PG.plot_step_sweep({"float64": sw64, "float32": sw32})
plt.show()
print(f"float64: best h {sw64.best_step:.1e}, error {sw64.errors.min():.1e}")
print(f"float32: best h {sw32.best_step:.1e}, error {sw32.errors.min():.1e}")
assert 1e-8 < sw64.best_step < 1e-2 and sw64.errors.min() < 1e-8
assert sw32.errors.min() > 100 * sw64.errors.min() and sw32.best_step > sw64.best_step

# %% [markdown]
# ## 3. The linear ramp's corners
# The linear step $H(x) = \mathrm{clamp}(x/2\delta + 1/2, 0, 1)$ has corners at
# $x = \pm\delta$. To see them, move **one negative's score** for one anchor and keep all else
# fixed: the loss is then a function of one number $t$, with a corner wherever the moved
# score is exactly $\delta$ above or below one of the anchor's positives. Autograd returns one
# side's slope at a corner (the convention of `clamp`); a central difference whose interval
# straddles a corner averages the two sides, however small the round-off.

# %%
delta = 0.25
base = L.retrieval_scores(f)
targets = L.angle_targets(f)
a = 0
pos_j = [j for j in range(len(y)) if j != a and y[j] == y[a]]
neg_j = int(np.argmax((y != y[a]).numpy()))  # the first negative of anchor 0
row = base[a].clone()
e = torch.zeros_like(row)
e[neg_j] = 1.0
# DRSL of the batch as a function of anchor 0's score row (all other rows fixed)
loss_of_row = G.score_row_loss(base, y, targets, anchor=a, smoothing="linear", delta=delta)

# the corners: the negative's score at s_i - delta and s_i + delta for each positive i
kinks = sorted(float(base[a, i] - row[neg_j] + sgn * delta) for i in pos_j for sgn in (-1, 1))
ts = np.linspace(min(kinks) - 0.3, max(kinks) + 0.3, 81 if FAST else 241)
values, slopes = G.line_profile(loss_of_row, row, e, ts)
fd_coarse = [G.directional_derivative(loss_of_row, row + tt * e, e, 0.05) for tt in ts]
fd_fine = [G.directional_derivative(loss_of_row, row + tt * e, e, 1e-6) for tt in ts]
fig = PG.plot_line_profile(
    ts,
    values,
    slopes,
    fd={"FD, h = 0.05": fd_coarse, "FD, h = 1e-6": fd_fine},
    kinks=kinks,
    title="DRSL along one negative's score (linear ramp, corners dotted)",
)
plt.show()

# %% [markdown]
# Between the corners the fine difference sits on autograd's slope; the coarse one blurs
# every corner over $\pm h$. Near a corner, the error-versus-step curve is no V: it is small
# while $h$ is below the distance to the corner and jumps once the interval straddles it.

# %%
t0 = kinks[0] + 0.01  # 0.01 past the first corner
x0 = row + t0 * e
sweeps = {
    "linear, 0.01 from a corner": G.step_sweep(loss_of_row, x0, direction=e),
    "sigmoid, same point": G.step_sweep(
        G.score_row_loss(base, y, targets, anchor=a, smoothing="sigmoid", delta=delta),
        x0,
        direction=e,
    ),
}
fig = PG.plot_step_sweep(sweeps, guides=False, title="a corner breaks the V")
plt.show()
lin = sweeps["linear, 0.01 from a corner"]
small_h = (lin.steps > 1e-6) & (lin.steps < 0.005)
print(
    f"linear: error <= {lin.errors[small_h].max():.1e} for 1e-6 < h < 0.005, "
    f">= {lin.errors[lin.steps > 0.011].min():.2f} once h > 0.01 (the corner's distance)"
)
assert lin.errors[small_h].max() < 1e-4 and lin.errors[lin.steps > 0.011].min() > 0.1

# %% [markdown]
# ## 4. `torch.autograd.gradcheck`
# `gradcheck` automates section 1: it compares every entry of the analytical Jacobian with
# a central difference (in float64, with its own step `eps` and tolerances `atol`, `rtol`,
# printed by the cell from its signature) and fails if any disagrees. It passes for
# the sigmoid step with fixed targets; it fails at a point placed exactly on a corner of the
# linear ramp (not a bug: the derivative does not exist there); and it fails for
# `gradient="identity"`, which back-propagates an update that is **not the gradient of any
# function**: finite differences cannot check it (section 5 compares it differently).

# %%
gc_defaults = {
    k: v.default
    for k, v in inspect.signature(torch.autograd.gradcheck).parameters.items()
    if k in ("eps", "atol", "rtol")
}
print("gradcheck defaults:", gc_defaults)
xg = f.clone().requires_grad_(True)
ok_sigmoid = torch.autograd.gradcheck(loss_fixed, (xg,))
ok_corner = torch.autograd.gradcheck(
    loss_of_row, ((row + kinks[0] * e).requires_grad_(True),), raise_exception=False
)
ok_identity = torch.autograd.gradcheck(
    partial(loss_fixed, gradient="identity"), (xg,), raise_exception=False
)
print(f"sigmoid: {ok_sigmoid}, linear on a corner: {ok_corner}, identity update: {ok_identity}")
assert ok_sigmoid and not ok_corner and not ok_identity

# %% [markdown]
# ## 5. The identity update against the smooth gradient
# Both are fields $\partial L / \partial s$ on the $B \times B$ score matrix. They cannot
# agree exactly (one is a gradient, the other an error-driven heuristic), but they should
# point broadly the same way. `G.identity_vs_smooth` computes both on one batch and compares
# them by cosine (1 = same direction) and relative norm. The wider the step $\delta$, the
# more the smooth gradient spreads over many pairs, like the identity update does.

# %%
rows = []
for dl in (0.1, 0.3, 1.0, 3.0):
    for sm in ("linear", "sigmoid"):
        r = G.identity_vs_smooth(f, y, delta=dl, smoothing=sm)
        rows.append((dl, sm, r.overall.cosine, r.overall.relative_norm))
        print(
            f"delta {dl:<4} {sm:<8} cosine {r.overall.cosine:6.3f}   "
            f"|identity| / |smooth| {r.overall.relative_norm:7.2f}"
        )
assert all(c > 0 for *_, c, _ in rows)
r = G.identity_vs_smooth(f, y, delta=1.0, smoothing="sigmoid")
fig = PG.plot_update_comparison(
    r.identity, r.smooth, y, title=f"delta = 1, sigmoid: cosine {r.overall.cosine:.2f}"
)
plt.show()

# %% [markdown]
# The signs agree almost everywhere: negatives are pushed down (positive $\partial L/\partial
# s$), positives up. The identity update is not a rescaled gradient, though: its pushes
# follow the errors, not the local slopes, which is why it keeps moving items even where the
# smoothed step is flat (it works at $\delta \to 0$, where the smooth gradient vanishes).
#
# ## 6. Balance as the batch gets more imbalanced
# This section is the course's one lesson on the **balance property** (notebook 07 uses it).
# With $K$ images per identity and $P$ identities, an anchor has $K-1$ positives and
# $(P-1)K$ negatives (the PK ratio of notebook 00). `L.gradient_mass` sums
# $|\partial L/\partial d|$ over positive pairs and over negative pairs. The ranking part of
# the identity update (`"drsl_rank"`, $\lambda = 0$) gives exactly as much total push to the
# positives as to the negatives, for every $P$ (`G.push_totals` checks it per anchor). The
# batch-hard triplet is balanced too, trivially (one positive against one negative per
# anchor), and so, on these batches, is the smooth gradient; a pairwise loss such as
# contrastive is not: the share of its push that goes to the negatives grows with their
# number.

# %%
names = ["drsl_rank", "drsl_smooth", "triplet", "contrastive"]
ratio = {n: [] for n in names}
per_pair = {n: [] for n in names}
for P in P_VALUES:
    emb = 0.3 * torch.randn(P * 4, 8, generator=gen)  # distances ~1: every loss is active
    lab = torch.arange(P).repeat_interleave(4)
    for n in names:
        opts = {"sort_weight": 0.0} if record(n).takes_angle else {}  # DRSL: ranking part
        m = L.gradient_mass(L.get_loss(n, **opts), emb, lab)
        ratio[n].append(m["pos"] / m["neg"])
        per_pair[n].append(m["pos_per_pair"] / m["neg_per_pair"])
    upd = L.identity_update(L.retrieval_scores(emb), lab, L.angle_targets(emb), sort_weight=0.0)
    pt = G.push_totals(upd.ranking, lab)
    assert np.allclose(pt["pos_push"], pt["neg_push"]) and np.allclose(pt["pos_abs"], pt["neg_abs"])
assert np.allclose(ratio["drsl_rank"], 1.0)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
PG.plot_balance(P_VALUES, ratio, ax=axes[0], title="total push: positives / negatives")
PG.plot_balance(
    P_VALUES,
    per_pair,
    ax=axes[1],
    ylabel="push per positive / per negative",
    title="push per pair: positives / negatives",
)
plt.show()

# %% [markdown]
# Left: the identity update stays at exactly 1 (by construction, for every anchor and any
# batch); the contrastive loss drifts towards the negatives as $P$ grows. Right: to keep the
# totals equal, each positive pair gets $(P-1)K/(K-1)$ times the push of a negative pair
# under the identity update. This is the mechanism the paper credits for resisting
# imbalance; it is a property of the update, not yet of training: notebook 05 tests whether
# it helps training on our data.

# %%
expected = [(P - 1) * 4 / 3 for P in P_VALUES]
print("identity update, push per positive / per negative:", np.round(per_pair["drsl_rank"], 3))
print("(P - 1) K / (K - 1):                              ", np.round(expected, 3))
assert np.allclose(per_pair["drsl_rank"], expected)

# %% [markdown]
# ## Summary
# - DRSL's autograd gradient (sigmoid step, fixed targets) matches central differences
#   within `FD_RTOL` (the relative error is printed in section 1); the error-versus-step
#   curve is a V, truncation on the right, round-off on the left, with a higher floor in
#   float32.
# - The linear ramp's corners break finite differences (and `gradcheck`) wherever the step
#   straddles a corner; the identity update is not a gradient at all, so it is checked by its
#   properties instead.
# - The identity update points the same way as the smooth gradient (positive cosine, closer
#   to 1 for wider $\delta$) and keeps positives and negatives in exact balance as $P$ grows.
#
# ## Exercises
# Each exercise has an answer cell (a stub in the student edition) and a check cell that
# grades it (`make assignments`: nbgrader); the solution's explanation comes first here.
#
# **Exercise 1.** In section 2, replace the sigmoid by the linear ramp: at a random point,
# does the V survive? Why (how far is the nearest corner)?
#
# *Your answer* (the next code cell) defines `sw_lin` and `below`;
# the cell after it checks them.

# %% [markdown] tags=["solution"]
# **Solution 1.** Yes, as long as $h$ stays below the distance to the nearest corner: between
# corners the linear ramp is piecewise linear in the distances, and DRSL is smooth there. The
# nearest corner is where some score gap $|s_j - s_i|$ is exactly $\delta$; the cell measures
# how far the random point is from one, and finds differences within `FD_RTOL` at steps below
# that distance.

# %% tags=["answer"]
### BEGIN SOLUTION
loss_lin = partial(L.drsl_loss, labels=y, angle_embeddings=f, smoothing="linear", delta=0.5)
sw_lin = G.step_sweep(loss_lin, f)
gaps = (L.retrieval_scores(f)[:, :, None] - L.retrieval_scores(f)[:, None, :]).abs()
corner = float((gaps - 0.5).abs().min())
print(f"linear: best h {sw_lin.best_step:.1e}, error {sw_lin.errors.min():.1e}; "
      f"nearest corner {corner:.1e} away in score units")  # fmt: skip
below = sw_lin.steps < corner  # steps that cannot reach the nearest corner
### END SOLUTION

# %% tags=["check"]
assert {"sw_lin", "below"} <= set(globals()), "your answer defines sw_lin and below"
### BEGIN HIDDEN TESTS
assert below.any() and sw_lin.errors[below].min() < FD_RTOL
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 2.** Pass `loss_moving` instead of `loss_fixed` to `gradcheck` in section 4:
# which check fails, and why is it the check, not the loss, that is wrong?
#
# *Your answer* (the next code cell) defines `ok_moving`;
# the cell after it checks it.

# %% [markdown] tags=["solution"]
# **Solution 2.** `gradcheck` fails. The loss detaches its angle targets by design (spec:
# "no gradient flows through" $t$), so autograd leaves out the targets' motion; the finite
# differences, moving $x$, move the targets too. The check compares two different
# functions: it must hold the targets fixed, as `loss_fixed` does.

# %% tags=["answer"]
### BEGIN SOLUTION
ok_moving = torch.autograd.gradcheck(loss_moving, (xg,), raise_exception=False)
print(f"gradcheck with moving targets: {ok_moving}")
### END SOLUTION

# %% tags=["check"]
assert {"ok_moving"} <= set(globals()), "your answer defines ok_moving"
### BEGIN HIDDEN TESTS
assert not ok_moving and ok_sigmoid
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 3.** Re-run section 6 with $\lambda = 1$ (`sort_weight=1.0`): does the total
# push on the positives still equal the push on the negatives? Where does the sorting term's
# push go?
#
# *Your answer* (the next code cell) defines `balance`: for each `P` of `P_VALUES`, the tuple
# (positives' push / negatives' push, the sorting part's total push on negatives, the largest
# net sorting push of an anchor); the cell after it checks it.

# %% [markdown] tags=["solution"]
# **Solution 3.** The totals stay equal. The sorting part moves positives against positives
# only (a positive of higher target is pushed up past a lower-target one, which is pushed
# down) and sums to zero over each anchor's items; it adds nothing on negatives. On these
# batches it never reverses a positive's direction, so the absolute push on the positives
# keeps its total too: the sort *redistributes* the ranking part's push among the positives.

# %% tags=["answer"]
### BEGIN SOLUTION
balance = {}  # P -> (positives / negatives, sorting push on negatives, sorting sum per anchor)
for P in P_VALUES:
    emb = 0.3 * torch.randn(P * 4, 8, generator=torch.Generator().manual_seed(P))
    lab = torch.arange(P).repeat_interleave(4)
    full = L.gradient_mass(L.get_loss("drsl", sort_weight=1.0), emb, lab)
    upd = L.identity_update(L.retrieval_scores(emb), lab, L.angle_targets(emb), sort_weight=1.0)
    neg_pairs = lab[:, None] != lab[None, :]
    on_negatives = float(upd.sorting[neg_pairs].abs().sum())
    balance[P] = (full["pos"] / full["neg"], on_negatives, float(upd.sorting.sum(1).abs().max()))
    moved = upd.sorting.abs().sum().item()
    print(f"P = {P:2d}: positives / negatives {balance[P][0]:.6f}; sorting part moves "
          f"{moved:.4f} in all, {on_negatives:.1e} on negatives")  # fmt: skip
### END SOLUTION

# %% tags=["check"]
assert set(balance) == set(P_VALUES), "one entry of balance per P"
### BEGIN HIDDEN TESTS
for ratio, on_negatives, net in balance.values():
    assert np.isclose(ratio, 1.0) and on_negatives == 0 and net < 1e-12
### END HIDDEN TESTS

# %% [markdown]
# ## References
# - Rank-in-Rank Loss for Person Re-identification, ACM TOMM, doi:10.1145/3532866.
# - K. Oksuz et al., "Rank & Sort Loss for Object Detection and Instance Segmentation",
#   ICCV 2021 (identity update, balance property).
# - J. Nocedal, S. Wright, "Numerical Optimization", 2nd ed., Springer 2006, Sec. 8.1.
# - PyTorch documentation, `torch.autograd.gradcheck`.
