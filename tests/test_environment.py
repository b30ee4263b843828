"""The pinned environment: requirements.lock and environment.yml must carry the same pins."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from lock import CONDA_PYTHON, lock_lines  # noqa: E402


def _pins(lines):
    """{(name, marker): version} from exact-pin requirement lines; fails on a non-exact pin."""
    pins = {}
    for line in lines:
        req = Requirement(line)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"not an exact pin: {line!r}"
        key = (req.name.lower().replace("_", "-"), str(req.marker) if req.marker else "")
        assert key not in pins, f"pinned twice: {line!r}"
        pins[key] = spec[0].version
    return pins


@pytest.fixture(scope="module")
def lock_pins():
    return _pins(lock_lines((ROOT / "requirements.lock").read_text()))


@pytest.fixture(scope="module")
def env_yml():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _conda_deps(env):
    plain = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return plain, pip


def test_environment_yml_carries_the_lock_pins(lock_pins, env_yml):
    _, pip = _conda_deps(env_yml)
    assert _pins(pip) == lock_pins


def test_environment_yml_python_is_supported(env_yml):
    plain, _ = _conda_deps(env_yml)
    pythons = [d for d in plain if re.match(r"python\s*[=<>]", d)]
    assert pythons == [f"python={CONDA_PYTHON}"]
    requires = SpecifierSet(
        re.search(r'requires-python\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text())[1]
    )
    assert f"{CONDA_PYTHON}.0" in requires
    assert "pip" in plain


def test_lock_pins_torch_with_its_torchvision(lock_pins):
    torch = {v for (n, _), v in lock_pins.items() if n == "torch"}
    vision = {v for (n, _), v in lock_pins.items() if n == "torchvision"}
    assert torch and all(tuple(map(int, v.split(".")[:2])) >= (2, 14) for v in torch)
    assert vision and all(tuple(map(int, v.split(".")[:2])) >= (0, 29) for v in vision)
    # torchvision 0.(X+15) is built for torch 2.X: a mismatch fails at import (torchvision::nms)
    for t in torch:
        for v in vision:
            assert int(v.split(".")[1]) == int(t.split(".")[1]) + 15, (t, v)


def test_every_direct_requirement_is_locked(lock_pins):
    names = {n for n, _ in lock_pins}
    for line in (ROOT / "requirements.in").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert Requirement(line).name.lower() in names, line


def test_installed_versions_match_the_lock(lock_pins):
    """The running environment is the locked one (catches a stale .venv)."""
    from importlib.metadata import version

    from packaging.markers import Marker

    for (name, marker), pinned in lock_pins.items():
        if name in {"torch", "torchvision", "numpy", "jupyterlab", "ipywidgets", "matplotlib"}:
            if marker and not Marker(marker).evaluate():
                continue
            installed = version(name).split("+")[0]
            assert installed == pinned, f"{name}: installed {installed}, lock {pinned}"
