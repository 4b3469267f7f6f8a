"""The store against the real Neo4j server: schema, idempotent batches, lifecycle, deletion."""

from __future__ import annotations

from dataclasses import replace

import pytest
from neo4j.exceptions import ConstraintError

from atlas.errors import AtlasError
from atlas.store.schema import CONSTRAINTS, INDEXES, SCHEMA_VERSION
from atlas.store.store import FRESH_CHUNK_FIRINGS, AtlasStore, WriteCounts
from ingest.records.types import (
    BatchDone,
    ComponentRecord,
    FiringRecord,
    PromptRecord,
    RecordBatch,
    RunRecord,
    SingularVectorRecord,
    SparseTerm,
    WriteEdgeRecord,
)

INJECTION = "x'}) DETACH DELETE n //"


def sample_batch(
    run_id: str, model_id: str = "test-model", text: str = "When Mary and John"
) -> RecordBatch:
    """Two prompts; head 1.0 fires END→IO in both (twice in prompt 0), fed by 0.1 and 0.0."""
    prompts = [
        PromptRecord(
            run_id=run_id,
            idx=idx,
            text=text,
            template="T0",
            order="ABBA",
            io="Mary",
            s="John",
            roles={"IO": 2, "END": 5},
            tokens=["a"],
            logit_diff=2.0 - 3 * idx,
        )
        for idx in (0, 1)
    ]
    terms = (
        SparseTerm(index=3, rank=0, term=2.5, sign=1),
        SparseTerm(index=1, rank=1, term=0.5, sign=-1),
    )
    firings = [
        FiringRecord(
            run_id=run_id,
            prompt=0,
            layer=1,
            head=0,
            dest=5,
            src=2,
            dest_role="END",
            src_role="IO",
            attn=0.8,
            score=3.0,
            n_svs=2,
            sparse_set=terms,
        ),
        FiringRecord(
            run_id=run_id,
            prompt=0,
            layer=1,
            head=0,
            dest=6,
            src=2,
            dest_role="END+1",
            src_role="IO",
            attn=0.6,
            score=2.0,
            n_svs=1,
            sparse_set=terms[:1],
        ),
        FiringRecord(
            run_id=run_id,
            prompt=1,
            layer=1,
            head=0,
            dest=5,
            src=2,
            dest_role="END",
            src_role="IO",
            attn=0.7,
            score=2.5,
            n_svs=2,
            sparse_set=terms,
        ),
    ]
    edges = [
        WriteEdgeRecord(
            firing=f.key,
            writer_layer=0,
            writer_head=1,
            side="q",
            weight=0.4 + i / 10,
            pos=f.dest,
            role="END",
        )
        for i, f in enumerate(firings)
    ] + [
        WriteEdgeRecord(
            firing=firings[0].key,
            writer_layer=0,
            writer_head=0,
            side="k",
            weight=1.0,
            pos=2,
            role="IO",
        )
    ]
    return RecordBatch(
        components=[
            ComponentRecord(model_id=model_id, kind="head", layer=1, head=0, ioi_class="name mover")
        ],
        singular_vectors=[
            SingularVectorRecord(model_id=model_id, layer=1, head=0, index=i, sigma=4.0 - i)
            for i in range(4)
        ],
        prompts=prompts,
        firings=firings,
        edges=edges,
    )


def count_graph(store: AtlasStore) -> tuple[int, int]:
    records = store.driver.execute_query(
        "MATCH (n) RETURN count(n) AS nodes, COUNT { ()-[]->() } AS rels",
        database_=store.database,
    ).records
    return records[0]["nodes"], records[0]["rels"]


def test_schema_has_every_constraint_and_index(atlas_store: AtlasStore) -> None:
    assert atlas_store.init_schema() == SCHEMA_VERSION  # a second init changes nothing
    driver, db = atlas_store.driver, atlas_store.database
    constraints = {
        r["name"]: r for r in driver.execute_query("SHOW CONSTRAINTS", database_=db).records
    }
    indexes = {r["name"] for r in driver.execute_query("SHOW INDEXES", database_=db).records}
    assert set(CONSTRAINTS) <= set(constraints)
    assert all(constraints[name]["type"].endswith("UNIQUENESS") for name in CONSTRAINTS)
    assert set(INDEXES) <= indexes
    assert atlas_store.schema_version() == SCHEMA_VERSION


