"""A full disk: every write names the file and what was kept, in one line; nothing half-written
stays behind, and the run resumes exactly once there is space again.

The disk fills at a chosen byte: the file objects the writers open are wrapped so that a write
past that point raises ``OSError(ENOSPC)``, as the kernel does (torch's zip writer then reports
its own ``unexpected pos``, as it did on a real full disk)."""

from __future__ import annotations

import builtins
import errno
import io
import sys

import pytest
import torch

import drsl.fsutil as fsutil
import drsl.train.checkpoint as checkpoint
from drsl.cli import main
from drsl.data.images import make_random_data
from drsl.fsutil import WriteError, append_csv_rows, atomic_write
from drsl.train import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")

_open = builtins.open


class _FillingFile(io.RawIOBase):
    """A real file that takes ``room`` bytes, then fails like a full disk (a write that does
    not fit writes what fits and returns its count; the next one raises ENOSPC)."""

    def __init__(self, path, mode, room):
        self.fh, self.room = _open(path, mode, buffering=0), room

    def writable(self):
        return True

    def write(self, b):
        if self.room == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = self.fh.write(bytes(b[: self.room]))
        self.room -= n
        return n

    def fileno(self):
        return self.fh.fileno()

    def close(self):
        self.fh.close()
        super().close()


def fill_disk_at(monkeypatch, module, room, after=0):
    """``module``'s ``open`` for writing: the first ``after`` files are written in full, then
    every file gets ``room`` bytes before the disk is full."""
    opened = []

    def fake_open(path, mode="r", *args, **kw):
        if "r" in mode and "+" not in mode:
            return _open(path, mode, *args, **kw)
        opened.append(path)
        if len(opened) <= after:
            return _open(path, mode, *args, **kw)
        raw = _FillingFile(path, mode.replace("t", ""), room)
        return raw if kw.get("buffering") == 0 else io.BufferedWriter(raw)

    monkeypatch.setattr(module, "open", fake_open, raising=False)
    return opened


def tiny(**kw) -> TrainConfig:
    base = dict(loss="ce+triplet", P=3, K=2, num_epochs=2, base_width=2, height=16, width=8,
                warmup_steps=1, seed=3, checkpoint_every=2, eval_every=1)  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def data():
    return make_random_data(num_ids=9, per_id=2, height=16, width=8)  # 3 steps per epoch


def test_full_disk_at_last_pt_names_it_keeps_the_previous_and_resumes_exactly(
    tmp_path, data, monkeypatch
):
    ref = train(tiny(), data, out_dir=tmp_path / "ref", progress=False)
    out = tmp_path / "run"
    fill_disk_at(monkeypatch, checkpoint, room=300, after=1)  # the 2nd last.pt cannot be written
    with pytest.raises(WriteError) as info:
        train(tiny(), data, out_dir=out, progress=False)
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg
    assert f"could not write {out / 'last.pt'}" in msg, msg
    assert "is the disk full" in msg and "(step 2) is kept" in msg, msg
    assert sorted(p.name for p in out.iterdir() if ".tmp-" in p.name) == []
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 2
    monkeypatch.undo()
    res = train(tiny(), data, out_dir=out, progress=False)
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, res.model.state_dict()[k]), k


def test_full_disk_in_drsl_train_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    from test_cli import write_market

    market = write_market(tmp_path / "market")
    fill_disk_at(monkeypatch, checkpoint, room=300)  # the first last.pt already fails
    out = tmp_path / "run"
    argv = ["train", "--data", str(market), "-P", "3", "-K", "2", "--epochs", "1",
            "--base-width", "2", "--height", "32", "--width", "16", "--device", "cpu",
            "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"drsl: error: could not write {out / 'last.pt'}"), err
    assert f"no checkpoint was written in {out}" in err, err


def test_full_disk_in_atomic_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    f = tmp_path / "metrics.json"
    f.write_text("old")

    def write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"x" * 100)

    fill_disk_at(monkeypatch, sys.modules[__name__], room=10)
    with pytest.raises(WriteError, match="no space left on device") as info:
        atomic_write(f, write)
    monkeypatch.undo()
    assert str(f) in str(info.value) and "the previous version is kept" in str(info.value)
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert f.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_full_disk_while_appending_rows_leaves_no_half_row(tmp_path, monkeypatch):
    f = tmp_path / "results.csv"
    append_csv_rows(f, [{"a": 1, "b": 2}], ["a", "b"], lineterminator="\n")
    before = f.read_bytes()
    fill_disk_at(monkeypatch, fsutil, room=5)
    with pytest.raises(WriteError, match="its earlier rows are kept") as info:
        append_csv_rows(f, [{"a": 10, "b": 20}, {"a": 30, "b": 40}], ["a", "b"])
    assert str(f) in str(info.value)
    assert f.read_bytes() == before


def test_full_disk_while_drawing_a_synthetic_set_names_it_and_leaves_nothing(
    tmp_path, monkeypatch, capsys
):
    from pathlib import Path

    from drsl.data.synth import main as synth_main

    real, written = Path.write_bytes, []

    def fills_up(self, data):
        if len(written) == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(self)
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", fills_up)
    out = tmp_path / "set"
    argv = ["--out", str(out), "--train-ids", "4", "--test-ids", "4", "--images-per-id", "3",
            "--distractors", "1", "--junk", "1", "--workers", "1", "--quiet"]  # fmt: skip
    assert synth_main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"could not write {out} (no space left on device); {out} is unchanged" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no partial set, no lock
