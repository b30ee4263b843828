"""Dataset loaders on small fixture trees written by the tests in each dataset's layout."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drsl.data.datasets import (
    BadImageError,
    ImageDataset,
    ReIDSplits,
    load_cuhk03np,
    load_dataset,
    load_dukemtmc,
    load_market1501,
    load_msmt17,
    main,
    parse_market_name,
    read_image,
    scan_images,
)


def write_image(path: Path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix == ".png" else "JPEG"
    Image.new("RGB", (4, 8), (value, 50, 200)).save(path, format=fmt)


MARKET = {
    "bounding_box_train": [
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000551_01.jpg",
        "0007_c3s1_000001_01.jpg",
        "0011_c6s2_000102_02.jpg",
    ],
    "bounding_box_test": [
        "0003_c2s1_000101_01.jpg",
        "0003_c5s1_000201_01.jpg",
        "0000_c1s1_000001_01.jpg",
        "-1_c4s1_000002_02.jpg",
        "0005_c1s1_000301_01.jpg",
    ],
    "query": ["0003_c1s1_000011_00.jpg", "0005_c3s1_000012_00.jpg"],
}


def make_market(root: Path, names=MARKET, ext=".jpg") -> Path:
    for folder, files in names.items():
        for name in files:
            write_image(root / folder / name.replace(".jpg", ext))
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"not an image")  # as in Market
    return root


@pytest.fixture
def market(tmp_path):
    return make_market(tmp_path / "Market-1501-v15.09.15")


def test_market_splits(market):
    splits = load_market1501(market)
    assert isinstance(splits, ReIDSplits) and splits.name == "market1501"
    assert splits.num_train_pids == 3 and splits.num_train_cams == 4
    train = {(Path(p).name, pid, cam) for p, pid, cam in splits.train}
    assert ("0002_c1s1_000451_03.jpg", 0, 0) in train  # relabelled, 0-based camera
    assert ("0011_c6s2_000102_02.jpg", 2, 5) in train
    pids, cams = splits.arrays("gallery")
    assert sorted(pids.tolist()) == [-1, 0, 3, 3, 5]  # junk and distractor kept
    assert len(splits.query) == 2 and splits.arrays("query")[0].tolist() == [3, 5]
    stats = splits.statistics()
    assert stats.loc["gallery", "distractor_images"] == 1
    assert stats.loc["gallery", "junk_images"] == 1
    assert stats.loc["gallery", "identities"] == 2
    assert stats.loc["train", "images"] == 4


def test_market_found_in_single_subfolder_and_by_load_dataset(market):
    parent = market.parent
    assert load_market1501(parent).root == str(market)
    assert load_dataset(parent).name == "market1501"


def test_train_drops_junk_and_distractors(tmp_path):
    names = {
        **MARKET,
        "bounding_box_train": MARKET["bounding_box_train"]
        + ["-1_c1s1_000001_01.jpg", "0000_c2s1_000002_01.jpg"],
    }
    splits = load_market1501(make_market(tmp_path / "m", names))
    assert len(splits.train) == 4 and splits.num_train_pids == 3


def test_dukemtmc_warns_and_parses(tmp_path):
    names = {
        "bounding_box_train": ["0001_c2_f0046182.jpg", "0001_c8_f0000001.jpg"],
        "bounding_box_test": ["0005_c1_f0000002.jpg"],
        "query": ["0005_c3_f0000003.jpg"],
    }
    root = make_market(tmp_path / "DukeMTMC-reID", names)
    with pytest.warns(UserWarning, match="withdrawn"):
        splits = load_dukemtmc(root)
    assert splits.name == "dukemtmc" and splits.arrays("train")[1].tolist() == [1, 7]
    with pytest.warns(UserWarning, match="withdrawn"):
        assert load_dataset(tmp_path).name == "dukemtmc"


def test_cuhk03np_variants(tmp_path):
    root = tmp_path / "cuhk03-np"
    small = {
        "bounding_box_train": ["0001_c1_1.png", "0001_c2_2.png"],
        "bounding_box_test": ["0700_c1_1.png", "0700_c2_3.png"],
        "query": ["0700_c2_2.png"],
    }
    make_market(root / "detected", small, ext=".png")
    make_market(root / "labeled", {**small, "bounding_box_train": ["0009_c1_1.png"]}, ".png")
    det = load_cuhk03np(root)
    lab = load_cuhk03np(tmp_path, "labeled")
    assert det.name == "cuhk03np-detected" and len(det.train) == 2
    assert lab.name == "cuhk03np-labeled" and len(lab.train) == 1
    assert load_dataset(root).name == "cuhk03np-detected"
    assert load_dataset(root, variant="labeled").name == "cuhk03np-labeled"
    with pytest.raises(ValueError, match="variant"):
        load_cuhk03np(root, "raw")


def make_msmt(root: Path, version: str) -> Path:
    train_dir, test_dir = (
        ("train", "test") if version == "V1" else ("mask_train_v2", "mask_test_v2")
    )
    lists = {
        "list_train.txt": (
            train_dir,
            [
                "0000/0000_000_01_0303morning_0015_0.jpg 0",
                "0000/0000_001_05_0303morning_0016_1.jpg 0",
                "0001/0001_000_15_0303noon_0001_0.jpg 1",
            ],
        ),
        "list_val.txt": (train_dir, ["0002/0002_000_02_0303noon_0002_0.jpg 2"]),
        "list_query.txt": (test_dir, ["0000/0000_000_03_0303afternoon_0001_0.jpg 0"]),
        "list_gallery.txt": (
            test_dir,
            [
                "0000/0000_001_07_0303afternoon_0002_0.jpg 0",
                "0001/0001_000_03_0303afternoon_0003_0.jpg 1",
                "",
            ],
        ),
    }
    for list_name, (folder, lines) in lists.items():
        root.mkdir(parents=True, exist_ok=True)
        (root / list_name).write_text("\n".join(lines) + "\n")
        for line in lines:
            if line:
                write_image(root / folder / line.split()[0])
    return root


@pytest.mark.parametrize("version", ["V1", "V2"])
def test_msmt17_list_files(tmp_path, version):
    root = make_msmt(tmp_path / f"MSMT17_{version}", version)
    splits = load_msmt17(tmp_path)
    assert splits.name == f"msmt17-{version.lower()}"
    assert len(splits.train) == 4 and splits.num_train_pids == 3  # train + val
    assert splits.arrays("train")[1].tolist() == [0, 4, 14, 1]
    assert splits.arrays("gallery")[0].tolist() == [0, 1]  # pid 0 is a real identity here
    assert splits.distractor_pid is None
    assert splits.statistics().loc["gallery", "identities"] == 2
    folder = "train" if version == "V1" else "mask_train_v2"
    assert splits.train[0][0] == str(root / folder / "0000/0000_000_01_0303morning_0015_0.jpg")
    assert len(load_msmt17(root, include_val=False).train) == 3
    assert load_dataset(tmp_path).name == splits.name
    load_msmt17(root, check_images=True)


def test_image_dataset(market):
    splits = load_market1501(market)
    ds = ImageDataset(splits.query)
    img, pid, cam = ds[0]
    assert img.mode == "RGB" and img.size == (4, 8) and (pid, cam) == (3, 0)
    ds = ImageDataset(splits.query, transform=lambda im: np.asarray(im).shape)
    assert ds[1] == ((8, 4, 3), 5, 2)


def _manifest_of(root: Path, **extra) -> dict:
    files = sorted(p for d in MARKET for p in (root / d).glob("*.jpg"))
    rels = [p.relative_to(root).as_posix() for p in files]
    return {
        "generator": "drsl.data.synth",
        "files": {r: "0" * 64 for r in rels},
        "sizes": {r: (root / r).stat().st_size for r in rels},
        **extra,
    }


def test_synthetic_manifest_sets_the_name(market):
    (market / "manifest.json").write_text(json.dumps(_manifest_of(market)))
    assert load_dataset(market).name == "synthetic"


def test_half_written_synthetic_set_is_refused_with_the_repair_command(market):
    # a killed generator's set trained on 215 of 650 images without a word
    manifest = _manifest_of(market, settings={"seed": 3})
    (market / "manifest.json").write_text(json.dumps(manifest))
    victim = market / "query" / "0003_c1s1_000011_00.jpg"
    victim.unlink()
    with pytest.raises(ValueError) as info:
        load_dataset(market)
    msg = str(info.value)
    assert "half-written or damaged (10 of 11 images present (1 missing" in msg
    assert f"repair it with: python -m drsl.data.synth --out {market} --force --seed 3" in msg
    assert "\n" not in msg
    # the marker alone (generation interrupted before the manifest): refused too
    (market / "manifest.json").unlink()
    (market / ".drsl-synth.json").write_text('{"generator": "drsl.data.synth"}')
    with pytest.raises(ValueError, match="no manifest.json .*--force"):
        load_market1501(market)
    # a folder without marker or manifest is someone's Market copy: loaded as it is
    (market / ".drsl-synth.json").unlink()
    assert load_dataset(market).name == "market1501"


def test_synthetic_image_of_another_size_is_refused(market):
    (market / "manifest.json").write_text(json.dumps(_manifest_of(market)))
    victim = market / "query" / "0003_c1s1_000011_00.jpg"
    victim.write_bytes(victim.read_bytes()[:-7])
    with pytest.raises(ValueError, match=r"1 images changed size \(e.g. query/0003_c1s1"):
        load_dataset(market)


# ----------------------------------------------------------------------------- errors


def test_missing_folder_names_it_and_the_layout(tmp_path):
    root = tmp_path / "market"
    (root / "bounding_box_train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"bounding_box_test.*expected layout.*query"):
        load_market1501(root)
    with pytest.raises(FileNotFoundError, match=r"nowhere"):
        load_market1501(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"detected.*expected layout"):
        load_cuhk03np(root)
    with pytest.raises(FileNotFoundError, match=r"list_train.txt.*mask_train_v2"):
        load_msmt17(root)
    with pytest.raises(FileNotFoundError, match="no re-ID dataset layout recognised"):
        load_dataset(root)


def test_unparseable_file_name_is_named(market):
    write_image(market / "query" / "person_3.jpg")
    with pytest.raises(ValueError, match=r"cannot parse file name .*person_3.jpg"):
        load_market1501(market)
    with pytest.raises(ValueError, match="c0"):
        parse_market_name("0001_c0s1_0.jpg")


def test_unreadable_image_is_named(market):
    bad = market / "query" / "0003_c4s1_000013_00.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    splits = load_market1501(market)  # names only: fine
    with pytest.raises(BadImageError, match=r"image .*0003_c4s1_000013_00.jpg is unreadable"):
        load_market1501(market, check_images=True)
    index = [Path(p).name for p, _, _ in splits.query].index(bad.name)
    with pytest.raises(BadImageError, match=r"image .*0003_c4s1_000013_00.jpg is unreadable"):
        ImageDataset(splits.query)[index]


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_and_zero_byte_jpegs_are_one_line_errors(tmp_path):
    # once: tracebacks with "OSError: Truncated File Read" / UnidentifiedImageError
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 32, 3), np.uint8)).save(good)
    truncated, empty = tmp_path / "t.jpg", tmp_path / "z.jpg"
    truncated.write_bytes(good.read_bytes())
    _truncate(truncated)
    empty.write_bytes(b"")
    assert read_image(good).size == (32, 64)
    for path, reason in ((truncated, "truncated"), (empty, "empty file")):
        with pytest.raises(BadImageError) as info:
            read_image(path)
        assert str(info.value) == f"image {path} is unreadable ({reason})"
        assert isinstance(info.value, ValueError) and info.value.reason == reason
    with pytest.raises(BadImageError, match=r"unreadable \(missing\)"):
        read_image(tmp_path / "absent.jpg")
    paths = [good, truncated, good, empty]
    assert scan_images(paths) == [(str(truncated), "truncated"), (str(empty), "empty file")]


def test_check_images_counts_every_bad_image_and_the_command_lists_them(market, capsys):
    for name in ("0003_c1s1_000011_00.jpg", "0005_c3s1_000012_00.jpg"):
        _truncate(market / "query" / name)
    (market / "bounding_box_train" / "0007_c3s1_000001_01.jpg").write_bytes(b"")
    with pytest.raises(BadImageError) as info:
        load_dataset(market, check_images=True)
    msg = str(info.value)
    assert msg.startswith("image ") and "is unreadable (" in msg
    assert f"; 2 other images are bad too (python -m drsl.data.datasets --check {market}" in msg
    assert main(["--check", str(market)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert sum(line.endswith(": truncated") for line in out) == 2
    assert sum(line.endswith(": empty file") for line in out) == 1
    assert out[-1] == f"{market}: 11 images, 3 unreadable"


def test_check_command_on_a_good_set_and_bad_paths(market, tmp_path, capsys):
    assert main(["--check", str(market)]) == 0
    assert capsys.readouterr().out.strip().endswith("11 images, 0 unreadable")
    with pytest.raises(SystemExit) as info:
        main(["--check", str(tmp_path / "nowhere")])
    assert info.value.code == 2
    assert "missing folder" in capsys.readouterr().err


def test_a_file_is_not_called_missing(tmp_path):
    # once: "dataset folder not found" for a path that is a file
    f = tmp_path / "data.zip"
    f.write_bytes(b"PK")
    for load in (load_dataset, load_market1501, load_msmt17, load_cuhk03np):
        with pytest.raises(NotADirectoryError, match=r"data.zip is a file, not a dataset folder"):
            load(f)


def test_empty_split_is_named(market):
    for f in (market / "query").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=r"empty split 'query': no images in .*query"):
        load_market1501(market)


def test_bad_msmt_line_and_missing_list(tmp_path):
    root = make_msmt(tmp_path / "MSMT17_V1", "V1")
    (root / "list_query.txt").write_text("0000/0000_000_03_x.jpg zero\n")
    with pytest.raises(ValueError, match=r"line 1 of .*list_query.txt"):
        load_msmt17(root)
    (root / "list_query.txt").unlink()
    with pytest.raises(FileNotFoundError, match="list_query.txt"):
        load_msmt17(root)
    (root / "list_query.txt").write_text("\n")
    with pytest.raises(ValueError, match="empty split 'query'"):
        load_msmt17(root)


def test_bad_split_name(market):
    with pytest.raises(ValueError, match="split must be"):
        load_market1501(market).arrays("val")


def test_symlinks_that_resolve_to_nothing_are_counted_as_bad_images(market, capsys):
    """A broken or looping symlink named like an image was skipped in silence ("11 images, 0
    unreadable"); it is an image the set claims to have, so it is a bad one."""
    train = market / "bounding_box_train"
    (train / "0020_c1s1_000001_01.jpg").symlink_to(market / "elsewhere.jpg")
    loop = train / "0021_c1s1_000001_01.jpg"
    loop.symlink_to(loop)
    (train / "0022_c1s1_000001_01.jpg").symlink_to(train / "0002_c1s1_000451_03.jpg")  # fine
    assert main(["--check", str(market)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"{market}: 14 images, 2 unreadable"
    broken = train / "0020_c1s1_000001_01.jpg"
    assert f"{broken}: a symlink to nothing ({market / 'elsewhere.jpg'})" in out
    assert f"{loop}: a symlink loop" in out
    with pytest.raises(BadImageError, match="1 other image is bad too"):
        load_dataset(market, check_images=True)
