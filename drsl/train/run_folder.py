"""The run folder: every file a training run writes, in one place (the rank-0 seam).

A :class:`RunFolder` owns ``out_dir``: it refuses a path that is a file, locks the folder for
the run (``drsl.fsutil.lock_folder``: a second training in the same folder fails at once,
naming the folder and the process), removes the temporaries a killed run left behind, and
writes ``last.pt``, the logs, ``metrics.json``, ``config.toml`` and ``model.pt``, each
atomically (``drsl.fsutil.atomic_write``). With ``path=None`` (in-memory runs) or
``writer=False`` (the other ranks of a data-parallel run) every write is a no-op.

Reference: ``drsl.fsutil`` (locks, atomic writes, stale temporaries).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drsl.fsutil import WriteError, atomic_write, lock_folder, remove_stale_temps
from drsl.train.checkpoint import TrainResult, atomic_save, save_model
from drsl.train.config import TrainConfig, config_to_toml

__all__ = ["RunFolder"]

#: temporaries of the writers before ``drsl.fsutil`` (``tempfile.mkstemp`` names and fixed
#: ``.tmp`` names, without a pid): stale whenever the folder's lock is ours
_OLD_TEMPS = ("*.pt.*.tmp", "*.csv.tmp", "metrics.json.tmp")


class RunFolder:
    """Writes of one run into ``path`` (nothing when ``path`` is None or ``writer`` is False).

    Args:
        path (str | PathLike, optional): the run folder (created if missing).
        writer (bool): whether this process writes (rank 0 of a data-parallel run).

    Example:
        >>> import tempfile
        >>> rf = RunFolder(Path(tempfile.mkdtemp()) / "run")
        >>> with rf.locked():
        ...     rf.has_state()
        False
    """

    def __init__(self, path: str | os.PathLike | None, *, writer: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        self.writer = writer and self.path is not None
        self.saved_step: int | None = None

    @property
    def state_path(self) -> Path | None:
        """``path/last.pt`` (None for in-memory runs)."""
        return self.path / "last.pt" if self.path is not None else None

    def has_state(self) -> bool:
        """Whether a ``last.pt`` exists to resume from."""
        p = self.state_path
        return p is not None and (p.exists() or p.is_symlink())

    @contextlib.contextmanager
    def locked(self) -> Iterator[RunFolder]:
        """Create and lock the folder for the block; clear stale temporaries first.

        Raises:
            NotADirectoryError: ``path`` is an existing file.
            drsl.fsutil.FolderLockedError: another process holds the folder.
        """
        if not self.writer:
            yield self
            return
        assert self.path is not None
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(
                f"run folder {self.path} is an existing file; choose a folder path for --out "
                "(out_dir), or move the file away"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        with lock_folder(self.path, what="run folder"):
            remove_stale_temps(self.path, "*.tmp-*")
            for pattern in _OLD_TEMPS:
                for p in self.path.glob(pattern):
                    p.unlink(missing_ok=True)
            yield self

    def save_state(
        self, snapshot: dict[str, Any], history: dict[str, list[dict]], extra: dict[str, Any]
    ) -> None:
        """Write ``last.pt`` (the resume state), then the logs that match it."""
        if not self.writer:
            return
        try:
            atomic_save(snapshot, self.state_path)
        except WriteError as err:  # say which step a resume starts from
            raise WriteError(err.path, err.reason, self.kept_message(), err.errno) from None
        self.saved_step = int(snapshot["step"])
        self.write_logs(history, extra)

    def write_logs(self, history: dict[str, list[dict]], extra: dict[str, Any]) -> None:
        """``train_log.csv``, ``eval_log.csv`` and ``metrics.json`` (with ``metrics_step``)."""
        if not self.writer:
            return
        for name in ("train", "eval"):
            rows = history[name]
            keys: list[str] = []
            for r in rows:
                keys += [k for k in r if k not in keys]

            def write(tmp: Path, rows=rows, keys=keys) -> None:
                with open(tmp, "w", newline="") as fh:
                    w = csv.DictWriter(fh, fieldnames=keys)
                    w.writeheader()
                    w.writerows(rows)

            atomic_write(self.path / f"{name}_log.csv", write)
        evals = history["eval"]
        last = evals[-1] if evals else {}
        doc = {
            **extra,
            "metrics": {k: v for k, v in last.items() if k not in ("step", "epoch")},
            "metrics_step": last.get("step"),
            "eval": evals,
        }
        text = json.dumps(doc, indent=2)
        atomic_write(self.path / "metrics.json", lambda tmp: tmp.write_text(text))

    def write_config(self, config: TrainConfig, run: dict[str, Any] | None = None) -> None:
        """``config.toml``: the resolved config (``drsl train --config`` reads it back).

        Args:
            config (TrainConfig): the run. run (dict, optional): ``[run]`` values to record
                (e.g. ``{"world_size": 2}``).
        """
        if not self.writer:
            return
        header = "the resolved config of this run (drsl train)"
        text = config_to_toml(config, run=run, header=header)
        atomic_write(self.path / "config.toml", lambda tmp: tmp.write_text(text))

    def save_final(self, result: TrainResult, data: Any) -> None:
        """``model.pt``: the small final checkpoint."""
        if not self.writer:
            return
        save_model(result, self.path / "model.pt", dataset=data.name, fingerprint=data.fingerprint)

    def kept_message(self) -> str:
        """What a stopped run left on disk (for error messages)."""
        if self.path is None:
            return "nothing was saved (no run folder)"
        if not self.writer:
            return f"rank 0 keeps the checkpoints in {self.path}"
        if self.saved_step is None:
            return f"no checkpoint was written in {self.path}"
        return f"the last good checkpoint {self.state_path} (step {self.saved_step}) is kept"
