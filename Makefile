# Every target bootstraps .venv from nothing, so a fresh machine needs only `make run` / `make test`.
# `make run` installs what running KeyVault needs and nothing more; `make test` adds the test
# tools (pytest, Playwright, schemathesis, ruff, ...) and the Python client.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.run-installed
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed
# Where `make run` listens: `make run PORT=8000` (5000 is taken by AirPlay on macOS),
# `make run HOST=0.0.0.0` to be reachable from other machines.
HOST ?= 127.0.0.1
PORT ?= 5000
# The address to open: browsers refuse passkeys at an IP address, so a loopback or wildcard
# HOST is opened as localhost.
OPEN_URL = http://$(if $(filter 127.0.0.1 0.0.0.0 localhost ::1 ::,$(HOST)),localhost,$(HOST)):$(PORT)/

.PHONY: run test bench bench-events bench-instances lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Running: KeyVault and the PostgreSQL driver (SQLite needs none), no test extra.
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[postgres]'
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP) pyproject.toml clients/python/pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,postgres]'
	$(BIN)/python -m pip install --quiet -e 'clients/python'
	touch $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/keyvault db upgrade
	@echo "KeyVault: open $(OPEN_URL) in your browser"
	$(BIN)/keyvault serve --host $(HOST) --port $(PORT) --workers 2

test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The bench extra (Django, DRF, djangorestframework-api-key) for the benchmark's Django baseline
# only: `make test` and CI never install it.
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,postgres,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# The verdict cache and the revocation stream (bench/events.py); PostgreSQL with
# BENCH_ARGS=--database-url=postgresql+psycopg://...
bench-events: $(STAMP)
	$(BIN)/python -m bench.events $(BENCH_ARGS)

# Several `keyvault serve` behind nginx on one PostgreSQL and Redis (bench/instances.py):
# BENCH_ARGS=--database-url=postgresql+psycopg://...
bench-instances: $(STAMP)
	$(BIN)/python -m bench.instances $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check keyvault tests bench clients

clean:
	rm -rf $(VENV) build *.egg-info
