# neurocorr: `make train` and `make test` set up .venv on first use (about 3 minutes, mostly local wheels).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest-xdist worker processes for `make test` (TEST_WORKERS=0: the whole suite in one process)
TEST_WORKERS ?= 2
# worksteal: an idle worker takes queued tests from the busy one, so the long end-to-end tests (DVC, sweeps)
# do not leave one worker idle at the end (7:07 against 7:29 with the default split on 2 cores)
XDIST := --dist worksteal

.PHONY: train test test-fast mlflow-ui lint clean-runs ray

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $(STAMP)

train: $(STAMP)
	$(BIN)/python train.py $(ARGS)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(XDIST) $(ARGS)

test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(XDIST) -m "not slow" $(ARGS)

ray: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[ray]"

mlflow-ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns/mlflow.db --port 5000

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet ruff==0.15.2 && $(BIN)/ruff check src tests bench train.py evaluate.py match.py predict.py export.py

clean-runs:
	rm -rf logs mlruns
