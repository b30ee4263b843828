"""Loaders for re-ID datasets on disk: Market-1501 (and the synthetic set), DukeMTMC-reID,
CUHK03-np and MSMT17. Nothing is ever downloaded: point a loader at a folder you have.

Every loader returns a :class:`ReIDSplits`: ``train``, ``query`` and ``gallery`` lists of
``(img_path, pid, camid)``. Train pids are relabelled ``0 .. num_train_pids - 1`` (junk and
distractor images are not identities and are left out of train); query and gallery keep the
dataset's pids, with ``0`` = distractor (kept, a negative for every query) and ``-1`` = junk
(kept, dropped by the evaluation protocol). Camera ids are 0-based.

Your own images, one folder per identity, are read by :mod:`drsl.data.folders`
(``<root>/train/<identity>/*.jpg``, ``<root>/test/<identity>/*.jpg``, optional ``query/``).

Expected layouts (the folder you pass, or a single sub-folder of it such as
``Market-1501-v15.09.15``)::

    Market-1501 / DukeMTMC-reID / synthetic     CUHK03-np              MSMT17 (V1 or V2)
    bounding_box_train/0002_c1s1_000451_03.jpg  detected/<Market>      list_train.txt, list_val.txt
    bounding_box_test/ (0000_ distractors,      labeled/<Market>       list_query.txt
                        -1_ junk)                                      list_gallery.txt
    query/                                                             train/ or mask_train_v2/
                                                                       test/ or mask_test_v2/

Errors: a missing folder raises ``FileNotFoundError`` naming it and the expected layout; an
unparseable file name or list line, an empty split or a bad argument raise ``ValueError``
naming the file or split; a path that is a file raises ``NotADirectoryError``; an unreadable
image raises :class:`BadImageError` (a ``ValueError``) naming it and counting the other bad
ones; a drsl synthetic set that is half-written or damaged raises ``ValueError`` with the
command that repairs it. ``python -m drsl.data.datasets --check ROOT`` lists every bad image.

Reference: Zheng et al., ICCV 2015 (Market-1501); Ristani et al., ECCVW 2016 and Zheng et al.,
ICCV 2017 (DukeMTMC-reID); Li et al., CVPR 2014 and Zhong et al., CVPR 2017 (CUHK03, new
protocol); Wei et al., CVPR 2018 (MSMT17).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from drsl.data.imagefile import BadImageError, bad_images_error, read_image, scan_images
from drsl.data.splits import ImageDataset, Item, ReIDSplits

__all__ = [
    "BadImageError",
    "read_image",
    "scan_images",
    "check_command",
    "Item",
    "ReIDSplits",
    "ImageDataset",
    "load_market1501",
    "load_dukemtmc",
    "load_cuhk03np",
    "load_msmt17",
    "load_dataset",
    "parse_market_name",
]


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
_MARKET_NAME = re.compile(r"^(-?\d+)_c(\d+)")
_MARKET_DIRS = ("bounding_box_train", "bounding_box_test", "query")
_MARKET_LAYOUT = (
    "<root>/bounding_box_train/, <root>/bounding_box_test/ and <root>/query/ holding images "
    "named PPPP_cC..., e.g. 0002_c1s1_000451_03.jpg (pid 0002, camera 1)"
)
_CUHK_LAYOUT = "<root>/detected/ and/or <root>/labeled/, each in the Market layout: " + (
    _MARKET_LAYOUT
)
_MSMT_LAYOUT = (
    "<root>/list_train.txt, list_val.txt, list_query.txt, list_gallery.txt (lines "
    "'0000/0000_000_01_0303morning_0015_0.jpg 0') with images under <root>/train/ and "
    "<root>/test/ (MSMT17_V1) or <root>/mask_train_v2/ and <root>/mask_test_v2/ (MSMT17_V2)"
)


def _check_images(items: Sequence[Item], root: str | Path = "") -> None:
    """Decode every image of ``items``; raise one BadImageError naming the first bad one and
    counting the others."""
    bad = scan_images([path for path, _, _ in items])
    if bad:
        hint = f"python -m drsl.data.datasets --check {root}" if root else ""
        raise bad_images_error(bad, hint=hint)


# ----------------------------------------------------------------------------- Market layout


def parse_market_name(name: str) -> tuple[int, int]:
    """``(pid, camid)`` from a Market-style file name; camid 0-based.

    Args:
        name (str): e.g. ``"0002_c1s1_000451_03.jpg"``, ``"-1_c3s2_000101_01.jpg"`` (junk),
            ``"0001_c2_f0046182.jpg"`` (DukeMTMC-reID).

    Returns:
        tuple[int, int]: the pid and the 0-based camera.

    Raises:
        ValueError: the name does not start with ``<pid>_c<camera>`` (camera >= 1).

    Example:
        >>> parse_market_name("0002_c1s1_000451_03.jpg"), parse_market_name("-1_c6s2_0_01.jpg")
        ((2, 0), (-1, 5))
    """
    match = _MARKET_NAME.match(Path(name).name)
    if match is None or int(match.group(2)) < 1 or int(match.group(1)) < -1:
        raise ValueError(
            f"cannot parse file name {name!r}: expected '<pid>_c<camera>...' such as "
            "'0002_c1s1_000451_03.jpg' (pid >= -1, camera >= 1)"
        )
    return int(match.group(1)), int(match.group(2)) - 1


def _image_files(folder: Path) -> list[Path]:
    """The image files of ``folder``; a symlink that resolves to nothing (broken, looping) is
    kept, so that the image check counts it as unreadable instead of skipping it in silence."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and (p.is_file() or p.is_symlink() and not p.is_dir())
    )


