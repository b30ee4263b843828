"""Your own images: one folder per identity, ``ROOT/train/<identity>/*.jpg`` and
``ROOT/test/<identity>/*.jpg`` (and optionally ``ROOT/query/<identity>/*.jpg``).

Any sub-folder name is an identity (``alice/``, ``0042/``, ``cat 3/``): train identities are
relabelled ``0 .. n-1`` in sorted name order; test and query identities share one numbering,
``1 .. m`` in sorted name order (pid 0 and -1 keep their Market meanings, distractor and junk,
and never occur here). Images are ``.jpg``, ``.jpeg``, ``.png`` or ``.bmp`` files directly in an
identity folder.

**Cameras** are optional. When every image's file name is Market-style
(``<pid>_c<camera>...``, e.g. ``0002_c1s1_000451_03.jpg``), the camera is read from it (the
pid in the name is not used: the folder is the identity); otherwise there are none.

**Evaluation protocol** (the Market protocol of :mod:`drsl.metrics`, applied as follows):

- with ``ROOT/query/``: its images are the queries and ``ROOT/test/`` the gallery; without
  cameras the queries count as one camera and the gallery as another, so every gallery image
  of the query's identity is a match;
- without ``ROOT/query/``: every test image is a query against all the other test images
  (**leave-one-out**); with cameras, the gallery images of the query's identity *and camera*
  are dropped (Market's rule, which also drops the query itself); without cameras each image
  is its own camera, so only the query itself is dropped. An identity with a single test image
  gives a query without a match, which the protocol skips.

Errors (one line, naming the folder and the fix): a missing ``train/`` or ``test/``, a split
without any identity folder holding images. ``drsl data check ROOT`` lists the rest (empty
identity folders, files outside identity folders, identities with one image, unreadable
images).

Reference: Zheng et al., ICCV 2015 (Market-1501 protocol and file names); torchreid's
"custom data without camera IDs" question, which the leave-one-out protocol answers.
"""

from __future__ import annotations

from pathlib import Path

from drsl.data.splits import Item, ReIDSplits

