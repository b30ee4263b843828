"""Command line: ``python -m drsl train ...`` and ``python -m drsl eval CHECKPOINT ...``.

Also installed as the ``drsl`` console script. Errors in values or paths print one line
(``drsl: error: ...``) on stderr and exit with status 2, without a traceback.

Example (shell)::

    python -m drsl train --loss ce+drsl -P 16 -K 4 --epochs 30 --out runs/ce_drsl
    python -m drsl eval runs/ce_drsl/model.pt

Reference: the training recipe of :mod:`drsl.train` (Luo et al. 2019; spec ``drsl-loss.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["build_parser", "main"]


class _CliError(Exception):
    """A user error: printed on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise _CliError(f"{self.prog}: {message} (see --help)")


def _kv(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    """The ``drsl`` argument parser (sub-commands ``train`` and ``eval``).

    Returns:
        argparse.ArgumentParser: the parser.

    Example:
        >>> build_parser().parse_args(["train", "-P", "8"]).P
        8
    """
    from drsl.train import LOSS_CHOICES, TrainConfig

    d = TrainConfig()
    p = _Parser(
        prog="drsl",
        description="Train and evaluate compact re-ID models with DRSL and baseline losses.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser(
        "train",
        help="train a model (resumes from OUT/last.pt when it exists)",
        description="Train a compact ReIDNet with PK batches; writes OUT/model.pt, OUT/last.pt "
        "(resumable state), train_log.csv, eval_log.csv and metrics.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    t.add_argument(
        "--loss",
        default=d.loss,
        help="training loss: one of " + ", ".join(LOSS_CHOICES) + " ('ce+X' adds label-smoothed "
        "cross-entropy on the BNNeck logits to metric loss X; X alone trains without it)",
    )
    t.add_argument("-P", "--P", type=int, default=d.P, help="identities per batch (>= 2)")
    t.add_argument("-K", "--K", type=int, default=d.K, help="images per identity (>= 2)")
    t.add_argument("--epochs", type=int, default=d.num_epochs, help="number of epochs")
    t.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this many steps; None: run all epochs",
    )
    t.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (Adam)")
    t.add_argument("--weight-decay", type=float, default=d.weight_decay, help="weight decay")
    t.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help="linear warm-up")
    t.add_argument(
        "--loss-arg",
        type=_kv,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword for the metric loss, repeatable (e.g. delta=0.5, margin=0.3)",
    )
    t.add_argument(
        "--angle-source",
        choices=("bn", "features"),
        default=d.angle_source,
        help="where DRSL's angle targets come from: post-BN features or the pre-BN ones",
    )
    t.add_argument("--base-width", type=int, default=d.base_width, help="narrow-ResNet width")
    t.add_argument("--height", type=int, default=d.height, help="input image height")
    t.add_argument("--width", type=int, default=d.width, help="input image width")
    _data_args(t)
    t.add_argument(
        "--out",
        type=Path,
        default=None,
        help="run folder; None means runs/<loss>-P<P>-K<K>-seed<seed>",
    )
    t.add_argument("--seed", type=int, default=d.seed, help="random seed")
    t.add_argument("--eval-every", type=int, default=d.eval_every, help="epochs between evals")
    t.add_argument(
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        help="steps between extra checkpoints (0: at epoch ends only)",
    )
    t.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    _device_args(t)

    e = sub.add_parser(
        "eval",
        help="evaluate a checkpoint (mAP, CMC, mINP)",
        description="Evaluate a checkpoint written by 'drsl train' on a dataset's query/gallery "
        "split under the Market-1501 protocol.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    e.add_argument("checkpoint", type=Path, help="a model.pt (or last.pt) file")
    _data_args(e)
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _device_args(e)
    return p


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="dataset folder (Market-1501, DukeMTMC, MSMT17 or CUHK03-NP layout); "
        "default: the synthetic set (generated on first use)",
    )
    p.add_argument(
        "--fast", action="store_true", help="use the small synthetic set (with no --data)"
    )


def _device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="'auto' (CUDA if present), 'cpu', 'cuda:0'")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads; None: all")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _setup(args: argparse.Namespace):
    import torch

    from drsl.train import select_device

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.data is not None and not args.data.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {args.data}")
    return select_device(args.device)


def _fmt(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {100 * v:.1f}%" for k, v in metrics.items())


def _train(args: argparse.Namespace) -> int:
    from drsl.train import TrainConfig, load_data, train

    cfg = TrainConfig(
        loss=args.loss,
        P=args.P,
        K=args.K,
        num_epochs=args.epochs,
        max_steps=args.max_steps,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        loss_kwargs=dict(args.loss_arg),
        angle_source=args.angle_source,
        base_width=args.base_width,
        height=args.height,
        width=args.width,
        seed=args.seed,
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
    ).validate()
    if args.loss_arg:  # fail now, not after loading the data, on a keyword the loss rejects
        from drsl.train import build_criterion

        try:
            build_criterion(cfg)
        except TypeError as err:
            raise ValueError(f"bad --loss-arg for {cfg.loss}: {err}") from None
    device = _setup(args)
    out = (
        args.out or Path("runs") / f"{cfg.loss.replace('+', '_')}-P{cfg.P}-K{cfg.K}-seed{cfg.seed}"
    )
    data = load_data(args.data, height=cfg.height, width=cfg.width, fast=args.fast or None)
    res = train(
        cfg,
        data,
        out_dir=out,
        device=device,
        resume=not args.no_resume,
        progress=not args.no_progress,
    )
    print(f"trained {cfg.loss} on {data.name} in {res.seconds:.1f} s -> {out / 'model.pt'}")
    if res.metrics:
        print(_fmt(res.metrics))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from drsl.train import evaluate, load_data, load_model

    device = _setup(args)
    res = load_model(args.checkpoint, device=device)
    data = load_data(
        args.data, height=res.config.height, width=res.config.width, fast=args.fast or None
    )
    if res.data_fingerprint and data.fingerprint and res.data_fingerprint != data.fingerprint:
        print(
            f"drsl: warning: {args.checkpoint} was trained on data {res.data_fingerprint}, "
            f"evaluating on {data.fingerprint}",
            file=sys.stderr,
        )
    metrics = evaluate(res.model, data, batch_size=res.config.eval_batch_size)
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), "dataset": data.name, **metrics}))
    else:
        print(f"{args.checkpoint} ({res.config.loss}) on {data.name}: {_fmt(metrics)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv (Sequence[str], optional): arguments without the program name (default sys.argv).

    Returns:
        int: exit status (0 success, 2 user error).
    """
    try:
        args = build_parser().parse_args(argv)
        return _train(args) if args.command == "train" else _eval(args)
    except (_CliError, ValueError, FileNotFoundError, NotADirectoryError) as err:
        msg = str(err) if isinstance(err, _CliError) else f"drsl: error: {err}"
        print(msg.splitlines()[0] if msg else "drsl: error", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("drsl: interrupted (run the same command again to resume)", file=sys.stderr)
        return 130