def test_same_batch_twice_creates_nothing_new(
    atlas_store: AtlasStore, atlas_run: RunRecord
) -> None:
    batch = sample_batch(atlas_run.id)
    first = atlas_store.write_batch(batch)
    assert first.nodes_created > 0 and first.relationships_created > 0
    graph = count_graph(atlas_store)
    second = atlas_store.write_batch(batch)
    assert (second.nodes_created, second.relationships_created) == (0, 0)
    assert count_graph(atlas_store) == graph
    summary = atlas_store.show_run(atlas_run.id)
    assert summary is not None
    assert (summary["prompts"], summary["firings"], summary["edges"]) == (2, 3, 4)


def test_ioi_class_survives_components_derived_from_firings(
    atlas_store: AtlasStore, atlas_run: RunRecord
) -> None:
    atlas_store.write_batch(sample_batch(atlas_run.id))
    records = atlas_store.driver.execute_query(
        "MATCH (h:Head {model_id: 'test-model', id: '1.0'}) RETURN h.ioi_class AS c",
        database_=atlas_store.database,
    ).records
    assert [r["c"] for r in records] == ["name mover"]


def test_complete_run_counts_distinct_prompts(
    atlas_store: AtlasStore, atlas_run: RunRecord
) -> None:
    atlas_store.write_batch(sample_batch(atlas_run.id))
    assert atlas_store.complete_run(atlas_run.id) == 2  # (0.1→1.0, q, END) and (0.0→1.0, k, IO)
    assert atlas_store.aggregate_communication(atlas_run.id) == 2  # recomputing is idempotent
    rows = atlas_store.driver.execute_query(
        "MATCH (w)-[c:COMMUNICATES {run_id: $run}]->(h:Head) "
        "RETURN w.id AS w, h.id AS h, c.side AS side, c.n_prompts AS n, c.mean_weight AS mean "
        "ORDER BY side DESC",
        run=atlas_run.id,
        database_=atlas_store.database,
    ).records
    assert [(r["w"], r["h"], r["side"], r["n"]) for r in rows] == [
        ("0.1", "1.0", "q", 2),
        ("0.0", "1.0", "k", 1),
    ]
    assert rows[0]["mean"] == pytest.approx(0.5)
    summary = atlas_store.show_run(atlas_run.id)
    assert summary is not None and summary["run"]["status"] == "complete"


def test_run_behaviour_is_aggregated_from_its_prompts(
    atlas_store: AtlasStore, atlas_run: RunRecord
) -> None:
    assert atlas_store.record_behaviour(atlas_run.id) == {}  # no prompts yet
    atlas_store.write_batch(sample_batch(atlas_run.id))  # logit differences 2.0 and -1.0
    behaviour = atlas_store.record_behaviour(atlas_run.id)
    assert behaviour == {"ioi_accuracy": 0.5, "logit_diff_mean": 0.5, "logit_diff_min": -1.0}
    stored = atlas_store.show_run(atlas_run.id)
    assert stored is not None and stored["run"]["ioi_accuracy"] == 0.5


def test_delete_removes_one_run_and_nothing_else(
    atlas_store: AtlasStore, atlas_run: RunRecord
) -> None:
    atlas_store.write_batch(sample_batch(atlas_run.id))
    atlas_store.complete_run(atlas_run.id)
    before = count_graph(atlas_store)
    other = replace(atlas_run, id=atlas_run.id + "-other")
    atlas_store.create_run(other)
    atlas_store.write_batch(sample_batch(other.id))
    atlas_store.complete_run(other.id)
    kept = atlas_store.show_run(atlas_run.id)

    deleted = atlas_store.delete_run(other.id)

    assert atlas_store.show_run(other.id) is None
    assert atlas_store.show_run(atlas_run.id) == kept
    assert count_graph(atlas_store) == before  # shared heads, SVs and the model remain
    assert deleted.nodes_created < 0 and deleted.relationships_created < 0


def test_firings_of_an_unknown_run_are_refused(atlas_store: AtlasStore) -> None:
    with pytest.raises(AtlasError, match="not in the atlas"):
        atlas_store.write_batch(sample_batch("no-such-run"))


