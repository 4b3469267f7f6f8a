"""The query templates, atlas.ask.lookups and the query CLI on a hand-built run with known answers
(tests/fixtures/query_graph.py), on the shared toy-ioi run, and their errors."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pandas as pd
import pytest
from click.testing import CliRunner

from atlas.ask.lookups import alternative_routes, circuit_graph, run_query, write_graphml
from atlas.cli import main
from atlas.errors import AtlasError
from atlas.store.store import AtlasStore
from ingest.records.types import ModelRecord, RunRecord
from queries.templates import TemplateError, all_templates
from tests.fixtures.query_graph import MODEL_ID, N_HEADS, N_LAYERS, query_batch


@pytest.fixture(scope="module")
def query_run(atlas_store: AtlasStore) -> Iterator[str]:
    run_id = f"query-{uuid.uuid4().hex[:8]}"
    atlas_store.write_model(
        ModelRecord(id=MODEL_ID, n_layers=N_LAYERS, n_heads=N_HEADS, d_model=8, d_head=4)
    )
    atlas_store.create_run(
        RunRecord(
            id=run_id,
            model_id=MODEL_ID,
            model_revision=None,
            method="sad",
            params={},
            dataset={},
            versions={},
            git_commit=None,
        )
    )
    atlas_store.write_batch(query_batch(run_id))
    atlas_store.complete_run(run_id)
    yield run_id
    atlas_store.delete_run(run_id)


def records(frame: pd.DataFrame, *columns: str) -> list[tuple]:
    return [tuple(row) for row in frame[list(columns)].itertuples(index=False)]


def between(store: AtlasStore, run_id: str, name: str, a: str, b: str, **extra) -> pd.DataFrame:
    (al, ah), (bl, bh) = (tuple(map(int, x.split("."))) for x in (a, b))
    ends = {"from_layer": al, "from_head": ah, "to_layer": bl, "to_head": bh}
    return run_query(store, name, run_id=run_id, **ends, **extra)


# ----- hand-built run: every template's known answer ---------------------------------------


def test_head_inputs_and_outputs(atlas_store: AtlasStore, query_run: str) -> None:
    inputs = run_query(atlas_store, "head_inputs", run_id=query_run, layer=3, head=0)
    assert records(inputs, "writer", "side", "role", "n_prompts", "prompt_share") == [
        ("1.1", "k", "IO", 4, 1.0),
        ("2.1", "q", "END", 3, 0.75),
        ("2.2", "q", "END", 3, 0.75),
        ("0.1", "k", "IO", 2, 0.5),
        ("1.0", "q", "END", 1, 0.25),
    ]
    assert inputs["mean_weight"].tolist() == pytest.approx([0.5, 0.7, 0.6, 0.2, 0.1])
    only_q = run_query(
        atlas_store, "head_inputs", run_id=query_run, layer=3, head=0, side="q", min_prompts=2
    )
    assert only_q["writer"].tolist() == ["2.1", "2.2"]
    outputs = run_query(atlas_store, "head_outputs", run_id=query_run, layer=1, head=0)
    assert records(outputs, "reader", "side", "role", "n_prompts") == [
        ("2.1", "q", "END", 3),
        ("2.2", "q", "END", 3),
        ("2.1", "k", "S2", 1),
        ("3.0", "q", "END", 1),
    ]


def test_paths_are_ranked_by_their_weakest_hop(atlas_store: AtlasStore, query_run: str) -> None:
    found = between(atlas_store, query_run, "paths", "1.0", "3.0")
    assert records(found, "route", "min_prompts", "prompts") == [
        ("1.0 -q@END→ 2.1 -q@END→ 3.0", 3, [3, 3]),
        ("1.0 -q@END→ 2.2 -q@END→ 3.0", 3, [3, 3]),
        ("1.0 -q@END→ 3.0", 1, [1]),
        ("1.0 -k@S2→ 2.1 -q@END→ 3.0", 1, [1, 3]),
    ]
    strong = between(atlas_store, query_run, "paths", "1.0", "3.0", min_prompts=2)
    assert strong["heads"].tolist() == [["1.0", "2.1", "3.0"], ["1.0", "2.2", "3.0"]]
    assert between(atlas_store, query_run, "paths", "1.0", "3.0", limit=1)["hops"].tolist() == [2]


def test_paths_keep_only_role_consistent_routes_unless_asked(
    atlas_store: AtlasStore, query_run: str
) -> None:
    consistent = between(atlas_store, query_run, "paths", "0.0", "3.0")
    assert consistent["route"].tolist() == [
        "0.0 -q@END→ 1.0 -q@END→ 2.1 -q@END→ 3.0",
        "0.0 -q@END→ 1.0 -q@END→ 2.2 -q@END→ 3.0",
        "0.0 -q@END→ 1.0 -q@END→ 3.0",
        "0.0 -q@S2→ 1.0 -k@S2→ 2.1 -q@END→ 3.0",
    ]
    every = between(atlas_store, query_run, "paths", "0.0", "3.0", consistent=False)
    assert len(every) == 8
    assert between(atlas_store, query_run, "paths", "0.0", "3.0", max_hops=2)["route"].tolist() == [
        "0.0 -q@END→ 1.0 -q@END→ 3.0"
    ]


def test_alternative_routes_count_edge_disjoint_routes(
    atlas_store: AtlasStore, query_run: str
) -> None:
    three = alternative_routes(atlas_store, query_run, "1.0", "3.0")
    assert (three.routes, three.edge_disjoint) == (4, 3)
    through = {
        (w, r, s): n for w, r, s, n in records(three.edges, "writer", "reader", "side", "routes")
    }
    assert through[("2.1", "3.0", "q")] == 2 and through[("1.0", "3.0", "q")] == 1
    assert set(three.graph.edges()) == {
        ("1.0", "2.1"), ("2.1", "3.0"), ("1.0", "2.2"), ("2.2", "3.0"), ("1.0", "3.0"),
    }  # fmt: skip
    # Independent check: networkx's edge connectivity of the head graph.
    assert nx.edge_connectivity(nx.DiGraph(three.graph), "1.0", "3.0") == 3
    bottleneck = alternative_routes(atlas_store, query_run, "0.0", "3.0")
    assert (bottleneck.routes, bottleneck.edge_disjoint) == (4, 1)
    hops = records(bottleneck.edges, "writer", "reader", "role", "routes")
    assert hops[:2] == [("0.0", "1.0", "END", 3), ("2.1", "3.0", "END", 2)]
    assert ("0.0", "1.0", "S2", 1) in hops  # all four routes cross the head pair 0.0 → 1.0


def test_redundant_writers_count_co_occurrence(atlas_store: AtlasStore, query_run: str) -> None:
    pairs = run_query(atlas_store, "redundant_writers", run_id=query_run, layer=3, head=0)
    assert records(
        pairs, "writer_a", "writer_b", "together", "prompts_together", "firings_a", "firings_b",
        "jaccard", "firings",
    ) == [("2.1", "2.2", 2, 2, 3, 3, 0.5, 4)]  # fmt: skip
    low = run_query(
        atlas_store, "redundant_writers", run_id=query_run, layer=3, head=0, min_share=0.05
    )
    assert records(low, "writer_a", "writer_b", "together") == [
        ("2.1", "2.2", 2),
        ("1.0", "2.2", 1),
    ]


def test_prompt_redundancy_lists_single_route_prompts_first(
    atlas_store: AtlasStore, query_run: str
) -> None:
    per_prompt = run_query(atlas_store, "prompt_redundancy", run_id=query_run, layer=3, head=0)
    assert records(
        per_prompt, "prompt", "order", "q_writers", "k_writers", "q_relayed", "single_route"
    ) == [
        (2, "BABA", ["2.1"], ["1.1"], 1, True),
        (3, "BABA", ["1.0", "2.2"], ["1.1"], 1, True),
        (0, "ABBA", ["2.1", "2.2"], ["0.1", "1.1"], 2, False),
        (1, "ABBA", ["2.1", "2.2"], ["0.1", "1.1"], 2, False),
    ]


def test_shared_signals_credit_writers_through_each_vector(
    atlas_store: AtlasStore, query_run: str
) -> None:
    signals = run_query(atlas_store, "shared_signals", run_id=query_run, layer=3, head=0)
    assert records(signals, "index", "firings", "side", "writers", "writer_firings") == [
        (0, 4, "q", ["2.1", "2.2", "1.0"], [3, 3, 1]),
        (0, 4, "k", ["1.1", "0.1"], [4, 2]),
        (1, 3, "q", ["2.2", "2.1", "1.0"], [3, 2, 1]),
        (1, 3, "k", ["1.1", "0.1"], [3, 2]),
    ]
    assert signals["share"].tolist() == pytest.approx([1.0, 1.0, 0.75, 0.75])
    assert signals["mean_rank"].tolist() == pytest.approx([0.25, 0.25, 2 / 3, 2 / 3])
    assert signals["mean_parts"][0] == pytest.approx([0.5, 0.7 / 3, 0.08])


def test_shared_features_find_aligned_vectors_and_broadcast_writers(
    atlas_store: AtlasStore, query_run: str
) -> None:
    features = run_query(atlas_store, "shared_features", run_id=query_run, layer=3, head=0)
    assert records(
        features, "index", "side", "partner", "partner_index", "partner_side", "partner_firings",
        "broadcast_writers", "writers",
    ) == [
        (0, "q", "2.2", 0, "q", 1, ["1.0"], 3),
        (1, "q", "3.1", 0, "q", 0, [], 3),
        (0, "k", "2.2", 1, "q", 0, [], 2),
    ]  # fmt: skip
    assert features["cos"].tolist() == pytest.approx([0.9, 0.6, 0.55])
    strict = run_query(
        atlas_store, "shared_features", run_id=query_run, layer=3, head=0, min_cos=0.6
    )
    assert strict["partner"].tolist() == ["2.2", "3.1"]


def test_compare_prompt_groups_and_whole_runs(atlas_store: AtlasStore, query_run: str) -> None:
    groups = run_query(
        atlas_store, "compare", run_id=query_run, order_a="ABBA", order_b="BABA", layer=3, head=0
    )
    assert records(groups, "writer", "side", "prompts_a", "prompts_b", "difference") == [
        ("0.1", "k", 2, 0, 1.0),
        ("1.0", "q", 0, 1, -0.5),
        ("2.1", "q", 2, 1, 0.5),
        ("2.2", "q", 2, 1, 0.5),
        ("1.1", "k", 2, 2, 0.0),
    ]
    assert set(groups["group_a"]) == {2} and set(groups["group_b"]) == {2}
    by_template = run_query(
        atlas_store, "compare", run_id=query_run, templates_a=["T0"], templates_b=["T1"],
        layer=3, head=0,
    )  # fmt: skip
    assert records(by_template, "writer", "difference") == records(groups, "writer", "difference")
    itself = run_query(atlas_store, "compare", run_id=query_run, other_run_id=query_run)
    aggregated = run_query(atlas_store, "head_inputs", run_id=query_run, layer=3, head=0)
    into_root = itself[itself["reader"] == "3.0"]
    assert (itself["difference"] == 0).all() and len(itself) == 11
    assert sorted(into_root["prompts_a"]) == sorted(aggregated["n_prompts"])


def test_circuit_graph_and_graphml(atlas_store: AtlasStore, query_run: str, tmp_path: Path) -> None:
    graph = circuit_graph(atlas_store, query_run, "3.0")
    edges = {(w, r, k): d["n_prompts"] for w, r, k, d in graph.edges(keys=True, data=True)}
    assert edges[("2.1", "3.0", "q@END")] == 3 and edges[("1.0", "2.1", "q@END")] == 3
    assert edges[("0.0", "1.0", "q@END")] == 2
    path = tmp_path / "circuit.graphml"
    write_graphml(graph, path)
    back = nx.read_graphml(path, force_multigraph=True)
    assert sorted(back.edges()) == sorted(graph.edges())


# ----- errors: one line, exit code 1, no traceback; values are never Cypher ------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["query", "pathz", "--run", "R"], "No template 'pathz'. Did you mean 'paths'?"),
        (["query", "head_inputs", "--run", "R", "-p", "layer=3"], "needs parameter 'head'"),
        (["query", "head_inputs", "--run", "R", "-p", "layer=3", "-p", "head=0", "-p", "x=1"],
         "has no parameter 'x'"),
        (["query", "head_inputs", "--run", "R", "-p", "layer=three", "-p", "head=0"],
         "Parameter 'layer' got 'three': expected int"),
        (["query", "head_inputs", "--run", "R", "-p", "layer"], "--param takes KEY=VALUE"),
        (["inputs", "9-9", "--run", "R"], "'9-9' is not a head"),
        (["inputs", "3.0", "--run", "no-such-run"], "Run 'no-such-run' is not in the atlas"),
        (["paths", "0.0", "9.9", "--run", "QUERY_RUN"], "Head 9.9 is not in model"),
        (["signals", "3.7", "--run", "QUERY_RUN"], "Head 3.7 is not in model"),
    ],
)  # fmt: skip
def test_cli_errors_are_one_line(
    runner: CliRunner, query_run: str, args: list[str], message: str
) -> None:
    result = runner.invoke(main, [query_run if a == "QUERY_RUN" else a for a in args])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1


@pytest.mark.parametrize(
    "injected",
    [
        "x' OR 1=1 //",
        "END'}) MATCH (n) DETACH DELETE n //",
        '"}) RETURN 1 AS writer //',
    ],
)
def test_injection_strings_are_values(
    atlas_store: AtlasStore, query_run: str, injected: str
) -> None:
    nodes = atlas_store.driver.execute_query("MATCH (n) RETURN count(n) AS n").records[0]["n"]
    found = run_query(atlas_store, "head_inputs", run_id=query_run, layer=3, head=0, role=injected)
    assert found.empty
    with pytest.raises(AtlasError, match="is not in the atlas"):
        run_query(atlas_store, "head_inputs", run_id=injected, layer=3, head=0)
    with pytest.raises(TemplateError):
        run_query(atlas_store, injected, run_id=query_run)
    after = atlas_store.driver.execute_query("MATCH (n) RETURN count(n) AS n").records[0]["n"]
    assert after == nodes


def test_cli_formats_and_templates_listing(runner: CliRunner, query_run: str) -> None:
    listed = runner.invoke(main, ["templates"])
    assert listed.exit_code == 0
    for template in all_templates():
        assert template.name in listed.output
    as_json = runner.invoke(main, ["inputs", "3.0", "--run", query_run, "--format", "json"])
    assert [r["writer"] for r in json.loads(as_json.output)] == ["1.1", "2.1", "2.2", "0.1", "1.0"]
    as_csv = runner.invoke(
        main, ["query", "head_inputs", "--run", query_run, "-p", "layer=3", "-p", "head=0",
               "-p", "side=q", "--format", "csv"],
    )  # fmt: skip
    assert as_csv.output.splitlines()[0].startswith("writer,writer_class,side,role")
    assert len(as_csv.output.splitlines()) == 4
    table = runner.invoke(main, ["paths", "3.0", "1.0", "--run", query_run])
    assert table.exit_code == 0, table.output
    assert "1.0 -q@END→ 2.1 -q@END→ 3.0" in table.output
    assert "4 routes 1.0 → 3.0" in table.output and "3 edge-disjoint" in table.output


# ----- the shared toy-ioi run -----------------------------------------------------------------


def test_every_template_runs_on_toy_ioi_with_its_example(
    atlas_store: AtlasStore, toy_ioi_run: str
) -> None:
    """Every read template answers its example-toy on a real run, with the declared columns.

    ``validations`` and ``patch_edges`` read what `circuit-atlas validate` and `patch` store,
    which this run has not had (test_check_validation.py and test_check_patching.py check them
    on runs that have): their columns only.
    """
    for template in all_templates():
        if template.mode != "read" or template.example_toy is None:
            continue
        frame = run_query(
            atlas_store, template.name, **{**template.example_toy, "run_id": toy_ioi_run}
        )
        assert list(frame.columns) == [c.name for c in template.returns]
        assert template.name in {"validations", "patch_edges"} or not frame.empty, template.name


def test_template_rows_are_what_the_driver_converts(
    atlas_store: AtlasStore, toy_ioi_run: str
) -> None:
    """read_template builds rows from keys and values; the driver's own Record.data() gives the
    same rows for every read template (none returns a node, relationship or path)."""
    for template in all_templates():
        if template.mode != "read" or template.example_toy is None:
            continue
        bound = template.bind({**template.example_toy, "run_id": toy_ioi_run})
        records = atlas_store.driver.execute_query(
            template.cypher, parameters_=bound, database_=atlas_store.database
        ).records
        rows = atlas_store.read_template(template.name, **bound)
        converted = [record.data() for record in records]
        assert sorted(map(repr, rows)) == sorted(map(repr, converted)), template.name


@pytest.mark.parametrize("run", ["toy_ioi_run", "toy_ioi_acc_run"])
def test_compare_by_name_order_reads_the_stored_counts_as_the_prompts_would_give_them(
    atlas_store: AtlasStore, run: str, request: pytest.FixtureRequest
) -> None:
    """A group by order alone reads COMMUNICATES' per-order counts; the same group given as
    that order plus every template is counted prompt by prompt from the firings' WRITES."""
    run_id = request.getfixturevalue(run)
    templates = [
        record["t"]
        for record in atlas_store.driver.execute_query(
            "MATCH (p:Prompt {run_id: $run}) RETURN DISTINCT p.template AS t", run=run_id
        ).records
    ]
    for head in ({"layer": 3, "head": 1}, {}):
        by_order = {"run_id": run_id, "order_a": "ABBA", "order_b": "BABA", "limit": 10**6}
        by_order |= head
        by_prompt = by_order | {"templates_a": templates, "templates_b": templates}
        stored = atlas_store.read_template("compare", **by_order)
        counted = atlas_store.read_template("compare", **by_prompt)
        assert len(stored) > 5
        assert sorted(map(repr, stored)) == sorted(map(repr, counted))


