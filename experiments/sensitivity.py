"""Does the sweep's reading depend on DRSL's ``delta``, the learning rate, or the number of steps?

Three studies around ``experiments/sweep.py`` (same model, data, seeds and protocol):

- ``margin``: DRSL's ``delta`` and, for comparison, the triplet margin (the same 0.3 by
  default; spec "Step function") at 0.1, 0.3 and 1.0, for CE+triplet and CE+DRSL, in the
  balanced ``4 x 4`` and the extreme ``32 x 4`` cells (the sweep's image budget).
- ``lr``: the peak learning rate at 5e-4, 2e-3 (the sweep's), 8e-3 and 3.2e-2, for
  CE+triplet, CE+Smooth-AP and CE+DRSL, in the same two cells.
- ``steps``: the whole sweep again with a fixed number of steps (256, as the sweep's
  ``16 x 4`` cell) instead of a fixed number of images, so that the ratio moves without the
  number of optimiser steps moving with it.

A run already in ``sweep.csv`` (same cell, loss, seed, steps, lr, keywords and data) is taken
from there and not trained again; new runs are appended to ``sensitivity.csv`` as they finish,
and a stopped script continues where it stopped. ``--shard I/N`` runs the runs whose key
hashes to shard I of N (N processes can share the CSV). At the end the script writes

- ``sensitivity_studies.csv``: one row per (study, run), with the study's ``value``;
- ``sensitivity_summary.csv``: mean and std over seeds per (study, value, cell, loss);
- ``sensitivity_mAP.png`` (margin and lr) and ``sensitivity_steps_mAP.png`` (steps).

Usage::

    python experiments/sensitivity.py                       # everything missing, then plot
    python experiments/sensitivity.py --study margin lr     # two of the studies
    python experiments/sensitivity.py --shard 0/2 & python experiments/sensitivity.py --shard 1/2
    python experiments/sensitivity.py --plot-only

Reference: the paper's imbalance claim (abstract); spec ``drsl-loss.md``, "Step function"
(``delta``) and "Why it suits imbalance".
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import sweep  # noqa: E402  (the sibling script: protocol, runner and CSV helpers)

RESULTS = HERE / "results"
# the sweep's columns, with the loss keywords after the learning rate and no image budget
FIELDS = [
    g for f in sweep.FIELDS if f != "budget" for g in ((f, "loss_kwargs") if f == "lr" else (f,))
]
#: the keyword each loss calls its margin, and its default (both 0.3: drsl.losses.DEFAULT_DELTA
#: and the strong baseline's triplet margin)
KNOB = {"ce+drsl": "delta", "ce+drsl_rank": "delta", "ce+triplet": "margin"}
KNOB_DEFAULT = 0.3


def _studies() -> dict:
    """The studies of ``configs/sweep/sensitivity.toml`` (``"sweep"``: the sweep's cells or
    losses)."""
    import tomllib

    raw = tomllib.loads((sweep.CONFIGS / "sensitivity.toml").read_text())
    out = {}
    for name, spec in raw.items():
        cells = sweep.SETTINGS if spec["cells"] == "sweep" else [tuple(c) for c in spec["cells"]]
        losses = sweep.LOSSES if spec["losses"] == "sweep" else list(spec["losses"])
        out[name] = {"cells": cells, "losses": losses, "values": list(spec["values"])}
    return out


STUDIES = _studies()
STUDY_TITLES = {
    "margin": "DRSL delta / triplet margin",
    "lr": "peak learning rate",
    "steps": "fixed number of steps",
}


def kwargs_str(loss: str, margin: float) -> str:
    """The run's loss keywords as written in the CSV: empty at the default margin."""
    if loss not in KNOB:
        raise ValueError(f"{loss!r} has no margin keyword (one of {sorted(KNOB)})")
    return "" if margin == KNOB_DEFAULT else f"{KNOB[loss]}={margin:g}"


