# Reconnect: `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
MODEL  := models/artifacts/risk_model.skops
LOCK   := requirements.lock

.PHONY: install lock demo test test-fast bench model evaluate schema clean

# Exact versions from the lock: the shipped model must match the installed scikit-learn.
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Re-pin every dependency (after a change to pyproject.toml); then `make model` if scikit-learn moved.
lock: $(STAMP)
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url --no-emit-find-links \
	  -o $(LOCK) pyproject.toml

# The trained model ships in the repo; this retrains it from a fresh simulated cohort.
model: $(STAMP)
	$(BIN)/reconnect train --out $(MODEL)

# Regenerates models/MODEL_CARD.md and its plots from a fresh held-out cohort.
evaluate: $(STAMP)
	$(BIN)/reconnect evaluate

demo: $(STAMP)
	$(BIN)/reconnect-dev demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not broker and not slow"

bench: $(STAMP)
	$(BIN)/reconnect-dev bench --out BENCHMARKS.md

schema: $(STAMP)
	$(BIN)/reconnect schema --out schemas/json

clean:
	rm -rf $(VENV) var build *.egg-info
