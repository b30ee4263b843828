"""The decisive imbalance experiment: does DRSL keep its retrieval quality when negatives
outnumber positives by far, while pair-summing losses degrade?

Protocol (every setting chosen on validation, never on test):

1. the training identities are split: 100 held out as a Market-protocol validation split
   (``drsl.data.validation.split_validation``), the other 300 train every run;
2. **tune**: each loss variant (``configs/imbalance/grid.toml``: triplet, contrastive,
   Smooth-AP, DRSL rank only, DRSL; each with CE + BNNeck and alone) at each lr of the grid,
   seed 0, in the balanced cell 4 x 4 and the most extreme one, 16 x 4 with a memory of
   8,192; scored on validation only;
3. the lr of a variant: best mean validation mAP over those cells (``drsl.analysis.select_lr``);
4. **budget**: the best variant at twice the image budget in the tuning cells (validation), to
   show whether validation mAP had flattened;
5. **final**: every cell x variant x seed at its lr, scored on validation and once on test;
6. **long** (optional, grid.toml's ``[long]`` table): some final runs again at a multiple of
   the budget, scored the same way (does the reading survive a longer budget?).

Every run sees the same number of training images (``budget``), with an lr warm-up of a
tenth of its steps (at most 50); the memory (``--memory-size``) starts after the same warm-up.
Rows go to ``experiments/results/imbalance.csv`` as runs finish (validation curves, one row
per epoch, to ``imbalance_curves.csv``; the measured positives and negatives per anchor of
each cell to ``imbalance_cells.csv``). Runs are claimed under a file lock, so any number of
workers can share the grid and a stopped one is taken over by the next: start one per core::

    python experiments/imbalance.py run &  python experiments/imbalance.py run &

and run the same command again after an interruption (only the runs in flight are lost).
``python experiments/imbalance.py status`` counts what is done, ``plot`` redraws the figures,
``table`` prints its result tables (superseded by ``experiments/decisive.py``: README and
notebook 05, section 6, say why).

Reference: the paper's imbalance claim (abstract); spec ``drsl-loss.md``, "Why it suits
imbalance" and "Beyond the batch" (the memory).
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import hashlib
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
CONFIGS = ROOT / "configs" / "imbalance"
WORK = ROOT / "runs" / "imbalance"  # claims and the saved models of the tuning runs
ROWS = RESULTS / "imbalance.csv"
CURVES = RESULTS / "imbalance_curves.csv"
CELLS = RESULTS / "imbalance_cells.csv"
KEY = ["phase", "P", "K", "memory_size", "loss", "with_ce", "lr", "seed", "images"]
FIELDS = [*KEY, "steps", "split", "mAP", "R1", "mINP", "status", "seconds", "data"]
CURVE_FIELDS = [*KEY, "step", "epoch", "mAP", "R1", "mINP"]
CELL_FIELDS = [
    "P",
    "K",
    "memory_size",
    "nominal_ratio",
    "pos_per_anchor",
    "neg_per_anchor",
    "ratio",
]


def set_paths(configs: Path, results: Path, work: Path) -> None:
    """Point the runner at another grid, results folder and work folder (the tests do)."""
    global CONFIGS, RESULTS, WORK, ROWS, CURVES, CELLS
    CONFIGS, RESULTS, WORK = Path(configs), Path(results), Path(work)
    ROWS = RESULTS / "imbalance.csv"
    CURVES = RESULTS / "imbalance_curves.csv"
    CELLS = RESULTS / "imbalance_cells.csv"


def plot_all() -> int:
    """Redraw the figures of the results folder (``drsl.plotting.imbalance``)."""
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from drsl.plotting.imbalance import plot_imbalance, plot_val_curves

    rows = pd.read_csv(ROWS)
    for metric in ("mAP", "R1", "mINP"):
        fig = plot_imbalance(rows, pd.read_csv(CELLS), metric=metric)
        fig.savefig(RESULTS / f"imbalance_{metric}.png", dpi=120)
    from drsl.analysis import select_lr

    chosen = select_lr(rows[rows["phase"] == "tune"])
    fig = plot_val_curves(pd.read_csv(CURVES), chosen)
    fig.savefig(RESULTS / "imbalance_curves.png", dpi=120)
    print(f"wrote {RESULTS}/imbalance_{{mAP,R1,mINP,curves}}.png")
    return 0


def tables(metric: str = "mAP", phase: str = "final") -> str:
    """The Markdown tables of this experiment: the ``final`` runs with CE, then
    alone; for ``phase="long"``, the runs at a multiple of the budget (alone)."""
    import pandas as pd

    from drsl.analysis import markdown_table

    rows, cells = pd.read_csv(ROWS), pd.read_csv(CELLS)
    rows = rows[rows["phase"] == phase].assign(phase="final")
    variants = sorted(set(rows["with_ce"].astype(bool)), reverse=True)
    return "\n\n".join(
        markdown_table(rows, cells, with_ce=ce, losses=grid()["losses"], metric=metric)
        for ce in variants
    )


def grid() -> dict:
    """``configs/imbalance/grid.toml`` (a missing or invalid file: ValueError naming it)."""
    import tomllib

    path = CONFIGS / "grid.toml"
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"grid file not found: {path} (pass --configs FOLDER)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from None


@dataclass(frozen=True)
class Run:
    """One training run of the grid."""

    phase: str
    P: int
    K: int
    memory_size: int
    loss: str
    with_ce: bool
    lr: float
    seed: int
    images: int

    def key(self) -> tuple[str, ...]:
        return tuple(str(getattr(self, k)) for k in KEY)

    def fields(self) -> dict:
        """The key columns of this run's rows."""
        return {k: getattr(self, k) for k in KEY}

    @property
    def name(self) -> str:
        return hashlib.sha256("|".join(self.key()).encode()).hexdigest()[:16]

    @property
    def steps(self) -> int:
        return self.images // (self.P * self.K)

    def config(self):
        """The run's ``TrainConfig``: base.toml + this run."""
        from drsl.train.config import TrainConfig, read_config

        values = read_config(CONFIGS / "base.toml")["train"]
        warm = min(50, int(self.steps * grid()["warmup_fraction"]))
        return replace(
            TrainConfig(**values),
            loss=("ce+" if self.with_ce else "") + self.loss,
            P=self.P,
            K=self.K,
            lr=self.lr,
            seed=self.seed,
            max_steps=self.steps,
            warmup_steps=warm,
            memory_size=self.memory_size,
            memory_warmup=warm if self.memory_size else 0,
        )


