# symm_keras — set-up, tests, demo and reproduction targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Tests that exercise Keras math (losses, layers, ops, evaluation, neighbours, mining) run again
# on JAX and on torch.
BACKEND_SUITES := tests/ops tests/losses tests/layers tests/evaluation tests/neighbors tests/mining

.PHONY: venv test test-torch test-slow test-jax demo bench reproduce-cub reproduce-cars196 reproduce-sop clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	KERAS_BACKEND=tensorflow $(PY) -m pytest -q
	KERAS_BACKEND=jax $(PY) -m pytest -q $(BACKEND_SUITES)
	$(MAKE) --no-print-directory test-torch

# The same suites on the torch backend, last. The dev extras pin torch==2.13.0: on the build
# and CI machines pip takes its CPU wheel from the local wheel cache (137 s measured on the
# 2-core build machine under load), and pytorch-metric-learning 2.9.0, the reference of
# tests/losses/test_reference_parity.py. Keras's torch promotion computes float64 inputs in
# float32; the float64 tests take their dtype and tolerance from tests/losses/autodiff.py.
test-torch: $(STAMP)
	KERAS_BACKEND=torch $(PY) -m pytest -q $(BACKEND_SUITES)

test-slow: $(STAMP)
	KERAS_BACKEND=tensorflow $(PY) -m pytest -q -m slow

demo: $(STAMP)
	$(PY) -m experiments.demo

bench: $(STAMP)
	$(PY) benchmarks/bench_losses.py
	$(PY) benchmarks/bench_evaluation.py
	$(PY) benchmarks/bench_pipeline.py
	$(PY) benchmarks/bench_mining.py
	$(PY) benchmarks/bench_damlrrm.py
	$(PY) benchmarks/bench_train_step.py --batch_size 16 --jit_compile false

# RECIPE=official (the released Symm code's training, default) or paper; the plan and its GPU-time estimate print first.
RECIPE ?= official
reproduce-cub reproduce-cars196 reproduce-sop: $(STAMP)
	$(PY) -m experiments.reproduce --dataset $(subst reproduce-,,$@) --recipe $(RECIPE)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
