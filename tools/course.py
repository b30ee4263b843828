"""Shared pieces of the course tools (student edition, book, slides).

- :func:`course_sources`: the course notebooks in order, by glob ``notebooks/[0-9][0-9]_*.py``
  (the jupytext sources are the reviewed ones; a new ``NN_name.py`` joins every tool at once);
- :func:`read_source`: one source as an nbformat notebook (no outputs);
- :func:`is_solution`: a cell tagged ``solution`` (jupytext: ``# %% tags=["solution"]``);
- :func:`executed`: the notebook executed top to bottom (fast or full mode), cached in
  ``build/executed/<mode>/`` under a key of its source, the package and the mode, so that
  ``make book`` then ``make slides`` run each notebook once;
- :func:`mathjax_dir` / :func:`reveal_dir`: the MathJax 2.7 and reveal.js files shipped by PyPI
  packages of the lock (``jupyter-server-mathjax``, ``sphinx-revealjs``), copied into the builds
  so that formulas and slides need no internet.
"""

from __future__ import annotations

import copy
import hashlib
import os
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "build" / "executed"
SOLUTION_TAG = "solution"
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"  # the config jupyter-server-mathjax ships


def course_sources(root: Path = NOTEBOOKS) -> list[Path]:
    """The course notebooks in order: every ``NN_name.py`` jupytext source under ``root``."""
    paths = sorted(root.glob("[0-9][0-9]_*.py"))
    if not paths:
        raise FileNotFoundError(f"no course notebook (NN_name.py) in {root}: check the folder")
    return paths


def read_source(path: Path) -> nbformat.NotebookNode:
    """One jupytext source as a notebook without outputs, with the python3 kernelspec."""
    nb = jupytext.read(path)
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    }
    return nb


def tags(cell) -> list[str]:
    """The cell's tags (an empty list when it has none)."""
    return list(cell.get("metadata", {}).get("tags", []))


def is_solution(cell) -> bool:
    """Whether the cell is an exercise's solution (tagged ``solution``)."""
    return SOLUTION_TAG in tags(cell)


def title_of(nb) -> str:
    """The notebook's title: its first ``# `` heading without the hashes."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return "untitled"


def fast_mode() -> bool:
    """Whether DRSL_FAST asks for fast mode (the same rule as ``drsl.config.fast_mode``)."""
    return os.environ.get("DRSL_FAST", "").strip().lower() in {"1", "true", "yes", "on"}


def _package_digest() -> str:
    """A digest of the package sources: an executed copy is stale once drsl changes."""
    h = hashlib.sha256()
    for path in sorted((ROOT / "drsl").rglob("*.py")):
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


@contextmanager
def _environment(values: dict[str, str]):
    """Set environment variables (inherited by a kernel started inside), then restore them."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class Executed:
    """One executed notebook: the path of the executed copy, its seconds and whether cached."""

    path: Path
    seconds: float
    cached: bool


def execute_notebook(
    nb, *, cwd: Path, timeout: int = 1800, log=None, on_cell: Callable | None = None
) -> float:
    """Execute ``nb`` in place in a fresh python3 kernel with ``cwd`` as working folder.

    Args:
        nb: an nbformat notebook; its outputs are replaced.
        cwd: the kernel's working folder.
        timeout: seconds allowed per cell.
        log: a file for the kernel's stderr (default: this process's stderr).
        on_cell: called with no argument after each cell ran (a progress bar's ``update``).

    Returns:
        The wall time in seconds. Raises ``nbclient.exceptions.CellExecutionError`` when a cell
        fails (a cell tagged ``raises-exception`` may raise).
    """
    from nbclient import NotebookClient

    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
        store_widget_state=True,
        on_cell_executed=(lambda **_: on_cell()) if on_cell else None,
    )
    # the kernel draws as a reader's does (inline figures), whatever backend this process uses
    backend = os.environ.pop("MPLBACKEND", None)
    start = time.perf_counter()
    try:
        client.execute(stderr=log or sys.stderr)
    finally:
        if backend is not None:
            os.environ["MPLBACKEND"] = backend
    return time.perf_counter() - start


def code_cell_count(source: Path) -> int:
    """The number of code cells of a course source (what a progress bar counts)."""
    return sum(cell.cell_type == "code" for cell in read_source(source).cells)


