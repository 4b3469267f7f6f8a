"""``load --bulk``: shards of a toy-ioi run imported offline by ``neo4j-admin database import
full`` give exactly the graph ``ingest`` of the same prompts writes.

The import replaces its server's database, so the test runs on a server instance of its own
(:func:`tests.fixtures.neo4j.bulk_test_server`), started fresh and stopped at the end; the
server the other tests share is not touched.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from atlas.errors import AtlasError
from atlas.interchange.shards import ShardSpec
from atlas.scale.bulk import bulk_load
from atlas.scale.trace import ModelSpec, ShardJob, trace_shards
from atlas.server.local import LocalServer
from atlas.store.connection import close_drivers
from atlas.store.store import AtlasStore
from atlas.store.writer import ingest_run
from ingest.models.loading import LoadedModel
from ingest.pipeline import IngestConfig
from tests.fixtures.graphs import assert_same_graph, dump, totals
from tests.fixtures.neo4j import bulk_test_server

CONFIG = IngestConfig(n_prompts=24, batch_size=8, seed=3)


@pytest.fixture(scope="module")
def bulk_server() -> Iterator[LocalServer]:
    if os.environ.get("NEO4J_URI"):
        pytest.skip("load --bulk needs a local server it may replace (NEO4J_URI is set)")
    server = bulk_test_server()
    server.stop()
    shutil.rmtree(server.data, ignore_errors=True)
    server.credentials_file.unlink(missing_ok=True)
    try:
        server.start()
    except AtlasError as error:
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(f"The bulk test server could not start: {error}")
        pytest.skip(f"The bulk test server could not start: {error}")
    yield server
    close_drivers(server.bolt_uri)  # only this server's: the other tests' drivers stay open
    server.stop()


def test_bulk_import_of_shards_gives_the_ingested_graph(
    bulk_server: LocalServer, toy_model: LoadedModel, tmp_path: Path
) -> None:
    store = AtlasStore.connect(bulk_server.start())
    store.init_schema()
    run_id = f"test-bulk-{uuid.uuid4().hex[:8]}"
    ingest_run(store, toy_model, CONFIG, run_id=run_id, show_progress=False)
    expected = dump(store, run_id)
    expected_totals = totals(store)  # the database held this run only

    jobs = [
        ShardJob(ModelSpec("toy-ioi"), CONFIG, run_id, ShardSpec(i, 2), str(tmp_path))
        for i in range(2)
    ]
    trace_shards(jobs)
    summary = bulk_load(run_id, [tmp_path], server=bulk_server)
    assert summary.nodes > 0 and summary.relationships > summary.nodes

    store = AtlasStore.connect(bulk_server.start())
    graph = dump(store, run_id)
    assert sum(graph["writes"].values()) > 500
    assert_same_graph(graph, expected)
    assert totals(store) == expected_totals  # the old database is gone, nothing else is there
    run = store.show_run(run_id)
    assert run is not None and run["run"]["status"] == "complete"


def test_bulk_refuses_an_acc_run_before_touching_the_database(
    bulk_server: LocalServer, tmp_path: Path
) -> None:
    run_id = f"test-bulk-acc-{uuid.uuid4().hex[:8]}"
    config = replace(CONFIG, n_prompts=8, method="acc")
    trace_shards([ShardJob(ModelSpec("toy-ioi"), config, run_id, ShardSpec(0, 1), str(tmp_path))])
    pid = bulk_server.running_pid()
    with pytest.raises(AtlasError, match="SAD runs"):
        bulk_load(run_id, [tmp_path], server=bulk_server)
    assert bulk_server.running_pid() == pid  # not stopped