def test_edges_to_missing_firings_roll_back_the_batch(
    atlas_store: AtlasStore, atlas_run: RunRecord
) -> None:
    batch = sample_batch(atlas_run.id)
    before = count_graph(atlas_store)
    with pytest.raises(AtlasError, match="Only 0 of 4 edges"):
        atlas_store.write_batch(replace(batch, firings=()))
    assert count_graph(atlas_store) == before  # the prompts of that batch were not kept


def test_user_input_is_stored_verbatim_and_deletes_nothing(
    atlas_store: AtlasStore, atlas_run: RunRecord
) -> None:
    atlas_store.write_batch(sample_batch(atlas_run.id))
    evil_run = replace(atlas_run, id=INJECTION, method=INJECTION, params={INJECTION: INJECTION})
    atlas_store.create_run(evil_run)
    atlas_store.write_batch(sample_batch(INJECTION, text=INJECTION))
    before = count_graph(atlas_store)

    summary = atlas_store.show_run(INJECTION)
    assert summary is not None
    assert summary["run"]["id"] == INJECTION and summary["run"]["method"] == INJECTION
    texts = atlas_store.driver.execute_query(
        "MATCH (p:Prompt {run_id: $run}) RETURN DISTINCT p.text AS text",
        run=INJECTION,
        database_=atlas_store.database,
    ).records
    assert [r["text"] for r in texts] == [INJECTION]
    assert count_graph(atlas_store) == before

    atlas_store.delete_run(INJECTION)
    assert atlas_store.show_run(INJECTION) is None
    assert atlas_store.show_run(atlas_run.id) is not None
    assert atlas_store.show_run(atlas_run.id)["firings"] == 3  # type: ignore[index]


# ----- the fresh-batch (CREATE) path of an ingestion ----------------------------------------

GRAPH_OF_RUN = """
MATCH (p:Prompt {run_id: $run})<-[:HAS_PROMPT]-(:Run {id: $run})
OPTIONAL MATCH (p)<-[:IN_PROMPT]-(f:Firing)-[:OF_HEAD]->(h:Head)
OPTIONAL MATCH (f)-[u:USES]->(sv:SingularVector)
OPTIONAL MATCH (w)-[e:WRITES]->(f)
RETURN p.idx, p {.*, run_id: null}, h.id, f {.*, run_id: null}, sv.index, u {.*}, w.id,
       e {.*}
ORDER BY p.idx, f.dest, sv.index, w.id, e.side
"""


def graph_of_run(store: AtlasStore, run_id: str) -> list[list[object]]:
    records = store.driver.execute_query(GRAPH_OF_RUN, run=run_id, database_=store.database)
    return [list(record.values()) for record in records.records]


