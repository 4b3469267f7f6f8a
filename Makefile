# `make test` is the one test command: README and .ci/run both use it.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint format typecheck server-install clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: install
	$(VENV)/bin/mypy

# Neo4j jars via Maven into var/neo4j (cached: a no-op while the pom is unchanged).
server-install: install
	$(VENV)/bin/circuit-atlas server install

# Integration tests start their own local Neo4j (var/neo4j-test) unless NEO4J_URI is set.
test: lint typecheck server-install
	$(PY) -m pytest tests

clean:
	rm -rf $(VENV) var