def test_toy_ioi_name_mover_inputs_and_routes(atlas_store: AtlasStore, toy_ioi_run: str) -> None:
    """3.1's query side at END is written by the END→S2 heads and 0.2 (fixture README)."""
    inputs = run_query(
        atlas_store, "head_inputs", run_id=toy_ioi_run, layer=3, head=1, side="q", role="END"
    )
    assert {"2.3", "2.1", "0.2"} <= set(inputs["writer"].head(4))
    # head_inputs agrees with a pandas aggregation of the per-prompt WRITES.
    writes = pd.DataFrame(
        [r.data() for r in atlas_store.driver.execute_query(
            "MATCH (w:Head)-[e:WRITES {side: 'q'}]->(f:Firing {run_id: $run_id, layer: 3, "
            "head: 1}) WHERE e.role = 'END' RETURN w.id AS writer, f.prompt AS prompt",
            run_id=toy_ioi_run,
        ).records]
    )  # fmt: skip
    expected = writes.groupby("writer")["prompt"].nunique().sort_values(ascending=False)
    assert dict(zip(inputs["writer"], inputs["n_prompts"], strict=True)) == expected.to_dict()
    routes = alternative_routes(atlas_store, toy_ioi_run, "2.3", "3.1", min_prompts=5)
    assert routes.routes >= 1 and routes.edge_disjoint >= 1