@pytest.mark.parametrize("chunk_firings", [1, 2, FRESH_CHUNK_FIRINGS])
def test_fresh_batch_writes_the_same_graph_as_merging(
    atlas_store: AtlasStore, atlas_run: RunRecord, chunk_firings: int
) -> None:
    """CREATE path (firings in statements of 1, 2 or all) vs MERGE path: the same nodes,
    relationships and properties, per run."""
    merged = sample_batch(atlas_run.id)
    atlas_store.write_batch(replace(merged, prompts=(), firings=(), edges=()))  # heads, SVs
    fresh_run = replace(atlas_run, id=atlas_run.id + "-fresh")
    atlas_store.create_run(fresh_run)
    try:
        fresh = sample_batch(fresh_run.id)
        prepared = atlas_store.prepare_fresh_batch(
            replace(
                fresh,
                components=(),
                singular_vectors=(),
                done=BatchDone(run_id=fresh_run.id, index=0),
            ),
            chunk_firings=chunk_firings,
        )
        assert sum(s.what == "firings" for s in prepared.statements) == -(-3 // chunk_firings)
        counts = atlas_store.write_prepared(prepared)
        atlas_store.write_batch(replace(merged, done=BatchDone(run_id=atlas_run.id, index=0)))
        # 2 HAS_PROMPT, 3 × (OF_HEAD, IN_PROMPT), 5 USES, 4 WRITES
        assert (counts.nodes_created, counts.relationships_created) == (5, 17)
        assert graph_of_run(atlas_store, fresh_run.id) == graph_of_run(atlas_store, atlas_run.id)
        assert atlas_store.done_batches(fresh_run.id) == {0}
    finally:
        atlas_store.delete_run(fresh_run.id)


def test_fresh_batch_failing_in_a_later_statement_writes_nothing(
    atlas_store: AtlasStore, atlas_run: RunRecord
) -> None:
    """The statements are sent back to back; a count check failing in the last firing chunk
    (its singular vector is not in the atlas) rolls back the chunks and prompts before it."""
    batch = sample_batch(atlas_run.id)
    atlas_store.write_batch(replace(batch, prompts=(), firings=(), edges=()))
    unknown = (SparseTerm(index=99, rank=0, term=1.0, sign=1),)
    last = replace(batch.firings[2], sparse_set=unknown, n_svs=1)
    fresh = replace(
        batch,
        components=(),
        singular_vectors=(),
        firings=[*batch.firings[:2], last],
        done=BatchDone(run_id=atlas_run.id, index=0),
    )
    before = count_graph(atlas_store)
    with pytest.raises(AtlasError, match="Only 0 of 1 firings"):
        atlas_store.write_prepared(atlas_store.prepare_fresh_batch(fresh, chunk_firings=1))
    assert count_graph(atlas_store) == before
    assert atlas_store.done_batches(atlas_run.id) == set()


def test_fresh_batch_sent_again_after_its_commit_writes_nothing(
    atlas_store: AtlasStore, atlas_run: RunRecord
) -> None:
    """The commit-unknown case: the driver runs a batch's transaction again after the first
    attempt committed (the connection broke before the answer came). The marker, read first
    in the transaction, makes the second attempt write nothing instead of failing on the
    uniqueness constraints."""
    batch = sample_batch(atlas_run.id)
    atlas_store.write_batch(replace(batch, prompts=(), firings=(), edges=()))
    fresh = replace(
        batch, components=(), singular_vectors=(), done=BatchDone(run_id=atlas_run.id, index=0)
    )
    prepared = atlas_store.prepare_fresh_batch(fresh)
    first = atlas_store.write_prepared(prepared)
    graph = count_graph(atlas_store)
    assert first.nodes_created > 0
    assert atlas_store.write_prepared(prepared) == WriteCounts()
    assert count_graph(atlas_store) == graph
    assert atlas_store.done_batches(atlas_run.id) == {0}


def test_fresh_batch_written_under_another_marker_fails_and_duplicates_nothing(
    atlas_store: AtlasStore, atlas_run: RunRecord
) -> None:
    """Past the marker, the uniqueness constraints still stand behind every CREATE."""
    batch = sample_batch(atlas_run.id)
    atlas_store.write_batch(replace(batch, prompts=(), firings=(), edges=()))
    fresh = replace(
        batch, components=(), singular_vectors=(), done=BatchDone(run_id=atlas_run.id, index=0)
    )
    atlas_store.write_fresh_batch(fresh)
    graph = count_graph(atlas_store)
    with pytest.raises(ConstraintError):
        atlas_store.write_fresh_batch(replace(fresh, done=BatchDone(atlas_run.id, index=1)))
    assert count_graph(atlas_store) == graph
    assert atlas_store.done_batches(atlas_run.id) == {0}


def test_fresh_batch_must_be_whole(atlas_store: AtlasStore, atlas_run: RunRecord) -> None:
    batch = sample_batch(atlas_run.id)
    atlas_store.write_batch(replace(batch, prompts=(), firings=(), edges=()))
    fresh = replace(
        batch, components=(), singular_vectors=(), done=BatchDone(run_id=atlas_run.id, index=0)
    )
    before = count_graph(atlas_store)
    with pytest.raises(ValueError, match="whole"):
        atlas_store.write_fresh_batch(replace(fresh, firings=fresh.firings[1:]))
    with pytest.raises(ValueError, match="whole"):
        atlas_store.write_fresh_batch(replace(fresh, prompts=fresh.prompts[:1]))
    stray = replace(fresh.firings[0], run_id="another-run")
    with pytest.raises(ValueError, match="one run"):
        atlas_store.write_fresh_batch(replace(fresh, firings=[stray, *fresh.firings[1:]]))
    assert count_graph(atlas_store) == before
