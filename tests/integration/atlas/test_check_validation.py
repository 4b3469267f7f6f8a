"""`validate` end to end on a small toy-ioi run of its own: stored nodes, idempotence, resume,
deletion with the run, and the numbers against a direct call of the intervention maths."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from atlas.check.comparison import is_head
from atlas.check.validation import (
    ValidationConfig,
    edge_targets,
    run_prompts,
    stored_validations,
    top_edges,
    validate_circuit,
)
from atlas.store.store import AtlasStore
from atlas.store.writer import ingest_run
from ingest.decomposition.activations import model_qk_svd
from ingest.interventions.edits import measure_edges, summarize
from ingest.models.loading import LoadedModel
from ingest.pipeline import IngestConfig
from tests.fixtures.runs import scratch_toy_run

CONFIG = ValidationConfig(top=2, max_prompts=6, n_controls=2, batch_size=6)
COUNT = "MATCH (v:Validation {run_id: $run_id}) RETURN count(v) AS n"


@pytest.fixture(scope="module")
def small_run(atlas_store: AtlasStore, toy_model: LoadedModel) -> Iterator[str]:
    """A 16-prompt toy-ioi run this module may add validations to (deleted at the end)."""
    with scratch_toy_run(atlas_store, toy_model, "validate", n_prompts=16) as run_id:
        yield run_id


def count(store: AtlasStore, run_id: str) -> int:
    return store.driver.execute_query(COUNT, run_id=run_id, database_=store.database).records[0][
        "n"
    ]


def test_validate_stores_one_node_per_edge_and_is_idempotent(
    atlas_store: AtlasStore, toy_model: LoadedModel, small_run: str
) -> None:
    table = validate_circuit(atlas_store, toy_model, small_run, "3.1", CONFIG, show_progress=False)
    assert list(table["status"]) == ["computed", "computed"]
    assert count(atlas_store, small_run) == 2
    stored = stored_validations(atlas_store, small_run)
    assert set(stored["mode"]) == {"global"} and set(stored["factor"]) == {0.0}
    assert all(len(row.signal_attention) == row.n_prompts for row in stored.itertuples())

    again = validate_circuit(atlas_store, toy_model, small_run, "3.1", CONFIG, show_progress=False)
    assert list(again["status"]) == ["stored", "stored"]
    assert again[["dLD_signal", "dA_control"]].equals(table[["dLD_signal", "dA_control"]])
    assert count(atlas_store, small_run) == 2

    local = ValidationConfig(**{**CONFIG.__dict__, "mode": "local", "top": 1})
    validate_circuit(atlas_store, toy_model, small_run, "3.1", local, show_progress=False)
    assert count(atlas_store, small_run) == 3  # another mode: another node, same edge


def test_stored_numbers_equal_a_direct_computation(
    atlas_store: AtlasStore, toy_model: LoadedModel, small_run: str
) -> None:
    validate_circuit(atlas_store, toy_model, small_run, "3.1", CONFIG, show_progress=False)
    edge = top_edges(atlas_store, small_run, "3.1", 1)[0]
    targets, prompt_ids = edge_targets(
        atlas_store, small_run, edge, run_prompts(atlas_store, small_run), CONFIG.max_prompts
    )
    writer = tuple(int(part) for part in edge.writer.split("."))
    effects = measure_edges(
        toy_model, model_qk_svd(toy_model.bridge), targets, [writer], edge.side,
        n_controls=CONFIG.n_controls, batch_size=3,  # another batching, same numbers
    )  # fmt: skip
    stored = stored_validations(atlas_store, small_run, "global")
    row = stored[(stored["writer"] == edge.writer) & (stored["head"] == edge.head_id)].iloc[0]
    assert row["prompts"] == prompt_ids
    assert row["signal_logit_mean"] == pytest.approx(summarize(effects).signal_logit_mean, abs=1e-4)
    assert row["signal_attention"] == pytest.approx(effects.signal_attention.tolist(), abs=1e-5)


def test_runs_delete_removes_validations(atlas_store: AtlasStore, toy_model: LoadedModel) -> None:
    run_id = f"test-validate-del-{uuid.uuid4().hex[:8]}"
    ingest_run(atlas_store, toy_model, IngestConfig(n_prompts=4, batch_size=4), run_id=run_id,
               show_progress=False)  # fmt: skip
    config = ValidationConfig(top=1, max_prompts=2, n_controls=1)
    validate_circuit(atlas_store, toy_model, run_id, "3.1", config, show_progress=False)
    assert count(atlas_store, run_id) == 1
    atlas_store.delete_run(run_id)
    assert count(atlas_store, run_id) == 0


def test_cli_validate_prints_the_table_and_explains_errors(runner, small_run: str) -> None:
    from atlas.cli import main

    result = runner.invoke(
        main, ["validate", "--run", small_run, "--root", "3.1", "--top", "2", "--prompts", "6",
               "--controls", "2", "--batch-size", "6"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "dLD_signal" in result.output and "3.1 END→IO" in result.output
    missing = runner.invoke(main, ["validate", "--run", "no-such-run", "--root", "3.1"])
    assert missing.exit_code != 0 and "not in the atlas" in missing.output
    assert "Traceback" not in missing.output


@pytest.fixture(scope="module")
def small_acc_run(atlas_store: AtlasStore, toy_model: LoadedModel) -> Iterator[str]:
    """A 16-prompt toy-ioi ACC run this module may add validations to (deleted at the end)."""
    with scratch_toy_run(atlas_store, toy_model, "validate-acc", 16, "acc") as run_id:
        yield run_id


def test_validate_on_an_acc_run_measures_the_edge_weight_and_is_idempotent(
    atlas_store: AtlasStore, toy_model: LoadedModel, small_acc_run: str
) -> None:
    """Local mode: per prompt, the change of the reader's RA measured through the model's hooks
    equals minus the edge's weight summed from the stored WRITES (an independent read)."""
    local = ValidationConfig(top=4, mode="local", max_prompts=4, n_controls=2, batch_size=4)
    table = validate_circuit(atlas_store, toy_model, small_acc_run, "3.1", local,
                             show_progress=False)  # fmt: skip
    assert len(table) == 4 and set(table["status"]) == {"computed"}
    stored = stored_validations(atlas_store, small_acc_run, "local")
    assert set(stored["method"]) == {"acc"} and len(stored) == 4
    assert not all(is_head(w) for w in stored["writer"])  # MLPs / the embedding are edges too
    for row in stored.itertuples():
        side = row.side
        weights = atlas_store.driver.execute_query(
            "MATCH (w:Component {id: $writer})-[e:WRITES {side: $side}]->(f:Firing {run_id: $run, "
            "layer: $layer, head: $head, dest_role: $dest_role, src_role: $src_role}) "
            "WHERE f.prompt IN $prompts AND e.role = $role "
            "WITH f.prompt AS prompt, f.dest AS dest, f.src AS src, sum(e.weight) AS weight "
            "ORDER BY prompt, dest, src RETURN prompt, collect(weight)[0] AS weight",
            writer=row.writer, side=side, run=small_acc_run, layer=int(row.head.split(".")[0]),
            head=int(row.head.split(".")[1]), dest_role=row.dest_role, src_role=row.src_role,
            prompts=row.prompts, role=row.role, database_=atlas_store.database,
        ).records  # fmt: skip
        assert [r["prompt"] for r in weights] == row.prompts
        expected = [-r["weight"] for r in weights]
        assert row.predicted_relative == pytest.approx(expected, rel=1e-6)
        assert row.signal_relative == pytest.approx(expected, rel=1e-4, abs=1e-3)
    again = validate_circuit(atlas_store, toy_model, small_acc_run, "3.1", local,
                             show_progress=False)  # fmt: skip
    assert set(again["status"]) == {"stored"} and count(atlas_store, small_acc_run) == 4
    assert again["dRA_signal"].equals(table["dRA_signal"])


def test_cli_validate_on_an_acc_run(runner, small_acc_run: str) -> None:
    from atlas.cli import main

    result = runner.invoke(
        main, ["validate", "--run", small_acc_run, "--root", "3.1", "--top", "2", "--prompts",
               "3", "--controls", "1", "--method", "acc"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "dRA_signal" in result.output and "dRA_predicted" in result.output
    wrong = runner.invoke(main, ["validate", "--run", small_acc_run, "--root", "3.1",
                                 "--method", "sad"])  # fmt: skip
    assert (
        wrong.exit_code == 1
        and wrong.output.strip().splitlines() == [wrong.output.strip()]
        and "made with method acc" in wrong.output
    )
