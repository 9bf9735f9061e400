# sobench: `make demo` and `make test` each set up everything they need on a fresh machine.
SHELL := /bin/bash
VENV ?= .venv
PYTHON := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
DEBIAN_FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
# every method; K-BFGS(L) would repeat K-BFGS (it holds all of the demo's pairs: conf/tuned/demo/kbfgs_l.yaml)
DEMO_OPTIMIZERS ?= sgd,adam,kfac,shampoo,tnt,kbfgs,tengrad
RUNS ?= runs
# where the demo's runs are written: paths.runs_dir (conf/config.yaml) is $SOBENCH_RUNS_DIR
# when that is set, runs/ otherwise
DEMO_RUNS = $(or $(SOBENCH_RUNS_DIR),runs)/demo
BENCH_DEVICE ?= auto
# `make tune-demo`: every optimizer of TUNE_OPTIMIZERS searched with TUNE_TRIALS trials of
# TUNE_EPOCHS epochs on a validation split of Fashion-MNIST, then its best setting rerun with
# TUNE_SEEDS seeds (runners.tune)
TUNE_OPTIMIZERS ?= sgd,adam,kfac,shampoo
TUNE_TRIALS ?= 8
TUNE_EPOCHS ?= 2
TUNE_SEEDS ?= 3
TUNE_RUNS = $(or $(SOBENCH_RUNS_DIR),runs)/tune_demo

.DEFAULT_GOAL := help
.PHONY: help install data demo tune-demo figures report bench test test-slow test-gpu lint format clean

# Colour the target names only on a terminal: piped or redirected, the list stays plain text.
help: ## list the targets
	@if [ -t 1 ]; then on='\033[36m'; off='\033[0m'; else on=; off=; fi; \
	grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*## "}; {printf "  %s%-10s%s %s\n", on, $$1, off, $$2}'

$(INSTALLED): pyproject.toml
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(INSTALLED) ## create .venv and install sobench with its dev tools

data: $(INSTALLED) ## get Fashion-MNIST (Debian's dataset-fashion-mnist when apt is there, else torchvision)
	@if [ ! -f $(DEBIAN_FASHION_MNIST) ] && command -v apt-get >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=skip; fi; \
	  if [ "$$SUDO" != skip ]; then \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null \
	      || echo "apt-get could not install dataset-fashion-mnist; trying torchvision's download"; \
	  fi; \
	fi
	$(PYTHON) -m data.fetch fashion_mnist

demo: data ## train the Fashion-MNIST autoencoder with each optimizer, print the table, draw the figure
	$(PYTHON) -m runners.train -m experiment=demo optimizer=$(DEMO_OPTIMIZERS)
	$(PYTHON) -m analysis.compare $(DEMO_RUNS) --figure figures/demo.png

tune-demo: data ## tune SGD-m, Adam, KFAC and Shampoo with equal budgets on the demo problem, rerun the best, draw the tuning curves
	$(PYTHON) -m runners.tune experiment=demo optimizer=$(TUNE_OPTIMIZERS) \
	  paths.runs_dir=$(TUNE_RUNS) dataset.validation_size=10000 \
	  trainer.max_epochs=$(TUNE_EPOCHS) tune.trials=$(TUNE_TRIALS) tune.seeds=$(TUNE_SEEDS)
	$(PYTHON) -m analysis.tuning $(TUNE_RUNS)/demo --figure figures/tuning.png
	$(PYTHON) -m analysis.compare $(TUNE_RUNS)/demo --figure figures/tuned_demo.png

figures: $(INSTALLED) ## draw every figure (tnt_fig1 ... profile) from runs/ (or RUNS=dir) into figures/, PNG+PDF
	$(PYTHON) -m analysis.figures all --runs $(RUNS) --out figures

report: $(INSTALLED) ## one markdown page with every figure and table of runs/ (or RUNS=dir): reports/<dir>/
	$(PYTHON) -m analysis.report --runs $(RUNS) --out reports/$(notdir $(RUNS))

bench: $(INSTALLED) ## cost of every optimizer per step and phase, relative to SGD-m (GPU when there is one): reports/bench/
	$(PYTHON) -m runners.bench --device $(BENCH_DEVICE) --out reports/bench

test: lint data ## lint, then run the test suite (without the tests marked slow)
	$(PYTHON) -m pytest -m "not slow and not gpu" -q

test-slow: data ## run the slow tests (real-data training comparisons)
	$(PYTHON) -m pytest -m slow -q

test-gpu: data ## run the tests that need a CUDA device
	$(PYTHON) -m pytest -m gpu -q

lint: $(INSTALLED) ## ruff lint and format check
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format: $(INSTALLED) ## ruff format and fix
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

clean: ## remove run records, figures, reports and caches (keeps .venv and datasets)
	rm -rf runs figures reports .pytest_cache .ruff_cache
