# Every target bootstraps .venv from nothing, so a fresh machine needs only `make run` / `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: run test bench lint clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,postgres]'
	$(BIN)/python -m pip install --quiet -e 'clients/python'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/keyvault db upgrade
	$(BIN)/keyvault serve --host 127.0.0.1 --port 5000 --workers 2

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The bench extra (Django, DRF, djangorestframework-api-key) for the benchmark's Django baseline
# only: `make test` and CI never install it.
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,postgres,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check keyvault tests bench clients

clean:
	rm -rf $(VENV) build *.egg-info