def _read_market_dir(folder: Path, split: str) -> list[Item]:
    files = _image_files(folder)
    if not files:
        raise ValueError(f"empty split {split!r}: no images in {folder}")
    items = []
    for path in files:
        pid, cam = parse_market_name(str(path))
        items.append((str(path), pid, cam))
    return items


def _relabel(items: list[Item]) -> list[Item]:
    """Drop junk/distractor images from train and map pids to 0..n-1 in sorted order."""
    items = [it for it in items if it[1] > 0]
    if not items:
        raise ValueError("empty split 'train': it holds only junk or distractor images")
    mapping = {pid: i for i, pid in enumerate(sorted({pid for _, pid, _ in items}))}
    return [(path, mapping[pid], cam) for path, pid, cam in items]


def _folder(root: str | Path, layout: str) -> Path:
    """``root`` as a Path; NotADirectoryError when it is a file, FileNotFoundError if absent."""
    root = Path(root).expanduser()
    if root.is_dir():
        return root
    if root.exists():
        raise NotADirectoryError(
            f"{root} is a file, not a dataset folder: pass the folder that holds the dataset"
        )
    raise FileNotFoundError(f"missing folder {root}; expected layout: {layout}")


def _missing(root: Path, what: str, layout: str) -> FileNotFoundError:
    return FileNotFoundError(f"missing folder {root / what}; expected layout: {layout}")


