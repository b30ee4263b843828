"""The decisive imbalance experiment: fair baselines, the ratio isolated, 1:1000 reached,
endpoints fixed in advance (``configs/decisive/plan.toml``, committed before any final run).

Phases, in order (each run is one shard: its rows are appended when it ends, so a stop loses
only the runs in flight):

1. **tune**: every loss at every learning rate of the plan's grid, at the tuning seed, in the
   tuning cells, scored on validation only. A loss whose best rate sits on an edge of its grid
   gets the next rate beyond that edge (the plan's ``lr_factor``, at most ``lr_extensions``
   times), before any final run;
2. the rate of a loss: best mean validation mAP over the tuning cells
   (``drsl.analysis.select_lr``);
3. **budget**: the best tuned loss at ``budget_check`` x the budget in the tuning cells
   (validation curves: has validation mAP flattened?);
4. **final**: every cell x loss x final seed (fresh seeds: a tuning run is never reused), scored
   on validation and once on test.

Rows go to ``experiments/results/decisive.csv`` (validation curves to ``decisive_curves.csv``,
the measured positives and negatives per anchor of each cell to ``decisive_cells.csv``). Runs are
claimed under a file lock: start one worker per core, or ``--workers 2``::

    nice -n 19 python experiments/decisive.py run --workers 2

and run the same command again after an interruption. ``status`` counts what is done,
``endpoints`` prints each endpoint's paired difference with its Holm-corrected interval.

Reference: the paper's imbalance claim; spec ``docs/drsl-loss-spec.md`` ("Why it suits
imbalance", "Beyond the batch", "Negatives-only references").
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from imbalance import _read, append_rows  # noqa: E402 - the sibling runner's CSV helpers

PLAN = ROOT / "configs" / "decisive" / "plan.toml"
RESULTS = HERE / "results"
WORK = ROOT / "runs" / "decisive"  # claims
KEY = [
    "phase",
    "cell",
    "P",
    "K",
    "memory_size",
    "memory_role",
    "train_ids",
    "loss",
    "with_ce",
    "lr",
    "seed",
    "images",
]
FIELDS = [*KEY, "steps", "split", "mAP", "R1", "mINP", "neg_per_pos", "status", "seconds", "data"]
CURVE_FIELDS = [*KEY, "step", "epoch", "mAP", "R1", "mINP"]
CELL_FIELDS = ["cell", "data", "train_ids", "P", "K", "memory_size", "memory_role",
               "pos_per_anchor", "neg_per_anchor", "neg_per_pos"]  # fmt: skip


def set_paths(plan: Path, results: Path, work: Path) -> None:
    """Point the runner at another plan, results folder and work folder (the tests do)."""
    global PLAN, RESULTS, WORK
    PLAN, RESULTS, WORK = Path(plan), Path(results), Path(work)


def rows_path() -> Path:
    return RESULTS / "decisive.csv"


def plan() -> dict:
    """The plan (``configs/decisive/plan.toml``)."""
    import tomllib

    return tomllib.loads(PLAN.read_text())


@dataclass(frozen=True)
class Run:
    """One training run of the plan."""

    phase: str
    cell: str
    P: int
    K: int
    memory_size: int
    memory_role: str
    train_ids: int
    loss: str
    with_ce: bool
    lr: float
    seed: int
    images: int

    def key(self) -> tuple[str, ...]:
        return tuple(str(getattr(self, k)) for k in KEY)

    def fields(self) -> dict:
        return {k: getattr(self, k) for k in KEY}

    @property
    def name(self) -> str:
        return hashlib.sha256("|".join(self.key()).encode()).hexdigest()[:16]

    @property
    def steps(self) -> int:
        return self.images // (self.P * self.K)

    def config(self):
        """The run's ``TrainConfig``: the plan's ``[train]`` table + this run."""
        from drsl.train.config import TrainConfig

        p = plan()
        warm = min(50, int(self.steps * p["warmup_fraction"]))
        return replace(
            TrainConfig(**p.get("train", {})),
            loss=("ce+" if self.with_ce else "") + self.loss,
            P=self.P,
            K=self.K,
            lr=self.lr,
            seed=self.seed,
            max_steps=self.steps,
            warmup_steps=warm,
            memory_size=self.memory_size,
            memory_warmup=warm if self.memory_size else 0,
            memory_role=self.memory_role,
        )


def cell_run(p: dict, phase: str, cell: str, loss: str, ce: bool, lr: float, seed: int,
             images: int) -> Run:  # fmt: skip
    c = p["cells"][cell]
    ids = p["data"][c["data"]]["train_ids"]
    return Run(phase, cell, c["P"], c["K"], c["memory_size"], c.get("memory_role", "all"), ids,
               loss, ce, float(lr), seed, images)  # fmt: skip


def done() -> set[tuple[str, ...]]:
    """Keys of the runs whose rows are in the results file."""
    return {tuple(r[k] for k in KEY) for r in _read(rows_path())}


def _tune_rows():
    import pandas as pd

    rows = pd.read_csv(rows_path()) if rows_path().exists() else pd.DataFrame(columns=FIELDS)
    return rows[rows["phase"] == "tune"]


def lr_grid(p: dict, loss: str, ce: bool, tune=None) -> tuple[list[float], bool]:
    """The learning rates of ``loss``'s tuning grid and whether its tuning is complete.

    The plan's grid, extended by ``lr_factor`` beyond an edge whenever the best rate (over the
    complete grid so far) sits on that edge, at most ``lr_extensions`` times.
    """
    from drsl.analysis import select_lr

    tune = _tune_rows() if tune is None else tune
    lrs = sorted(float(x) for x in p["lrs"])
    have = done()
    for _ in range(int(p.get("lr_extensions", 0)) + 1):
        runs = tune_runs_for(p, loss, ce, lrs)
        if any(r.key() not in have for r in runs):
            return lrs, False
        mine = tune[(tune["loss"] == loss) & (tune["with_ce"].astype(str) == str(ce))]
        mine = mine[mine["lr"].astype(float).isin(lrs)]
        best = float(select_lr(mine)["lr"].iloc[0])
        if best not in (lrs[0], lrs[-1]) or len(lrs) - len(p["lrs"]) >= p.get("lr_extensions", 0):
            return lrs, True
        factor = float(p["lr_factor"])
        lrs = sorted([*lrs, lrs[-1] * factor if best == lrs[-1] else lrs[0] / factor])
    return lrs, True


def tune_runs_for(p: dict, loss: str, ce: bool, lrs) -> list[Run]:
    return [
        cell_run(p, "tune", cell, loss, ce, lr, int(p["tune_seed"]), int(p["budget"]))
        for cell in p["tune_cells"]
        for lr in lrs
    ]


def arms(p: dict) -> list[bool]:
    return [bool(x) for x in p["with_ce"]]


def chosen(p: dict):
    """``select_lr`` of each (loss, with_ce) over its final grid once all tuning is in, else
    None; also the open tuning runs."""
    import pandas as pd

    from drsl.analysis import select_lr

    tune = _tune_rows()
    picks, open_runs = [], []
    have = done()
    for ce in arms(p):
        for loss in p["losses"]:
            lrs, complete = lr_grid(p, loss, ce, tune)
            open_runs += [r for r in tune_runs_for(p, loss, ce, lrs) if r.key() not in have]
            if complete:
                mine = tune[(tune["loss"] == loss) & (tune["with_ce"].astype(str) == str(ce))]
                picks.append(select_lr(mine[mine["lr"].astype(float).isin(lrs)]))
    if open_runs:
        return None, open_runs
    best = pd.concat(picks, ignore_index=True)
    best["with_ce"] = best["with_ce"].astype(str) == "True"
    return best, []


def later_runs(p: dict, best_lrs) -> list[Run]:
    """The budget check, then the final runs seed by seed (a stopped plan has whole seeds)."""
    lrs = {(r.loss, bool(r.with_ce)): float(r.lr) for r in best_lrs.itertuples()}
    top = best_lrs.sort_values("val_mAP").iloc[-1]
    images = int(p["budget"])
    check = [
        cell_run(
            p,
            "budget",
            c,
            top.loss,
            bool(top.with_ce),
            float(top.lr),
            int(p["tune_seed"]),
            images * int(p["budget_check"]),
        )  # fmt: skip
        for c in p["tune_cells"]
    ]
    final = [
        cell_run(p, "final", c, loss, ce, lrs[(loss, ce)], int(seed), images)
        for seed in p["seeds"]
        for c in p["cells"]
        for loss in p["losses"]
        for ce in arms(p)
    ]
    return check + final


# -------------------------------------------------------------------------------- data, runs
_DATA: dict = {}


def load(name: str) -> tuple:
    """``(fit, test)`` of the plan's data set ``name`` (generated if missing), cached."""
    if name not in _DATA:
        from drsl.data.images import load_data
        from drsl.data.synth import ensure_dataset
        from drsl.data.validation import split_validation

        d = dict(plan()["data"][name])
        root = d.pop("root", None)
        d.pop("train_ids", None)
        val_ids = d.pop("val_ids")
        fast = d.pop("fast", None)  # None: DRSL_FAST decides (the tests' tiny plans)
        folder = ensure_dataset(ROOT / root if root else None, fast=fast, progress=False, **d)
        _DATA[name] = split_validation(load_data(folder), val_ids, seed=0)
        want = plan()["data"][name]["train_ids"]
        if _DATA[name][0].num_classes != want:
            raise ValueError(
                f"data {name!r} has {_DATA[name][0].num_classes} training identities after the "
                f"validation split, the plan says train_ids = {want}: fix the plan"
            )
    return _DATA[name]


