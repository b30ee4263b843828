"""Your own images (drsl.data.folders): one folder per identity, cameras from Market-style
names or none (leave-one-out), `drsl data check`, and `drsl train/eval --data` on them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from drsl.cli import main
from drsl.data.datasets import load_dataset
from drsl.data.folders import folder_problems, load_folders
from drsl.data.images import load_data
from drsl.metrics import average_precision, evaluate_rank

pytestmark = pytest.mark.usefixtures("one_thread")


def write_folders(
    root,
    train=("ann", "bob", "cy", "dan"),
    test=("eve", "fay", "gus"),
    per_id=4,
    query=False,
    market_names=False,
    seed=0,
):
    """ROOT/train/<name>/, ROOT/test/<name>/ (and query/) of random images, one colour
    template per identity; Market-style file names (camera i % 3 + 1) when asked."""
    rng = np.random.default_rng(seed)
    splits = [("train", train, per_id), ("test", test, per_id)]
    if query:
        splits.append(("query", test, 1))
    for split, names, n in splits:
        for k, name in enumerate(names):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            tmpl = rng.integers(0, 200, size=(32, 16, 3))
            for i in range(n):
                img = (tmpl + rng.integers(0, 55, size=tmpl.shape)).astype(np.uint8)
                cam = (i + (split == "query")) % 3 + 1
                fname = f"{k:04d}_c{cam}s1_{i:06d}_00.jpg" if market_names else f"img{i}.jpg"
                Image.fromarray(img).save(root / split / name / fname)
    return root


def test_leave_one_out_without_cameras_ranks_every_test_image_against_the_others(tmp_path):
    s = load_folders(write_folders(tmp_path / "mine"))
    assert s.query is s.gallery and "leave-one-out" in s.protocol and "no cameras" in s.protocol
    pids, cams = s.arrays("gallery")
    assert sorted(set(pids.tolist())) == [1, 2, 3] and len(set(cams.tolist())) == len(cams)
    assert sorted({p for _, p, _ in s.train}) == [0, 1, 2, 3]
    rng = np.random.default_rng(1)
    d = rng.random((len(pids), len(pids)))
    res = evaluate_rank(d, pids, pids, cams, cams, max_rank=5)
    # by hand: each image's ranked list of all the others, its identity's images the matches
    aps = []
    for i in range(len(pids)):
        others = [j for j in np.argsort(d[i], kind="stable") if j != i]
        aps.append(average_precision(pids[others] == pids[i]))
    assert res.num_valid_q == len(pids)
    assert res.mAP == pytest.approx(np.mean(aps), abs=1e-12)


def test_market_style_names_give_cameras_and_a_query_folder_gives_the_queries(tmp_path):
    s = load_folders(write_folders(tmp_path / "mine", query=True, market_names=True))
    assert s.query is not s.gallery and "query/" in s.protocol and "cameras from" in s.protocol
    q_pids, q_cams = s.arrays("query")
    g_pids, g_cams = s.arrays("gallery")
    assert set(q_pids.tolist()) == set(g_pids.tolist()) == {1, 2, 3}
    assert set(g_cams.tolist()) == {0, 1, 2}  # c1..c3 in the names, 0-based
    assert load_dataset(tmp_path / "mine").name == "folders"  # found by the auto-detection


def test_names_that_are_not_all_market_style_mean_no_cameras(tmp_path):
    root = write_folders(tmp_path / "mine", market_names=True)
    next((root / "test" / "eve").iterdir()).rename(root / "test" / "eve" / "odd.jpg")
    s = load_folders(root)
    assert "no cameras" in s.protocol


def test_load_data_reads_your_folders_and_decodes_the_test_images_once(tmp_path):
    data = load_data(write_folders(tmp_path / "mine"), height=16, width=8)
    assert data.query is data.gallery and len(data.gallery) == 12 and data.num_classes == 4
    assert tuple(data.train.images.shape) == (16, 3, 16, 8)


@pytest.mark.parametrize(
    "breakage, match",
    [
        ("no test", "missing folder .*test; expected layout"),
        ("empty train", "no identity folder with images in .*train"),
    ],
)
def test_layout_errors_name_the_folder_and_the_layout(tmp_path, breakage, match):
    root = write_folders(tmp_path / "mine")
    if breakage == "no test":
        for f in (root / "test").rglob("*.jpg"):
            f.unlink()
        for d in (root / "test").iterdir():
            d.rmdir()
        (root / "test").rmdir()
    else:
        for f in (root / "train").rglob("*.jpg"):
            f.unlink()
    with pytest.raises((FileNotFoundError, ValueError), match=match):
        load_folders(root)


def test_data_check_reports_identities_cameras_and_problems(tmp_path, capsys):
    root = write_folders(tmp_path / "mine")
    (root / "train" / "empty").mkdir()
    (root / "test" / "loose.jpg").write_bytes(b"")
    (root / "test" / "hal").mkdir()
    Image.new("RGB", (16, 32)).save(root / "test" / "hal" / "only.jpg")
    (root / "train" / "ann" / "notes.txt").write_text("hi")
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "train: 16 images, 4 identities, images per identity 4-4" in out
    assert "gallery: 13 images, 4 identities, images per identity 1-4" in out
    assert "leave-one-out" in out
    for problem in (
        "problem: train/empty: no images, ignored",
        "problem: test/: 1 file(s) outside identity folders, ignored",
        "problem: test/hal: 1 image (its query has no match: skipped)",
        "problem: train/ann: 1 non-image file(s), ignored",
    ):
        assert problem in out
    (root / "test" / "eve" / "img0.jpg").write_bytes(b"not a jpeg")
    assert main(["data", "check", str(root)]) == 1
    assert "img0.jpg: " in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nowhere" in err


def test_folder_problems_is_empty_for_a_clean_layout(tmp_path):
    assert folder_problems(write_folders(tmp_path / "mine")) == []


def test_train_and_eval_with_rerank_on_your_own_folders(tmp_path, capsys):
    root = write_folders(tmp_path / "mine", test=("eve", "fay", "gus", "hal", "ida"))
    out = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(root),
        "--loss",
        "ce+drsl",
        "-P",
        "2",
        "-K",
        "2",
        "--epochs",
        "2",
        "--base-width",
        "4",
        "--height",
        "32",
        "--width",
        "16",
        "--eval-every",
        "0",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "trained ce+drsl on folders" in capsys.readouterr().out
    for extra in ([], ["--rerank"]):
        assert main(["eval", str(out / "model.pt"), "--data", str(root), "--json", *extra]) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert metrics["dataset"] == "folders" and 0.0 <= metrics["mAP"] <= 1.0
        assert metrics["ranking"] == ("re-ranked" if extra else "plain")
