"""Load a script of ``experiments/`` as a module, shared by the runner tests
(tests/test_decisive.py, tests/test_decisive_verdict.py, tests/test_imbalance.py)."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_experiment(name: str):
    """``experiments/<name>.py`` as the module ``name`` (registered in ``sys.modules``: its
    dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