def _locate(root: str | Path, marker: Callable[[Path], bool], first_missing: str, layout: str):
    """``root`` itself if ``marker(root)``, else its single sub-folder that satisfies it."""
    root = _folder(root, layout)
    if marker(root):
        return root
    found = [p for p in sorted(root.iterdir()) if p.is_dir() and marker(p)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ValueError(f"{root} holds several datasets ({[p.name for p in found]}): pick one")
    raise _missing(root, first_missing, layout)


def _has_market_dirs(p: Path) -> bool:
    return all((p / d).is_dir() for d in _MARKET_DIRS)


def _first_missing_market(root: Path) -> str:
    root = Path(root)
    return next((d for d in _MARKET_DIRS if not (root / d).is_dir()), _MARKET_DIRS[0])


def _load_market_layout(root, name: str | None, check_images: bool, layout=_MARKET_LAYOUT):
    base = _locate(root, _has_market_dirs, _first_missing_market(Path(root)), layout)
    synthetic = _check_synthetic(base)
    if name is None:
        name = "synthetic" if synthetic else "market1501"
    train = _relabel(_read_market_dir(base / "bounding_box_train", "train"))
    query = _read_market_dir(base / "query", "query")
    gallery = _read_market_dir(base / "bounding_box_test", "gallery")
    splits = ReIDSplits(train, query, gallery, name=name, root=str(base))
    if check_images:
        _check_images(splits.train + splits.query + splits.gallery, base)
    return splits


def load_market1501(root: str | Path, *, check_images: bool = False) -> ReIDSplits:
    """Market-1501 (or anything in its layout, such as the synthetic set).

    Args:
        root (str or Path): the folder holding ``bounding_box_train/``, ``bounding_box_test/``
            and ``query/`` (or its single sub-folder such as ``Market-1501-v15.09.15``).
        check_images (bool): decode every image once to fail early on a broken file.

    Returns:
        ReIDSplits: 751 train ids / 12,936 images, 3,368 queries, 19,732 gallery images on
        the real dataset; camids 0..5.

    Reference: Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015.
    """
    return _load_market_layout(root, None, check_images)


def load_dukemtmc(root: str | Path, *, check_images: bool = False) -> ReIDSplits:
    """DukeMTMC-reID (Market layout, names like ``0001_c2_f0046182.jpg``, 8 cameras).

    Note: DukeMTMC was withdrawn by its authors in 2019; use it only if you hold a copy under
    terms that allow your use. A ``UserWarning`` says so.

    Args:
        root (str or Path): the folder holding the three Market-layout folders (or its single
            sub-folder ``DukeMTMC-reID``).
        check_images (bool): decode every image once to fail early on a broken file.

    Returns:
        ReIDSplits: 702 train ids / 16,522 images, 2,228 queries, 17,661 gallery images.

    Reference: Ristani et al., ECCVW 2016; Zheng et al., ICCV 2017 (the re-ID split).
    """
    warnings.warn(
        "DukeMTMC-reID was withdrawn by its authors (2019); use it only under terms that "
        "allow your use",
        UserWarning,
        stacklevel=2,
    )
    return _load_market_layout(root, "dukemtmc", check_images)


def load_cuhk03np(
    root: str | Path, variant: str = "detected", *, check_images: bool = False
) -> ReIDSplits:
    """CUHK03 under the new protocol (CUHK03-np): 767 train / 700 test identities.

    Args:
        root (str or Path): the folder holding ``detected/`` and/or ``labeled/``, each in the
            Market layout (or its single sub-folder such as ``cuhk03-np``).
        variant (str): ``"detected"`` (default) or ``"labeled"`` boxes.
        check_images (bool): decode every image once to fail early on a broken file.

    Returns:
        ReIDSplits: named ``"cuhk03np-detected"`` or ``"cuhk03np-labeled"``.

    Reference: Li et al., CVPR 2014 (CUHK03); Zhong et al., CVPR 2017 (the new protocol).
    """
    if variant not in ("detected", "labeled"):
        raise ValueError(f"variant must be 'detected' or 'labeled', got {variant!r}")

    def marker(p: Path) -> bool:
        return (p / variant).is_dir()

    base = _locate(root, marker, variant, _CUHK_LAYOUT)
    return _load_market_layout(
        base / variant, f"cuhk03np-{variant}", check_images, layout=_CUHK_LAYOUT
    )


# ----------------------------------------------------------------------------- MSMT17

_MSMT_DIRS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}


def _msmt_dirs(p: Path) -> tuple[Path, Path] | None:
    if not (p / "list_train.txt").is_file():
        return None
    for train_dir, test_dir in _MSMT_DIRS.values():
        if (p / train_dir).is_dir() and (p / test_dir).is_dir():
            return p / train_dir, p / test_dir
    return None


