"""The light CLI of drsl.train: it answers without torch, one option per config field.

The public names of drsl.train are frozen once, in test_public_api.py.
"""

from __future__ import annotations

import subprocess
import sys

import drsl.train


def test_parser_and_config_do_not_import_torch():
    """--help and argument errors answer without torch (importing it takes seconds)."""
    code = (
        "import sys, drsl.cli, drsl.train\n"
        "from drsl.train import TrainConfig, LOSS_CHOICES\n"
        "drsl.cli.build_parser().parse_args(['train', '-P', '4'])\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_train_options_come_from_the_dataclass():
    import dataclasses

    from drsl.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    dests = {a.dest for a in sub._actions}
    assert {f.name for f in dataclasses.fields(drsl.train.TrainConfig)} <= dests


def test_metric_loss_names_match_the_registry():
    """config.METRIC_LOSSES checks loss names without torch; it must list the registry."""
    from drsl.losses import LOSSES
    from drsl.train.config import METRIC_LOSSES

    assert sorted(METRIC_LOSSES) == sorted(LOSSES)
