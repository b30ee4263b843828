"""Command line: ``python -m drsl {train,eval,data,export,synth} ...``.

Also installed as the ``drsl`` console script. The options of ``train`` are generated from the
fields of :class:`drsl.train.config.TrainConfig` (:func:`add_dataclass_options`: one option per
field, help text from the field's metadata), so an option is declared once. A run config file
(``--config configs/ce_drsl.toml``, see :func:`drsl.train.config.read_config`) gives values
first; flags on the command line override it; the resolved config is written to
``OUT/config.toml``. ``eval --rerank`` ranks by k-reciprocal re-ranked distances;
``data check ROOT`` reports a dataset folder; ``export CHECKPOINT --onnx OUT.onnx`` writes the
embedding network as ONNX. ``synth`` hands its arguments to ``python -m drsl.data.synth``. The
experiments are not sub-commands: they belong to the checkout (they read ``configs/`` and write
the committed CSVs of ``experiments/results/``), so they run as ``python experiments/X.py`` and
share this error policy through :func:`main`'s ``command`` argument.

Errors policy: a user error (a bad value, path, config file, checkpoint or image, a run
folder in use) prints one line ``drsl: error: ...`` naming the culprit and the fix on stderr
and exits with status 2, without a traceback; a diverged training or a failed write (a full
disk: the file and what was kept) prints one line and exits 1; Ctrl-C exits 130 and SIGTERM
143, each after one line, with temporaries and locks removed (a training resumes exactly).
A checkpoint is loaded as data, never run as code. The parser does not import torch, so
``--help`` and argument errors answer at once.

Example (shell)::

    python -m drsl train --config configs/ce_drsl.toml
    python -m drsl train --loss ce+drsl -P 16 -K 4 --epochs 30 --out runs/ce_drsl
    python -m drsl eval runs/ce_drsl/model.pt --rerank
    python -m drsl data check path/to/my_images     # train/<identity>/, test/<identity>/
    python -m drsl export runs/ce_drsl/model.pt --onnx ce_drsl.onnx
    torchrun --nproc_per_node=2 -m drsl train --device cpu --fast --out runs/ddp  # gloo
    torchrun --nproc_per_node=4 -m drsl train --amp auto --memory-size 4096 --out runs/ddp4

Data parallelism: under ``torchrun`` every process runs ``drsl train`` with the same
arguments; ``P`` is per process (global batch ``W x P x K``), rank 0 writes the run folder
and prints (see :func:`drsl.train.train`).

Reference: the training recipe of :mod:`drsl.train` (Luo et al. 2019; spec ``drsl-loss.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["add_dataclass_options", "build_parser", "resolve_train", "main"]

#: sub-commands that hand their arguments to another command line: name -> (module, help)
_PASS_THROUGH = {
    "synth": ("drsl.data.synth", "draw a synthetic dataset (python -m drsl.data.synth)"),
}


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


def _optional(kind: type):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in "invalid int value"
    return parse


def _option_kwargs(f: dataclasses.Field, hint: Any) -> dict[str, Any]:
    """argparse keywords for one dataclass field of type ``hint``."""
    help_text = f.metadata.get("help", f.name.replace("_", " "))
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    kw: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS}
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint is bool:
        kw["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(hint) is dict or hint is dict:
        kw.update(type=_kv, action="append", metavar="KEY=VALUE")
    elif args and len(args) == 1:  # X | None
        kw.update(type=_optional(args[0]), metavar=args[0].__name__.upper())
        help_text += "; 'none' for None"
    elif hint in (int, float, str):
        kw["type"] = hint
    if "choices" in f.metadata:
        kw["choices"] = tuple(f.metadata["choices"])
    kw["help"] = f"{help_text} (default: {default if default != {} else 'none'})"
    return kw


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type) -> list[str]:
    """Add one option per field of the dataclass ``cls`` to ``parser``.

    The flag is ``metadata["flag"]`` or ``--<name with dashes>`` (plus ``metadata["short"]``),
    the help ``metadata["help"]`` with the default appended; ``bool`` fields get
    ``--x/--no-x``, ``X | None`` fields accept ``none``, ``dict`` fields a repeatable
    ``KEY=VALUE`` (the value read as JSON when it parses). Defaults are
    ``argparse.SUPPRESS``: only the options given appear in the namespace, so they can
    override a config file.

    Args:
        parser (argparse.ArgumentParser): where to add them. cls (type): a dataclass.

    Returns:
        list[str]: the field names added (namespace attributes).

    Example:
        >>> from drsl.train.config import TrainConfig
        >>> p = argparse.ArgumentParser()
        >>> names = add_dataclass_options(p, TrainConfig)
        >>> vars(p.parse_args(["-P", "8", "--epochs", "2", "--max-steps", "none"]))
        {'P': 8, 'num_epochs': 2, 'max_steps': None}
    """
    hints = typing.get_type_hints(cls)
    names = []
    for f in dataclasses.fields(cls):
        flags = [f.metadata.get("flag") or "--" + f.name.replace("_", "-")]
        if "short" in f.metadata:
            flags.insert(0, f.metadata["short"])
        parser.add_argument(*flags, **_option_kwargs(f, hints[f.name]))
        names.append(f.name)
    return names


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        type=Path,
        default=argparse.SUPPRESS,
        help="dataset folder (Market-1501, DukeMTMC, MSMT17 or CUHK03-NP layout); "
        "default: the synthetic set (generated on first use)",
    )
    p.add_argument(
        "--fast",
        action="store_true",
        default=argparse.SUPPRESS,
        help="use the small synthetic set (with no --data)",
    )


def _device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        default=argparse.SUPPRESS,
        help="'auto' (CUDA if present, the default), 'cpu', 'cuda:0'; under torchrun 'cuda' "
        "or 'auto' (each process takes cuda:LOCAL_RANK) or 'cpu' (gloo)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=argparse.SUPPRESS,
        help="torch CPU threads (default: all; 1 reproduces the shipped checkpoints)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _add_train(sub) -> None:
    from drsl.train.config import TrainConfig

    t = sub.add_parser(
        "train",
        help="train a model (resumes from OUT/last.pt when it exists)",
        description="Train a compact ReIDNet with PK batches; writes OUT/model.pt, OUT/last.pt "
        "(resumable state), train_log.csv, eval_log.csv, metrics.json and config.toml. "
        "Values come from the defaults, then --config, then the flags given.",
    )
    t.add_argument(
        "--config",
        type=Path,
        default=None,
        help="run config file (TOML, e.g. configs/ce_drsl.toml); flags override it",
    )
    add_dataclass_options(t, TrainConfig)
    _data_args(t)
    t.add_argument(
        "--out",
        type=Path,
        default=argparse.SUPPRESS,
        help="run folder (default: the config's [run] out, else runs/<config name>, else "
        "runs/<loss>-P<P>-K<K>-seed<seed>)",
    )
    t.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    _device_args(t)


def _add_eval(sub) -> None:
    e = sub.add_parser(
        "eval",
        help="evaluate a checkpoint (mAP, CMC, mINP)",
        description="Evaluate a checkpoint written by 'drsl train' on a dataset's query/gallery "
        "split under the Market-1501 protocol.",
    )
    e.add_argument("checkpoint", type=Path, help="a model.pt (or last.pt) file")
    _data_args(e)
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    e.add_argument(
        "--rerank",
        action="store_true",
        help="rank by k-reciprocal re-ranked distances (Zhong et al. 2017; k1=20, k2=6, "
        "lambda=0.3)",
    )
    _device_args(e)


def _add_data(sub) -> None:
    d = sub.add_parser(
        "data",
        help="look at a dataset folder (drsl data check ROOT)",
        description="Dataset tools.",
    )
    dsub = d.add_subparsers(
        dest="data_command",
        metavar="ACTION",
        parser_class=_Parser,
        help="check: report on a folder",
    )
    dsub.required = True
    c = dsub.add_parser(
        "check",
        help="identities, images per identity, cameras, protocol and problems of a dataset",
        description="Report what a dataset folder holds (any layout drsl reads, including "
        "ROOT/train/<identity>/ and ROOT/test/<identity>/) and every problem: unreadable "
        "images (exit status 1), empty identity folders, identities with one image.",
    )
    c.add_argument("root", type=Path, help="the dataset folder")


def _add_export(sub) -> None:
    x = sub.add_parser(
        "export",
        help="export a checkpoint's embedding network to ONNX",
        description="Write the embedding network of a checkpoint (eval mode) as ONNX: input "
        "'images' (B x 3 x H x W uint8 at the checkpoint's size, any B), output 'embeddings' "
        "(B x D float32, the evaluation transform included). Checked once with onnxruntime.",
    )
    x.add_argument("checkpoint", type=Path, help="a model.pt (or last.pt) file")
    x.add_argument("--onnx", type=Path, required=True, metavar="OUT.onnx", help="the file to write")


def build_parser() -> argparse.ArgumentParser:
    """The ``drsl`` argument parser (sub-commands ``train``, ``eval``, ``synth``). Imports no torch.

    Returns:
        argparse.ArgumentParser: the parser.

    Example:
        >>> build_parser().parse_args(["train", "-P", "8"]).P
        8
    """
    p = _Parser(
        prog="drsl",
        description="Train and evaluate compact re-ID models with DRSL and baseline losses.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_train(sub)
    _add_eval(sub)
    _add_data(sub)
    _add_export(sub)
    for name, (target, help_text) in _PASS_THROUGH.items():
        s = sub.add_parser(
            name, help=help_text, add_help=False, description=f"Runs {target} (see its --help)."
        )
        s.add_argument("args", nargs=argparse.REMAINDER, help=f"arguments for {target}")
    return p


def resolve_train(args: argparse.Namespace):
    """The run of ``drsl train``: defaults, then ``--config``, then the flags given.

    Args:
        args (argparse.Namespace): parsed ``train`` arguments.

    Returns:
        tuple[TrainConfig, dict]: the validated config and the run options (``out``,
        ``data``, ``fast``, ``device``, ``threads``).

    Example:
        >>> cfg, run = resolve_train(build_parser().parse_args(["train", "-K", "8"]))
        >>> cfg.K, str(run["out"])
        (8, 'runs/ce_drsl-P16-K8-seed0')
    """
    from drsl.train.config import RUN_KEYS, TrainConfig, read_config

    given = vars(args)
    file = read_config(args.config) if args.config is not None else {"train": {}, "run": {}}
    values = dict(file["train"])
    for f in dataclasses.fields(TrainConfig):
        if f.name in given:
            v = given[f.name]
            values[f.name] = {**values.get(f.name, {}), **dict(v)} if f.name == "loss_kwargs" else v
    try:
        cfg = TrainConfig(**values).validate()
    except TypeError as err:  # a wrong type in a config file
        raise ValueError(f"config {args.config}: {err}") from None
    run = {k: file["run"].get(k) for k in RUN_KEYS}
    run.update({k: given[k] for k in RUN_KEYS if k in given})
    if run["out"] is None:
        stem = args.config.stem if args.config is not None else None
        name = stem or f"{cfg.loss.replace('+', '_')}-P{cfg.P}-K{cfg.K}-seed{cfg.seed}"
        run["out"] = Path("runs") / name
    run["out"] = Path(run["out"])
    run["data"] = Path(run["data"]) if run["data"] is not None else None
    return cfg, run


def _setup(run: dict[str, Any]):
    """Threads, data path checks and the device (imports torch)."""
    threads, data = run.get("threads"), run.get("data")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    if data is not None and data.exists() and not data.is_dir():
        raise NotADirectoryError(f"dataset path {data} is a file; pass the dataset's folder")
    if data is not None and not data.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {data} (check --data)")
    import torch

    from drsl.train import select_device

    if threads is not None:
        torch.set_num_threads(threads)
    return select_device(run.get("device") or "auto")


def _fmt(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {100 * v:.1f}%" for k, v in metrics.items())


def _train(args: argparse.Namespace) -> int:
    cfg, run = resolve_train(args)
    out = run["out"]
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is an existing file; pass a folder path")
    from drsl.data.images import load_data
    from drsl.train import build_criterion, train

    if cfg.loss_kwargs:  # fail now, not after loading the data, on a keyword the loss rejects
        try:
            build_criterion(cfg)
        except TypeError as err:
            raise ValueError(f"bad --loss-arg for {cfg.loss}: {err}") from None
    device = _setup(run)
    from drsl.train.distributed import distributed, main_first

    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and device.index is not None:
        raise ValueError(
            f"--device {device} under torchrun: pass --device cuda (or auto); each process "
            "takes cuda:LOCAL_RANK"
        )
    # under torchrun: one process per GPU (cuda:LOCAL_RANK) or CPU processes over gloo
    with distributed(device) as ctx:
        saved = run.get("world_size")
        if ctx.is_main and saved is not None and saved != ctx.world_size:
            print(
                f"drsl: warning: the config was run by {saved} process(es), this launch has "
                f"{ctx.world_size} (a global batch of {ctx.world_size} x P x K)",
                file=sys.stderr,
            )

        def load():
            return load_data(
                run["data"], height=cfg.height, width=cfg.width, fast=run["fast"] or None
            )

        # rank 0 loads first (it may generate the synthetic set), then the others read it;
        # an error on rank 0 is raised on every rank (main_first broadcasts it, not the data)
        loaded = []
        main_first(ctx, lambda: loaded.append(load()))
        data = loaded[0] if loaded else load()
        res = train(
            cfg,
            data,
            out_dir=out,
            ctx=ctx,
            resume=not args.no_resume,
            progress=not args.no_progress and ctx.is_main,
        )
    if ctx.is_main:
        procs = f" on {ctx.world_size} processes" if ctx.is_distributed else ""
        print(
            f"trained {cfg.loss} on {data.name}{procs} in {res.seconds:.1f} s -> {out / 'model.pt'}"
        )
        if res.metrics:
            print(_fmt(res.metrics))
    return 0


def _eval(args: argparse.Namespace) -> int:
    given = vars(args)
    run = {k: given.get(k) for k in ("data", "fast", "device", "threads")}
    device = _setup(run)
    from drsl.data.images import load_data
    from drsl.train import evaluate, load_model

    res = load_model(args.checkpoint, device=device)
    data = load_data(
        run["data"], height=res.config.height, width=res.config.width, fast=run["fast"] or None
    )
    if res.data_fingerprint and data.fingerprint and res.data_fingerprint != data.fingerprint:
        print(
            f"drsl: warning: {args.checkpoint} was trained on data {res.data_fingerprint}, "
            f"evaluating on {data.fingerprint}",
            file=sys.stderr,
        )
    metrics = evaluate(res.model, data, batch_size=res.config.eval_batch_size, rerank=args.rerank)
    how = "re-ranked" if args.rerank else "plain"
    if args.json:
        info = {"checkpoint": str(args.checkpoint), "dataset": data.name, "ranking": how}
        print(json.dumps({**info, **metrics}))
    else:
        rr = ", re-ranked" if args.rerank else ""
        print(f"{args.checkpoint} ({res.config.loss}{rr}) on {data.name}: {_fmt(metrics)}")
    return 0


def _data(args: argparse.Namespace) -> int:
    from drsl.data.datasets import check_command

    return check_command(args.root)


def _export(args: argparse.Namespace) -> int:
    import torch

    from drsl.train.checkpoint import load_model
    from drsl.train.evaluation import embed
    from drsl.train.export import export_onnx, onnx_embed

    out = export_onnx(args.checkpoint, args.onnx)
    res = load_model(args.checkpoint)
    c = res.config
    images = torch.randint(0, 256, (8, 3, c.height, c.width), dtype=torch.uint8)
    gap = float((onnx_embed(out, images) - embed(res.model, images)).abs().max())
    print(
        f"exported {args.checkpoint} -> {out} (images B x 3 x {c.height} x {c.width} uint8 -> "
        f"embeddings B x {res.model.embedding_dim}); onnxruntime vs PyTorch on 8 random "
        f"images: max |difference| {gap:.1e}"
    )
    return 0


@contextlib.contextmanager
def _one_line_argparse_errors() -> Iterator[None]:
    """The parsers of the commands ``drsl`` hands over (and of the experiment scripts run under
    :func:`main`) answer a bad argument in one line, as ``drsl``'s own do (``argparse`` would
    print the usage first)."""
    original = argparse.ArgumentParser.error

    def error(self: argparse.ArgumentParser, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    argparse.ArgumentParser.error = error  # type: ignore[method-assign]
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original  # type: ignore[method-assign]


def _pass_through(name: str, argv: list[str]) -> int:
    with _one_line_argparse_errors():
        return _hand_over(name, argv)


def _hand_over(name: str, argv: list[str]) -> int:
    import importlib

    module, _ = _PASS_THROUGH[name]
    return int(importlib.import_module(module).main(argv) or 0)


def _user_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [_CliError, ValueError, FileNotFoundError]
    errors += [NotADirectoryError, IsADirectoryError, FileExistsError]
    if "drsl.fsutil" in sys.modules:
        errors.append(sys.modules["drsl.fsutil"].FolderLockedError)
    return tuple(errors)


def _one_line(err: BaseException) -> str:
    msg = str(err) if isinstance(err, _CliError) else f"drsl: error: {err}"
    return msg.splitlines()[0] if msg.strip() else f"drsl: error: {type(err).__name__}"


def _dispatch(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _PASS_THROUGH:  # the other command line parses (and helps)
        return _pass_through(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    commands = {"train": _train, "eval": _eval, "data": _data, "export": _export}
    return commands[args.command](args)


def main(
    argv: Sequence[str] | None = None, *, command: Callable[[list[str]], int] | None = None
) -> int:
    """Run the command line under the error policy.

    Args:
        argv (Sequence[str], optional): arguments without the program name (default sys.argv).
        command (Callable, optional): what runs under the policy, given the argument list;
            default: drsl's own sub-commands. An experiment script ends with
            ``sys.exit(drsl.cli.main(command=main))``.

    Returns:
        int: exit status (0 success, 2 user error, 1 diverged training or a system error
        such as a full disk, 130 Ctrl-C, 143 SIGTERM).
    """
    from drsl.signals import TERMINATED_STATUS, Terminated, sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            if command is None:
                return _dispatch(argv)
            with _one_line_argparse_errors():  # the script's own parser, one line too
                return int(command(list(sys.argv[1:] if argv is None else argv)) or 0)
    except KeyboardInterrupt as err:
        how = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        print(f"drsl: {how}; run the same command again to resume", file=sys.stderr)
        return TERMINATED_STATUS if isinstance(err, Terminated) else 130
    except Exception as err:
        if isinstance(err, _user_errors()):
            print(_one_line(err), file=sys.stderr)
            return 2
        train = sys.modules.get("drsl.train.loop")
        if train is not None and isinstance(err, train.DivergenceError) or isinstance(err, OSError):
            print(_one_line(err), file=sys.stderr)
            return 1
        raise
