"""Forward+backward time and peak memory of DRSL and the baselines on CPU (a benchmark, not a test).

For each batch size ``B`` (``K = 4`` images per identity, ``D = 512``), every loss of
``drsl.losses.LOSSES`` and a *plain* batch-hard triplet loss (the usual open-source
formulation, written here: ``addmm`` distances, masked max/min, hinge) run forward + backward
on the same random embeddings, interleaved round by round in one process, so that a change of
machine load hits all of them alike. Reported per loss and ``B``:

- ``ms``: the median time of one forward + backward;
- ``ratio``: the median over rounds of (this loss's time / the plain triplet's time in the same
  round), the number the performance targets refer to;
- ``min_ms``, ``min_ratio``: the fastest round and the ratio of the minima (an estimate free of
  interruptions by other processes), and ``cpu_ms``, ``cpu_ratio``: the same medians in process
  CPU time (all threads; time spent waiting for a core is not counted);
- ``peak_mib``: the peak resident memory added by one forward + backward: in a fresh
  subprocess per (loss, B), after the inputs exist and the kernels are warmed up on a small
  batch, the kernel's RSS high-water mark ``VmHWM`` is reset (``/proc/self/clear_refs``) and
  read again after the step; large blocks are ``mmap``-ed (``MALLOC_MMAP_THRESHOLD_=65536``)
  so that freed memory leaves the RSS at once (Linux only).

A second table adds reference items (spec "Beyond the batch"): at ``B = 256`` the batch
retrieves among ``R = 0, 2048, 8192`` references as well, laid out like a cross-batch memory of
earlier PK batches (64 identities x 4 drawn from a pool of 751, Market-1501's training
identities), for DRSL (identity and smooth gradients), the package's batch-hard triplet and
the plain triplet (extended to references the obvious way); ratios are to the package's
triplet at the same ``R``. ``--check-cost`` measures the finite-input check of the losses
against one DRSL forward + backward (the figure quoted in ``drsl/losses/_common.py``).

Usage::

    python benchmarks/bench_losses.py [--threads 2] [--batch-sizes 64,256,1024]
        [--refs 0,2048,8192] [--out benchmarks/results/losses] [--quick] [--check-cost]

Writes ``<out>.csv``, ``<out>_refs.csv`` and ``<out>.md`` (with the machine, thread count and
load averages). Reference: issue 3's performance targets (DRSL <= 1.5x the plain triplet at
B=256, <= 2x at B=1024, extra memory < 100 MiB at B=1024) and issue 13's (DRSL <= 2x the
triplet at every R, extra memory < 1 GiB at R = 8192).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from drsl import losses as L

D, K = 512, 4
NAMES = ["plain_triplet", *L.LOSSES]
REF_NAMES = ["triplet", "plain_triplet", "drsl", "drsl_smooth"]
POOL = 751  # identities to draw from (Market-1501's training set)


def plain_triplet(x, y, margin: float = 0.3, *, ref_embeddings=None, ref_labels=None):
    """The common batch-hard triplet code (reid-strong-baseline style), any label layout;
    with references, the anchors' distances to ``[x; refs]``."""
    n = x.shape[0]
    z = x if ref_embeddings is None else torch.cat([x, ref_embeddings])
    items = y if ref_labels is None else torch.cat([y, ref_labels])
    xx = x.pow(2).sum(1, keepdim=True)
    zz = z.pow(2).sum(1, keepdim=True).t()
    dist = (xx + zz).addmm(x, z.t(), beta=1, alpha=-2).clamp(min=1e-12).sqrt()
    same = y[:, None] == items[None, :]
    pos = same.clone()
    pos[:, :n].fill_diagonal_(False)
    d_ap = torch.where(pos, dist, -1e9).max(1).values
    d_an = torch.where(~same, dist, 1e9).min(1).values
    return torch.relu(d_ap - d_an + margin).mean()


def _loss(name: str):
    return plain_triplet if name == "plain_triplet" else L.get_loss(name)


