# drsl: the two commands of the README are `make course` and `make test`.
# Every target sets up .venv from requirements.lock first when it is missing or stale.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8866

.PHONY: help env data course course-headless test test-browser lint format notebooks lock bench clean-build

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

env:  ## create or refresh .venv from requirements.lock (idempotent)
	@tools/bootstrap.sh

data: env  ## make the default synthetic dataset in data/ if missing
	@$(PY) -c "from drsl.data.synth import ensure_dataset; print('[data] ready:', ensure_dataset(fast=False))"

course: data  ## THE MAIN JOB: environment + data, then the course in JupyterLab
	@echo "[course] opening JupyterLab on notebooks/ (Ctrl-C to stop)"
	@$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(LAB_ARGS)

course-headless: data  ## the main job without a browser: execute every notebook into build/
	@$(PY) tools/run_notebooks.py --out build

test: env  ## THE TEST COMMAND: the whole suite (unit tests, doctests, lint, every notebook in fast mode, browser)
	@tools/ensure_chromium.sh
	@DRSL_FAST=1 $(PY) -c "from drsl.data.synth import ensure_dataset; print('[data] fast set ready:', ensure_dataset(fast=True))"
	@DRSL_FAST=1 $(PY) -m pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env \
		tests drsl notebooks $(PYTEST_ARGS)

test-browser: env  ## only the real-browser tests (JupyterLab + Voila in Chromium)
	@tools/ensure_chromium.sh
	@DRSL_FAST=1 $(PY) -m pytest -m browser tests $(PYTEST_ARGS)

lint: env  ## ruff over the package, tests, tools and notebook sources
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: env  ## apply ruff's fixes and formatting
	@$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

notebooks: env  ## regenerate the .ipynb files (no outputs) from the jupytext sources
	@$(VENV)/bin/jupytext --to ipynb --update --set-kernel python3 notebooks/[0-9]*.py

explore: env  ## the ratio explorer as a standalone Voila app
	@$(VENV)/bin/voila notebooks/06_explore.ipynb --port=$(PORT)

lock:  ## re-pin: requirements.in -> requirements.lock -> environment.yml
	@$(PY) tools/lock.py

bench: data  ## run the benchmarks (writes benchmarks/results/)
	@for b in benchmarks/bench_*.py; do echo "[bench] $$b"; $(PY) $$b || exit 1; done

clean-build:  ## remove build/ (executed notebooks and HTML)
	rm -rf build
