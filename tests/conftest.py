"""Shared test set-up: a non-interactive matplotlib backend and fast mode for notebooks."""

import os

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("DRSL_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
