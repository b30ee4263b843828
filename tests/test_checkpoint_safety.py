"""Checkpoints are data, never code: a crafted file is refused by every path that loads one,
before any of it runs; damaged or foreign checkpoints are named in one line with the fix."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import torch
from test_cli import write_market

from drsl.cli import main
from drsl.config import repo_root
from drsl.data.images import make_random_data
from drsl.train import (
    CheckpointError,
    TrainConfig,
    load_model,
    load_or_train,
    train,
)
from drsl.train.checkpoint import SAFE_GLOBALS, read_state

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["-P", "3", "-K", "2", "--epochs", "1", "--base-width", "2", "--height", "32",
        "--width", "16", "--device", "cpu", "--threads", "1", "--no-progress"]  # fmt: skip


class _WritesAFile:
    """Unpickling this object calls ``open(marker, "w")``: it creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def tiny(**kw) -> TrainConfig:
    base = dict(loss="ce+triplet", P=3, K=2, num_epochs=1, base_width=2, height=16, width=8,
                warmup_steps=1, seed=3)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished tiny run: its model.pt and last.pt, and its data."""
    data = make_random_data(num_ids=9, per_id=2, height=16, width=8)
    out = tmp_path_factory.mktemp("run") / "r"
    train(tiny(), data, out_dir=out, progress=False)
    return out, data


def craft(path, marker, base=None):
    """A checkpoint with the keys drsl expects plus an object whose unpickling writes ``marker``."""
    ck = dict(base or {"config": tiny().to_dict(), "num_classes": 9, "state_dict": {}})
    ck["payload"] = _WritesAFile(marker)
    torch.save(ck, path)
    return path


def one_line(capsys):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_eval_refuses_a_checkpoint_that_would_run_code(tmp_path, capsys):
    marker = tmp_path / "pwned"
    bad = craft(tmp_path / "model.pt", marker)
    market = write_market(tmp_path / "market")
    assert main(["eval", str(bad), "--data", str(market), "--device", "cpu"]) == 2
    err = one_line(capsys)
    assert str(bad) in err and "refused" in err and "open" in err, err
    assert not marker.exists()


def test_resume_refuses_a_last_pt_that_would_run_code(tmp_path, capsys):
    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    out.mkdir()
    craft(out / "last.pt", marker)
    market = write_market(tmp_path / "market")
    assert main(["train", "--data", str(market), *TINY, "--out", str(out)]) == 2
    err = one_line(capsys)
    assert str(out / "last.pt") in err and "refused" in err and "--no-resume" in err, err
    assert not marker.exists()


def test_library_loaders_refuse_a_checkpoint_that_would_run_code(tmp_path, run):
    marker = tmp_path / "pwned"
    bad = craft(tmp_path / "model.pt", marker)
    _, data = run
    loaders = {
        "load_model": lambda: load_model(bad),
        "load_or_train": lambda: load_or_train(tiny(), bad, data, progress=False),
        "read_state": lambda: read_state(bad, tiny(), data.fingerprint),
    }
    for name, load in loaders.items():
        with pytest.raises(CheckpointError, match="refused") as info:
            load()
        assert str(bad) in str(info.value) and "\n" not in str(info.value), name
    run_dir = tmp_path / "resume"
    run_dir.mkdir()
    craft(run_dir / "last.pt", marker, torch.load(run[0] / "last.pt", weights_only=True))
    with pytest.raises(CheckpointError, match="refused"):
        train(tiny(), data, out_dir=run_dir, progress=False)
    assert not marker.exists()


def test_the_pickle_payload_is_real(tmp_path):
    """The crafted file does run its payload when loaded as code (so the refusals above are
    what keeps the marker from being written)."""
    marker = tmp_path / "pwned"
    torch.load(craft(tmp_path / "x.pt", marker), weights_only=False)  # a trusted-source load
    assert marker.exists()


@pytest.mark.parametrize("name", ["ce_drsl", "ce_triplet"])
def test_shipped_checkpoints_load_as_data(name):
    path = repo_root() / "data" / "checkpoints" / f"{name}.pt"
    res = load_model(path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert res.metrics == raw["metrics"] and res.config.to_dict() == raw["config"]
    for k, v in res.model.state_dict().items():
        assert torch.equal(v, raw["state_dict"][k]), k


def test_last_pt_holds_only_data_and_resumes_exactly(tmp_path, run):
    """``last.pt`` loads with weights_only and no allow-list; its numpy RNG state is a tensor."""
    out, data = run
    state = torch.load(out / "last.pt", weights_only=True)
    kind, keys, *_ = state["rng"]["numpy"]
    assert kind == "MT19937" and isinstance(keys, torch.Tensor) and keys.shape == (624,)
    cfg = tiny(num_epochs=2, checkpoint_every=2)
    ref = train(cfg, data, out_dir=tmp_path / "ref", progress=False)

    def stop(step, _):
        if step == 4:
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(cfg, data, out_dir=cut, progress=False, on_step=stop)
    res = train(cfg, data, out_dir=cut, progress=False)
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, res.model.state_dict()[k]), k


def test_a_last_pt_of_the_numpy_array_format_still_resumes(tmp_path, run):
    """States written before the RNG state was plain data hold a numpy array: the numpy
    types of SAFE_GLOBALS let them load (and nothing else)."""
    out, data = run
    state = torch.load(out / "last.pt", weights_only=True)
    kind, keys, pos, has_gauss, gauss = state["rng"]["numpy"]
    state["rng"]["numpy"] = (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss)
    old = tmp_path / "old"
    old.mkdir()
    torch.save(state, old / "last.pt")
    assert np.ndarray in SAFE_GLOBALS
    got = read_state(old / "last.pt", tiny(), data.fingerprint)
    assert np.array_equal(got["rng"]["numpy"][1], keys.numpy())


def _edited(tmp_path, run, name, edit):
    ck = torch.load(run[0] / name, weights_only=True)
    edit(ck)
    path = tmp_path / name
    torch.save(ck, path)
    return path


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda ck: ck.pop("num_classes"), ["no num_classes"]),
        (lambda ck: ck.pop("state_dict"), ["no model"]),
        (lambda ck: ck["config"].update(base_width=4), ["do not fit", "size mismatch"]),
        (lambda ck: ck["config"].update(bogus=1), ["do not fit", "bogus"]),
    ],
)
def test_damaged_or_foreign_model_is_named_in_one_line(tmp_path, run, edit, words):
    path = _edited(tmp_path, run, "model.pt", edit)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg and "written by drsl train" in msg, msg
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize("key", ["rng", "scheduler", "model"])
def test_resume_state_lacking_a_part_is_named_in_one_line(tmp_path, run, key):
    _, data = run
    out = tmp_path / "r"
    out.mkdir()
    ck = torch.load(run[0] / "last.pt", weights_only=True)
    del ck[key]
    torch.save(ck, out / "last.pt")
    with pytest.raises(CheckpointError) as info:
        train(tiny(), data, out_dir=out, progress=False)
    msg = str(info.value)
    assert f"no {key}" in msg and str(out / "last.pt") in msg and "--no-resume" in msg, msg


def test_resume_state_with_edited_weights_is_named_in_one_line(tmp_path, run):
    _, data = run
    out = tmp_path / "r"
    out.mkdir()
    ck = torch.load(run[0] / "last.pt", weights_only=True)
    first = next(iter(ck["model"]))
    ck["model"][first] = torch.zeros(7, 7)
    torch.save(ck, out / "last.pt")
    with pytest.raises(CheckpointError, match="does not fit this run") as info:
        train(tiny(), data, out_dir=out, progress=False)
    assert "size mismatch" in str(info.value) and "--no-resume" in str(info.value)


def test_every_torch_load_of_the_product_loads_as_data():
    """No ``torch.load`` in the package, its scripts, notebooks or benchmarks without
    ``weights_only=True`` (a new one would run whatever a file's pickle asks)."""
    import ast

    root = repo_root()
    found, unsafe = 0, []
    for folder in ("drsl", "tools", "experiments", "notebooks", "benchmarks"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                f = node.func if isinstance(node, ast.Call) else None
                if (
                    isinstance(f, ast.Attribute)
                    and f.attr == "load"
                    and ast.unparse(f.value) == "torch"
                ):
                    found += 1
                    kw = {k.arg: k.value for k in node.keywords}
                    if not (
                        isinstance(kw.get("weights_only"), ast.Constant)
                        and kw["weights_only"].value is True
                    ):
                        unsafe.append(f"{path.relative_to(root)}:{node.lineno}")
    assert found >= 3 and unsafe == []


def test_a_plain_pickle_is_one_error_without_warnings(tmp_path):
    """torch warns about a pickle protocol it does not expect before it fails; the user gets
    the one line only."""
    import pickle
    import warnings

    path = tmp_path / "state.pt"
    path.write_bytes(pickle.dumps({"not": "a checkpoint"}, protocol=4))
    with warnings.catch_warnings(record=True) as seen, pytest.raises(CheckpointError) as info:
        warnings.simplefilter("always")
        load_model(path)
    assert [str(w.message) for w in seen] == []
    assert str(path) in str(info.value) and "\n" not in str(info.value)
