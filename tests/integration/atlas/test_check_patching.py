"""`patch` end to end on a small toy-ioi run of its own: the stored PATCH_EDGE relationships,
idempotence, resume after an interruption, and deletion with the run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import atlas.check.patching as patching
from atlas.ask.circuits import circuit_edges, fetch_circuit
from atlas.check.compare import Against, compare_circuits
from atlas.check.comparison import atlas_circuit
from atlas.check.patching import PatchConfig, patch_run
from atlas.check.validation import model_run_prompts
from atlas.store.store import AtlasStore
from ingest.decomposition.activations import model_qk_svd
from ingest.decomposition.sad import FiringRule
from ingest.models.loading import LoadedModel
from ingest.patching.graph import edge_mask
from ingest.pipeline import process_batch
from ingest.tracing.circuits import circuit_heads
from tests.fixtures.runs import scratch_toy_run

CONFIG = PatchConfig(method="eap-ig", n_prompts=8, ig_steps=2, batch_size=4)
EDGES = "MATCH ()-[e:PATCH_EDGE {run_id: $run_id}]->() RETURN count(e) AS n"
NODES = "MATCH (p:Patching {run_id: $run_id}) RETURN count(p) AS n"


@pytest.fixture(scope="module")
def small_run(atlas_store: AtlasStore, toy_model: LoadedModel) -> Iterator[str]:
    with scratch_toy_run(atlas_store, toy_model, "patch") as run_id:
        yield run_id


def count(store: AtlasStore, query: str, run_id: str) -> int:
    records = store.driver.execute_query(query, run_id=run_id, database_=store.database).records
    return int(records[0]["n"])


def edges(store: AtlasStore, run_id: str) -> list[dict[str, Any]]:
    return store.read_template("patch_edges", run_id=run_id, method="eap-ig")


def test_patch_stores_ranked_edges_idempotently_and_resumes(
    atlas_store: AtlasStore,
    toy_model: LoadedModel,
    small_run: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = patch_run(atlas_store, toy_model, small_run, CONFIG, show_progress=False)
    assert first.status == "computed"
    # 4 layers × 4 heads: writers embed, 16 heads, 4 MLPs; each edge of the graph once
    stored = edges(atlas_store, small_run)
    assert len(stored) == first.edges == count(atlas_store, EDGES, small_run)
    assert len(stored) == int(edge_mask(4, 4).sum())
    assert [row["rank"] for row in stored] == list(range(1, len(stored) + 1))
    magnitudes = [abs(row["score"]) for row in stored]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert {row["reader_kind"] for row in stored} == {"head", "mlp", "logit_direction"}

    again = patch_run(atlas_store, toy_model, small_run, CONFIG, show_progress=False)
    assert again.status == "stored" and again.top == first.top[:20]
    assert count(atlas_store, EDGES, small_run) == len(stored)
    assert count(atlas_store, NODES, small_run) == 1

    # interrupted after its first batch of 4 prompts, then resumed: the same scores
    real = patching.batch_scores
    calls = {"n": 0}

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(patching, "batch_scores", failing)
    with pytest.raises(KeyboardInterrupt):
        patch_run(atlas_store, toy_model, small_run, CONFIG, rewrite=True, show_progress=False)
    monkeypatch.setattr(patching, "batch_scores", real)
    resumed = patch_run(atlas_store, toy_model, small_run, CONFIG, show_progress=False)
    assert resumed.status == "resumed"
    after = edges(atlas_store, small_run)
    assert len(after) == len(stored)
    for old, new in zip(stored, after, strict=True):
        assert new["score"] == pytest.approx(old["score"], rel=1e-9, abs=1e-12)

    atlas_store.delete_run(small_run)
    assert count(atlas_store, EDGES, small_run) == count(atlas_store, NODES, small_run) == 0


def test_compare_circuits_against_patching_and_the_reference(
    atlas_store: AtlasStore, toy_model: LoadedModel, compare_run: str
) -> None:
    patch_run(atlas_store, toy_model, compare_run, CONFIG, show_progress=False)
    comparison = compare_circuits(
        atlas_store, compare_run, "3.1", Against.parse("patch:eap-ig"), top_k=30,
        model=toy_model, n_prompts=8,
    )  # fmt: skip
    [row] = comparison.rows  # no validations: no pruned circuit
    assert 0 < row.heads.precision <= 1 and 0 < row.heads.recall <= 1
    assert set(row.heads.both) | set(row.heads.predicted_only) == row.circuit.heads
    assert row.faithfulness is not None and comparison.reference_faithfulness is not None
    assert list(comparison.curves) == [row.circuit.name]
    reference = compare_circuits(
        atlas_store, compare_run, "3.1", Against.parse("reference:wang2022-ioi")
    )
    assert len(reference.reference.heads) == 26
    seeded = atlas_store.read_template("reference_circuit")
    assert len(seeded) == 26 and {r["class"] for r in seeded} >= {"name mover", "induction"}


@pytest.fixture(scope="module")
def compare_run(atlas_store: AtlasStore, toy_model: LoadedModel) -> Iterator[str]:
    with scratch_toy_run(atlas_store, toy_model, "compare") as run_id:
        yield run_id


def test_in_memory_circuit_heads_are_the_atlas_circuit_heads(
    atlas_store: AtlasStore, toy_model: LoadedModel, compare_run: str
) -> None:
    """``replicate``'s traversal (no database) and ``compare-circuits``'s (the circuit template)
    give the same heads for the same prompts."""
    stored = fetch_circuit(atlas_store, compare_run, "3.1")
    atlas = atlas_circuit("atlas", {"3.1"}, circuit_edges(stored))
    prompts = model_run_prompts(atlas_store, compare_run, toy_model)
    result = process_batch(
        toy_model, model_qk_svd(toy_model.bridge, dtype=toy_model.bridge.cfg.dtype), prompts,
        FiringRule(), trace=True,
    )  # fmt: skip
    assert result.edges is not None
    heads = circuit_heads(result.firings, result.edges, result.role_labels, (3, 1))
    assert len(atlas.heads) > 3
    assert set(heads) == atlas.heads