def executed(
    source: Path,
    *,
    fast: bool,
    cache: Path = EXECUTED,
    timeout: int = 1800,
    threads: int | None = None,
    on_cell: Callable | None = None,
) -> Executed:
    """The executed copy of ``source`` in fast or full mode, from the cache when up to date.

    The cache key is the source text, the package sources and the mode; the copy is written to
    ``cache/<mode>/NN_name.ipynb`` with its key and time in ``metadata.drsl_build``.
    ``threads`` sets the kernel's CPU threads (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``; None:
    this process's environment decides); ``on_cell`` is called after each executed cell.
    """
    mode = "fast" if fast else "full"
    out = cache / mode / f"{source.stem}.ipynb"
    key = hashlib.sha256(
        source.read_bytes() + _package_digest().encode() + mode.encode()
    ).hexdigest()[:16]
    if out.is_file():
        old = nbformat.read(out, as_version=4)
        meta = old.metadata.get("drsl_build", {})
        if meta.get("key") == key:
            return Executed(out, float(meta.get("seconds", 0.0)), cached=True)
    nb = read_source(source)
    kernel_env = {"DRSL_FAST": "1" if fast else "0"}
    if threads is not None:
        kernel_env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    out.parent.mkdir(parents=True, exist_ok=True)
    with _environment(kernel_env), open(out.with_suffix(".kernel.log"), "w") as log:
        seconds = execute_notebook(nb, cwd=source.parent, timeout=timeout, log=log, on_cell=on_cell)
    nb.metadata["drsl_build"] = {"key": key, "seconds": round(seconds, 1), "mode": mode}
    nbformat.write(nb, out)
    return Executed(out, seconds, cached=False)


PROGRESS_MODELS = {"FloatProgressModel", "IntProgressModel"}


def _widget_models(nb) -> dict:
    """The notebook's stored widget models by id (empty when it stored no widget state)."""
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    return state.get("state", {})


def progress_html(model_id: str, models: dict) -> str | None:
    """A stored progress-bar widget (a tqdm bar: an HBox of label, progress and counts) as
    static HTML with a ``<progress>`` element; None when the widget is not a progress bar."""
    model = models.get(model_id, {})
    children = [
        models.get(ref.removeprefix("IPY_MODEL_"), {})
        for ref in model.get("state", {}).get("children", [])
    ]
    if model.get("model_name") in PROGRESS_MODELS:
        children = [model]
    bars = [c for c in children if c.get("model_name") in PROGRESS_MODELS]
    if len(bars) != 1:
        return None
    parts = []
    for child in children:
        state = child.get("state", {})
        if child in bars:
            value, top = float(state.get("value", 0)), float(state.get("max", 1) or 1)
            parts.append(f'<progress value="{value:g}" max="{top:g}"></progress>')
        elif child.get("model_name") in {"HTMLModel", "LabelModel"}:
            parts.append(f"<span>{state.get('value', '')}</span>")
    return f'<div class="drsl-progress">{" ".join(parts)}</div>'


def without_widgets(nb, note: str):
    """A copy of ``nb`` for a static page: a progress-bar widget becomes a static progress bar
    at its final value, any other widget view becomes ``note`` (HTML), and the widget state is
    dropped, so the page loads no widget manager from a CDN."""
    nb = copy.deepcopy(nb)
    models = _widget_models(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            view = data.get("application/vnd.jupyter.widget-view+json")
            if view is None:
                continue
            bar = progress_html(view.get("model_id", ""), models)
            plain = "(a progress bar)" if bar else "(an interactive widget)"
            output["data"] = {"text/html": bar or note, "text/plain": plain}
    return nb


def _package_static(module: str, *parts: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{module} is not installed: run `make env` (it is in the lock)")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall {module} (`make env`)")
    return path


def mathjax_dir() -> Path:
    """MathJax 2.7 (``MathJax.js``, config/, jax/, fonts/) from the jupyter-server-mathjax wheel."""
    return _package_static("jupyter_server_mathjax", "static")


def reveal_dir() -> Path:
    """reveal.js (``dist/``, ``plugin/``) from the sphinx-revealjs wheel."""
    return _package_static("sphinx_revealjs", "_static", "revealjs")
