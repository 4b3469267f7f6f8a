"""ACC runs through the store (atlas.store.writer.ingest_run) on toy-ioi, against real Neo4j."""

from __future__ import annotations

import uuid

from atlas.store.store import AtlasStore
from atlas.store.writer import ingest_run
from ingest.models.loading import LoadedModel
from ingest.pipeline import IngestConfig


def test_an_acc_run_stores_components_seeds_and_communication(
    atlas_store: AtlasStore, toy_ioi_acc_run: str
) -> None:
    run = atlas_store.show_run(toy_ioi_acc_run)
    assert run is not None
    assert run["run"]["method"] == "acc" and run["run"]["status"] == "complete"
    assert run["firings"] > 0 and run["edges"] > 0
    methods = atlas_store._execute(
        "MATCH (f:Firing {run_id: $r}) RETURN collect(DISTINCT f.method) AS m",
        r=toy_ioi_acc_run,
    )
    assert methods[0]["m"] == ["acc"]
    kinds = atlas_store._execute(
        "MATCH (w:Component)-[c:COMMUNICATES {run_id: $r}]->(t:Component) "
        "RETURN collect(DISTINCT w.kind) AS writers, collect(DISTINCT t.kind) AS targets",
        r=toy_ioi_acc_run,
    )[0]
    assert {"head", "mlp", "embed"} <= set(kinds["writers"])
    assert set(kinds["targets"]) == {"head", "logit_direction"}
    # head writers keep the source token they read; leaves do not
    edges = atlas_store._execute(
        "MATCH (w:Component)-[e:WRITES]->(f:Firing {run_id: $r}) "
        "RETURN w.kind AS kind, e.writer_pos IS NOT NULL AS has_pos, count(*) AS n",
        r=toy_ioi_acc_run,
    )
    assert all(row["has_pos"] == (row["kind"] == "head") for row in edges)
    roots = atlas_store._execute(
        "MATCH (h:Head)-[c:COMMUNICATES {run_id: $r, head: 'logit_direction'}]->() "
        "RETURN h.id AS head, c.n_prompts AS n ORDER BY n DESC",
        r=toy_ioi_acc_run,
    )
    assert roots and all(0 < row["n"] <= 64 for row in roots)


def test_rewriting_an_acc_run_changes_nothing(
    atlas_store: AtlasStore, toy_model: LoadedModel
) -> None:
    run_id = f"test-acc-rewrite-{uuid.uuid4().hex[:8]}"
    config = IngestConfig(n_prompts=8, batch_size=4, seed=3, method="acc")
    count = (
        "MATCH (f:Firing {run_id: $r}) OPTIONAL MATCH (f)<-[e:WRITES]-() "
        "RETURN count(DISTINCT f) AS firings, count(e) AS edges"
    )
    try:
        first = ingest_run(atlas_store, toy_model, config, run_id=run_id, show_progress=False)
        before = atlas_store._execute(count, r=run_id)[0].data()
        assert before == {"firings": first.firings, "edges": first.edges}
        ingest_run(atlas_store, toy_model, config, run_id=run_id, rewrite=True, show_progress=False)
        assert atlas_store._execute(count, r=run_id)[0].data() == before
    finally:
        atlas_store.delete_run(run_id)
