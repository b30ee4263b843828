# drsl: the two commands of the README are `make course` and `make test`.
# Every target sets up .venv from requirements.lock first when it is missing or stale.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8866

.PHONY: help env data course course-headless test test-browser lint format notebooks lock bench clean-build student assignments book slides

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

env:  ## create or refresh .venv from requirements.lock (idempotent)
	@tools/bootstrap.sh

data: env  ## make the synthetic dataset of the current mode in data/ if missing (DRSL_FAST=1: the small fast set)
	@$(PY) -c "from drsl.config import fast_mode; from drsl.data.synth import ensure_dataset; print('[data] ready:', ensure_dataset(fast=fast_mode()))"

course: data  ## THE MAIN JOB: environment + data, then the course in JupyterLab (at the repository root, notebook 00 open)
	@$(PY) tools/lab.py $(LAB_ARGS)

course-headless: data  ## the main job without a browser: execute every notebook into build/
	@$(PY) tools/run_notebooks.py --out build

test: env  ## THE TEST COMMAND: the whole suite (unit tests, doctests, lint, every notebook in fast mode, browser, book, slides, student edition)
	@tools/ensure_chromium.sh
	@DRSL_FAST=1 $(PY) -c "from drsl.data.synth import ensure_dataset; print('[data] fast set ready:', ensure_dataset(fast=True))"
	@DRSL_FAST=1 $(PY) -m pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env \
		tests drsl notebooks $(PYTEST_ARGS)

test-browser: env  ## only the real-browser tests (JupyterLab, Voila, the book, a deck in Chromium)
	@tools/ensure_chromium.sh
	@DRSL_FAST=1 $(PY) -m pytest -m browser tests $(PYTEST_ARGS)

lint: env  ## ruff over the package, tests, tools and notebook sources
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: env  ## apply ruff's fixes and formatting
	@$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

notebooks: env  ## regenerate the .ipynb files (no outputs) from the jupytext sources
	@$(VENV)/bin/jupytext --to ipynb --update --set-kernel python3 notebooks/[0-9]*.py

student: env  ## the student edition: build/student/*.ipynb, the nbgrader release (answers as stubs, no solutions)
	@$(PY) tools/student.py --out build/student

assignments: env  ## nbgrader course folder build/assignments/: source/ and release/ per notebook, gradebook, config
	@$(PY) tools/assignments.py --out build/assignments

book: data  ## the HTML book of the executed course in build/book/ (full mode, one kernel thread, a progress line per notebook; DRSL_FAST=1 for a quick build; BOOK_ARGS=--threads 2)
	@$(PY) tools/book.py --out build/book $(BOOK_ARGS)

slides: data  ## one reveal.js deck per notebook: build/slides/NN_name.slides.html (offline)
	@$(PY) tools/slides.py --out build/slides

explore: env  ## the ratio explorer as a standalone Voila app (127.0.0.1, behind a token)
	@$(PY) -m drsl.widgets.serve --port=$(PORT)

lock:  ## re-pin: requirements.in -> requirements.lock -> environment.yml
	@$(PY) tools/lock.py

bench: data  ## run the benchmarks (writes benchmarks/results/)
	@for b in benchmarks/bench_*.py; do echo "[bench] $$b"; $(PY) $$b || exit 1; done

clean-build:  ## remove build/ (executed notebooks, HTML, book, slides, student edition)
	rm -rf build