def _read_msmt_list(list_path: Path, image_dir: Path, split: str) -> list[Item]:
    if not list_path.is_file():
        raise FileNotFoundError(f"missing list file {list_path}; expected layout: {_MSMT_LAYOUT}")
    items = []
    for lineno, line in enumerate(list_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            rel, pid = parts[0], int(parts[1])
            camid = int(Path(rel).name.split("_")[2]) - 1
            if len(parts) != 2 or camid < 0 or pid < 0:
                raise ValueError
        except (ValueError, IndexError) as err:
            raise ValueError(
                f"cannot parse line {lineno} of {list_path}: {line!r}; expected "
                "'<pid>/<pid>_<idx>_<camera>_<...>.jpg <pid>'"
            ) from err
        items.append((str(image_dir / rel), pid, camid))
    if not items:
        raise ValueError(f"empty split {split!r}: {list_path} lists no images")
    return items


def load_msmt17(
    root: str | Path, *, include_val: bool = True, check_images: bool = False
) -> ReIDSplits:
    """MSMT17 from its list files, V1 (``train/``, ``test/``) or V2 (``mask_*_v2/``).

    Camera ids come from the third field of the file name (``..._01_...`` is camera 0).
    Query and gallery keep the list's pids, where 0 is an ordinary identity (there are no
    distractor or junk images in MSMT17): ``distractor_pid`` is None.

    Args:
        root (str or Path): the folder holding the list files (or its single sub-folder such
            as ``MSMT17_V1``).
        include_val (bool): add ``list_val.txt`` to train (default True: the 32,621-image
            training set of the paper; torchreid leaves it out by default).
        check_images (bool): decode every image once to fail early on a missing/broken file.

    Returns:
        ReIDSplits: 1,041 train ids, 11,659 queries, 82,161 gallery images, 15 cameras.

    Reference: Wei et al., "Person Transfer GAN to Bridge Domain Gap for Person
    Re-Identification", CVPR 2018.
    """
    base = _locate(root, lambda p: _msmt_dirs(p) is not None, "list_train.txt", _MSMT_LAYOUT)
    dirs = _msmt_dirs(base)
    assert dirs is not None
    train_dir, test_dir = dirs
    train = _read_msmt_list(base / "list_train.txt", train_dir, "train")
    if include_val:
        train = train + _read_msmt_list(base / "list_val.txt", train_dir, "val")
    query = _read_msmt_list(base / "list_query.txt", test_dir, "query")
    gallery = _read_msmt_list(base / "list_gallery.txt", test_dir, "gallery")
    mapping = {pid: i for i, pid in enumerate(sorted({pid for _, pid, _ in train}))}
    train = [(path, mapping[pid], cam) for path, pid, cam in train]
    version = "v2" if train_dir.name.startswith("mask") else "v1"
    splits = ReIDSplits(
        train, query, gallery, name=f"msmt17-{version}", root=str(base), distractor_pid=None
    )
    if check_images:
        _check_images(splits.train + splits.query + splits.gallery, base)
    return splits


# ----------------------------------------------------------------------------- auto-detect


def _check_synthetic(base: Path) -> bool:
    """Whether ``base`` is a drsl synthetic set; ValueError when it is one but half-written or
    damaged (images missing, extra or of another size than its manifest says)."""
    from drsl.data.synth.manifest import check_set, is_ours, repair_command

    if not is_ours(base):
        return False
    problem = check_set(base)
    if problem:
        raise ValueError(
            f"{base} is a drsl synthetic set that is half-written or damaged ({problem}); "
            f"repair it with: {repair_command(base)}"
        )
    return True


def load_dataset(root: str | Path, **kwargs) -> ReIDSplits:
    """Load whatever re-ID dataset lives in ``root``, recognised by its layout.

    MSMT17 (list files), CUHK03-np (``detected/``/``labeled/``; pass ``variant=``), the
    Market layout (DukeMTMC-reID when the folder name says "duke", the synthetic set when its
    manifest says so, Market-1501 otherwise), or one folder per identity
    (:mod:`drsl.data.folders`: ``train/<identity>/``, ``test/<identity>/``).

    Args:
        root (str or Path): the dataset folder (or a folder holding exactly one dataset).
        **kwargs: passed to the loader (``check_images``, ``variant``, ``include_val``).

    Returns:
        ReIDSplits: the splits, with ``name`` set to what was recognised.

    Raises:
        FileNotFoundError: no known layout (the message lists them).
        NotADirectoryError: ``root`` is a file.
        ValueError: a half-written or damaged drsl synthetic set (with the repair command).

    Reference: see the module docstring for the layouts.
    """
    root = _folder(root, f"one of {_MARKET_LAYOUT}; {_CUHK_LAYOUT}; {_MSMT_LAYOUT}; folders")
    candidates = [root] + [p for p in sorted(root.iterdir()) if p.is_dir()]
    for p in candidates:
        if _msmt_dirs(p) is not None:
            return load_msmt17(p, **kwargs)
    for p in candidates:
        if any(_has_market_dirs(p / v) for v in ("detected", "labeled")):
            variant = kwargs.pop("variant", "detected" if (p / "detected").is_dir() else "labeled")
            return load_cuhk03np(p, variant, **kwargs)
    for p in candidates:
        if _has_market_dirs(p):
            if "duke" in p.name.lower() or "duke" in root.name.lower():
                return load_dukemtmc(p, **kwargs)
            return load_market1501(p, **kwargs)
    from drsl.data.folders import LAYOUT, has_folder_layout, load_folders

    for p in candidates:
        if has_folder_layout(p):
            return load_folders(p, **kwargs)
    raise FileNotFoundError(
        f"no re-ID dataset layout recognised in {root}; expected one of: {_MARKET_LAYOUT}; "
        f"{_CUHK_LAYOUT}; {_MSMT_LAYOUT}; {LAYOUT}"
    )


# ----------------------------------------------------------------------------- check command


def _per_identity(pids) -> str:
    import numpy as np

    ids, counts = np.unique(np.asarray(pids), return_counts=True)
    if len(ids) == 0:
        return "0 identities"
    return (
        f"{len(ids)} identities, images per identity {counts.min()}-{counts.max()} "
        f"(median {np.median(counts):g})"
    )


def check_command(root: str | Path) -> int:
    """``drsl data check ROOT``: what a dataset holds and what is wrong with it.

    Prints, per split, the images, identities, images per identity and cameras; the
    evaluation protocol; the problems of a folder-per-identity layout
    (:func:`drsl.data.folders.folder_problems`); and every unreadable image (``path: reason``).

    Args:
        root (str or Path): a dataset folder in any layout :func:`load_dataset` detects.

    Returns:
        int: 0 when every image reads, 1 when some do not.

    Raises:
        FileNotFoundError, NotADirectoryError, ValueError: as :func:`load_dataset`.
    """
    from drsl.data.folders import folder_problems

    splits = load_dataset(root)
    print(f"{splits.root}: {splits.name} layout")
    parts = [("train", splits.train), ("query", splits.query), ("gallery", splits.gallery)]
    for split, items in parts:
        if split == "query" and items is splits.gallery:
            continue  # leave-one-out: the gallery is the query set
        pids, cams = splits.arrays(split)
        real = pids > 0 if split != "train" else pids >= 0
        extra = f", {int((~real).sum())} junk or distractor" if (~real).any() else ""
        print(
            f"  {split}: {len(items)} images, {_per_identity(pids[real])}, "
            f"{len(set(cams.tolist()))} camera(s){extra}"
        )
    print(f"  protocol: {splits.protocol or 'the dataset' + chr(39) + 's query/gallery split'}")
    problems = folder_problems(splits.root) if splits.name == "folders" else []
    paths = [p for items in (splits.train, splits.query, splits.gallery) for p, _, _ in items]
    bad = scan_images(sorted(set(paths)))
    for line in problems:
        print(f"  problem: {line}")
    for path, reason in bad:
        print(f"{path}: {reason}")
    print(f"{splits.root}: {len(set(paths))} images, {len(bad)} unreadable")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m drsl.data.datasets --check ROOT``: list the unreadable images of a dataset."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m drsl.data.datasets",
        description="Check a re-ID dataset folder: every image must decode.",
    )
    parser.add_argument("--check", type=Path, required=True, metavar="ROOT", help="the dataset")
    args = parser.parse_args(argv)
    try:
        return check_command(args.check)
    except (OSError, ValueError) as err:
        parser.error(str(err))
    return 2  # not reached: parser.error exits


if __name__ == "__main__":
    raise SystemExit(main())
