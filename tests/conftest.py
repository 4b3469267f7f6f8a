"""Shared fixtures: a real Neo4j for integration tests (never a mock), and the models.

Tests sit in tiers, each marked by its own ``conftest.py``: ``tests/unit`` (no Neo4j, no
Maven; seconds), ``tests/integration`` (the real server, or a slow model run) and
``tests/acceptance`` (end-to-end CLI runs); helpers live in ``tests/fixtures``. The server
fixtures below are lazy: only a test that asks for one starts the server.

With ``NEO4J_URI`` set, tests use that server (e.g. docker compose). Otherwise one local server
per session is started from the jars in the data directory (installed with Maven if needed),
in its own folder ``<data dir>/neo4j-test-<bolt port>``, on ports 17687/17474
(``CIRCUIT_ATLAS_TEST_BOLT_PORT`` and ``CIRCUIT_ATLAS_TEST_HTTP_PORT`` choose others), with a
fresh database, and stopped at the end.
Under CI (``CI=true``) a server that cannot start fails the tests instead of skipping them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from atlas.errors import AtlasError
from atlas.settings import Neo4jSettings, load_settings
from atlas.store.store import AtlasStore
from ingest.models.loading import LoadedModel, load_model, random_gpt2
from ingest.records.types import ModelRecord, RunRecord
from tests.fixtures.neo4j import local_test_server


@pytest.fixture(scope="session")
def neo4j_settings() -> Iterator[Neo4jSettings]:
    """Settings of a running Neo4j: ``NEO4J_URI``'s, or a local test server started here."""
    if os.environ.get("NEO4J_URI"):
        yield load_settings()
        return
    server = local_test_server()
    if server.running_pid() is None:  # fresh state: a new database and a new password
        shutil.rmtree(server.data, ignore_errors=True)
        server.credentials_file.unlink(missing_ok=True)
    try:
        settings = server.start()
    except AtlasError as error:
        message = f"Local Neo4j test server could not start: {error}"
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(message)
        pytest.skip(message)
    yield settings
    server.stop()


@pytest.fixture(scope="session")
def neo4j_env(neo4j_settings: Neo4jSettings) -> dict[str, str]:
    """The test server's settings as the environment variables the CLI reads."""
    return {
        "NEO4J_URI": neo4j_settings.uri,
        "NEO4J_USER": neo4j_settings.user,
        "NEO4J_PASSWORD": neo4j_settings.password,
        "NEO4J_DATABASE": neo4j_settings.database,
    }


@pytest.fixture
def runner(neo4j_env: dict[str, str]) -> CliRunner:
    """A click runner whose commands talk to the test server."""
    return CliRunner(env=neo4j_env)


@pytest.fixture(scope="session")
def atlas_store(neo4j_settings: Neo4jSettings) -> AtlasStore:
    """An :class:`AtlasStore` on the test database, schema initialised."""
    store = AtlasStore.connect(neo4j_settings)
    store.init_schema()
    return store


@pytest.fixture
def atlas_run(atlas_store: AtlasStore) -> Iterator[RunRecord]:
    """A fresh run (unique id, on a tiny 2-layer model) that is deleted after the test."""
    model = ModelRecord(id="test-model", n_layers=2, n_heads=2, d_model=8, d_head=4)
    atlas_store.write_model(model)
    run = RunRecord(
        id=f"test-{uuid.uuid4().hex[:12]}",
        model_id=model.id,
        model_revision=None,
        method="sad",
        params={"attn_threshold": 0.5},
        dataset={"n_prompts": 2, "seed": 0},
        versions={"neo4j": "5.26"},
        git_commit=None,
    )
    atlas_store.create_run(run)
    yield run
    atlas_store.delete_run(run.id)


# ----- models (each loaded once per session) -------------------------------------------------


@pytest.fixture(scope="session")
def random_gpt2_model() -> LoadedModel:
    """GPT-2 small's shape and tokenizer, random weights (12 layers × 12 heads, d_model 768)."""
    return random_gpt2(seed=0)


@pytest.fixture(scope="session")
def tiny_model() -> LoadedModel:
    """A 3-layer, 4-head, d_model 64 random GPT-2 with the real tokenizer."""
    return random_gpt2(seed=1, n_layers=3, n_heads=4, d_model=64)


@pytest.fixture(scope="session")
def toy_model() -> LoadedModel:
    """The trained IOI model shipped with the project."""
    return load_model("toy-ioi")


@pytest.fixture(params=["random_gpt2_model", "tiny_model", "toy_model"])
def any_model(request: pytest.FixtureRequest) -> LoadedModel:
    return request.getfixturevalue(request.param)


# ----- a real toy-ioi atlas (ingested once per session) -------------------------------------


@pytest.fixture(scope="session")
def toy_ioi_run(atlas_store: AtlasStore, toy_model: LoadedModel) -> Iterator[str]:
    """The id of a complete 64-prompt toy-ioi run (mixed, seed 0) in the test atlas.

    Shared by every test that queries a real atlas (read-only: do not modify it); deleted at
    the end of the session. Its name mover is 3.1 (END→IO), fed by END→S2 heads 2.3/3.2.
    """
    from atlas.store.writer import ingest_run
    from ingest.pipeline import IngestConfig

    run_id = f"test-toy-ioi-64-{uuid.uuid4().hex[:8]}"
    config = IngestConfig(n_prompts=64, batch_size=32, seed=0)
    ingest_run(atlas_store, toy_model, config, run_id=run_id, show_progress=False)
    yield run_id
    atlas_store.delete_run(run_id)


# ----- Llama-family models -------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_llama() -> LoadedModel:
    """A 3-layer random Llama (RoPE θ = 50,000, RMSNorm, 4 query heads on 2 KV heads, d 64)."""
    from ingest.models.loading import random_llama

    return random_llama(seed=0)


@pytest.fixture(scope="session")
def smollm2() -> LoadedModel:
    """SmolLM2-135M, loaded once for the whole run (`make models` installs it)."""
    from ingest.models.loading import ModelUnavailableError

    try:
        return load_model("smollm2-135m")
    except ModelUnavailableError:
        pytest.skip("smollm2-135m not installed (circuit-atlas models install smollm2-135m)")


@pytest.fixture(scope="session")
def toy_ioi_acc_run(atlas_store: AtlasStore, toy_model: LoadedModel) -> Iterator[str]:
    """The id of a complete 64-prompt toy-ioi ACC run (mixed, seed 0): the same prompts as
    :func:`toy_ioi_run`, traced with ``--method acc``. Read-only; deleted at the end."""
    from atlas.store.writer import ingest_run
    from ingest.pipeline import IngestConfig

    run_id = f"test-toy-ioi-acc-64-{uuid.uuid4().hex[:8]}"
    config = IngestConfig(n_prompts=64, batch_size=32, seed=0, method="acc")
    ingest_run(atlas_store, toy_model, config, run_id=run_id, show_progress=False)
    yield run_id
    atlas_store.delete_run(run_id)
