"""``load --bulk``: shards of a toy-ioi run (SAD or ACC) imported offline by ``neo4j-admin database
import full`` give exactly the graph ``ingest`` of the same prompts writes.

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
# ACC fires on far more pairs (A ≥ 1/(i+1)) and records every component: a few prompts suffice.
ACC_CONFIG = replace(CONFIG, n_prompts=8, batch_size=4, method="acc")


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


@pytest.mark.parametrize("config", [CONFIG, ACC_CONFIG], ids=["sad", "acc"])
def test_bulk_import_of_shards_gives_the_ingested_graph(
    bulk_server: LocalServer, toy_model: LoadedModel, tmp_path: Path, config: IngestConfig
) -> None:
    store = AtlasStore.connect(bulk_server.start())
    with store.driver.session(database=store.database) as session:  # the other method's import
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS").consume()
    store.init_schema()  # its version node included, as after the import
    run_id = f"test-bulk-{config.method}-{uuid.uuid4().hex[:8]}"
    ingest_run(store, toy_model, config, run_id=run_id, show_progress=False)
    expected = dump(store, run_id)
    expected_totals = totals(store)  # the database held this run only
    if config.method == "acc":  # what ACC adds is there to compare (dump's lists are tuples)
        firings = [dict(dict(entry)["p"]) for entry in expected["firings"]]
        assert any(f["sparse_dest"] == () for f in firings)  # the importer's CSV has no []
        assert any(f["sparse_source"] == () for f in firings)
        assert any(f.get("seed_weight") is not None for f in firings)
        writes = [(dict(entry)["w"], dict(dict(entry)["p"])) for entry in expected["writes"]]
        assert {"embed", "mlp0"} <= {writer for writer, _ in writes}
        assert any(edge.get("writer_pos") is not None for _, edge in writes)
        components = {dict(dict(entry)["p"])["id"] for entry in expected["components"]}
        assert "logit_direction" in components

    jobs = [
        ShardJob(ModelSpec("toy-ioi"), config, run_id, ShardSpec(i, 2), str(tmp_path))
        for i in range(2)
    ]
    trace_shards(jobs)
    summary = bulk_load(run_id, [tmp_path], server=bulk_server)
    assert summary.nodes > 0 and summary.relationships > 0  # ACC firings USE no vectors

    store = AtlasStore.connect(bulk_server.start())
    graph = dump(store, run_id)
    assert sum(graph["writes"].values()) > 200
    assert_same_graph(graph, expected)
    assert totals(store) == expected_totals  # the old database is gone, nothing else is there
    run = store.show_run(run_id)
    assert run is not None and run["run"]["status"] == "complete"
