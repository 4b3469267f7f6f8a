"""``load --bulk``: shards of several runs (SAD and ACC on toy-ioi, SAD on a second model) imported
offline at once by ``neo4j-admin database import full`` give exactly the graphs ``ingest`` of
the same prompts writes.

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
from atlas.scale.trace import trace_shard
from atlas.server.local import LocalServer
from atlas.store.connection import close_drivers
from atlas.store.store import AtlasStore
from atlas.store.writer import ingest_run
from ingest.models.loading import LoadedModel, random_gpt2
from ingest.pipeline import IngestConfig
from ingest.runtime import torch_threads
from tests.fixtures.graphs import assert_same_graph, dump, totals
from tests.fixtures.neo4j import bulk_test_server

CONFIG = IngestConfig(n_prompts=24, batch_size=8, seed=3)
# ACC fires on far more pairs (A ≥ 1/(i+1)) and records every component: a few prompts suffice.
ACC_CONFIG = replace(CONFIG, n_prompts=8, batch_size=4, method="acc")
TINY_CONFIG = replace(CONFIG, n_prompts=8, batch_size=4)


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


def test_bulk_import_of_several_runs_gives_the_ingested_graphs(
    bulk_server: LocalServer, toy_model: LoadedModel, tmp_path: Path
) -> None:
    """One import of three runs: SAD and ACC on toy-ioi, and SAD on a tiny random GPT-2 (a
    second model, whose head ids equal toy-ioi's). Each run's graph equals its ingest's."""
    tiny = random_gpt2(seed=1, n_layers=2, n_heads=2, d_model=32)
    store = AtlasStore.connect(bulk_server.start())
    with store.driver.session(database=store.database) as session:  # an earlier import
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 5000 ROWS").consume()
    store.init_schema()  # its version node included, as after the import
    runs = {
        f"test-bulk-{name}-{uuid.uuid4().hex[:8]}": (model, config)
        for name, model, config in (
            ("sad", toy_model, CONFIG),
            ("acc", toy_model, ACC_CONFIG),
            ("tiny", tiny, TINY_CONFIG),
        )
    }
    for run_id, (model, config) in runs.items():
        ingest_run(store, model, config, run_id=run_id, show_progress=False)
    expected = {run_id: dump(store, run_id) for run_id in runs}
    expected_totals = totals(store)  # the database held these runs only
    acc = next(graph for run_id, graph in expected.items() if "-acc-" in run_id)
    # what ACC adds is there to compare (dump's lists are tuples)
    firings = [dict(dict(entry)["p"]) for entry in acc["firings"]]
    assert any(f["sparse_dest"] == () for f in firings)  # the importer's CSV has no []
    assert any(f["sparse_source"] == () for f in firings)
    assert any(f.get("seed_weight") is not None for f in firings)
    writes = [(dict(entry)["w"], dict(dict(entry)["p"])) for entry in acc["writes"]]
    assert {"embed", "mlp0"} <= {writer for writer, _ in writes}
    assert any(edge.get("writer_pos") is not None for _, edge in writes)
    components = {dict(dict(entry)["p"])["id"] for entry in acc["components"]}
    assert "logit_direction" in components

    # toy-ioi's in two shards, tiny's in one; on one thread, as ingest and trace workers run
    # (an ACC weight's float32 sum depends on the thread count)
    with torch_threads(1):
        for run_id, (model, config) in runs.items():
            count = 1 if model is tiny else 2
            for index in range(count):
                trace_shard(model, config, run_id, ShardSpec(index, count), tmp_path)
    summary = bulk_load(list(runs), [tmp_path], server=bulk_server)
    assert summary.nodes > 0 and summary.relationships > 0
    assert summary.empty_lists > 0  # ACC's

    store = AtlasStore.connect(bulk_server.start())
    for run_id in runs:
        graph = dump(store, run_id)
        assert sum(graph["writes"].values()) > (0 if "-tiny-" in run_id else 200)
        assert_same_graph(graph, expected[run_id])
        run = store.show_run(run_id)
        assert run is not None and run["run"]["status"] == "complete"
    assert totals(store) == expected_totals  # the old database is gone, nothing else is there