def write_cells() -> dict[str, float]:
    """The measured positives and negatives per anchor of every cell (once); cell -> neg/pos."""
    path = RESULTS / "decisive_cells.csv"
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / ".cells.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            from drsl.data.sampler import memory_pos_neg

            rows = []
            for name, c in plan()["cells"].items():
                fit, _ = load(c["data"])
                pos, neg = memory_pos_neg(fit.train.pids.numpy(), c["P"], c["K"],
                                          c["memory_size"], seed=0,
                                          memory_role=c.get("memory_role", "all"))  # fmt: skip
                rows.append({"cell": name, "data": c["data"], "train_ids": fit.num_classes,
                             "P": c["P"], "K": c["K"], "memory_size": c["memory_size"],
                             "memory_role": c.get("memory_role", "all"),
                             "pos_per_anchor": f"{pos:.4f}", "neg_per_anchor": f"{neg:.2f}",
                             "neg_per_pos": f"{neg / pos:.2f}"})  # fmt: skip
            append_rows(path, rows, CELL_FIELDS)
    return {r["cell"]: float(r["neg_per_pos"]) for r in _read(path)}


def _row(run: Run, split: str, metrics: dict, seconds: float, data: str, ratio: float,
         status: str = "ok") -> dict:  # fmt: skip
    row = run.fields()
    row.update(steps=run.steps, split=split, status=status, seconds=f"{seconds:.1f}", data=data,
               neg_per_pos=f"{ratio:.2f}")  # fmt: skip
    row.update({m: f"{metrics[m]:.6f}" if m in metrics else "nan" for m in ("mAP", "R1", "mINP")})
    return row


