"""The positive/negative-ratio sweep: does DRSL hold up better than its baselines as a P x K
batch gets more imbalanced?

Settings: P varies with K = 4 fixed (P = 4, 16, 32: ratios 0.25, 0.05, 0.024, the last one the
extreme), and K varies with P = 16 fixed (K = 2, 4, 8: ratios 0.033, 0.05, 0.058, K = 2 the
extreme with a single positive per anchor); 16 x 4 belongs to both, so 5 cells.
Losses: CE+triplet, CE+Smooth-AP, CE+DRSL (rank only, ``sort_weight=0``) and CE+DRSL;
seeds 0, 1, 2.

Every run sees the same number of training images (``--budget`` images, i.e. ``budget / (P K)``
steps), so runs differ in batch composition, not in compute. Rows are appended to the CSV as
runs finish and runs already in it are skipped: stop at any time and run the same command
again to continue (``--max-runs`` runs a piece).

The grid and the shared settings are run configs: ``configs/sweep/grid.toml`` (cells,
losses, seeds, budget) and ``configs/sweep/base.toml`` (what every run shares); a cell is
``configs/sweep/p<P>_k<K>.toml`` (the base plus its batch shape and steps), so one run can be
repeated alone with ``python -m drsl train --config configs/sweep/p32_k4.toml --loss ce+drsl
--seed 1``.

Usage::

    python experiments/sweep.py                    # run what is missing, then plot
    python experiments/sweep.py --max-runs 10      # ten more runs
    python experiments/sweep.py --plot-only        # redraw the figure and the table

Reference: the paper's imbalance claim (abstract); spec ``drsl-loss.md``, "Why it suits
imbalance".
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CONFIGS = HERE.parent / "configs" / "sweep"


def _grid() -> dict:
    import tomllib

    return tomllib.loads((CONFIGS / "grid.toml").read_text())


_GRID = _grid()
# cell by cell (all seeds and losses of a cell before the next), the most telling cells first:
# a sweep stopped half way still gives complete mean +- std cells
SETTINGS = [tuple(c) for c in _GRID["cells"]]
LOSSES = list(_GRID["losses"])
SEEDS = list(_GRID["seeds"])
BUDGET = int(_GRID["budget"])
FIELDS = [
    "P",
    "K",
    "ratio",
    "loss",
    "seed",
    "steps",
    "images",
    "budget",
    "base_width",
    "lr",
    "mAP",
    "R1",
    "mINP",
    "seconds",
    "data",
]


def ratio(P: int, K: int) -> float:
    """Positives per negative for one anchor in a P x K batch: (K - 1) / ((P - 1) K)."""
    return (K - 1) / ((P - 1) * K)


def base_config(*, base_width: int | None = None, lr: float | None = None):
    """The shared settings of every run: ``configs/sweep/base.toml``, optionally overridden.

    Returns:
        drsl.train.TrainConfig: the base config.
    """
    from drsl.train.config import TrainConfig, read_config

    values = read_config(CONFIGS / "base.toml")["train"]
    values.update({k: v for k, v in (("base_width", base_width), ("lr", lr)) if v is not None})
    return TrainConfig(**values)


def cell_file(P: int, K: int) -> Path:
    """The run config of a sweep cell: ``configs/sweep/p<P>_k<K>.toml``."""
    return CONFIGS / f"p{P}_k{K}.toml"


def cell_config(base, *, P: int, K: int, loss: str, seed: int, steps: int, loss_kwargs=None):
    """One run's config: ``base`` with the cell's batch shape, the steps and a warm-up of a
    tenth of the steps (at most 50), the loss, the seed and, when given, ``loss_kwargs``."""
    return replace(
        base,
        loss=loss,
        P=P,
        K=K,
        seed=seed,
        num_epochs=10_000,
        max_steps=steps,
        warmup_steps=min(50, steps // 10),
        **({"loss_kwargs": dict(loss_kwargs)} if loss_kwargs else {}),
    )


def train_row(
    base, data, *, P: int, K: int, loss: str, seed: int, steps: int, loss_kwargs=None
) -> dict:
    """Train one run of ``steps`` P x K batches and return its results row (strings).

    Args:
        base (drsl.train.TrainConfig): shared settings (width, lr, ...); the run overrides
            ``loss``, ``P``, ``K``, ``seed``, ``max_steps``, ``warmup_steps`` (a tenth of the
            steps, at most 50) and, when given, ``loss_kwargs``.
        data (drsl.data.images.ReIDData): the dataset. P, K, seed, steps (int): the run.
        loss (str): a ``drsl.train`` loss name. loss_kwargs (dict, optional): its keywords.

    Returns:
        dict: ``P, K, ratio, loss, seed, steps, images, base_width, lr, mAP, R1, mINP,
        seconds, data``.
    """
    from drsl.train import train

    cfg = cell_config(base, P=P, K=K, loss=loss, seed=seed, steps=steps, loss_kwargs=loss_kwargs)
    t0 = time.perf_counter()
    res = train(cfg, data, progress=False)
    return {
        "P": P,
        "K": K,
        "ratio": f"{ratio(P, K):.6f}",
        "loss": loss,
        "seed": seed,
        "steps": steps,
        "images": steps * P * K,
        "data": data.fingerprint,
        "base_width": base.base_width,
        "lr": base.lr,
        **{m: f"{res.metrics[m]:.6f}" for m in ("mAP", "R1", "mINP")},
        "seconds": f"{time.perf_counter() - t0:.1f}",
    }


def append_row(path: Path, row: dict, fields: list[str]) -> None:
    """Append ``row`` to the CSV ``path`` (header first if new), under an exclusive lock so
    that several processes can share one results file (``drsl.fsutil.append_csv_rows``)."""
    from drsl.fsutil import append_csv_rows

    append_csv_rows(path, [row], fields)


def done_keys(path: Path, budget: int, base_width: int, lr: float, data: str) -> set[tuple]:
    """(P, K, loss, seed) of the runs in ``path`` with the same budget, width, lr and data."""
    if not path.exists():
        return set()
    with open(path, newline="") as fh:
        return {
            (int(r["P"]), int(r["K"]), r["loss"], int(r["seed"]))
            for r in csv.DictReader(fh)
            if int(r["budget"]) == budget
            and int(r["base_width"]) == base_width
            and float(r["lr"]) == lr
            and r["data"] == data
        }


def plot(csv_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from drsl.plotting.train import plot_sweep, sweep_table

    df = pd.read_csv(csv_path)
    fig = plot_sweep(df, metric="mAP", losses=LOSSES)
    fig.savefig(csv_path.with_name(f"{csv_path.stem}_mAP.png"), dpi=120)
    fig = plot_sweep(df, metric="mINP", losses=LOSSES)
    fig.savefig(csv_path.with_name(f"{csv_path.stem}_mINP.png"), dpi=120)
    t = sweep_table(df)
    t.to_csv(csv_path.with_name(f"{csv_path.stem}_summary.csv"), index=False, float_format="%.6f")
    print(f"{len(df)} runs in {csv_path}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=RESULTS / "sweep.csv", help="results CSV")
    base = base_config()
    p.add_argument("--budget", type=int, default=BUDGET, help="training images per run")
    p.add_argument("--base-width", type=int, default=base.base_width, help="narrow-ResNet width")
    p.add_argument("--lr", type=float, default=base.lr, help="peak learning rate")
    p.add_argument("--seeds", type=int, nargs="+", default=SEEDS, help="seeds")
    p.add_argument("--losses", nargs="+", default=LOSSES, help="losses")
    p.add_argument("--max-runs", type=int, default=None, help="stop after this many new runs")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    p.add_argument("--fast", action="store_true", help="the small synthetic set")
    p.add_argument("--plot-only", action="store_true", help="only redraw figure and table")
    args = p.parse_args(argv)
    if args.plot_only:
        plot(args.out)
        return 0

    import torch

    from drsl.data.images import load_data

    torch.set_num_threads(args.threads)
    base = base_config(base_width=args.base_width, lr=args.lr)
    data = load_data(height=base.height, width=base.width, fast=args.fast or None)
    done = done_keys(args.out, args.budget, args.base_width, args.lr, data.fingerprint)
    todo = [
        (P, K, loss, s)
        for (P, K) in SETTINGS
        for s in args.seeds
        for loss in args.losses
        if (P, K, loss, s) not in done
    ]
    if args.max_runs is not None:
        todo = todo[: args.max_runs]
    print(f"{len(done)} runs done, {len(todo)} to run now", flush=True)
    for i, (P, K, loss, seed) in enumerate(todo):
        steps = max(1, round(args.budget / (P * K)))
        row = train_row(base, data, P=P, K=K, loss=loss, seed=seed, steps=steps)
        row["budget"] = args.budget
        append_row(args.out, row, FIELDS)
        print(
            f"[{i + 1}/{len(todo)}] {P}x{K} {loss} seed {seed}: mAP {row['mAP']} "
            f"R1 {row['R1']} mINP {row['mINP']} ({row['seconds']} s)",
            flush=True,
        )
    if args.out.exists():
        plot(args.out)
    return 0


if __name__ == "__main__":
    from drsl.cli import main as drsl_main  # the one error policy: one line, exit 2 / 130

    sys.exit(drsl_main(command=main))
