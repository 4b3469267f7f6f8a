"""What schema version 2 stores for the query layer: WRITES.parts and ALIGNED vectors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from atlas.cli import main
from atlas.store.store import AtlasStore
from ingest.decomposition.activations import model_qk_svd
from ingest.decomposition.alignment import aligned_pairs, read_directions
from ingest.models.loading import LoadedModel
from ingest.records.build import aligned_records
from ingest.records.types import RunRecord

WRITES_PARTS = """
MATCH (w:Head)-[e:WRITES]->(f:Firing {run_id: $run_id})
RETURN e.parts AS parts, e.weight AS weight, f.n_svs AS n_svs
"""

ALIGNED = """
MATCH (a:SingularVector {model_id: $model_id})-[r:ALIGNED]->(b:SingularVector)
RETURN [a.layer, a.head, a.index] AS a, r.side_a AS side_a, [b.layer, b.head, b.index] AS b,
       r.side_b AS side_b, r.cos AS cos, r.model_id AS model_id
"""


def test_every_writes_edge_has_one_part_per_used_vector_summing_to_its_weight(
    atlas_store: AtlasStore, toy_ioi_run: str
) -> None:
    rows = atlas_store.driver.execute_query(WRITES_PARTS, run_id=toy_ioi_run).records
    assert len(rows) > 1000
    for row in rows:
        assert len(row["parts"]) == row["n_svs"]
        assert sum(row["parts"]) == pytest.approx(row["weight"], rel=1e-4, abs=1e-5)


def test_aligned_edges_are_the_models_aligned_pairs(
    atlas_store: AtlasStore, toy_ioi_run: str, toy_model: LoadedModel
) -> None:
    model_id = toy_model.provenance.model_id
    directions = read_directions(model_qk_svd(toy_model.bridge))
    expected = {
        (r.a, r.side_a, r.b, r.side_b): r.cos
        for r in aligned_records(model_id, directions, aligned_pairs(directions))
    }
    stored = atlas_store.driver.execute_query(ALIGNED, model_id=model_id).records
    found = {(tuple(r["a"]), r["side_a"], tuple(r["b"]), r["side_b"]): r["cos"] for r in stored}
    assert len(expected) > 20  # toy-ioi's heads share features well above the random null
    assert found.keys() == expected.keys()
    for key, cos in expected.items():
        assert found[key] == pytest.approx(cos, abs=1e-6)


def test_db_init_upgrades_an_older_schema_and_names_the_runs_to_reingest(
    runner: CliRunner, atlas_store: AtlasStore, atlas_run: RunRecord
) -> None:
    atlas_store.driver.execute_query(
        "MATCH (m:AtlasMeta {name: 'schema'}) SET m.version = 1 WITH m "
        "MATCH (r:Run {id: $run_id}) REMOVE r.schema_version",
        run_id=atlas_run.id,
    )
    result = runner.invoke(main, ["db", "init"])
    assert result.exit_code == 0, result.output
    assert "(upgraded from version 1)" in result.output
    line = next(x for x in result.output.splitlines() if atlas_run.id in x)
    assert "schema version 1 and lacks WRITES.parts" in line and "--rewrite" in line
    again = runner.invoke(main, ["db", "init"])
    assert "upgraded" not in again.output
