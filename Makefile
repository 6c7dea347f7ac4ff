# `make demo` and `make test` work on a fresh clone: they create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0
NPM_DIR := tests/npm

.PHONY: demo test lint bench bench-diagnosis clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[torch,carbon,demo,dev,agent]'
	touch $@

# The official MCP Inspector and conformance suite (exact versions in tests/npm/package-lock.json),
# for tests/test_inspector.py and tests/test_conformance.py; about 45 s from an empty npm cache.
$(NPM_DIR)/node_modules/.installed: $(NPM_DIR)/package.json $(NPM_DIR)/package-lock.json
	@if command -v npm >/dev/null; then cd $(NPM_DIR) && npm ci --no-audit --no-fund && touch node_modules/.installed; \
	else echo "npm not found: the MCP Inspector and conformance tests will be skipped"; fi

demo: $(VENV)/.installed
	$(PY) -m trainatlas demo

test: $(VENV)/.installed $(NPM_DIR)/node_modules/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest -q

# Benchmarks compare against TensorBoard, MLflow, W&B and tbparse: a separate venv keeps their
# dependencies out of the test environment. Not part of `make test`.
.venv-bench/.installed: pyproject.toml
	test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install -q --upgrade pip
	.venv-bench/bin/python -m pip install -q $(TORCH)
	.venv-bench/bin/python -m pip install -q -e '.[torch,carbon,bench]'
	touch $@

bench: .venv-bench/.installed
	.venv-bench/bin/python benchmarks/observer_overhead.py
	.venv-bench/bin/python benchmarks/query_scale.py
	.venv-bench/bin/python benchmarks/diagnose_scale.py
	.venv-bench/bin/python benchmarks/forecast_eval.py

# The labelled diagnosis benchmark (benchmarks/diagnosis): trains its runs (about 4 minutes on two
# cores), scores trainatlas and a W&B-style rule baseline, then does it again with every core busy.
bench-diagnosis: $(VENV)/.installed
	$(PY) benchmarks/diagnosis/score.py --root .bench/diagnosis --json .bench/diagnosis/quiet.json
	$(PY) benchmarks/diagnosis/score.py --root .bench/diagnosis --hog --json .bench/diagnosis/hog.json

clean:
	rm -rf $(VENV) .venv-bench .bench trainatlas-runs .pytest_cache $(NPM_DIR)/node_modules
