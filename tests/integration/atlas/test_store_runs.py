"""The per-run aggregates (`RunLifecycle.aggregate_run`) and the templates that read them.

Each template that now reads an aggregate is compared, on the shared toy-ioi run, with its
previous formulation: the Cypher that counted over the run's raw firings, USES and WRITES at
query time (kept here as the independent computation).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from atlas.store.store import AtlasStore
from ingest.records.types import RunRecord
from tests.integration.atlas.test_store import sample_batch

# The templates' formulations before the aggregates, over raw rows.
RAW_FIRING_COUNTS = """
MATCH (f:Firing {run_id: $run_id})
RETURN f.layer AS layer, f.head AS head, coalesce(f.dest_role, 'other') AS dest_role,
       coalesce(f.src_role, 'other') AS src_role, count(*) AS firings,
       count(DISTINCT f.prompt) AS prompts, avg(f.n_svs) AS mean_n_svs
"""

RAW_SPARSE_SET_SIZES = """
MATCH (f:Firing {run_id: $run_id})
RETURN f.layer AS layer, f.head AS head, f.n_svs AS n_svs, count(*) AS firings
"""

RAW_RUN_COUNTS = """
MATCH (r:Run {id: $run_id})
RETURN COUNT { (r)-[:HAS_PROMPT]->() } AS prompts,
       COUNT { MATCH (:Firing {run_id: $run_id}) } AS firings,
       COUNT { MATCH (:Firing {run_id: $run_id})-[:USES]->() } AS sparse_set_uses,
       COUNT { MATCH (:Firing {run_id: $run_id})<-[:WRITES]-() } AS writes,
       COUNT { MATCH ()-[:COMMUNICATES {run_id: $run_id}]->() } AS communicates,
       COUNT { MATCH (:Validation {run_id: $run_id}) } AS validations
"""


def raw(store: AtlasStore, query: str, run_id: str) -> list[dict[str, Any]]:
    records = store.driver.execute_query(query, run_id=run_id, database_=store.database).records
    return [record.data() for record in records]


def keyed(rows: list[dict[str, Any]], *key: str) -> dict[tuple, dict[str, Any]]:
    table = {tuple(row[k] for k in key): row for row in rows}
    assert len(table) == len(rows), "rows are not unique on the key"
    return table


def aggregate_nodes(store: AtlasStore, run_id: str) -> list[tuple]:
    records = store.driver.execute_query(
        "MATCH (n {run_id: $run_id}) WHERE n:FiringCount OR n:SparseSetCount "
        "RETURN labels(n) AS labels, properties(n) AS p",
        run_id=run_id,
        database_=store.database,
    ).records
    return sorted((tuple(r["labels"]), sorted(r["p"].items())) for r in records)


def test_firing_counts_equal_the_count_over_raw_firings(
    atlas_store: AtlasStore, toy_ioi_run: str
) -> None:
    key = ("layer", "head", "dest_role", "src_role")
    stored = keyed(atlas_store.read_template("firing_counts", run_id=toy_ioi_run), *key)
    expected = keyed(raw(atlas_store, RAW_FIRING_COUNTS, toy_ioi_run), *key)
    assert len(expected) > 20 and stored.keys() == expected.keys()
    for k, row in expected.items():
        assert (stored[k]["firings"], stored[k]["prompts"]) == (row["firings"], row["prompts"])
        assert math.isclose(stored[k]["mean_n_svs"], row["mean_n_svs"], rel_tol=1e-12)
    rows = atlas_store.read_template("firing_counts", run_id=toy_ioi_run)
    order = [(r["layer"], r["head"], -r["firings"]) for r in rows]
    assert order == sorted(order)


def test_sparse_set_sizes_equal_the_count_over_raw_firings(
    atlas_store: AtlasStore, toy_ioi_run: str
) -> None:
    rows = atlas_store.read_template("sparse_set_sizes", run_id=toy_ioi_run)
    expected = raw(atlas_store, RAW_SPARSE_SET_SIZES, toy_ioi_run)
    key = ("layer", "head", "n_svs")
    assert len(expected) > 20 and keyed(rows, *key) == keyed(expected, *key)
    assert [tuple(r[k] for k in key) for r in rows] == sorted(keyed(expected, *key))


def test_run_counts_of_a_complete_run_equal_the_live_counts(
    atlas_store: AtlasStore, toy_ioi_run: str
) -> None:
    (counts,) = atlas_store.read_template("run_counts", run_id=toy_ioi_run)
    (expected,) = raw(atlas_store, RAW_RUN_COUNTS, toy_ioi_run)
    assert counts == expected and counts["writes"] > counts["firings"] > 0


def test_aggregates_are_recomputed_not_incremented(
    atlas_store: AtlasStore, toy_ioi_run: str
) -> None:
    before = aggregate_nodes(atlas_store, toy_ioi_run)
    atlas_store.aggregate_run(toy_ioi_run)
    assert aggregate_nodes(atlas_store, toy_ioi_run) == before and len(before) > 40
    assert toy_ioi_run not in atlas_store.runs_without_aggregates()


@pytest.mark.parametrize("template", ["firing_counts", "sparse_set_sizes"])
def test_a_run_without_firings_has_no_aggregate_rows(
    atlas_store: AtlasStore, template: str
) -> None:
    assert atlas_store.read_template(template, run_id="no-such-run") == []


def test_a_running_run_is_counted_live_and_its_aggregates_go_with_it(
    atlas_store: AtlasStore, atlas_run: RunRecord
) -> None:
    atlas_store.write_batch(sample_batch(atlas_run.id))
    (live,) = atlas_store.read_template("run_counts", run_id=atlas_run.id)
    assert live == raw(atlas_store, RAW_RUN_COUNTS, atlas_run.id)[0] and live["firings"] > 0
    assert atlas_store.read_template("firing_counts", run_id=atlas_run.id) == []
    atlas_store.complete_run(atlas_run.id)
    assert atlas_store.read_template("run_counts", run_id=atlas_run.id) == [
        live | {"communicates": 2}
    ]
    assert aggregate_nodes(atlas_store, atlas_run.id)
    atlas_store.delete_run(atlas_run.id)
    assert aggregate_nodes(atlas_store, atlas_run.id) == []
