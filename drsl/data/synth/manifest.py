"""What a synthetic set says about itself: its marker, its manifest, and checks against them.

A set drawn by this package carries two files at its root:

- ``.drsl-synth.json`` (the *marker*), written first: generator, version, settings. A folder
  holding it was made by the generator, so ``--force`` may repair or replace it;
- ``manifest.json``, written last: settings, counts, and the sha256 and size of every image.
  A marker without a manifest is a half-written set.

A folder with neither is someone's own data: the generator never writes to it or deletes it.
Light module (json, hashlib, os): the dataset loaders use it to refuse a damaged set.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import fields
from pathlib import Path

from drsl.data.synth.config import DEFAULT, FAST, SynthConfig

__all__ = [
    "GENERATOR",
    "MARKER",
    "SPLITS",
    "read_manifest",
    "read_marker",
    "verify",
    "is_ours",
    "folder_state",
    "check_set",
    "repair_command",
]

GENERATOR = "drsl.data.synth"
MARKER = ".drsl-synth.json"
SPLITS = ("bounding_box_train", "bounding_box_test", "query")


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_manifest(root: str | Path) -> dict:
    """The manifest of a synthetic set.

    Args:
        root (str or Path): the dataset folder.

    Returns:
        dict: ``generator``, ``version``, ``settings``, ``counts``, ``bytes``, ``seconds``,
        ``files`` (relative path -> sha256) and, since the marker was introduced, ``sizes``
        (relative path -> bytes).
    """
    return json.loads((Path(root) / "manifest.json").read_text())


def read_marker(root: str | Path) -> dict | None:
    """The marker of a set (None when absent or unreadable)."""
    return _read_json(Path(root) / MARKER)


def verify(root: str | Path) -> list[str]:
    """Files whose sha256 differs from the manifest (or that are missing).

    Args:
        root (str or Path): the dataset folder.

    Returns:
        list[str]: relative paths that fail; empty when the set is intact.
    """
    root = Path(root)
    bad = []
    for rel, digest in read_manifest(root)["files"].items():
        path = root / rel
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            bad.append(rel)
    return bad


def is_ours(root: str | Path) -> bool:
    """Whether ``root`` was made by the generator (its marker, or a manifest that says so).

    Example:
        >>> import tempfile
        >>> is_ours(tempfile.mkdtemp())
        False
    """
    root = Path(root)
    if (read_marker(root) or {}).get("generator") == GENERATOR:
        return True
    return (_read_json(root / "manifest.json") or {}).get("generator") == GENERATOR


def folder_state(root: str | Path) -> str:
    """``"absent"``, ``"file"``, ``"empty"``, ``"ours"`` (made by the generator) or ``"foreign"``.

    Example:
        >>> import tempfile
        >>> folder_state(Path(tempfile.mkdtemp()) / "x"), folder_state(tempfile.mkdtemp())
        ('absent', 'empty')
    """
    root = Path(root)
    if not root.exists() and not root.is_symlink():
        return "absent"
    if not root.is_dir():
        return "file"
    if not any(root.iterdir()):
        return "empty"
    return "ours" if is_ours(root) else "foreign"


def _images_on_disk(root: Path) -> set[str]:
    out = set()
    for split in SPLITS:
        folder = root / split
        if folder.is_dir():
            with os.scandir(folder) as it:
                out.update(f"{split}/{e.name}" for e in it if e.name.endswith(".jpg"))
    return out


def _some(names, n: int = 1) -> str:
    names = sorted(names)
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def _size_problems(root: Path, manifest: dict) -> list[str]:
    files, sizes = manifest["files"], manifest.get("sizes")
    on_disk = _images_on_disk(root)
    problems = []
    missing = set(files) - on_disk
    if missing:
        problems.append(
            f"{len(files) - len(missing)} of {len(files)} images present "
            f"({len(missing)} missing, e.g. {_some(missing)})"
        )
    extra = on_disk - set(files)
    if extra:
        problems.append(f"{len(extra)} images not in its manifest (e.g. {_some(extra)})")
    present = sorted(set(files) & on_disk)
    actual = {rel: (root / rel).stat().st_size for rel in present}
    if sizes is not None:
        changed = [rel for rel in present if actual[rel] != sizes.get(rel)]
        if changed:
            problems.append(f"{len(changed)} images changed size (e.g. {_some(changed)})")
    elif not missing and sum(actual.values()) != manifest.get("bytes"):
        problems.append(
            f"the images hold {sum(actual.values())} bytes, the manifest says {manifest['bytes']}"
        )
    return problems


def check_set(root: str | Path, *, full: bool = False) -> str | None:
    """What is wrong with a synthetic set, in a few words, or None when it is intact.

    The cheap check (default) compares the images on disk with the manifest: the same names,
    the same sizes (or total bytes, for manifests that predate per-file sizes). ``full`` also
    compares every file's sha256 (reads every byte).

    Args:
        root (str or Path): a folder made by the generator (see :func:`is_ours`).
        full (bool): compare the sha256 of every image too.

    Returns:
        str or None: e.g. ``"half-written: no manifest.json (its generation was interrupted)"``
        or ``"215 of 650 images present (435 missing, e.g. query/0001_c1s1_000001_01.jpg)"``.
    """
    root = Path(root)
    manifest = _read_json(root / "manifest.json")
    if manifest is None:
        if (root / "manifest.json").exists():
            return "its manifest.json is unreadable"
        return "half-written: no manifest.json (its generation was interrupted)"
    if not isinstance(manifest.get("files"), dict):
        return "its manifest.json lists no files"
    problems = _size_problems(root, manifest)
    if full and not problems:
        bad = verify(root)
        if bad:
            problems.append(f"sha256 differs for {len(bad)} images (e.g. {_some(bad)})")
    return "; ".join(problems) or None


def _settings_of(root: Path) -> dict | None:
    for data in (_read_json(root / "manifest.json"), read_marker(root)):
        if data and isinstance(data.get("settings"), dict):
            return data["settings"]
    return None


def repair_command(root: str | Path, settings: dict | None = None) -> str:
    """The command line that redraws the set in ``root`` with its own settings.

    Args:
        root (str or Path): the set's folder.
        settings (dict, optional): its output settings; default: those its manifest or marker
            records (none recorded: the default preset).

    Returns:
        str: e.g. ``"python -m drsl.data.synth --out data/x --force --fast"``.

    Example:
        >>> repair_command("data/x", FAST.output_settings())
        'python -m drsl.data.synth --out data/x --force --fast'
        >>> repair_command("d", {**DEFAULT.output_settings(), "seed": 3})
        'python -m drsl.data.synth --out d --force --seed 3'
    """
    settings = settings if settings is not None else (_settings_of(Path(root)) or {})
    flags = {f.name: f.metadata["flag"] for f in fields(SynthConfig)}
    best = None
    for preset, words in ((FAST, ["--fast"]), (DEFAULT, [])):
        base = preset.output_settings()
        for name, value in settings.items():
            if name in flags and base.get(name) != value:
                words = [*words, flags[name], str(value)]
        if best is None or len(words) < len(best):
            best = words
    return " ".join(["python -m drsl.data.synth", "--out", str(root), "--force", *best])
