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
# # NN Title: one line on what the reader will be able to do
#
# *Part of the drsl course. Our reading of the paper is in `docs/drsl-loss-spec.md`
# ("our reading": the paper's full text is not available to us).*
#
# ## Goals
# - What the reader can explain after this notebook.
# - What the reader can compute or check by hand.
# - What the reader can run on their own data.

# %% [markdown]
# ## Setup
# One cell: imports from `drsl` (the notebook defines no function the package should own),
# paths, and the fast-mode switch (`DRSL_FAST=1`, used by the test suite, shrinks the work
# without changing the code path).

# %%
import torch

import drsl
from drsl.config import data_dir, fast_mode

FAST = fast_mode()
torch.manual_seed(0)
print(f"drsl {drsl.__version__}, torch {torch.__version__}, fast mode: {FAST}, data: {data_dir()}")

# %% [markdown]
# ## 1. First section
# Prose before code: say what the next cell computes and what to look for in its output.
# A formula shown here, e.g. $\ell_R(i) = N_{FP}(i) / \mathrm{rank}(i)$, is computed in the next
# cell; where the cell writes a teaching version, it asserts equality with the package.

# %%
x = torch.arange(3.0)
assert torch.equal(x, torch.tensor([0.0, 1.0, 2.0]))

# %% [markdown]
# ## Summary
# - Three bullets that restate the goals as results.
#
# ## Exercises
# 1. A question answered by changing one value above and re-running.
# 2. A question that asks for a short derivation, checked by a cell the reader writes.
#
# ## References
# - Rank-in-Rank Loss for Person Re-identification, ACM TOMM, doi:10.1145/3532866.