def _cli_parameters(parameters: dict) -> list[str]:
    """``-p key=value`` arguments for a template's parameters (JSON for lists and null)."""
    arguments = []
    for key, value in parameters.items():
        text = value if isinstance(value, str) else json.dumps(value)
        arguments += ["-p", f"{key}={text}"]
    return arguments


def test_every_template_answers_on_an_acc_run_or_says_it_does_not_apply(
    runner: CliRunner, toy_ioi_run: str, toy_ioi_acc_run: str
) -> None:
    """Through the CLI, each read template with its example-toy on the SAD and the ACC toy-ioi
    runs of the same prompts: a template marked ``methods: sad`` (it reads USES) exits 1 with
    one ``Error:`` line on the ACC run; every other one answers, with rows wherever the SAD
    run has rows."""
    refused = set()
    for template in all_templates():
        if template.mode != "read" or template.example_toy is None:
            continue
        answers = {}
        for run in (toy_ioi_run, toy_ioi_acc_run):
            parameters = {**template.example_toy, "run_id": run}
            result = runner.invoke(
                main, ["query", template.name, *_cli_parameters(parameters), "--format", "json"]
            )
            assert "Traceback" not in result.output, (template.name, result.output)
            answers[run] = result
        sad, acc = answers[toy_ioi_run], answers[toy_ioi_acc_run]
        assert sad.exit_code == 0, (template.name, sad.output)
        if "acc" not in template.methods:
            refused.add(template.name)
            lines = acc.output.strip().splitlines()
            assert acc.exit_code == 1 and len(lines) == 1, (template.name, acc.output)
            assert lines[0].startswith("Error: ") and "does not apply to ACC run" in lines[0]
            continue
        assert acc.exit_code == 0, (template.name, acc.output)
        if json.loads(sad.output):
            assert json.loads(acc.output), template.name
    assert refused == {"shared_features", "shared_signals"}