def _batch(b: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, D, generator=g).requires_grad_(True)
    y = torch.arange(b // K).repeat_interleave(K)
    return x, y


def _pk_labels(b: int, g: torch.Generator) -> torch.Tensor:
    return torch.randperm(POOL, generator=g)[: b // K].repeat_interleave(K)


def _ref_batch(b: int, r: int, seed: int = 0):
    """A PK batch of identities from the pool and ``r`` references: earlier PK batches."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, D, generator=g).requires_grad_(True)
    y = _pk_labels(b, g)
    refs = {}
    if r:
        z = torch.randn(r, D, generator=g)
        zy = torch.cat([_pk_labels(b, g) for _ in range(-(-r // b))])[:r]
        refs = {"ref_embeddings": z, "ref_labels": zy}
    return x, y, refs


def _step(fn, x, y, refs=None) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one forward + backward."""
    x.grad = None
    t0, c0 = time.perf_counter(), time.process_time()
    fn(x, y, **(refs or {})).backward()
    return time.perf_counter() - t0, time.process_time() - c0


def _summary(wall, cpu, names, base):
    def ratio(v, ref):
        return statistics.median(a / max(p, 1e-9) for a, p in zip(v, ref, strict=True))

    return {
        n: {
            "ms": statistics.median(wall[n]) * 1e3,
            "ratio": ratio(wall[n], wall[base]),
            "min_ms": min(wall[n]) * 1e3,
            "min_ratio": min(wall[n]) / min(wall[base]),
            "cpu_ms": statistics.median(cpu[n]) * 1e3,
            "cpu_ratio": ratio(cpu[n], cpu[base]),
        }
        for n in names
    }


def time_refs(b: int, r: int, rounds: int) -> dict[str, dict[str, float]]:
    """As :func:`time_losses` with ``r`` references, ratios to the package's triplet."""
    x, y, refs = _ref_batch(b, r)
    fns = {n: _loss(n) for n in REF_NAMES}
    for fn in fns.values():  # warm-up
        _step(fn, x, y, refs)
    wall = {n: [] for n in REF_NAMES}
    cpu = {n: [] for n in REF_NAMES}
    for _ in range(rounds):
        for n, fn in fns.items():
            w, c = _step(fn, x, y, refs)
            wall[n].append(w)
            cpu[n].append(c)
    return _summary(wall, cpu, REF_NAMES, "triplet")


def check_cost(b: int = 256, rounds: int = 200) -> dict[str, float]:
    """Median time of the finite-input check on DRSL's distance matrix vs one DRSL step."""
    from drsl.distances import pairwise_euclidean
    from drsl.losses._common import check_finite

    x, y = _batch(b)
    d = pairwise_euclidean(x.detach())
    fn = L.get_loss("drsl")
    check, loss = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        check_finite(d, embeddings=x)
        check.append(time.perf_counter() - t0)
        loss.append(_step(fn, x, y)[0])
    c, s = statistics.median(check), statistics.median(loss)
    return {"check_us": c * 1e6, "loss_ms": s * 1e3, "ratio": c / s}


def time_losses(b: int, rounds: int) -> dict[str, dict[str, float]]:
    """Per loss: median and min wall ms, and median per-round ratios (wall, CPU) to the plain
    triplet, from rounds that run every loss once, interleaved."""
    x, y = _batch(b)
    fns = {n: _loss(n) for n in NAMES}
    for fn in fns.values():  # warm-up
        _step(fn, x, y)
    wall = {n: [] for n in NAMES}
    cpu = {n: [] for n in NAMES}
    for _ in range(rounds):
        for n, fn in fns.items():
            w, c = _step(fn, x, y)
            wall[n].append(w)
            cpu[n].append(c)
    return _summary(wall, cpu, NAMES, "plain_triplet")


def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0  # kB
    raise RuntimeError(f"{key} not in /proc/self/status (Linux only)")


def peak_child(name: str, b: int, threads: int, r: int = -1) -> float:
    """In a fresh process: the peak-RSS growth (MiB) of one forward + backward.

    The kernel's high-water mark ``VmHWM`` is reset to the current RSS just before the step
    (``/proc/self/clear_refs``), after a warm-up on a small batch, ``gc`` and ``malloc_trim``;
    the parent sets ``MALLOC_MMAP_THRESHOLD_`` so that freed tensors leave the RSS at once.
    """
    import ctypes
    import gc

    torch.set_num_threads(threads)
    fn = _loss(name)
    xs, ys, rs = _ref_batch(16, 16 if r > 0 else 0, seed=1)
    _step(fn, xs, ys, rs)  # load kernels, build caches
    if r < 0:  # the batch-size table
        x, y = _batch(b)
        refs = {}
    else:
        x, y, refs = _ref_batch(b, r)
    x.grad = torch.zeros_like(x)  # the gradient buffer belongs to the inputs
    del xs, ys, rs
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_mib("VmRSS")
    _step(fn, x, y, refs)
    return _status_mib("VmHWM") - before


def measure_peak(name: str, b: int, threads: int, r: int = -1) -> float:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    cmd = [sys.executable, __file__, "--peak-child", name, str(b), str(r)]
    out = subprocess.run(
        [*cmd, "--threads", str(threads)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return float(out.stdout.strip().splitlines()[-1])


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _print_row(label: str, n: str, r: dict, peak: float) -> None:
    print(
        f"{label} {n:14s} {r['ms']:9.2f} ms x{r['ratio']:5.2f} | min {r['min_ms']:8.2f}"
        f" x{r['min_ratio']:5.2f} | cpu {r['cpu_ms']:8.2f} x{r['cpu_ratio']:5.2f}"
        f" | peak {peak:6.1f} MiB",
        flush=True,
    )


def _batch_rows(sizes, args) -> list[dict]:
    rows = []
    for b in sizes:
        rounds = 3 if args.quick else max(9, min(41, 20480 // b))
        res = time_losses(b, rounds)
        for n in NAMES:
            peak = float("nan") if args.no_memory else measure_peak(n, b, args.threads)
            rows.append({"B": b, "loss": n, **res[n], "peak_mib": peak, "rounds": rounds})
            _print_row(f"B={b:5d}", n, res[n], peak)
    return rows


def _ref_rows(refs, args, b: int = 256) -> list[dict]:
    rows = []
    for r in refs:
        rounds = 3 if args.quick else max(7, min(31, 8192 // max(r, 256)))
        res = time_refs(b, r, rounds)
        for n in REF_NAMES:
            peak = float("nan") if args.no_memory else measure_peak(n, b, args.threads, r)
            rows.append({"B": b, "R": r, "loss": n, **res[n], "peak_mib": peak, "rounds": rounds})
            _print_row(f"R={r:5d}", n, res[n], peak)
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-sizes", default="64,256,1024")
    ap.add_argument("--refs", default="0,2048,8192", help="reference counts at B = 256")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "losses"))
    ap.add_argument("--quick", action="store_true", help="few rounds (a smoke run)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    ap.add_argument("--check-cost", action="store_true", help="only the finite-check cost")
    ap.add_argument("--peak-child", nargs=3, metavar=("NAME", "B", "R"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.peak_child:
        name, b, r = args.peak_child
        print(peak_child(name, int(b), args.threads, int(r)))
        return
    if args.check_cost:
        c = check_cost()
        print(
            f"finite check {c['check_us']:.1f} us, DRSL step {c['loss_ms']:.2f} ms: "
            f"{100 * c['ratio']:.2f} % (B = 256, D = {D}, {args.threads} threads)"
        )
        return
    sizes = [int(v) for v in args.batch_sizes.split(",") if v]
    refs = [int(v) for v in args.refs.split(",") if v]
    load_before = os.getloadavg()
    t_start = time.time()
    rows = _batch_rows(sizes, args)
    ref_rows = _ref_rows(refs, args)
    cost = check_cost()
    load_after = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _write_csv(out.with_suffix(".csv"), rows)
    if ref_rows:
        _write_csv(out.with_name(out.name + "_refs.csv"), ref_rows)
    text = _markdown(rows, sizes, args.threads, load_before, load_after, time.time() - t_start)
    out.with_suffix(".md").write_text(text + _markdown_refs(ref_rows, refs, cost))
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.md')}")


def _markdown_refs(rows, refs, cost) -> str:
    lines = [
        "## Reference items at B = 256 (time, ratio to the package's batch-hard triplet, peak)",
        "",
        "References laid out like a cross-batch memory of earlier PK batches (64 identities x 4 "
        f"from a pool of {POOL}); the anchors' positives include the references of their "
        "identity. `plain_triplet` is the reid-strong-baseline code extended to references.",
        "",
    ]
    if rows:
        by = {(r["loss"], r["R"]): r for r in rows}
        lines += ["| loss | " + " | ".join(f"R={r}" for r in refs) + " |"]
        lines += ["|---|" + "---|" * len(refs)]
        for n in REF_NAMES:
            cells = []
            for r in refs:
                c = by[n, r]
                cells.append(
                    f"{c['ms']:.2f} ms ({c['ratio']:.2f}x, min {c['min_ratio']:.2f}x, "
                    f"cpu {c['cpu_ratio']:.2f}x), {c['peak_mib']:.1f} MiB"
                )
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Cost of the finite-input check",
        "",
        f"One check of DRSL's 256 x 256 distance matrix: {cost['check_us']:.1f} us against "
        f"{cost['loss_ms']:.2f} ms for one DRSL forward + backward: {100 * cost['ratio']:.2f} % "
        "(medians, same process).",
        "",
    ]
    return "\n".join(lines)


def _markdown(rows, sizes, threads, load_before, load_after, seconds) -> str:
    by = {(r["loss"], r["B"]): r for r in rows}
    head = "| loss | " + " | ".join(f"B={b}" for b in sizes) + " |"
    sep = "|---|" + "---|" * len(sizes)
    lines = [
        "# Loss benchmark: forward + backward on CPU",
        "",
        f"- Machine: {_cpu_name()}, {os.cpu_count()} logical CPUs; torch {torch.__version__}, "
        f"{threads} threads; D = {D}, K = {K} (P = B / {K} identities).",
        f"- Load average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in load_before)}; "
        f"after: {', '.join(f'{v:.2f}' for v in load_after)}. A load above the thread count "
        "means the CPU was shared with other work: absolute times are then inflated and noisy; "
        "the ratios, measured round by round in one process, are the more reliable numbers.",
        f"- Run time {seconds:.0f} s; command: `python benchmarks/bench_losses.py "
        f"{' '.join(sys.argv[1:]) or f'--threads {threads}'}`.",
        "- `ms`: median of one forward + backward. `ratio`: median over rounds of the time "
        "divided by the plain batch-hard triplet's time in the same round. `peak MiB`: growth "
        "of the RSS high-water mark (`VmHWM`, reset via `/proc/self/clear_refs`) of a fresh "
        "process during one forward + backward, after inputs and a warm-up, with large blocks "
        "mmap-ed so that frees leave the RSS at once.",
        "",
        "## Time (ms, median) and ratio to the plain batch-hard triplet",
        "",
        head,
        sep,
    ]
    for n in NAMES:
        cells = [f"{by[n, b]['ms']:.2f} ms ({by[n, b]['ratio']:.2f}x)" for b in sizes]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Robustness to load: fastest round (ms, ratio of minima) and CPU-time ratio",
        "",
        "The minimum over rounds estimates the time without interruptions; the CPU time of "
        "the process (all threads) does not count the time the process waited for a core.",
        "",
        head,
        sep,
    ]
    for n in NAMES:
        cells = [
            f"{by[n, b]['min_ms']:.2f} ms ({by[n, b]['min_ratio']:.2f}x), "
            f"cpu {by[n, b]['cpu_ratio']:.2f}x"
            for b in sizes
        ]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "## Peak memory added by one forward + backward (MiB)", "", head, sep]
    for n in NAMES:
        lines.append(f"| {n} | " + " | ".join(f"{by[n, b]['peak_mib']:.1f}" for b in sizes) + " |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
