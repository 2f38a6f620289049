# Fresh-machine entry points: `make demo` and `make test`. Both are idempotent and use .venv in the checkout.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned, so that the project's torch range is already satisfied (on these machines the CPU
# build of 2.13.0 lies on disk; a range that admits newer releases would pull a multi-GB CUDA build).
TORCH ?= torch==2.13.0
SHARED ?= ../shared/data
DEMO_OUT ?= runs/demo

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,ray,onnx]"
	touch $@

demo: setup
	$(PY) -m nasforge demo --out $(DEMO_OUT)

# -X faulthandler: a native crash at interpreter exit, after pytest has removed its own handler, still prints the
# Python threads' stacks
test: setup lint
	$(PY) -X faulthandler -m pytest

# ruff stays clean on src/, tests/ and benchmarks/, mypy on src/ (configured in pyproject.toml)
lint: setup
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m mypy

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
