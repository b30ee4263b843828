"""The ``synth`` command: make sure a folder holds a given synthetic set.

:func:`synth_command` is what ``python -m drsl synth`` and ``python -m drsl.data.synth`` run;
:func:`main` is the module's own command line, its options generated from the fields of
:class:`SynthConfig` (their ``metadata["help"]`` and ``metadata["flag"]``).

Behaviour, in order: another process generating into ``--out`` -> one-line error; temporaries
of killed runs -> removed; ``--out`` absent or empty -> drawn; holding this very set, intact
(names and sizes; sha256 with ``--verify``) -> reused; damaged or with other settings ->
error naming ``--force``, which redraws it; a file or a folder the generator did not make ->
error, never touched.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields
from pathlib import Path

from drsl.data.synth.config import DEFAULT, FAST, SynthConfig, make_config

__all__ = ["synth_command", "build_parser", "main"]

_TYPES = {"int": int, "float": float, "int | None": int}


def _differences(out: Path, config: SynthConfig) -> str:
    from drsl.data.synth.manifest import read_manifest

    try:
        have = read_manifest(out).get("settings", {})
    except (OSError, ValueError):
        return "unknown settings"
    want = config.output_settings()
    diff = [f"{k} {have.get(k)!r} -> {v!r}" for k, v in want.items() if have.get(k) != v]
    return ", ".join(diff) or "an older generator version"


def _reuse_or_refuse(out: Path, config: SynthConfig, verify: bool) -> bool:
    """True when ``out`` already holds ``config``'s set intact; ValueError when it must not be
    replaced without ``--force``; False when it may be drawn."""
    from drsl.data.synth.cache import matches
    from drsl.data.synth.manifest import check_set, folder_state

    if folder_state(out) != "ours":
        return False  # absent / empty: draw; file / foreign: generate_locked refuses
    if not matches(out, config):
        raise ValueError(
            f"{out} holds a drsl synthetic set with other settings ({_differences(out, config)}); "
            "pass --force to replace it"
        )
    problem = check_set(out, full=verify)
    if problem:
        raise ValueError(
            f"{out} holds a damaged drsl synthetic set ({problem}); pass --force to draw it again"
        )
    return True


def synth_command(
    config: SynthConfig,
    out: str | Path,
    *,
    force: bool = False,
    verify: bool = False,
    progress: bool = True,
) -> int:
    """Make ``out`` hold the synthetic set of ``config``; print one line saying what was done.

    Args:
        config (SynthConfig): the settings (e.g. ``make_config(FAST, seed=2)``).
        out (str or Path): the dataset folder.
        force (bool): ``--force``: redraw a set made by the generator (damaged, half-written,
            other settings or intact); never applies to a folder it did not make.
        verify (bool): ``--verify``: check the sha256 of every image of a reused set.
        progress (bool): progress bar while drawing.

    Returns:
        int: 0 (the set is there).

    Raises:
        ValueError: a user error (one line naming the culprit and the flag that fixes it):
            print it and exit 2.
        drsl.fsutil.FolderLockedError: another process is generating into ``out`` (exit 2).
    """
    from drsl.data.synth.manifest import read_manifest
    from drsl.data.synth.writer import generate_locked, refuse_foreign, remove_stale
    from drsl.fsutil import lock_folder

    out = Path(out).expanduser()
    config.validate()
    t0 = time.perf_counter()
    refuse_foreign(out)
    with lock_folder(out, what="dataset folder"):
        remove_stale(out)
        if not force and _reuse_or_refuse(out, config, verify):
            n = len(read_manifest(out)["files"])
            checked = "sha256" if verify else "names and sizes"
            print(f"{out} already holds this set ({n} images, {checked} checked): nothing to do")
            return 0
        generate_locked(out, config, force=force, progress=progress)
    m = read_manifest(out)
    c = m["counts"]
    print(
        f"wrote {out}: {c['bounding_box_train']} train / {c['query']} query / "
        f"{c['bounding_box_test']} gallery images, {m['bytes'] / 2**20:.1f} MiB of JPEG, "
        f"{time.perf_counter() - t0:.1f} s with {m['workers']} worker(s)"
    )
    return 0


def build_parser(prog: str = "python -m drsl.data.synth") -> argparse.ArgumentParser:
    """The command line: ``--out``, ``--fast``, one option per :class:`SynthConfig` field,
    ``--force``, ``--verify``, ``--quiet``."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Draw a synthetic re-ID dataset in the Market-1501 layout."
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="dataset folder (default: data/synthetic, or data/synthetic-fast with --fast)",
    )
    parser.add_argument("--fast", action="store_true", help="the small preset used by tests")
    for f in fields(SynthConfig):
        default = getattr(DEFAULT, f.name)
        fast = getattr(FAST, f.name)
        shown = f"{default}" if default == fast else f"{default}; --fast: {fast}"
        parser.add_argument(
            f.metadata["flag"],
            dest=f.name,
            type=_TYPES[f.type],
            default=None,
            metavar="N" if _TYPES[f.type] is int else "X",
            help=f"{f.metadata['help']} (default: {shown})",
        )
    parser.add_argument(
        "--force",
        action="store_true",
        help="redraw a set made by drsl (damaged, half-written or with other settings)",
    )
    parser.add_argument(
        "--verify", action="store_true", help="check the sha256 of every image of a reused set"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m drsl.data.synth``: draw a synthetic set (see ``--help``).

    User errors are one line on stderr with exit status 2; Ctrl-C (exit 130) and SIGTERM
    (exit 143) leave no partial set and no lock, in one line.
    """
    from drsl.fsutil import FolderLockedError, WriteError
    from drsl.signals import TERMINATED_STATUS, Terminated, sigterm_as_interrupt

    parser = build_parser()
    args = vars(parser.parse_args(argv))
    fast, force, verify, quiet = (args.pop(k) for k in ("fast", "force", "verify", "quiet"))
    out = args.pop("out")
    if out is None:
        from drsl.data.synth.cache import default_root

        out = default_root(fast)
    try:
        config = make_config(
            FAST if fast else DEFAULT, **{k: v for k, v in args.items() if v is not None}
        )
        with sigterm_as_interrupt():
            return synth_command(config, out, force=force, verify=verify, progress=not quiet)
    except (ValueError, FolderLockedError) as err:
        parser.error(str(err))
    except WriteError as err:  # a full disk: one line, the set unchanged
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        how = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        print(f"{how}: {out} unchanged (no partial set left behind)", file=sys.stderr)
        return TERMINATED_STATUS if isinstance(err, Terminated) else 130
    return 2  # not reached: parser.error exits