def planned(study: str, *, budget: int, lr: float, seeds) -> list[dict]:
    """The runs of one study: dicts with ``study, value, P, K, loss, seed, steps, lr,
    loss_args`` (the loss keywords, a dict) and ``loss_kwargs`` (the same as written in the
    CSV, :func:`kwargs_str`)."""
    spec = STUDIES[study]
    runs = []
    for P, K in spec["cells"]:
        for seed in seeds:
            for loss in spec["losses"]:
                for v in spec["values"]:
                    run = {"study": study, "value": v, "P": P, "K": K, "loss": loss, "seed": seed}
                    run["steps"] = max(1, round(budget / (P * K)))
                    run["lr"], run["loss_kwargs"], run["loss_args"] = lr, "", {}
                    if study == "margin":
                        run["loss_kwargs"] = kwargs_str(loss, v)
                        if run["loss_kwargs"]:
                            run["loss_args"] = {KNOB[loss]: v}
                    elif study == "lr":
                        run["lr"] = v
                    else:
                        run["steps"] = int(v)
                    runs.append(run)
    return runs


def key(run) -> tuple:
    """What makes two runs the same (with the data and the width, checked by the caller)."""
    return (
        int(run["P"]),
        int(run["K"]),
        str(run["loss"]),
        int(run["seed"]),
        int(run["steps"]),
        float(run["lr"]),
        str(run["loss_kwargs"]),
    )


def shard_of(run_key: tuple, n_shards: int) -> int:
    """The shard (``0 .. n_shards - 1``) that runs ``run_key``: a stable hash of it."""
    import hashlib

    return int(hashlib.sha256(repr(run_key).encode()).hexdigest(), 16) % n_shards


def load_runs(paths, *, data: str | None = None, base_width: int = 8):
    """Every finished run of the CSVs (the sweep's and this script's) as one DataFrame.

    The sweep's rows get ``loss_kwargs = ""`` (they ran at the default margin); rows of other
    data or another width are dropped (``data=None`` keeps every data version); a run found
    twice is kept once.
    """
    import pandas as pd

    frames = [pd.read_csv(p, keep_default_na=False) for p in paths if Path(p).exists()]
    if not frames:
        return pd.DataFrame(columns=[*FIELDS, "_key"])
    df = pd.concat(frames, ignore_index=True)
    if "loss_kwargs" not in df:
        df["loss_kwargs"] = ""
    df["loss_kwargs"] = df["loss_kwargs"].fillna("").astype(str)
    df = df[df["base_width"].astype(int) == base_width]
    if data is not None:
        df = df[df["data"] == data]
    df = df.assign(_key=[key(r) for r in df.to_dict("records")])
    return df.drop_duplicates("_key").reset_index(drop=True)


def study_rows(runs, *, budget: int, lr: float, seeds):
    """The rows of every study found in ``runs`` (see :func:`load_runs`), with ``study`` and
    ``value`` columns; a run can belong to several studies (the defaults are shared)."""
    import pandas as pd

    by_key = {k: r for k, r in zip(runs["_key"], runs.to_dict("records"), strict=True)}
    rows = []
    for study in STUDIES:
        for plan in planned(study, budget=budget, lr=lr, seeds=seeds):
            r = by_key.get(key(plan))
            if r is not None:
                rows.append({**r, "study": study, "value": plan["value"]})
    cols = ["study", "value", *[c for c in FIELDS if c not in ("seconds",)], "seconds"]
    return pd.DataFrame(rows, columns=cols)


