"""Writing a set: the image jobs (in one or several processes), then identities and manifest.

:func:`generate` draws into a temporary sibling ``<out>.tmp-<pid>`` under an advisory lock on
``<out>`` and renames it into place at the end, so ``<out>`` is never half-written: a killed
run leaves only its temporary sibling, which the next run removes (its process is dead).
The marker ``.drsl-synth.json`` is written first and ``manifest.json`` last.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import os
import shutil
import time
from pathlib import Path

from drsl.data.synth.config import GENERATOR_VERSION, SynthConfig, make_config
from drsl.data.synth.manifest import GENERATOR, MARKER, SPLITS, check_set, folder_state
from drsl.data.synth.plan import file_name, identity_rows, make_plan
from drsl.data.synth.render import render
from drsl.fsutil import as_write_error, lock_folder, remove_stale_temps, temp_sibling
from drsl.signals import default_signals_in_worker

__all__ = ["generate"]

_WORKER: dict = {}


def _init_worker(people, cams, cfg, out_dir, quiet_signals: bool = False) -> None:
    if quiet_signals:  # a pool worker: the parent handles Ctrl-C and SIGTERM
        default_signals_in_worker()
    _WORKER.update(people=people, cams=cams, cfg=cfg, out_dir=out_dir)


def _write_one(job: tuple) -> tuple[str, str, int]:
    rel, spec = job
    w = _WORKER
    img = render(spec, w["people"], w["cams"], w["cfg"])
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=w["cams"][spec[2]]["quality"])
    data = buf.getvalue()
    (Path(w["out_dir"]) / rel).write_bytes(data)
    return rel, hashlib.sha256(data).hexdigest(), len(data)


def _run_jobs(jobs: list, context: tuple, workers: int, bar) -> list[tuple[str, str, int]]:
    """Draw and write every job; any number of workers gives the same bytes."""
    results = []
    if workers > 1:
        import multiprocessing as mp

        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers, _init_worker, (*context, True)) as pool:
            for r in pool.imap_unordered(_write_one, jobs, chunksize=64):
                results.append(r)
                bar.update()
    else:
        _init_worker(*context)
        for job in jobs:
            results.append(_write_one(job))
            bar.update()
    results.sort()
    return results


def _write_identities(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _manifest(cfg: SynthConfig, jobs, results, workers: int, seconds: float) -> dict:
    counts = {f: sum(1 for j in jobs if j[0].startswith(f + "/")) for f in SPLITS}
    return {
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "settings": cfg.output_settings(),
        "counts": {
            **counts,
            "train_ids": cfg.num_train_ids,
            "test_ids": cfg.num_test_ids,
            "distractors": cfg.num_distractors,
            "junk": cfg.num_junk,
        },
        "bytes": int(sum(r[2] for r in results)),
        "seconds": round(seconds, 2),
        "workers": workers,
        "files": {rel: digest for rel, digest, _ in results},
        "sizes": {rel: size for rel, _, size in results},
    }


def _draw(out: Path, cfg: SynthConfig, progress: bool, label: str) -> None:
    """Draw the whole set into the fresh folder ``out``: marker first, manifest last."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    out.mkdir(parents=True)
    marker = {"generator": GENERATOR, "version": GENERATOR_VERSION}
    marker.update(settings=cfg.output_settings(), pid=os.getpid())
    (out / MARKER).write_text(json.dumps(marker, indent=1))
    people, cams, pids, is_train, images = make_plan(cfg)
    for folder in SPLITS:
        (out / folder).mkdir()
    jobs = [
        (f"{folder}/{file_name(pid, cam, frame, bbox)}", spec)
        for folder, pid, cam, frame, bbox, spec in images
    ]
    workers = cfg.workers
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(jobs) >= 2000 else 1
    bar = tqdm(
        total=len(jobs), desc=f"synthetic re-ID -> {label}", unit="img", disable=not progress
    )
    try:
        results = _run_jobs(jobs, (people, cams, cfg, str(out)), workers, bar)
    finally:
        bar.close()
    n_ids = cfg.num_train_ids + cfg.num_test_ids
    _write_identities(out / "identities.csv", identity_rows(people, pids, is_train, n_ids))
    manifest = _manifest(cfg, jobs, results, workers, time.perf_counter() - t0)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def _remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path, ignore_errors=True)


def _swap_in(tmp: Path, out: Path, state: str) -> None:
    """Rename the finished ``tmp`` onto ``out`` (absent, an empty folder, or an old set)."""
    if state == "ours":
        old = temp_sibling(out, "old")
        _remove_tree(old)
        out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            old.rename(out)  # put the old set back
            raise
        _remove_tree(old)
    else:  # rename(2) replaces an empty directory
        tmp.rename(out)