def test_compare_puts_a_sad_and_an_acc_run_side_by_side(
    atlas_store: AtlasStore, toy_ioi_run: str, toy_ioi_acc_run: str
) -> None:
    """`compare` of the SAD and ACC toy-ioi runs of the same prompts, head → head only, against
    both runs' COMMUNICATES read directly: which edges each method finds, and their support."""

    def communication(run: str) -> dict[tuple[str, str, str, str], int]:
        records = atlas_store.driver.execute_query(
            "MATCH (w:Head)-[c:COMMUNICATES {run_id: $run}]->(h:Head) "
            "RETURN w.id AS w, h.id AS h, c.side AS side, c.role AS role, c.n_prompts AS n",
            run=run, database_=atlas_store.database,
        ).records  # fmt: skip
        return {(r["w"], r["h"], r["side"], r["role"]): r["n"] for r in records}

    sad, acc = communication(toy_ioi_run), communication(toy_ioi_acc_run)
    frame = run_query(atlas_store, "compare", run_id=toy_ioi_run, other_run_id=toy_ioi_acc_run,
                      heads_only=True, limit=100_000)  # fmt: skip
    got = {(r.writer, r.reader, r.side, r.role): r for r in frame.itertuples()}
    assert got.keys() == sad.keys() | acc.keys()
    for key, row in got.items():
        assert (row.prompts_a, row.prompts_b) == (sad.get(key, 0), acc.get(key, 0)), key
        expected = "both" if key in sad and key in acc else "a only" if key in sad else "b only"
        assert row.found_in == expected, key
    assert {"both", "a only", "b only"} <= set(frame["found_in"])
    everything = run_query(atlas_store, "compare", run_id=toy_ioi_run,
                           other_run_id=toy_ioi_acc_run, limit=100_000)  # fmt: skip
    leaves = everything[~everything["writer"].str.fullmatch(r"\d+\.\d+")]
    assert len(leaves) > 0 and set(leaves["found_in"]) == {"b only"}  # MLPs etc.: ACC's only
