# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# torch is installed first and pinned: an unpinned torch pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.overparam-installed
DEMO_OUT ?= demo-out

.PHONY: install demo demo-quick test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet torch==$(TORCH_VERSION)
	$(PIP) install --quiet -e ".[dev,text,onnx,ray,mlflow,tensorboard,interp,table,hf]" "torch==$(TORCH_VERSION)"
	@touch $(STAMP)

demo: install
	$(PY) -m overparam demo --out $(DEMO_OUT)
	@echo "Open the report: $(abspath $(DEMO_OUT))/report.html"

demo-quick: install
	$(PY) -m overparam demo --quick --out $(DEMO_OUT)-quick
	@echo "Open the report: $(abspath $(DEMO_OUT))-quick/report.html"

test: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

bench: install
	$(PY) benchmarks/sweep_speed.py --quick
	$(PY) benchmarks/fit_speed.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) $(DEMO_OUT)-quick .pytest_cache