def _check_target(out: Path, state: str, force: bool) -> None:
    """Raise ValueError when ``out`` may not be (re)written; the message names the flag."""
    if state == "file":
        raise ValueError(f"{out} is a file, not a dataset folder: choose another --out")
    if state == "foreign":
        raise ValueError(
            f"{out} is not empty and is not a drsl synthetic set (no {MARKER} or "
            "manifest.json): drsl never writes into or deletes a folder it did not make; "
            "choose another --out"
        )
    if state == "ours" and not force:
        problem = check_set(out)
        if problem:
            raise ValueError(
                f"{out} is not empty: it holds a damaged drsl synthetic set ({problem}); "
                "pass --force to draw it again"
            )
        raise ValueError(
            f"{out} is not empty: it already holds a drsl synthetic set; pass --force to replace it"
        )


def refuse_foreign(out: Path) -> None:
    """Before taking the lock (whose file sits beside ``out``): refuse a file or a folder the
    generator did not make, so that nothing at all is written next to someone's data."""
    state = folder_state(out)
    if state in ("file", "foreign"):
        _check_target(out, state, force=True)


def remove_stale(out: Path) -> list[Path]:
    """Remove the temporaries of ``out`` left by dead processes (``<name>.tmp-<pid>``, ``.old-``).

    Returns:
        list[pathlib.Path]: what was removed.
    """
    name = glob.escape(out.name)
    removed = remove_stale_temps(out.parent, f"{name}.tmp-*")
    return removed + remove_stale_temps(out.parent, f"{name}.old-*")


def generate_locked(out: Path, cfg: SynthConfig, *, force: bool, progress: bool) -> Path:
    """:func:`generate` for a caller that already holds the lock on ``out``."""
    remove_stale(out)
    state = folder_state(out)
    _check_target(out, state, force)
    tmp = temp_sibling(out)
    _remove_tree(tmp)
    try:
        _draw(tmp, cfg, progress, out.name)
        _swap_in(tmp, out, state)
    except BaseException as err:  # Ctrl-C included: leave nothing behind
        _remove_tree(tmp)
        failure = as_write_error(out, err, f"{out} is unchanged (the partial set was removed)")
        if failure is not None:  # a full disk: name the set, not "[Errno 28]" alone
            raise failure from None
        raise
    return out


def generate(
    out_dir: str | Path,
    *,
    config: SynthConfig | None = None,
    force: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    **settings,
) -> Path:
    """Draw a synthetic re-ID dataset into ``out_dir`` (Market-1501 layout), atomically.

    The set is drawn into a temporary sibling and renamed into place at the end, under an
    advisory lock on ``out_dir`` (a second generator fails at once). Temporaries left by
    killed runs are removed first.

    Args:
        out_dir (str or Path): the dataset folder to create (absent or empty; or a set made by
            the generator, with ``force``).
        config (SynthConfig, optional): base settings (default :data:`DEFAULT`).
        force (bool): replace or repair a set made by the generator (the CLI's ``--force``;
            a folder without its marker or manifest is never written to or deleted).
        overwrite (bool): the same as ``force`` (its former name).
        progress (bool): show a tqdm progress bar. Default True.
        **settings: any :class:`SynthConfig` field, e.g. ``seed=1``, ``num_train_ids=100``,
            ``num_cams=4``, ``difficulty=0.5``, ``workers=2``.

    Returns:
        pathlib.Path: ``out_dir``, holding the three split folders, ``identities.csv``, the
        marker ``.drsl-synth.json`` and ``manifest.json`` (settings, counts, sha256 and size
        of every image).

    Raises:
        ValueError: a bad setting, or ``out_dir`` is a file, a foreign folder, or a set made
            by the generator while ``force`` is off (the message names ``--force``).
        drsl.fsutil.FolderLockedError: another process is generating into ``out_dir``.

    Reference: the Market-1501 layout (Zheng et al., ICCV 2015); module docstring.

    Example:
        >>> import tempfile
        >>> out = generate(tempfile.mkdtemp() + "/s", num_train_ids=2, num_test_ids=2,
        ...                images_per_id=3, num_distractors=1, num_junk=1, progress=False)
        >>> sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        ['bounding_box_test', 'bounding_box_train', 'identities.csv', 'manifest.json', 'query']
        >>> (out / ".drsl-synth.json").is_file()  # the marker
        True
    """
    cfg = make_config(config, **settings)
    out = Path(out_dir).expanduser()
    refuse_foreign(out)
    with lock_folder(out, what="dataset folder"):
        return generate_locked(out, cfg, force=force or overwrite, progress=progress)
