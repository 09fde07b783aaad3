# Reconnect: `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
MODEL  := models/artifacts/risk_model.joblib

.PHONY: install demo test test-fast bench model evaluate schema clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# The trained model ships in the repo; this retrains it from a fresh simulated cohort.
model: $(STAMP)
	$(BIN)/reconnect train --out $(MODEL)

# Regenerates models/MODEL_CARD.md and its plots from a fresh held-out cohort.
evaluate: $(STAMP)
	$(BIN)/reconnect evaluate

demo: $(STAMP)
	$(BIN)/reconnect demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not broker and not slow"

bench: $(STAMP)
	$(BIN)/reconnect bench --out BENCHMARKS.md

schema: $(STAMP)
	$(BIN)/reconnect schema --out schemas/json

clean:
	rm -rf $(VENV) var build *.egg-info