def execute(run: Run, ratios: dict[str, float]) -> None:
    """Train one run and append its rows and validation curve."""
    from drsl.train import DivergenceError, train
    from drsl.train.evaluation import evaluate

    fit, test = load(plan()["cells"][run.cell]["data"])
    ratio = ratios[run.cell]
    t0 = time.perf_counter()
    try:
        res = train(run.config(), fit, progress=False)
    except DivergenceError as err:
        print(f"  diverged: {err}", file=sys.stderr)
        append_rows(rows_path(), [_row(run, "val", {}, time.perf_counter() - t0,
                                       fit.fingerprint, ratio, "diverged")], FIELDS)  # fmt: skip
        return
    curve = [{**run.fields(), "step": e["step"], "epoch": e["epoch"],
              **{m: f"{e[m]:.6f}" for m in ("mAP", "R1", "mINP")}}
             for e in res.history["eval"]]  # fmt: skip
    rows = [_row(run, "val", res.metrics, res.seconds, fit.fingerprint, ratio)]
    if run.phase == "final":  # the one look at the test split
        rows.append(_row(run, "test", evaluate(res.model, test), res.seconds, fit.fingerprint,
                         ratio))  # fmt: skip
    if curve:
        append_rows(RESULTS / "decisive_curves.csv", curve, CURVE_FIELDS)
    append_rows(rows_path(), rows, FIELDS)
    print(
        f"  {run.phase} {run.cell} {run.loss} ce={run.with_ce} lr={run.lr:g} seed={run.seed}: "
        f"val mAP {res.metrics['mAP']:.4f} ({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )


def _try(run: Run, ratios) -> bool:
    """Run ``run`` if no other worker holds it and it is not done; True if it was taken."""
    claims = WORK / "claims"
    claims.mkdir(parents=True, exist_ok=True)
    with open(claims / f"{run.name}.lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if run.key() not in done():
            execute(run, ratios)
        return True


def open_runs(p: dict) -> tuple[list[Run], bool]:
    """The runs still to do in the current phase, and whether tuning is complete."""
    best, tuning = chosen(p)
    if best is None:
        return tuning, False
    have = done()
    return [r for r in later_runs(p, best) if r.key() not in have], True


def work(max_runs: int | None, phases: set[str]) -> int:
    from drsl.config import torch_threads

    with torch_threads(int(plan().get("run", {}).get("threads", 1))):
        ratios = write_cells()
        taken = 0
        while max_runs is None or taken < max_runs:
            todo, tuned = open_runs(plan())
            todo = [r for r in todo if r.phase in phases]
            if not todo and not tuned and "tune" not in phases:
                print("decisive: tuning is not complete; run the tune phase first", flush=True)
                return 1
            if not todo and tuned:
                print("decisive: every run of the asked phases is done", flush=True)
                return 0
            ran = False
            for run in todo:
                if _try(run, ratios):
                    taken, ran = taken + 1, True
                    break
            if not ran:  # every open run is held by another worker: wait for the next phase
                time.sleep(15)
    return 0


def status() -> int:
    p = plan()
    best, tuning = chosen(p)
    have = done()
    tune_keys = {k for k in have if k[0] == "tune"}
    print(f"tune: {len(tune_keys)} runs done, {len(tuning)} open")
    if best is None:
        return 0
    for r in best.sort_values(["with_ce", "loss"]).itertuples():
        print(f"  lr {('ce+' if r.with_ce else '') + r.loss}: {r.lr:g} (val mAP {r.val_mAP:.4f})")
    later = later_runs(p, best)
    for phase in ("budget", "final"):
        runs = [r for r in later if r.phase == phase]
        print(f"{phase}: {sum(r.key() in have for r in runs)} / {len(runs)} runs")
    return 0


def endpoints() -> int:
    import pandas as pd

    from drsl.endpoints import endpoint_markdown, endpoint_table

    table = endpoint_table(pd.read_csv(rows_path()), plan())
    print(endpoint_markdown(table))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("run", "status", "endpoints"))
    ap.add_argument("--max-runs", type=int, default=None, help="stop after this many runs")
    ap.add_argument("--workers", type=int, default=1, help="worker processes (one per core)")
    ap.add_argument(
        "--phases",
        default="tune,budget,final",
        help="comma-separated phases to run (e.g. tune: stop before the budget check)",
    )
    ap.add_argument("--plan", type=Path, default=PLAN, help="the plan (TOML)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of the CSVs")
    ap.add_argument("--work", type=Path, default=WORK, help="folder of the run claims")
    args = ap.parse_args(argv)
    set_paths(args.plan, args.results, args.work)
    if args.command == "status":
        return status()
    if args.command == "endpoints":
        return endpoints()
    phases = set(args.phases.split(","))
    if args.workers > 1:  # the others as child processes: each claims runs under the lock
        child = [
            sys.executable,
            __file__,
            "run",
            "--phases",
            args.phases,
            "--plan",
            str(args.plan),
            "--results",
            str(args.results),
            "--work",
            str(args.work),
        ]
        if args.max_runs is not None:
            child += ["--max-runs", str(args.max_runs)]
        procs = [subprocess.Popen(child) for _ in range(args.workers - 1)]
        code = work(args.max_runs, phases)
        return max([code, *(p.wait() for p in procs)])
    return work(args.max_runs, phases)


if __name__ == "__main__":
    sys.exit(main())