__all__ = ["LAYOUT", "has_folder_layout", "load_folders", "folder_problems"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
LAYOUT = (
    "<root>/train/<identity>/*.jpg and <root>/test/<identity>/*.jpg (any sub-folder name is "
    "an identity), optionally <root>/query/<identity>/*.jpg"
)
_SPLITS = ("train", "test", "query")


def has_folder_layout(root: str | Path) -> bool:
    """Whether ``root`` holds ``train/`` and ``test/`` with at least one sub-folder each."""
    root = Path(root)
    return all(
        (root / s).is_dir() and any(p.is_dir() for p in (root / s).iterdir())
        for s in ("train", "test")
    )


def _images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _identities(split_dir: Path) -> dict[str, list[Path]]:
    """``{identity name: its images}`` for the identity folders holding images (sorted)."""
    out = {}
    for d in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        files = _images(d)
        if files:
            out[d.name] = files
    return out


def _market_camera(path: Path) -> int | None:
    from drsl.data.datasets import parse_market_name

    try:
        return parse_market_name(path.name)[1]
    except ValueError:
        return None


def _read(root: Path) -> dict[str, dict[str, list[Path]]]:
    if not root.is_dir():
        kind = "a file, not a folder" if root.exists() else "not found"
        raise FileNotFoundError(f"dataset folder {root} is {kind}; expected layout: {LAYOUT}")
    found = {}
    for split in _SPLITS:
        d = root / split
        if not d.is_dir():
            if split == "query":
                continue
            raise FileNotFoundError(f"missing folder {d}; expected layout: {LAYOUT}")
        ids = _identities(d)
        if not ids:
            raise ValueError(
                f"no identity folder with images in {d}: put each identity's images in its own "
                f"sub-folder ({LAYOUT})"
            )
        found[split] = ids
    return found


def _cameras(found: dict[str, dict[str, list[Path]]]) -> dict[Path, int] | None:
    """Every image's camera from its Market-style name, or None unless all of them have one."""
    cams = {}
    for ids in found.values():
        for files in ids.values():
            for f in files:
                c = _market_camera(f)
                if c is None:
                    return None
                cams[f] = c
    return cams


def load_folders(root: str | Path, *, check_images: bool = False) -> ReIDSplits:
    """Load a folder-per-identity dataset (see the module for the layout and the protocol).

    Args:
        root (str or Path): the folder holding ``train/``, ``test/`` and optionally ``query/``.
        check_images (bool): decode every image once to fail early on a broken file.

    Returns:
        ReIDSplits: ``name="folders"``, ``distractor_pid=None``, and ``protocol`` saying how
        queries are evaluated.

    Raises:
        FileNotFoundError: ``root``, ``train/`` or ``test/`` is missing. ValueError: a split
        without identity folders, or an unreadable image (``BadImageError``).

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> for split, ident, n in [("train", "ann", 2), ("test", "bob", 2), ("test", "cy", 1)]:
        ...     (root / split / ident).mkdir(parents=True)
        ...     for i in range(n):
        ...         Image.new("RGB", (8, 16)).save(root / split / ident / f"{i}.png")
        >>> s = load_folders(root)
        >>> [(pid, cam) for _, pid, cam in s.gallery], s.query == s.gallery
        ([(1, 0), (1, 1), (2, 2)], True)
    """
    root = Path(root).expanduser()
    found = _read(root)
    cams = _cameras(found)
    train_ids = {name: i for i, name in enumerate(found["train"])}
    test_names = sorted(set(found["test"]) | set(found.get("query", {})))
    test_ids = {name: i + 1 for i, name in enumerate(test_names)}

    def items(split: str, ids: dict[str, int], camera) -> list[Item]:
        rows = [(f, ids[n]) for n, files in found[split].items() for f in files]
        return [(str(f), pid, cams[f] if cams else camera(i)) for i, (f, pid) in enumerate(rows)]

    train = items("train", train_ids, lambda i: 0)
    if "query" in found:
        query = items("query", test_ids, lambda i: 0)
        gallery = items("test", test_ids, lambda i: 1)
        how = "queries from query/, gallery test/"
    else:
        gallery = items("test", test_ids, lambda i: i)  # no cameras: each image its own
        query = gallery  # the same images (load_data decodes them once)
        how = "leave-one-out: every test image queries the other test images"
    rule = (
        "cameras from Market-style file names; same identity and camera dropped"
        if cams
        else "no cameras"
    )
    splits = ReIDSplits(
        train,
        query,
        gallery,
        name="folders",
        root=str(root),
        distractor_pid=None,
        protocol=f"{how} ({rule})",
    )
    if check_images:
        from drsl.data.datasets import _check_images

        _check_images(train + query + gallery, root)
    return splits


def folder_problems(root: str | Path) -> list[str]:
    """What in a folder-per-identity dataset is ignored or cannot be evaluated, one line each.

    Args:
        root (str or Path): the dataset folder.

    Returns:
        list[str]: e.g. ``"test/bob: 1 image (its query has no match: skipped)"``; [] when
        nothing is wrong. (Unreadable images are found by ``drsl data check``.)
    """
    root = Path(root)
    out = []
    for split in _SPLITS:
        d = root / split
        if not d.is_dir():
            continue
        loose = [p.name for p in d.iterdir() if p.is_file()]
        if loose:
            out.append(f"{split}/: {len(loose)} file(s) outside identity folders, ignored")
        for ident in sorted(p for p in d.iterdir() if p.is_dir()):
            n = len(_images(ident))
            other = sum(1 for p in ident.iterdir() if p.is_file()) - n
            if other:
                out.append(f"{split}/{ident.name}: {other} non-image file(s), ignored")
            if n == 0:
                out.append(f"{split}/{ident.name}: no images, ignored")
            elif n == 1 and split == "train":
                out.append(f"train/{ident.name}: 1 image (no positive pair to learn from)")
            elif n == 1 and split == "test" and not (root / "query").is_dir():
                out.append(f"test/{ident.name}: 1 image (its query has no match: skipped)")
    return out
