"""The circuit traversal against the real Neo4j server, on a hand-built graph (circuit_graph),
and the circuit over all prompts aggregated on the server (circuit_summary) against the
per-edge rows aggregated in Python, on that graph and on real toy-ioi runs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from atlas.ask.circuits import (
    LOGIT_ROOT,
    NO_ROLE,
    Circuit,
    Node,
    build_circuit,
    circuit_edges,
    fetch_circuit,
    render_tree,
    summary_circuit,
)
from atlas.cli import main
from atlas.errors import AtlasError, ParameterError
from atlas.store.store import AtlasStore
from ingest.models.loading import LoadedModel
from ingest.records.types import ModelRecord, RecordBatch, RunRecord
from tests.fixtures.circuit_graph import (
    EXPECTED_ROWS,
    EXPECTED_SEEDED_ROWS,
    N_HEADS,
    N_LAYERS,
    circuit_batch,
    overlapping_batch,
    seeded_batch,
    summary_batch,
)
from tests.fixtures.runs import scratch_toy_run


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


def beside_overlapping_run(
    store: AtlasStore, prefix: str, batch: Callable[[str], RecordBatch]
) -> Iterator[str]:
    """A run of ``batch``, next to a second run with overlapping firing keys; both deleted."""
    run_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    other = run_id + "-other"
    write_run(store, run_id, batch(run_id))
    write_run(store, other, overlapping_batch(other))
    yield run_id
    store.delete_run(run_id)
    store.delete_run(other)


@pytest.fixture
def circuit_run(atlas_store: AtlasStore) -> Iterator[str]:
    """The hand-built run, next to a second run with overlapping firing keys."""
    yield from beside_overlapping_run(atlas_store, "circuit", circuit_batch)


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


# ----- the circuit over all prompts, aggregated on the server ---------------------------------


def both_aggregations(
    store: AtlasStore, run_id: str, layer: int | None, head: int | None, roles: tuple[str, str]
) -> tuple[Circuit, Circuit]:
    """``circuit_summary``'s circuit, and ``circuit``'s rows (prompt null) aggregated in
    Python by :func:`build_circuit`, the reference."""
    parameters = dict(run_id=run_id, layer=layer, head=head, dest_role=roles[0], src_role=roles[1])
    summary = summary_circuit(store.read_template("circuit_summary", **parameters))
    rows = store.read_template("circuit", **parameters, prompt=None)
    return summary, build_circuit(rows, aggregate=True)


def assert_same_circuit(summary: Circuit, reference: Circuit) -> None:
    """Field by field; mean weights to a float tolerance (the Circuit from circuit_summary
    averages the weights in Python, as build_circuit does: equal digits are checked on the
    CLI's records of a real run)."""
    assert summary.aggregated and reference.aggregated
    assert summary.roots == reference.roots
    assert dict(summary.root_prompts) == dict(reference.root_prompts)
    assert dict(summary.prompts) == dict(reference.prompts)
    assert summary.edges.keys() == reference.edges.keys()
    for node, expected in reference.edges.items():
        found = {(e.side, e.writer, e.role): e for e in summary.edges[node]}
        assert found.keys() == {(e.side, e.writer, e.role) for e in expected}
        for edge in expected:
            got = found[edge.side, edge.writer, edge.role]
            assert (got.target, got.pos, got.n_prompts, got.sources) == (
                edge.target,
                edge.pos,
                edge.n_prompts,
                edge.sources,
            )
            assert got.mean_weight == pytest.approx(edge.mean_weight, rel=1e-9, abs=1e-12)


@pytest.fixture
def summary_run(atlas_store: AtlasStore) -> Iterator[str]:
    """:func:`summary_batch`'s run, next to a second run with overlapping firing keys."""
    yield from beside_overlapping_run(atlas_store, "circuit-summary", summary_batch)


@pytest.mark.parametrize(
    ("root", "roles"),
    [("3.0", ("END", "IO")), ("3.0", ("END", "S1")), ("2.1", ("END", "S2")), ("1.1", ("S2", "S1"))],
)
def test_summary_is_the_per_edge_rows_aggregated(
    atlas_store: AtlasStore, summary_run: str, root: str, roles: tuple[str, str]
) -> None:
    layer, head = (int(part) for part in root.split("."))
    summary, reference = both_aggregations(atlas_store, summary_run, layer, head, roles)
    assert reference.roots  # every case has a circuit
    assert_same_circuit(summary, reference)


def test_summary_of_the_hand_built_circuit_by_hand(
    atlas_store: AtlasStore, summary_run: str
) -> None:
    """The cases of :func:`summary_batch`, read off the summary itself."""
    summary, _ = both_aggregations(atlas_store, summary_run, 3, 0, ("END", "IO"))
    root = Node(3, 0, "END", "IO")
    assert summary.roots == (root,) and summary.root_prompts == {root: 2}  # not prompt 2's
    by_writer = {(e.side, e.writer): e for e in summary.edges[root]}
    through_11 = by_writer["q", "1.1"]  # prompt 0: 0.25 (two firings); prompt 1: max(0.15, 0.45)
    assert (through_11.n_prompts, through_11.mean_weight) == (2, pytest.approx(0.35))
    assert through_11.sources == (Node(1, 1, "END", "S1"), Node(1, 1, "END", "S2"))
    assert summary.prompts[Node(1, 1, "END", "S1")] == 2  # edgeless, as a writer's firing
    assert Node(1, 1, "END", "S1") not in summary.edges
    at_io = Node(1, 0, "IO", "other")  # two firings of prompt 0: one prompt, mean of both
    assert by_writer["k", "1.0"].sources == (at_io,) and summary.prompts[at_io] == 1
    (into_io,) = summary.edges[at_io]
    assert (into_io.n_prompts, into_io.mean_weight) == (1, pytest.approx(0.6))


def test_summary_of_the_logit_direction(atlas_store: AtlasStore, seeded_run: str) -> None:
    summary, reference = both_aggregations(atlas_store, seeded_run, None, None, ("END", "IO"))
    assert len(reference.roots) == 3
    assert_same_circuit(summary, reference)


def test_summary_is_empty_without_a_circuit(atlas_store: AtlasStore, summary_run: str) -> None:
    for layer, head in [(0, 1), (None, None)]:  # a head that never fires; no seeds (SAD)
        parameters = dict(run_id=summary_run, layer=layer, head=head)
        assert atlas_store.read_template("circuit_summary", **parameters) == []


@pytest.mark.parametrize("method", ["sad", "acc"])
def test_summary_on_a_toy_ioi_run(
    atlas_store: AtlasStore, toy_model: LoadedModel, method: str
) -> None:
    """On a real run: the name mover 3.1 and the other roots its run fires most, and on ACC
    the logit direction (heads writing through several source tokens)."""
    with scratch_toy_run(atlas_store, toy_model, f"summary-{method}", method=method) as run_id:
        fired = atlas_store.read_template("firing_counts", run_id=run_id)
        roots: list[tuple[int | None, int | None, tuple[str, str]]] = [(3, 1, ("END", "IO"))]
        roots += [
            (row["layer"], row["head"], (row["dest_role"], row["src_role"]))
            for row in sorted(fired, key=lambda row: -row["firings"])
            if row["layer"] >= 2
            and NO_ROLE not in (row["dest_role"], row["src_role"])
            and (row["layer"], row["head"]) != (3, 1)
        ][:2]
        if method == "acc":
            roots.append((None, None, ("END", "IO")))
        for layer, head, roles in roots:
            summary, reference = both_aggregations(atlas_store, run_id, layer, head, roles)
            assert sum(map(len, reference.edges.values())) > 1, (layer, head, roles)
            assert_same_circuit(summary, reference)
            assert render_tree(summary) == render_tree(reference)
            assert circuit_edges(summary) == circuit_edges(reference)  # to the last digit