def plot(studies, out: Path) -> None:
    """Write ``<out stem>_summary.csv``, ``_mAP.png`` (margin and lr) and
    ``_steps_mAP.png`` next to ``out`` from :func:`study_rows`' table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from drsl.plotting.train import plot_sensitivity, plot_sweep, sweep_table

    if studies.empty:
        print("no finished runs yet")
        return
    table = sweep_table(studies, by=("study", "value", "P", "K", "ratio", "loss"))
    table.to_csv(out.with_name(f"{out.stem}_summary.csv"), index=False, float_format="%.6f")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True, constrained_layout=True)
    for ax, study in zip(axes, ("margin", "lr"), strict=True):
        sub = studies[studies["study"] == study]
        if not sub.empty:
            plot_sensitivity(sub, param=STUDY_TITLES[study], losses=sweep.LOSSES, ax=ax)
    fig.savefig(out.with_name(f"{out.stem}_mAP.png"), dpi=120)
    steps = studies[studies["study"] == "steps"]
    if not steps.empty:
        fig = plot_sweep(steps, metric="mAP", losses=sweep.LOSSES)
        fig.suptitle("the sweep at a fixed 256 steps per run", fontsize=10)
        fig.savefig(out.with_name(f"{out.stem}_steps_mAP.png"), dpi=120)
    plt.close("all")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--study", nargs="+", choices=list(STUDIES), default=list(STUDIES), help="studies to run"
    )
    p.add_argument("--out", type=Path, default=RESULTS / "sensitivity.csv", help="results CSV")
    p.add_argument(
        "--sweep-csv", type=Path, default=RESULTS / "sweep.csv", help="the sweep's runs (reused)"
    )
    base = sweep.base_config()
    p.add_argument(
        "--budget", type=int, default=sweep.BUDGET, help="training images per run (margin, lr)"
    )
    p.add_argument("--base-width", type=int, default=base.base_width, help="narrow-ResNet width")
    p.add_argument("--lr", type=float, default=base.lr, help="peak learning rate (margin, steps)")
    p.add_argument("--seeds", type=int, nargs="+", default=sweep.SEEDS, help="seeds")
    p.add_argument("--max-runs", type=int, default=None, help="stop after this many new runs")
    p.add_argument("--shard", default="0/1", help="I/N: run the runs that hash to shard I of N")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    p.add_argument("--fast", action="store_true", help="the small synthetic set")
    p.add_argument("--plot-only", action="store_true", help="only write the tables and figures")
    args = p.parse_args(argv)
    try:
        shard, n_shards = (int(x) for x in args.shard.split("/"))
        if not 0 <= shard < n_shards:
            raise ValueError
    except ValueError:
        p.error(f"--shard must be I/N with 0 <= I < N, got {args.shard!r}")

    import torch

    from drsl.data.images import load_data

    base = sweep.base_config(base_width=args.base_width, lr=args.lr)
    data = load_data(height=base.height, width=base.width, fast=args.fast or None)
    csvs = (args.sweep_csv, args.out)
    common = {"budget": args.budget, "lr": args.lr, "seeds": args.seeds}
    if not args.plot_only:
        torch.set_num_threads(args.threads)
        runs = load_runs(csvs, data=data.fingerprint, base_width=args.base_width)
        done = set(runs["_key"])
        # a run's shard is a hash of its key (not its place among the missing runs, which
        # shrink while shards run): two shards started at different times never share a run
        todo, seen = [], set()
        for study in args.study:
            for plan in planned(study, **common):
                k = key(plan)
                if k not in seen and k not in done and shard_of(k, n_shards) == shard:
                    todo.append(plan)
                seen.add(k)
        todo = todo[: args.max_runs]
        print(f"{len(done)} runs done, {len(todo)} to run in this shard", flush=True)
        for i, plan in enumerate(todo):
            row = sweep.train_row(
                replace(base, lr=plan["lr"]),
                data,
                P=plan["P"],
                K=plan["K"],
                loss=plan["loss"],
                seed=plan["seed"],
                steps=plan["steps"],
                loss_kwargs=plan["loss_args"],
            )
            row["loss_kwargs"] = plan["loss_kwargs"]
            sweep.append_row(args.out, row, FIELDS)
            print(
                f"[{i + 1}/{len(todo)}] {plan['study']} {plan['P']}x{plan['K']} {plan['loss']} "
                f"lr {plan['lr']:g} {plan['loss_kwargs'] or 'default'} steps {plan['steps']} "
                f"seed {plan['seed']}: mAP {row['mAP']} ({row['seconds']} s)",
                flush=True,
            )
    runs = load_runs(csvs, data=data.fingerprint, base_width=args.base_width)
    studies = study_rows(runs, **common)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    studies.to_csv(args.out.with_name(f"{args.out.stem}_studies.csv"), index=False)
    plot(studies, args.out)
    print(f"{len(studies)} study rows from {len(runs)} runs", flush=True)
    return 0


if __name__ == "__main__":
    from drsl.cli import main as drsl_main  # the one error policy: one line, exit 2 / 130

    sys.exit(drsl_main(command=main))
