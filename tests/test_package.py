"""Package-level facts: version, import layering (lower modules never import higher ones)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import drsl

PKG = Path(drsl.__file__).resolve().parent

# module -> drsl modules it may NOT import (design.md: distances <- losses <- train;
# metrics and data import neither losses nor train; plotting and widgets are leaves)
FORBIDDEN = {
    "fsutil": {"distances", "losses", "gradcheck", "metrics", "data", "models", "train"},
    "signals": {"distances", "losses", "gradcheck", "metrics", "data", "models", "train"},
    "config": {"distances", "losses", "gradcheck", "metrics", "data", "models", "train"},
    "distances": {"losses", "gradcheck", "metrics", "data", "models", "train"},
    "losses": {"metrics", "data", "models", "train", "gradcheck"},
    "metrics": {"losses", "train", "models", "data", "gradcheck"},
    "data": {"losses", "train", "models", "metrics", "gradcheck"},
    "models": {"losses", "train"},
}
LEAVES = {"plotting", "widgets"}


def _drsl_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            continue  # relative imports stay within a subpackage
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "drsl" and len(parts) > 1:
                out.add(parts[1])
    return out


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        yield rel.parts[0], path


def test_version_is_a_string():
    assert isinstance(drsl.__version__, str) and drsl.__version__.count(".") == 2


@pytest.mark.parametrize("top,path", list(_modules()), ids=lambda x: str(x))
def test_import_layering(top, path):
    imported = _drsl_imports(path)
    if top not in LEAVES:
        assert not imported & LEAVES, f"{path.name} imports a leaf module: {imported & LEAVES}"
    bad = imported & FORBIDDEN.get(top, set())
    assert not bad, f"drsl.{top} ({path.name}) must not import {sorted(bad)}"


def test_spec_copy_matches_the_shared_contract():
    """docs/drsl-loss-spec.md equals the steering copy of the contract beside the checkout."""
    root = PKG.parent
    shared = root.parent / "shared" / "spec" / "drsl-loss.md"
    if not shared.is_file():
        pytest.skip("no steering copy of the spec beside this checkout")
    assert (root / "docs" / "drsl-loss-spec.md").read_text() == shared.read_text()


def test_plotting_exports_table_matches_the_submodules():
    """drsl.plotting's lazy table names exactly what each submodule exports."""
    import importlib

    import drsl.plotting as plotting

    for module, names in plotting._EXPORTS.items():
        sub = importlib.import_module(f"drsl.plotting.{module}")
        exported = [n for n in sub.__all__ if n not in ("POS_COLOR", "NEG_COLOR")]
        assert list(names) == exported, module
        for name in names:
            assert getattr(plotting, name) is getattr(sub, name)


MAX_LINES = 550  # "about 500 lines at most" (design.md), with a margin for docstrings


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_module_is_small(path):
    """One idea per file: no module of the package grows past about 500 lines."""
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PKG)} has {lines} lines: split it"
