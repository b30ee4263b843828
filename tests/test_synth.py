"""The synthetic generator: layout, protocol-valid splits, determinism, manifest, CLI."""

import csv
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from drsl.data import synth
from drsl.data.datasets import load_dataset, parse_market_name
from drsl.metrics import evaluate_rank

TINY = dict(
    num_train_ids=4, num_test_ids=5, images_per_id=4, num_distractors=3, num_junk=2, num_cams=3
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return synth.generate(tmp_path_factory.mktemp("s") / "tiny", progress=False, **TINY)


def test_layout_names_and_manifest(tiny):
    manifest = synth.read_manifest(tiny)
    assert manifest["generator"] == "drsl.data.synth"
    assert manifest["settings"]["num_train_ids"] == 4
    files = sorted(p.relative_to(tiny).as_posix() for p in tiny.rglob("*.jpg"))
    assert files == sorted(manifest["files"])
    for rel in files:
        folder, name = rel.split("/")
        assert folder in ("bounding_box_train", "bounding_box_test", "query")
        pid, cam = parse_market_name(name)
        assert 0 <= cam < 3
        assert name.endswith(".jpg") and len(name.split("_")) == 4  # PPPP_cCsS_FFFFFF_NN.jpg
    counts = manifest["counts"]
    assert counts["bounding_box_train"] + counts["bounding_box_test"] + counts["query"] == len(
        files
    )
    assert synth.verify(tiny) == []


def test_splits_follow_the_market_protocol(tiny):
    splits = load_dataset(tiny)
    assert splits.name == "synthetic"
    assert splits.num_train_pids == 4
    qp, qc = splits.arrays("query")
    gp, gc = splits.arrays("gallery")
    assert (gp == 0).sum() == 3 and (gp == -1).sum() == 2  # distractors and junk
    assert set(qp) <= set(gp) and 0 not in qp and -1 not in qp
    assert len(set(qp)) == 5
    # one query per identity and camera
    assert len(set(zip(qp.tolist(), qc.tolist(), strict=True))) == len(qp)
    # every query has a valid (other-camera) match: no query is skipped by the protocol
    result = evaluate_rank(np.random.default_rng(0).random((len(qp), len(gp))), qp, gp, qc, gc)
    assert result.num_valid_q == len(qp)
    # train and test identities are disjoint (compare original pids in the file names)
    train_pids = {parse_market_name(p)[0] for p, _, _ in splits.train}
    assert not train_pids & set(gp.tolist())
    # an identity is seen by at least two cameras
    per_id = Counter()
    for p, _, c in splits.train:
        per_id[(parse_market_name(p)[0], c)] += 1
    assert all(n >= 2 for n in Counter(pid for pid, _ in per_id).values())


def test_identities_are_distinct_and_come_in_families(tiny):
    rows = list(csv.DictReader(open(tiny / "identities.csv")))
    people = [r for r in rows if r["split"] != "distractor"]
    assert len(people) == 9
    attrs = [k for k in rows[0] if k not in ("pid", "split", "family")]
    keys = {tuple(r[a] for a in attrs) for r in people}
    assert len(keys) == len(people)  # every identity differs somewhere

    # the generator's identities: relatives share most attributes
    cfg = synth.SynthConfig(num_train_ids=60, num_test_ids=60)
    people = synth._sample_identities(120, cfg, np.random.default_rng(0))
    same, other = [], []
    names = synth._ATTR_NAMES
    for i in range(len(people)):
        for j in range(i + 1, len(people)):
            shared = sum(people[i][a] == people[j][a] for a in names)
            (same if people[i]["family"] == people[j]["family"] else other).append(shared)
    # each member re-draws <= 3 attributes of the prototype (+1 accent fix): pairs share >= 7
    assert min(same) >= len(names) - 7 and np.mean(same) >= len(names) - 3
    assert np.mean(same) > np.mean(other) + 4


def test_byte_identical_for_a_seed_whatever_the_workers(tmp_path, tiny):
    again = synth.generate(tmp_path / "again", progress=False, workers=2, **TINY)
    assert synth.read_manifest(again)["files"] == synth.read_manifest(tiny)["files"]
    other = synth.generate(tmp_path / "other", progress=False, seed=1, **TINY)
    assert synth.read_manifest(other)["files"] != synth.read_manifest(tiny)["files"]


def test_verify_detects_a_changed_file(tmp_path):
    out = synth.generate(tmp_path / "s", progress=False, **TINY)
    victim = next((out / "query").iterdir())
    victim.write_bytes(victim.read_bytes()[:-10])
    assert synth.verify(out) == [f"query/{victim.name}"]


def test_generate_refuses_to_overwrite(tmp_path):
    out = synth.generate(tmp_path / "s", progress=False, **TINY)
    with pytest.raises(ValueError, match="not empty"):
        synth.generate(out, progress=False, **TINY)
    synth.generate(out, progress=False, overwrite=True, **{**TINY, "seed": 3})
    assert synth.read_manifest(out)["settings"]["seed"] == 3
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a drsl synthetic set"):
        synth.generate(foreign, progress=False, overwrite=True, **TINY)
    assert (foreign / "notes.txt").exists()


def test_ensure_dataset_reuses_and_regenerates(tmp_path, monkeypatch):
    monkeypatch.setenv("DRSL_DATA", str(tmp_path))
    root = synth.ensure_dataset(fast=True, progress=False, **TINY)
    assert root == tmp_path / "synthetic-fast"
    stamp = (root / "manifest.json").stat().st_mtime_ns
    assert synth.ensure_dataset(fast=True, progress=False, **TINY) == root
    assert (root / "manifest.json").stat().st_mtime_ns == stamp  # reused, not redrawn
    synth.ensure_dataset(fast=True, progress=False, **{**TINY, "seed": 5})  # settings changed
    assert synth.read_manifest(root)["settings"]["seed"] == 5
    assert not list(tmp_path.glob("*.tmp-*")) and not list(tmp_path.glob("*.old-*"))
    assert load_dataset(root).name == "synthetic"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.txt").write_text("")
    with pytest.raises(ValueError, match="not touching it"):
        synth.ensure_dataset(foreign, progress=False, **TINY)


def test_presets_sizes():
    _, _, _, _, images = synth._plan(synth.FAST)
    assert 500 <= len(images) <= 900
    _, _, _, is_train, images = synth._plan(synth.DEFAULT)
    assert 9000 <= len(images) <= 12000 and is_train.sum() == 400
    # the default set is Market-like: each test identity gives queries in several cameras
    folders = Counter(im[0] for im in images)
    assert folders["query"] > 2 * synth.DEFAULT.num_test_ids


@pytest.mark.parametrize(
    "setting, message",
    [
        (dict(num_cams=1), "num_cams must be in 2..9"),
        (dict(difficulty=-1), "difficulty"),
        (dict(num_train_ids=1), "num_train_ids"),
        (dict(colour=3), "unknown setting"),
    ],
)
def test_bad_settings(tmp_path, setting, message):
    with pytest.raises(ValueError, match=message):
        synth.generate(tmp_path / "x", progress=False, **setting)


def test_render_identity_views():
    cfg = synth.SynthConfig(num_train_ids=4, num_test_ids=4, num_cams=2)
    front = np.asarray(synth.render_identity(config=cfg, person=1, camera=0, view="front"))
    back = np.asarray(synth.render_identity(config=cfg, person=1, camera=0, view="back"))
    assert front.shape == (128, 64, 3) and not np.array_equal(front, back)
    with pytest.raises(ValueError, match="view must be"):
        synth.render_identity(config=cfg, view="top")
    with pytest.raises(ValueError, match="camera must be"):
        synth.render_identity(config=cfg, camera=5)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    args = [
        "--out",
        str(out),
        "--train-ids",
        "3",
        "--test-ids",
        "3",
        "--cams",
        "2",
        "--distractors",
        "1",
        "--junk",
        "1",
        "--images-per-id",
        "3",
        "--quiet",
    ]
    assert synth.main(args) == 0
    assert "wrote" in capsys.readouterr().out
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert settings["num_cams"] == 2 and settings["num_train_ids"] == 3
    with pytest.raises(SystemExit):
        synth.main(args)  # not empty, no --force
    done = subprocess.run(
        [sys.executable, "-m", "drsl.data.synth", *args, "--force", "--seed", "2"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote" in done.stdout and Path(out / "manifest.json").is_file()
