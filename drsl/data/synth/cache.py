"""The cached default sets: :func:`ensure_dataset` reuses a checked set or draws it once.

Several processes may ask at once (test workers, notebooks): the first takes the folder's
lock and draws; the others wait for it and then reuse its set.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from drsl.data.synth.config import DEFAULT, FAST, GENERATOR_VERSION, SynthConfig, make_config
from drsl.data.synth.manifest import GENERATOR, check_set, folder_state, read_manifest
from drsl.data.synth.writer import generate_locked, remove_stale
from drsl.fsutil import lock_folder

__all__ = ["ensure_dataset", "default_root", "matches"]


def default_root(fast: bool) -> Path:
    """``data_dir()/"synthetic-fast"`` in fast mode, else ``data_dir()/"synthetic"``."""
    from drsl.config import data_dir

    return data_dir() / ("synthetic-fast" if fast else "synthetic")


def matches(root: Path, cfg: SynthConfig) -> bool:
    """Whether the manifest in ``root`` was written by this generator version for ``cfg``."""
    try:
        have = read_manifest(root)
    except (OSError, ValueError):
        return False
    return (
        have.get("generator") == GENERATOR
        and have.get("version") == GENERATOR_VERSION
        and have.get("settings") == cfg.output_settings()
    )


def _reusable(root: Path, cfg: SynthConfig, verify: bool, warn: bool = True) -> bool:
    """The set in ``root`` is ``cfg``'s and intact; warn when it is ``cfg``'s but damaged."""
    if folder_state(root) != "ours" or not matches(root, cfg):
        return False
    problem = check_set(root, full=verify)
    if problem and warn:
        warnings.warn(f"{root}: {problem}; drawing it again", UserWarning, stacklevel=3)
    return problem is None


def ensure_dataset(
    root: str | Path | None = None,
    *,
    fast: bool | None = None,
    progress: bool = True,
    verify: bool = False,
    **settings,
) -> Path:
    """A ready synthetic set: reuse it when its manifest matches and it checks out, else draw it.

    A reused set is checked cheaply against its manifest (image names and sizes); ``verify``
    compares every sha256 too. A damaged set made by the generator is drawn again (with a
    warning); a folder the generator did not make is never touched. Drawing is atomic (a
    temporary sibling, renamed) and locked: a concurrent call waits, then reuses the set.

    Args:
        root (str or Path, optional): where it lives; default ``data_dir()/"synthetic"``, or
            ``data_dir()/"synthetic-fast"`` in fast mode.
        fast (bool, optional): the small set (:data:`FAST`); None reads
            ``drsl.config.fast_mode()`` (``DRSL_FAST=1``).
        progress (bool): progress bar while drawing.
        verify (bool): check every file's sha256 before reusing the set.
        **settings: :class:`SynthConfig` fields overriding the preset.

    Returns:
        pathlib.Path: the dataset folder, ready for :func:`drsl.data.datasets.load_dataset`.

    Raises:
        ValueError: ``root`` is a file, or holds something that is not a drsl synthetic set.

    Reference: the Market-1501 layout (Zheng et al., ICCV 2015).
    """
    from drsl.config import fast_mode

    fast = fast_mode() if fast is None else fast
    cfg = make_config(FAST if fast else DEFAULT, **settings)
    root = Path(root).expanduser() if root is not None else default_root(fast)
    state = folder_state(root)
    if state == "file":
        raise ValueError(f"{root} is a file, not a dataset folder: pass another root")
    if state == "foreign":
        raise ValueError(
            f"{root} exists and is not a drsl synthetic set: not touching it (move it away, "
            "or pass another root)"
        )
    if _reusable(root, cfg, verify):
        remove_stale(root)  # leftovers of killed runs (only those whose process is gone)
        return root
    with lock_folder(root, what="dataset folder", wait=None):
        if not _reusable(
            root, cfg, verify, warn=False
        ):  # another process may have drawn it meanwhile
            generate_locked(root, cfg, force=True, progress=progress)
    return root