def _read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def append_rows(path: Path, rows: list[dict], fields: list[str]) -> None:
    """Append ``rows`` to ``path`` in one locked write (``drsl.fsutil.append_csv_rows``)."""
    from drsl.fsutil import append_csv_rows

    append_csv_rows(path, rows, fields, lineterminator="\n")


def done() -> set[tuple[str, ...]]:
    """Keys of the runs whose rows are in the results file."""
    return {tuple(r[k] for k in KEY) for r in _read(ROWS)}


def tune_runs(g: dict) -> list[Run]:
    return [
        Run("tune", P, K, M, loss, ce, float(lr), 0, int(g["budget"]))
        for P, K, M in g["tune_cells"]
        for loss in g["losses"]
        for ce in g["with_ce"]
        for lr in g["lrs"]
    ]


def chosen() -> pd.DataFrame | None:
    """``drsl.analysis.select_lr`` of the tuning rows once every tuning run is in, else None."""
    import pandas as pd

    from drsl.analysis import select_lr

    have = done()
    if any(r.key() not in have for r in tune_runs(grid())):
        return None
    rows = pd.read_csv(ROWS)
    return select_lr(rows[rows["phase"] == "tune"])


def later_runs(g: dict, best_lrs: pd.DataFrame) -> list[Run]:
    """The budget check, then the final runs seed by seed (a stopped grid has whole seeds),
    then the optional long runs; ``best_lrs``: :func:`chosen`."""
    lrs = {(r.loss, bool(r.with_ce)): float(r.lr) for r in best_lrs.itertuples()}
    best = best_lrs.sort_values("val_mAP").iloc[-1]
    images = int(g["budget"])
    check = [
        Run(
            "budget",
            P,
            K,
            M,
            best.loss,
            bool(best.with_ce),
            float(best.lr),
            0,
            images * int(g["budget_check"]),
        )
        for P, K, M in g["tune_cells"]
    ]
    final = [
        Run("final", P, K, M, loss, ce, lrs[(loss, ce)], seed, images)
        for seed in g["seeds"]
        for P, K, M in g["cells"]
        for loss in g["losses"]
        for ce in g["with_ce"]
    ]
    longer = g.get("long", {})  # optional: final runs again at a multiple of the budget
    long_runs = [
        Run("long", P, K, M, loss, ce, lrs[(loss, ce)], seed, images * int(longer["multiple"]))
        for seed in longer.get("seeds", [])
        for P, K, M in longer["cells"]
        for loss in longer.get("losses", g["losses"])
        for ce in longer["with_ce"]
    ]
    return check + final + long_runs


