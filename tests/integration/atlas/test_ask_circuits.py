"""The circuit traversal against the real Neo4j server, on a hand-built graph (circuit_graph)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from atlas.ask.circuits import LOGIT_ROOT, Node, fetch_circuit
from atlas.cli import main
from atlas.errors import AtlasError, ParameterError
from atlas.store.store import AtlasStore
from ingest.records.types import ModelRecord, RecordBatch, RunRecord
from tests.fixtures.circuit_graph import (
    EXPECTED_ROWS,
    EXPECTED_SEEDED_ROWS,
    N_HEADS,
    N_LAYERS,
    circuit_batch,
    overlapping_batch,
    seeded_batch,
)


def write_run(store: AtlasStore, run_id: str, batch: RecordBatch, method: str = "sad") -> None:
    model = ModelRecord(
        id="circuit-test-model", n_layers=N_LAYERS, n_heads=N_HEADS, d_model=8, d_head=4
    )
    store.write_model(model)
    store.create_run(
        RunRecord(
            id=run_id,
            model_id=model.id,
            model_revision=None,
            method=method,
            params={},
            dataset={},
            versions={},
            git_commit=None,
        )
    )
    store.write_batch(batch)
    store.complete_run(run_id)


@pytest.fixture
def circuit_run(atlas_store: AtlasStore) -> Iterator[str]:
    """The hand-built run, next to a second run with overlapping firing keys."""
    run_id = f"circuit-{uuid.uuid4().hex[:8]}"
    other = run_id + "-other"
    write_run(atlas_store, run_id, circuit_batch(run_id))
    write_run(atlas_store, other, overlapping_batch(other))
    yield run_id
    atlas_store.delete_run(run_id)
    atlas_store.delete_run(other)


@pytest.fixture
def seeded_run(atlas_store: AtlasStore) -> Iterator[str]:
    """The hand-built run as an ACC run whose seeds are :data:`SEEDS`."""
    run_id = f"circuit-seeds-{uuid.uuid4().hex[:8]}"
    write_run(atlas_store, run_id, seeded_batch(run_id), method="acc")
    yield run_id
    atlas_store.delete_run(run_id)


def traversal(store: AtlasStore, run_id: str, prompt: int | None) -> list[dict[str, Any]]:
    return store.read_template(
        "circuit", run_id=run_id, layer=3, head=0, dest_role="END", src_role="IO", prompt=prompt
    )


def as_set(rows: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {tuple(sorted(row.items())) for row in rows}


@pytest.mark.parametrize("prompt", [0, 1])
def test_template_returns_exactly_the_known_edges(
    atlas_store: AtlasStore, circuit_run: str, prompt: int
) -> None:
    rows = traversal(atlas_store, circuit_run, prompt)
    assert len(rows) == len(EXPECTED_ROWS[prompt])
    assert as_set(rows) == as_set(EXPECTED_ROWS[prompt])


def test_all_prompts_is_the_union_and_nothing_leaks(
    atlas_store: AtlasStore, circuit_run: str
) -> None:
    rows = traversal(atlas_store, circuit_run, None)
    assert as_set(rows) == as_set(EXPECTED_ROWS[0] + EXPECTED_ROWS[1])
    assert not {row["weight"] for row in rows} & {0.6, 0.95, 1.0, 5.0}  # decoys
    assert traversal(atlas_store, circuit_run, 2) == []  # prompt 2's root fires END→S1


def test_logit_root_starts_at_every_seed_whatever_its_roles(
    atlas_store: AtlasStore, seeded_run: str
) -> None:
    rows = atlas_store.read_template("circuit", run_id=seeded_run, layer=None, head=None)
    assert len(rows) == len(EXPECTED_SEEDED_ROWS)
    assert as_set(rows) == as_set(EXPECTED_SEEDED_ROWS)
    one = atlas_store.read_template("circuit", run_id=seeded_run, layer=None, head=None, prompt=1)
    assert as_set(one) == as_set(EXPECTED_SEEDED_ROWS[-3:-1])
    circuit = fetch_circuit(atlas_store, seeded_run, LOGIT_ROOT)
    seeds = [Node(2, 1, "END", "S2"), Node(3, 0, "END", "IO"), Node(3, 0, "END", "S1")]
    assert list(circuit.roots) == seeds
    assert dict(circuit.root_prompts) == dict.fromkeys(seeds, 1)
    # a head root still starts at that head's firings only, seeds or not
    assert as_set(traversal(atlas_store, seeded_run, None)) == as_set(
        EXPECTED_ROWS[0] + EXPECTED_ROWS[1]
    )


def test_logit_root_of_a_sad_run_is_refused(atlas_store: AtlasStore, circuit_run: str) -> None:
    with pytest.raises(ParameterError, match=r"SAD run.*no circuit of the IO−S logit"):
        fetch_circuit(atlas_store, circuit_run, LOGIT_ROOT)
    assert atlas_store.read_template("circuit", run_id=circuit_run, layer=None, head=None) == []


def test_cli_tree_of_the_logit_direction(
    runner: CliRunner, seeded_run: str, circuit_run: str
) -> None:
    tree = runner.invoke(main, ["circuit", "--run", seeded_run, "--root", "logit"])
    assert tree.exit_code == 0, tree.output
    roots = [line for line in tree.output.splitlines() if line[:1] not in "├└│ "]
    # a root counts every prompt where the tree reaches it: 2.1 END→S2 is a seed in prompt 1
    # and reached from the seed 3.0 END→IO in prompt 0
    assert roots == ["2.1 END→S2  (2 prompts)", "3.0 END→IO  (1 prompt)", "3.0 END→S1  (1 prompt)"]
    refused = runner.invoke(main, ["circuit", "--run", circuit_run, "--root", "logit"])
    assert refused.exit_code == 1 and len(refused.output.strip().splitlines()) == 1
    assert "SAD run" in refused.output and "--root 3.1" in refused.output


def test_aggregated_circuit_from_the_store(atlas_store: AtlasStore, circuit_run: str) -> None:
    circuit = fetch_circuit(atlas_store, circuit_run, "3.0")
    root = circuit.roots[0]
    stats = {(e.side, e.writer): (e.n_prompts, e.mean_weight) for e in circuit.edges[root]}
    assert stats == {
        ("q", "2.1"): (2, pytest.approx(1.0)),
        ("q", "1.1"): (1, pytest.approx(0.25)),
        ("k", "1.0"): (2, pytest.approx(0.4)),
    }
    one_prompt = fetch_circuit(atlas_store, circuit_run, "3.0", prompt=1)
    assert sum(len(edges) for edges in one_prompt.edges.values()) == 4


@pytest.mark.parametrize(
    ("root", "roles", "message"),
    [
        ("3.0x", ("END", "IO"), "not a head"),
        ("4.0", ("END", "IO"), "layers 0–3 and heads 0–1"),
        ("3.2", ("END", "IO"), "layers 0–3 and heads 0–1"),
        ("3.0", ("S2", "S1"), r"no S2→S1 firing .* fires at END→IO \(2 prompts\); END→S1"),
        ("0.1", ("END", "IO"), "does not fire at all"),
    ],
)
def test_clear_errors(
    atlas_store: AtlasStore, circuit_run: str, root: str, roles: tuple[str, str], message: str
) -> None:
    with pytest.raises(AtlasError, match=message):
        fetch_circuit(atlas_store, circuit_run, root, *roles)


def test_unknown_run_points_to_runs_list(atlas_store: AtlasStore) -> None:
    with pytest.raises(AtlasError, match="runs list"):
        fetch_circuit(atlas_store, "no-such-run", "9.9")


def test_cli_tree_json_csv_and_errors(runner: CliRunner, circuit_run: str) -> None:
    base = ["circuit", "--run", circuit_run, "--root", "3.0"]
    tree = runner.invoke(main, [*base, "--min-prompts", "2"])
    assert tree.exit_code == 0, tree.output
    assert tree.output.splitlines() == [
        "3.0 END→IO  (2 prompts)",
        "├─ q  2.1 @END→S2  n=2  mean=+1.000",
        "│  ├─ q  0.1 @END  n=2  mean=+0.200",
        "│  └─ k  1.1 @S2→S1  n=2  mean=+0.600",
        "└─ k  1.0 @IO  n=2  mean=+0.400",
    ]
    one = runner.invoke(main, [*base, "--prompt", "1", "--max-depth", "1"])
    assert one.output.splitlines()[1] == "├─ q  2.1 @END[8]→S2[6]  w=+1.100  …"
    records = json.loads(runner.invoke(main, [*base, "--format", "json"]).output)
    assert len(records) == 8 and records[0]["writer_firings"] == ["2.1 END→S2"]
    table = runner.invoke(main, [*base, "--format", "csv", "--max-depth", "1"]).output
    assert table.splitlines()[0].startswith("depth,head,dest_role,src_role,prompt")
    assert len(table.splitlines()) == 4
    unknown = runner.invoke(main, ["circuit", "--run", "no-such-run", "--root", "9.9"])
    assert unknown.exit_code == 1 and "circuit-atlas runs list" in unknown.output
    bad = runner.invoke(main, [*base[:-1], "9"])
    assert bad.exit_code == 1 and "layer.head" in bad.output and "Traceback" not in bad.output


def test_cli_help_teaches_the_traversal(runner: CliRunner) -> None:
    result = runner.invoke(main, ["circuit", "--help"])
    assert "continues into that writer's own firing" in result.output
    assert "Example: circuit-atlas circuit --run" in result.output
