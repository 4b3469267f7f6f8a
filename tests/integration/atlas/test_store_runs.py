"""The per-run aggregates (`RunLifecycle.aggregate_run`) and the templates that read them.

Each template that now reads an aggregate is compared, on the shared toy-ioi run, with its
previous formulation: the Cypher that counted over the run's raw firings, USES and WRITES at
query time (kept here, or for shared_features in tests/fixtures, as the independent
computation).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from atlas.store.store import AtlasStore
from ingest.records.types import ModelRecord, RunRecord
from tests.fixtures.query_graph import N_HEADS, N_LAYERS, query_batch
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


# shared_features before the broadcast aggregate: per aligned pair and written site, a seek of
# the partner's firings and a read of their USES and WRITES.
RAW_SHARED_FEATURES = (
    Path(__file__).parents[2] / "fixtures" / "shared_features_reference.cypher"
).read_text()

AGGREGATE_LABELS = ("FiringCount", "SparseSetCount", "FeatureUse", "FeatureWriters", "Broadcast")


def raw(store: AtlasStore, query: str, run_id: str, **parameters: Any) -> list[dict[str, Any]]:
    records = store.driver.execute_query(
        query, run_id=run_id, parameters_=parameters, database_=store.database
    ).records
    return [record.data() for record in records]


def raw_shared_features(store: AtlasStore, run_id: str, **parameters: Any) -> list[dict[str, Any]]:
    """The reference's rows in the template's order and limit. The reference leaves the order
    of rows that differ only in `partner_side` open; the template orders them by it last."""
    rows = raw(store, RAW_SHARED_FEATURES, run_id, **(parameters | {"limit": 1_000_000}))
    rows.sort(
        key=lambda r: (
            -r["partner_firings"], -r["cos"], r["index"], r["side"], r["partner"],
            r["partner_index"], r["partner_side"],
        )
    )  # fmt: skip
    return rows[: parameters["limit"]]


def keyed(rows: list[dict[str, Any]], *key: str) -> dict[tuple, dict[str, Any]]:
    table = {tuple(row[k] for k in key): row for row in rows}
    assert len(table) == len(rows), "rows are not unique on the key"
    return table


def aggregate_nodes(store: AtlasStore, run_id: str) -> list[tuple]:
    records = store.driver.execute_query(
        "MATCH (n {run_id: $run_id}) WHERE any(label IN labels(n) WHERE label IN $labels) "
        "RETURN labels(n) AS labels, properties(n) AS p",
        run_id=run_id,
        labels=list(AGGREGATE_LABELS),
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
    assert {labels for labels, _ in before} == {(label,) for label in AGGREGATE_LABELS}
    assert toy_ioi_run not in atlas_store.runs_without_aggregates()


@pytest.mark.parametrize("prompts_per_part", [1, 5])
def test_broadcasts_counted_part_by_part_equal_one_part(
    atlas_store: AtlasStore, toy_ioi_run: str, prompts_per_part: int
) -> None:
    """The shared run's 64 prompts are one part by default (checked against the raw reference
    above); counted a part of 1 or 5 prompts at a time, the partner firings' counts must add
    up to the same nodes."""
    before = aggregate_nodes(atlas_store, toy_ioi_run)
    try:
        atlas_store.aggregate_broadcasts(toy_ioi_run, prompts_per_part=prompts_per_part)
        assert aggregate_nodes(atlas_store, toy_ioi_run) == before
    finally:
        atlas_store.aggregate_broadcasts(toy_ioi_run)


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


# ----- shared_features on the broadcast aggregate ----------------------------------------------

# (dest_role, src_role): a role pair, either role open, both open, and roles no firing has
ROLE_FILTERS = [
    ("END", "IO"), ("END", None), (None, "IO"), (None, None), ("S2", None), (None, "S1"),
    ("END", "no-such-role"),
]  # fmt: skip


@pytest.mark.parametrize(("dest_role", "src_role"), ROLE_FILTERS)
def test_shared_features_equal_the_per_pair_reference(
    atlas_store: AtlasStore, toy_ioi_run: str, dest_role: str | None, src_role: str | None
) -> None:
    rows = broadcasts = 0
    for layer in range(1, 4):
        for head in range(4):
            for min_share, min_cos, limit in [(0.0, 0.5, 1000), (0.3, 0.7, 1000), (0.1, 0.5, 3)]:
                parameters = {
                    "layer": layer, "head": head, "dest_role": dest_role, "src_role": src_role,
                    "min_share": min_share, "min_cos": min_cos, "limit": limit,
                }  # fmt: skip
                expected = raw_shared_features(atlas_store, toy_ioi_run, **parameters)
                got = atlas_store.read_template("shared_features", run_id=toy_ioi_run, **parameters)
                assert got == expected, parameters
                rows += len(expected)
                broadcasts += sum(row["partner_firings"] > 0 for row in expected)
    if src_role != "no-such-role":
        assert rows > 30 and broadcasts > 10


def test_shared_features_count_partner_firings_once_across_role_pairs(
    atlas_store: AtlasStore, toy_ioi_run: str
) -> None:
    """A partner firing read through several role pairs' writes counts once when both roles
    are open: summing the role pairs' counts would be wrong (the case the aggregate keeps
    per role filter)."""
    key = ("index", "side", "partner", "partner_index", "partner_side")
    parameters = {"layer": 3, "head": 1, "min_share": 0.0, "min_cos": 0.5, "limit": 1000}
    both_open = keyed(
        atlas_store.read_template(
            "shared_features", run_id=toy_ioi_run, dest_role=None, src_role=None, **parameters
        ),
        *key,
    )
    pairs = raw(
        atlas_store,
        "MATCH (f:Firing {run_id: $run_id, layer: 3, head: 1}) "
        "RETURN DISTINCT f.dest_role AS dest_role, f.src_role AS src_role",
        toy_ioi_run,
    )
    summed: dict[tuple, int] = dict.fromkeys(both_open, 0)
    for pair in pairs:
        for row in atlas_store.read_template(
            "shared_features", run_id=toy_ioi_run, **pair, **parameters
        ):
            summed[tuple(row[k] for k in key)] += row["partner_firings"]
    assert all(summed[k] >= row["partner_firings"] for k, row in both_open.items())
    assert any(summed[k] > row["partner_firings"] > 0 for k, row in both_open.items())


@pytest.fixture
def roleless_run(atlas_store: AtlasStore) -> Iterator[RunRecord]:
    """The hand-built run of tests/fixtures/query_graph.py on a model of its own, complete,
    with the roles of some firings removed (prompt 3's: root 3.0 and 2.2 have no dest role)."""
    model = ModelRecord(
        id=f"roleless-{uuid.uuid4().hex[:8]}", n_layers=N_LAYERS, n_heads=N_HEADS, d_model=8,
        d_head=4,
    )  # fmt: skip
    run = RunRecord(
        id=f"roleless-{uuid.uuid4().hex[:8]}", model_id=model.id, model_revision=None,
        method="sad", params={}, dataset={}, versions={}, git_commit=None,
    )  # fmt: skip
    batch = query_batch(run.id)
    batch = replace(
        batch,
        singular_vectors=[replace(v, model_id=model.id) for v in batch.singular_vectors],
        aligned=[replace(a, model_id=model.id) for a in batch.aligned],
        firings=[replace(f, dest_role=None) if f.prompt == 3 else f for f in batch.firings],
    )
    atlas_store.write_model(model)
    atlas_store.create_run(run)
    atlas_store.write_batch(batch)
    atlas_store.complete_run(run.id)
    yield run
    atlas_store.delete_run(run.id)


def shared_features_of_root(store: AtlasStore, run_id: str) -> list[list[dict[str, Any]]]:
    """The template's rows on root 3.0 under every role filter, checked against the reference."""
    answers = []
    for dest_role, src_role in [("END", "IO"), ("END", None), (None, "IO"), (None, None)]:
        parameters = {
            "layer": 3, "head": 0, "dest_role": dest_role, "src_role": src_role,
            "min_share": 0.0, "min_cos": 0.5, "limit": 50,
        }  # fmt: skip
        expected = raw_shared_features(store, run_id, **parameters)
        assert store.read_template("shared_features", run_id=run_id, **parameters) == expected
        answers.append(expected)
    return answers


def test_shared_features_of_firings_without_a_role_count_only_under_an_open_role(
    atlas_store: AtlasStore, roleless_run: RunRecord
) -> None:
    by_filter = shared_features_of_root(atlas_store, roleless_run.id)
    # prompt 3 (the broadcast of 1.0 into 3.0 and 2.2) is left out while dest_role is END
    assert by_filter[0] == by_filter[1] and by_filter[2] == by_filter[3]
    assert by_filter[0] != by_filter[3]
    assert [row["partner_firings"] for row in by_filter[3]] == [1, 0, 0]
    assert [row["partner_firings"] for row in by_filter[0]] == [0, 0, 0]


def test_broadcasts_follow_the_models_aligned_pairs(
    atlas_store: AtlasStore, roleless_run: RunRecord
) -> None:
    before = shared_features_of_root(atlas_store, roleless_run.id)
    aligned = query_batch(roleless_run.id).aligned[1:]  # without 3.0#0 (q) ~ 2.2#0 (q)
    atlas_store.replace_aligned(
        roleless_run.model_id,
        [replace(a, model_id=roleless_run.model_id) for a in aligned],
        params="fewer pairs",
    )
    after = shared_features_of_root(atlas_store, roleless_run.id)  # equal to the reference
    assert [(r["index"], r["side"], r["partner"]) for r in before[3]] == [
        (0, "q", "2.2"), (1, "q", "3.1"), (0, "k", "2.2"),
    ]  # fmt: skip
    assert [(r["index"], r["side"], r["partner"]) for r in after[3]] == [
        (1, "q", "3.1"), (0, "k", "2.2"),
    ]  # fmt: skip


def test_a_run_of_another_method_gets_no_broadcast_aggregate(
    atlas_store: AtlasStore, atlas_run: RunRecord
) -> None:
    raw(atlas_store, "MATCH (r:Run {id: $run_id}) SET r.method = 'acc'", atlas_run.id)
    atlas_store.write_batch(sample_batch(atlas_run.id))
    atlas_store.complete_run(atlas_run.id)
    labels = {labels for labels, _ in aggregate_nodes(atlas_store, atlas_run.id)}
    assert labels == {("FiringCount",), ("SparseSetCount",)}
