"""Shared test set-up: a non-interactive matplotlib backend, fast mode for notebooks, and
the ``one_thread`` fixture."""

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("DRSL_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run much faster on one thread (no OpenMP contention on a shared CPU): a
    module that wants it says ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