def _metrics_row(run: Run, split: str, metrics: dict, seconds: float, data: str, status="ok"):
    row = run.fields()
    row.update(steps=run.steps, split=split, status=status, seconds=f"{seconds:.1f}", data=data)
    row.update({m: f"{metrics[m]:.6f}" if m in metrics else "nan" for m in ("mAP", "R1", "mINP")})
    return row


def _tuned_model(run: Run, fit):
    """The saved model of the tuning run that this final run repeats, if any."""
    import torch

    from drsl.train.factory import build_model

    twin = replace(run, phase="tune")
    path = WORK / "models" / f"{twin.name}.pt"
    if run.phase != "final" or not path.exists() or twin.key() not in done():
        return None, None
    net = build_model(run.config(), fit.num_classes)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(saved["state_dict"])
    return net.eval(), saved


def execute(run: Run, fit, test) -> None:
    """Train (or reuse) one run and append its rows and curve."""
    import torch

    from drsl.train import DivergenceError, train
    from drsl.train.evaluation import evaluate

    net, saved = _tuned_model(run, fit)
    t0 = time.perf_counter()
    rows, curve = [], []
    if net is None:
        try:
            res = train(run.config(), fit, progress=False)
        except DivergenceError as err:
            print(f"  diverged: {err}", file=sys.stderr)
            append_rows(
                ROWS, [_metrics_row(run, "val", {}, 0.0, fit.fingerprint, "diverged")], FIELDS
            )
            return
        net, val = res.model, res.metrics
        for e in res.history["eval"]:
            curve.append(
                {
                    **run.fields(),
                    "step": e["step"],
                    "epoch": e["epoch"],
                    **{m: f"{e[m]:.6f}" for m in ("mAP", "R1", "mINP")},
                }
            )
        if run.phase == "tune":
            (WORK / "models").mkdir(parents=True, exist_ok=True)
            tmp = WORK / "models" / f".{run.name}.tmp"
            torch.save({"state_dict": net.state_dict(), "val": val, "seconds": res.seconds}, tmp)
            tmp.replace(WORK / "models" / f"{run.name}.pt")
        seconds = res.seconds
    else:  # the tuning run at seed 0 with the chosen lr is the final run of that cell
        val, seconds = saved["val"], saved["seconds"]
    rows.append(_metrics_row(run, "val", val, seconds, fit.fingerprint))
    if run.phase in ("final", "long"):  # the one look at the test split
        rows.append(_metrics_row(run, "test", evaluate(net, test), seconds, fit.fingerprint))
    curve = _new_curve_rows(curve)
    if curve:
        append_rows(CURVES, curve, CURVE_FIELDS)
    append_rows(ROWS, rows, FIELDS)
    print(
        f"  {run.phase} {run.P}x{run.K}+{run.memory_size} {run.loss} ce={run.with_ce} "
        f"lr={run.lr:g} seed={run.seed}: val mAP {val['mAP']:.4f} "
        f"({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )


def _new_curve_rows(curve: list[dict]) -> list[dict]:
    """The rows of ``curve`` not yet in the curves file: a worker killed between a run's curve
    and its result rows wrote the curve already, and the run is done again."""
    have = {(*(r[k] for k in KEY), r["step"]) for r in _read(CURVES)}
    return [c for c in curve if (*(str(c[k]) for k in KEY), str(c["step"])) not in have]


def _try(run: Run, fit, test) -> bool:
    """Run ``run`` if no other worker holds it and it is not done; True if it was taken."""
    claims = WORK / "claims"
    claims.mkdir(parents=True, exist_ok=True)
    with open(claims / f"{run.name}.lock", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if run.key() in done():
            return True
        execute(run, fit, test)
        return True


def write_cells(fit) -> None:
    """The measured positives / negatives per anchor of every cell (once)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / ".cells.lock", "a") as lock:  # one worker writes them
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not CELLS.exists():
            _measure_cells(fit)


def _measure_cells(fit) -> None:
    from drsl.data.sampler import memory_pos_neg, pk_pos_neg_ratio

    rows = []
    for P, K, M in grid()["cells"]:
        pos, neg = memory_pos_neg(fit.train.pids, P, K, M, seed=0)
        nominal = (K - 1) / ((P - 1) * K + M)  # as if the memory held only negatives
        rows.append(
            {
                "P": P,
                "K": K,
                "memory_size": M,
                "nominal_ratio": f"{nominal:.6g}",
                "pos_per_anchor": f"{pos:.3f}",
                "neg_per_anchor": f"{neg:.3f}",
                "ratio": f"{pos / neg:.6g}",
            }
        )
        assert M or abs(pos / neg - pk_pos_neg_ratio(P, K)) < 1e-9
    append_rows(CELLS, rows, CELL_FIELDS)


def load() -> tuple:
    """``(fit, test)``: the synthetic set split into train + validation, and test."""
    from drsl.data.images import load_data
    from drsl.data.validation import split_validation

    return split_validation(load_data(), grid()["val_ids"], seed=0)


def run_worker(max_runs: int | None) -> int:
    from drsl.config import torch_threads

    with torch_threads(1):  # one worker per core
        return _work(max_runs)


def _work(max_runs: int | None) -> int:
    fit, test = load()
    write_cells(fit)
    taken = 0
    while max_runs is None or taken < max_runs:
        best_lrs = chosen()
        todo = tune_runs(grid()) if best_lrs is None else later_runs(grid(), best_lrs)
        have = done()
        open_runs = [r for r in todo if r.key() not in have]
        if not open_runs and best_lrs is not None:
            print("imbalance: every run is done", flush=True)
            return 0
        ran = False
        for run in open_runs:
            if _try(run, fit, test):
                taken, ran = taken + 1, True
                break
        if not ran:  # all open runs are held by other workers: wait for the next phase
            time.sleep(15)
    return 0


def status() -> int:
    g = grid()
    have = done()
    tune = tune_runs(g)
    print(f"tune: {sum(r.key() in have for r in tune)} / {len(tune)} runs")
    best_lrs = chosen()
    if best_lrs is None:
        return 0
    for r in best_lrs.sort_values(["with_ce", "loss"]).itertuples():
        print(f"  lr {('ce+' if r.with_ce else '') + r.loss}: {r.lr:g}")
    later = later_runs(g, best_lrs)
    for phase in ("budget", "final", "long"):
        runs = [r for r in later if r.phase == phase]
        print(f"{phase}: {sum(r.key() in have for r in runs)} / {len(runs)} runs")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("run", "status", "plot", "table"))
    ap.add_argument(
        "--max-runs", type=_positive, default=None, help="stop after this many runs (>= 1)"
    )
    ap.add_argument("--phase", default="final", choices=("final", "long"), help="table: which")
    ap.add_argument("--configs", type=Path, default=CONFIGS, help="folder of base/grid.toml")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of the CSVs")
    ap.add_argument("--work", type=Path, default=WORK, help="claims and saved tuning models")
    args = ap.parse_args(argv)
    set_paths(args.configs, args.results, args.work)
    if args.command == "run":
        return run_worker(args.max_runs)
    if args.command == "status":
        return status()
    if args.command == "table":
        print(tables(phase=args.phase))
        return 0
    return plot_all()


if __name__ == "__main__":
    from drsl.cli import main as drsl_main  # the one error policy: one line, exit 2 / 130

    sys.exit(drsl_main(command=main))
