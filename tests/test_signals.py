"""SIGTERM (docker stop, SLURM, Kubernetes) is handled like Ctrl-C: one line, exit 143,
temporaries and locks removed, a training resumes exactly; Ctrl-C of a synth with worker
processes prints no worker tracebacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from test_cli import write_market

import drsl.train
from drsl.cli import main
from drsl.fsutil import lock_path
from drsl.signals import TERMINATED_STATUS, Terminated, sigterm_as_interrupt

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = ["-P", "3", "-K", "2", "--epochs", "20", "--base-width", "2", "--height", "32",
         "--width", "16", "--device", "cpu", "--threads", "1", "--no-progress",
         "--checkpoint-every", "1", "--eval-every", "0"]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_drsl(*argv, **kw):
    return subprocess.Popen([sys.executable, "-m", "drsl", *argv], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)  # fmt: skip


def wait_for(predicate, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"ended before the signal: {proc.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def leftovers(folder):
    return sorted(p.name for p in folder.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_sigterm_raises_terminated_inside_the_block_only():
    def work():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt(), pytest.raises(Terminated):
        work()
    assert signal.getsignal(signal.SIGTERM) == before  # restored after the block
    assert TERMINATED_STATUS == 143


@pytest.mark.slow
def test_sigterm_stops_train_cleanly_and_resume_is_exact(tmp_path):
    market = write_market(tmp_path / "market")
    out, ref = tmp_path / "run", tmp_path / "ref"
    whole = run_drsl("train", "--data", str(market), *TRAIN, "--out", str(ref))
    p = run_drsl("train", "--data", str(market), *TRAIN, "--out", str(out))
    wait_for(lambda: (out / "last.pt").exists(), p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert err.strip() == "drsl: terminated (SIGTERM); run the same command again to resume"
    assert not lock_path(out).exists() and not [q for q in out.iterdir() if ".tmp-" in q.name]
    step = torch.load(out / "last.pt", weights_only=True)["step"]
    assert not (out / "model.pt").exists() and step >= 1
    again = run_drsl("train", "--data", str(market), *TRAIN, "--out", str(out))
    assert again.wait(timeout=300) == 0 and whole.wait(timeout=300) == 0
    a = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(ref / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_during_eval_is_one_line_exit_143(tmp_path, monkeypatch, capsys):
    market = write_market(tmp_path / "market")
    small = ["-P", "3", "-K", "2", "--epochs", "1", "--base-width", "2", "--height", "32",
             "--width", "16", "--device", "cpu", "--no-progress", "--eval-every", "0"]  # fmt: skip
    assert main(["train", "--data", str(market), *small, "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()

    def killed(*args, **kw):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)

    monkeypatch.setattr(drsl.train, "evaluate", killed)
    before = signal.getsignal(signal.SIGTERM)
    argv = ["eval", str(tmp_path / "r" / "model.pt"), "--data", str(market), "--device", "cpu"]
    assert main(argv) == 143
    err = capsys.readouterr().err.strip()
    assert err == "drsl: terminated (SIGTERM); run the same command again to resume"
    assert signal.getsignal(signal.SIGTERM) == before


SYNTH = ["synth", "--train-ids", "200", "--test-ids", "200", "--images-per-id", "12",
         "--workers", "2", "--quiet"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("how, code", [("ctrl-c", 130), ("sigterm", 143)])
def test_synth_with_workers_stops_in_one_line(tmp_path, how, code):
    """Ctrl-C reaches the whole process group (the workers too); SIGTERM the main process."""
    out = tmp_path / "set"
    p = run_drsl(*SYNTH, "--out", str(out), start_new_session=True)
    wait_for(lambda: any(q.name.startswith("set.tmp-") for q in tmp_path.iterdir())
             and len(list(tmp_path.glob("set.tmp-*/*/*.jpg"))) > 20, p)  # fmt: skip
    if how == "ctrl-c":
        os.killpg(p.pid, signal.SIGINT)
    else:
        p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"{out} unchanged" in err
    assert leftovers(out) == [] and not out.exists() and not lock_path(out).exists()
