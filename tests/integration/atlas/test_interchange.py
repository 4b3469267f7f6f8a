"""Importing the authors' graphs into the real test server, exporting them back, and what the
imported GPT-2 graph answers, each checked against networkx reading the file directly."""

from __future__ import annotations

import ast
import hashlib
import itertools
import math
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import networkx as nx
import pytest
from click.testing import CliRunner

from atlas.cli import main
from atlas.errors import AtlasError
from atlas.interchange.graphml import authors_role
from atlas.interchange.runs import export_graphml, import_graphml, run_edges
from atlas.store.schema import SCHEMA_VERSION
from atlas.store.store import AtlasStore
from atlas.store.writer import check_resumable
from ingest.models.loading import DEFAULT_MODEL
from ingest.records.types import RunRecord
from tests.fixtures.authors_data import (
    ACC_EXPECTED,
    sad_communication,
    sad_gpt2_file,
    write_acc_graph,
)

__all__ = ["sad_gpt2_file"]  # the fixture, imported for pytest

Route = tuple[str, str, str, str, int]  # writer, head, side, role, support


@pytest.fixture(scope="module")
def gpt2_run(atlas_store: AtlasStore, sad_gpt2_file: Path) -> Iterator[str]:
    """The authors' GPT-2 graph imported once as a read-only run (deleted at the end)."""
    run_id = f"test-sad-gpt2-{uuid.uuid4().hex[:8]}"
    import_graphml(atlas_store, sad_gpt2_file, run_id)
    yield run_id
    atlas_store.delete_run(run_id)


def comm_snapshot(store: AtlasStore, run_id: str) -> dict[tuple, dict]:
    rows = store._execute(
        "MATCH (w)-[c:COMMUNICATES {run_id: $run_id}]->(h) "
        "RETURN w.id AS w, h.id AS h, c.side AS side, c.role AS role, properties(c) AS p",
        run_id=run_id,
    )
    return {(r["w"], r["h"], r["side"], r["role"]): r["p"] for r in rows}


def test_import_writes_a_read_only_run(
    atlas_store: AtlasStore, gpt2_run: str, sad_gpt2_file: Path
) -> None:
    summary = atlas_store.show_run(gpt2_run)
    assert summary is not None
    run = summary["run"]
    assert run["method"] == "sad-import" and run["status"] == "complete"
    assert run["read_only"] is True and run["model_id"] == DEFAULT_MODEL
    assert run["source_file"] == sad_gpt2_file.name and run["source_format"] == "sad"
    assert run["source_sha256"] == hashlib.sha256(sad_gpt2_file.read_bytes()).hexdigest()
    assert (summary["communicates"], summary["prompts"], summary["firings"]) == (533, 0, 0)
    classes = atlas_store._execute(
        "MATCH (h:Head {model_id: $m}) WHERE h.id IN ['9.9', '8.6', '4.11'] "
        "RETURN h.id AS id, h.ioi_class AS c",
        m=DEFAULT_MODEL,
    )
    assert {r["id"]: r["c"] for r in classes} == {
        "9.9": "name mover", "8.6": "S-inhibition", "4.11": "previous token",
    }  # fmt: skip


def test_db_init_never_asks_to_reingest_an_imported_run(
    atlas_store: AtlasStore, gpt2_run: str
) -> None:
    set_version = "MATCH (r:Run {id: $id}) SET r.schema_version = $v RETURN r.schema_version"
    before = atlas_store._execute(set_version, id=gpt2_run, v=1)  # as if imported long ago
    try:
        assert gpt2_run not in {run_id for run_id, _ in atlas_store.stale_runs()}
    finally:
        atlas_store._execute(set_version, id=gpt2_run, v=SCHEMA_VERSION)
    assert before


def test_imported_edges_match_the_file(
    atlas_store: AtlasStore, gpt2_run: str, sad_gpt2_file: Path
) -> None:
    expected = sad_communication(sad_gpt2_file)
    stored = comm_snapshot(atlas_store, gpt2_run)
    renamed = {"end": "END", "end-1": "END-1"}
    assert stored.keys() == {(w, h, s, renamed.get(r, r)) for w, h, s, r in expected}
    for (w, h, side, role), data in expected.items():
        edge = stored[(w, h, side, renamed.get(role, role))]
        assert edge["n_prompts"] == data["count"] == edge["traversals"]
        assert math.isclose(edge["mean_weight"], data["weight"])
        assert edge["first_prompt"] == data["prompt"]


def test_reimport_leaves_the_same_graph(
    atlas_store: AtlasStore, gpt2_run: str, sad_gpt2_file: Path
) -> None:
    before = comm_snapshot(atlas_store, gpt2_run)
    again = import_graphml(atlas_store, sad_gpt2_file, gpt2_run)
    assert (again.counts.nodes_created, again.counts.relationships_created) == (0, 0)
    assert comm_snapshot(atlas_store, gpt2_run) == before


def test_other_content_under_an_imported_id_is_refused(
    atlas_store: AtlasStore, gpt2_run: str, tmp_path: Path, runner: CliRunner
) -> None:
    acc = write_acc_graph(tmp_path / "acc.graphml")
    with pytest.raises(AtlasError, match="already exists \\(imported from nms-p256"):
        import_graphml(atlas_store, acc, gpt2_run)
    result = runner.invoke(main, ["import", "graphml", str(acc), "--run-id", gpt2_run])
    assert result.exit_code == 1 and "already exists" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert atlas_store.show_run(gpt2_run)["communicates"] == 533  # type: ignore[index]


def test_an_ingested_run_id_is_not_overwritten_by_an_import(
    atlas_store: AtlasStore, atlas_run: RunRecord, sad_gpt2_file: Path
) -> None:
    with pytest.raises(AtlasError, match="made by method 'sad'"):
        import_graphml(atlas_store, sad_gpt2_file, atlas_run.id)


def test_ingestion_refuses_to_write_to_an_imported_run(
    atlas_store: AtlasStore, gpt2_run: str
) -> None:
    run = RunRecord(
        id=gpt2_run,
        model_id=DEFAULT_MODEL,
        model_revision=None,
        method="sad",
        params={},
        dataset={},
        versions={},
        git_commit=None,
    )
    for resume, rewrite in ((False, False), (True, False), (False, True)):
        with pytest.raises(AtlasError, match=f"Run '{gpt2_run}' is read-only"):
            check_resumable(atlas_store, run, resume=resume, rewrite=rewrite)
    with pytest.raises(AtlasError, match="is read-only"):
        atlas_store.create_run(run)
    assert atlas_store.show_run(gpt2_run)["run"]["method"] == "sad-import"  # type: ignore[index]


@pytest.mark.parametrize("flag", ["--resume", "--rewrite"])
def test_cli_ingest_onto_an_imported_run_is_one_line(
    runner: CliRunner, gpt2_run: str, sad_gpt2_file: Path, flag: str
) -> None:
    arguments = ["ingest", "--model", "toy-ioi", "--n-prompts", "2", "--run-id", gpt2_run, flag]
    result = runner.invoke(main, arguments)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert errors == [
        f"Error: Run '{gpt2_run}' is read-only (imported from "
        "nms-p256-f1.0-folded-expandedO-scaled.graphml, sha256 "
        f"{hashlib.sha256(sad_gpt2_file.read_bytes()).hexdigest()}); it cannot be resumed "
        f"or rewritten. Use another --run-id, or `circuit-atlas runs delete {gpt2_run}` first."
    ]
    assert "Traceback" not in result.output


def test_export_gives_back_the_file(
    runner: CliRunner, gpt2_run: str, sad_gpt2_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export.graphml"
    result = runner.invoke(main, ["export", "--run", gpt2_run, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "173 nodes, 612 edges" in result.output
    original, exported = nx.read_graphml(sad_gpt2_file), nx.read_graphml(out)
    assert {e: exported.edges[e] for e in exported.edges} == {
        e: original.edges[e] for e in original.edges
    }
    assert dict(exported.nodes(data=True)) == dict(original.nodes(data=True))


def test_export_of_an_ingested_run(
    atlas_store: AtlasStore, toy_ioi_run: str, tmp_path: Path
) -> None:
    summary = export_graphml(atlas_store, toy_ioi_run, tmp_path / "toy.graphml")
    exported = nx.read_graphml(summary.path)
    assert exported.is_multigraph()  # the toy's heads fire role → same role (both sides)
    edges = run_edges(atlas_store, toy_ioi_run)
    expected = {
        (f"({e.writer.layer}, {e.writer.head})", f"({e.target.layer}, {e.target.head}, "
         f"'{authors_role(e.role)}')", {"q": "d", "k": "s"}[e.side]): (e.n_prompts,
                                                                      e.mean_weight)
        for e in edges
    }  # fmt: skip
    got = {
        (u, v, d["type"]): (d["count"], d["weight"])
        for u, v, d in exported.edges(data=True)
        if d["weight"] != 2000
    }
    assert got == expected and len(got) == len(edges) > 0


def test_acc_import_keeps_other_components(atlas_store: AtlasStore, tmp_path: Path) -> None:
    run_id = f"test-acc-{uuid.uuid4().hex[:8]}"
    path = write_acc_graph(tmp_path / "acc.graphml")
    try:
        summary = import_graphml(atlas_store, path, run_id)
        assert summary.format == "acc" and summary.edges == len(ACC_EXPECTED)
        stored = comm_snapshot(atlas_store, run_id)
        assert stored.keys() == ACC_EXPECTED.keys()
        for key, (n_prompts, mean_weight) in ACC_EXPECTED.items():
            assert stored[key]["n_prompts"] == n_prompts
            assert math.isclose(stored[key]["mean_weight"], mean_weight)
        kinds = atlas_store._execute(
            "MATCH (c:Component {model_id: $m}) WHERE c.id IN ['mlp0', 'embed', 'attn_bias3', "
            "'logit_direction'] RETURN c.id AS id, c.kind AS kind, c:Head AS head",
            m=DEFAULT_MODEL,
        )
        assert {r["id"]: (r["kind"], r["head"]) for r in kinds} == {
            "mlp0": ("mlp", False), "embed": ("embed", False), "attn_bias3": ("attn_bias", False),
            "logit_direction": ("logit_direction", False),
        }  # fmt: skip
    finally:
        atlas_store.delete_run(run_id)


def edge_multiset(graph: nx.Graph) -> list[tuple[str, str, str]]:
    return sorted((u, v, repr(sorted(d.items()))) for u, v, d in graph.edges(data=True))


def test_an_imported_acc_run_exports_the_authors_file_again(
    atlas_store: AtlasStore, tmp_path: Path
) -> None:
    """import graphml (ACC) → export → the file's graph (nodes, attributes, every edge, the
    role pairs the import merges included); importing the export gives the same run."""
    path = write_acc_graph(tmp_path / "acc.graphml")
    first, second = (f"test-acc-export-{uuid.uuid4().hex[:8]}" for _ in range(2))
    try:
        import_graphml(atlas_store, path, first)
        exported = export_graphml(atlas_store, first, tmp_path / "out.graphml")
        original, written = nx.read_graphml(path), nx.read_graphml(exported.path)
        assert exported.skipped == 0 and type(written) is type(original)
        assert dict(written.nodes(data=True)) == dict(original.nodes(data=True))
        assert edge_multiset(written) == edge_multiset(original)
        import_graphml(atlas_store, exported.path, second)

        def stripped(run: str) -> dict[tuple, dict]:
            return {k: {**p, "run_id": None} for k, p in comm_snapshot(atlas_store, run).items()}

        assert stripped(second) == stripped(first)
        again = export_graphml(atlas_store, second, tmp_path / "again.graphml")
        assert edge_multiset(nx.read_graphml(again.path)) == edge_multiset(original)
    finally:
        atlas_store.delete_run(first)
        atlas_store.delete_run(second)


@pytest.mark.parametrize(
    ("arguments", "message", "code"),
    [
        (["import", "graphml", "missing.graphml", "--run-id", "x"], "No such file", 1),
        (["import", "graphml", "{text}", "--run-id", "x"], "not a GraphML file", 1),
        (["import", "graphml", "{text}", "--run-id", "x", "--format", "dot"], "'dot'", 2),
        (["export", "--run", "no-such-run"], "not in the atlas", 1),
        (["export", "--run", "x", "--format", "dot"], "'dot'", 2),
    ],
)
def test_cli_errors_are_one_clear_line(
    runner: CliRunner, tmp_path: Path, arguments: list[str], message: str, code: int
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a graph")
    result = runner.invoke(main, [a.replace("{text}", str(text)) for a in arguments])
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if "Error" in line]) == 1


# ----- answers on the imported GPT-2 graph, against networkx on the file ----------------------


def stored_inputs(store: AtlasStore, run_id: str, head: str, side: str, role: str) -> list[str]:
    """Writers into a head at a side and role, most prompts (traversals) first."""
    rows = store._execute(
        "MATCH (w:Head)-[c:COMMUNICATES {run_id: $run_id, head: $head, side: $side, "
        "role: $role}]->() RETURN w.id AS writer ORDER BY c.n_prompts DESC, c.mean_weight DESC",
        run_id=run_id,
        head=head,
        side=side,
        role=role,
    )
    return [r["writer"] for r in rows]


def file_inputs(path: Path, head: str, side: str, role: str) -> list[str]:
    edges = [(w, d) for (w, h, s, r), d in sad_communication(path).items() if (h, s, r) == (
        head, side, role)]  # fmt: skip
    return [w for w, _ in sorted(edges, key=lambda e: (-e[1]["count"], -e[1]["weight"]))]


@pytest.mark.parametrize(
    ("head", "side", "role", "paper"),
    [
        ("9.9", "q", "end", ["8.6", "8.3", "7.9", "7.3"]),  # as the paper reports
        ("9.6", "q", "end", None),
        ("8.6", "k", "S2", None),
        ("5.5", "k", "S1+1", ["4.11"]),
        ("5.5", "q", "S2", ["3.0"]),
    ],
)
def test_strongest_writers_match_the_file(
    atlas_store: AtlasStore,
    gpt2_run: str,
    sad_gpt2_file: Path,
    head: str,
    side: str,
    role: str,
    paper: list[str] | None,
) -> None:
    atlas = stored_inputs(atlas_store, gpt2_run, head, side, "END" if role == "end" else role)
    expected = file_inputs(sad_gpt2_file, head, side, role)
    assert atlas == expected and len(atlas) > 3
    if paper is not None:
        assert atlas[: len(paper)] == paper
    if head == "9.6":  # 8.5 outranks 7.9 and 7.3 into 9.6 in the authors' counts
        assert atlas[:4] == ["8.6", "8.3", "8.5", "7.9"]
    if head == "8.6":  # the paper's 6.3, 5.5, 3.0 (by weight 6.3 leads; by count 5.5)
        assert set(atlas[:3]) == {"6.3", "5.5", "3.0"}


def layer0_routes(edges: Iterable[Route], head: str, side: str, role: str, support: int) -> int:
    """Edge-disjoint routes from layer-0 heads to (head, side, role): max-flow with capacity 1
    per communication edge and unbounded capacity from a head's inputs to its output."""
    graph = nx.DiGraph()
    for writer, down, s, r, n in edges:
        if n >= support:
            reading = (down, s, r)
            graph.add_edge(writer, reading, capacity=1)
            graph.add_edge(reading, down)  # no capacity: unbounded
    for node in [n for n in graph if isinstance(n, str) and n.startswith("0.")]:
        graph.add_edge("source", node)
    if (head, side, role) not in graph or "source" not in graph:
        return 0
    return int(nx.maximum_flow_value(graph, "source", (head, side, role)))


@pytest.mark.parametrize(
    ("head", "support", "routes"),
    [("9.9", 1, 12), ("9.9", 10, 4), ("9.9", 50, 2), ("9.6", 1, 16), ("9.6", 10, 5)],
)
def test_routes_into_the_name_movers_match_the_file(
    atlas_store: AtlasStore,
    gpt2_run: str,
    sad_gpt2_file: Path,
    head: str,
    support: int,
    routes: int,
) -> None:
    from_file = [
        (w, h, s, r, d["count"]) for (w, h, s, r), d in sad_communication(sad_gpt2_file).items()
    ]
    stored = [
        (w, h, s, r, p["n_prompts"])
        for (w, h, s, r), p in comm_snapshot(atlas_store, gpt2_run).items()
    ]
    assert layer0_routes(from_file, head, "q", "end", support) == routes
    assert layer0_routes(stored, head, "q", "END", support) == routes


# ----- the query layer's templates on the imported run, against networkx on the file ---------


def file_multigraph(path: Path, min_prompts: int) -> nx.MultiDiGraph:
    """The file's communication as head → head edges keyed by side@role (atlas role names)."""
    graph = nx.MultiDiGraph()
    renamed = {"end": "END", "end-1": "END-1"}
    for (writer, head, side, role), data in sad_communication(path).items():
        if data["count"] >= min_prompts:
            role = renamed.get(role, role)
            graph.add_edge(writer, head, key=f"{side}@{role}", side=side, role=role,
                           n=data["count"])  # fmt: skip
    return graph


def file_routes(path: Path, source: str, target: str, max_hops: int, min_prompts: int) -> dict:
    """Role-consistent routes source → target (as `paths` defines them): route text → hops."""
    graph = file_multigraph(path, min_prompts)
    routes = {}
    for hops in nx.all_simple_edge_paths(graph, source, target, cutoff=max_hops):
        data = [graph.edges[hop] for hop in hops]
        if all(a["side"] == "k" or b["role"] == a["role"] for a, b in itertools.pairwise(data)):
            steps = [
                (hop[0], hop[1], d["side"], d["role"]) for hop, d in zip(hops, data, strict=True)
            ]
            routes[hops[0][0] + "".join(f" -{s}@{r}→ {h}" for _, h, s, r in steps)] = steps
    return routes


@pytest.mark.parametrize(("layer", "head", "side", "role"), [
    (9, 9, "q", "end"), (9, 6, "q", "end"), (8, 6, "k", "S2"), (5, 5, "k", "S1+1"),
])  # fmt: skip
def test_head_inputs_template_on_the_imported_run(
    atlas_store: AtlasStore,
    gpt2_run: str,
    sad_gpt2_file: Path,
    layer: int,
    head: int,
    side: str,
    role: str,
) -> None:
    from atlas.ask.lookups import run_query

    atlas_role = "END" if role == "end" else role
    rows = run_query(atlas_store, "head_inputs", run_id=gpt2_run, layer=layer, head=head,
                     side=side, role=atlas_role, limit=500)  # fmt: skip
    expected = file_inputs(sad_gpt2_file, f"{layer}.{head}", side, role)
    assert list(rows["writer"]) == expected
    counts = {w: d["count"] for (w, h, s, r), d in sad_communication(sad_gpt2_file).items()
              if (h, s, r) == (f"{layer}.{head}", side, role)}  # fmt: skip
    assert dict(zip(rows["writer"], rows["n_prompts"], strict=True)) == counts
    assert rows["prompt_share"].isna().all()  # an imported run has no Prompt nodes
    if (layer, head) == (9, 9):
        assert rows.iloc[0]["writer_class"] == "S-inhibition"  # 8.6


@pytest.mark.parametrize(
    ("source", "target", "max_hops", "min_prompts"),
    [("7.3", "9.9", 3, 5), ("3.0", "9.9", 3, 10), ("4.11", "9.6", 4, 20), ("0.1", "9.9", 4, 50)],
)
def test_paths_and_alternative_routes_templates_on_the_imported_run(
    atlas_store: AtlasStore,
    gpt2_run: str,
    sad_gpt2_file: Path,
    source: str,
    target: str,
    max_hops: int,
    min_prompts: int,
) -> None:
    from atlas.ask.lookups import alternative_routes, head, run_query

    expected = file_routes(sad_gpt2_file, source, target, max_hops, min_prompts)
    assert expected, "pick a pair with routes"
    (fl, fh), (tl, th) = head(source), head(target)
    paths = run_query(atlas_store, "paths", run_id=gpt2_run, from_layer=fl, from_head=fh,
                      to_layer=tl, to_head=th, max_hops=max_hops, min_prompts=min_prompts,
                      limit=10_000)  # fmt: skip
    assert set(paths["route"]) == set(expected)
    graph = file_multigraph(sad_gpt2_file, min_prompts)
    for route, weakest in zip(paths["route"], paths["min_prompts"], strict=True):
        assert weakest == min(graph.edges[w, h, f"{s}@{r}"]["n"] for w, h, s, r in expected[route])

    found = alternative_routes(atlas_store, gpt2_run, source, target, max_hops=max_hops,
                               min_prompts=min_prompts)  # fmt: skip
    through: dict[tuple, int] = {}
    for hops in expected.values():
        for hop in hops:
            through[hop] = through.get(hop, 0) + 1
    got = {(r.writer, r.reader, r.side, r.role): r.routes for r in found.edges.itertuples()}
    assert got == through and found.routes == len(expected)
    pairs = nx.DiGraph()
    pairs.add_edges_from({(w, h) for w, h, _, _ in through}, capacity=1)
    assert found.edge_disjoint == nx.maximum_flow_value(pairs, source, target) >= 1


def test_an_acc_run_round_trips_through_the_authors_acc_format(
    atlas_store: AtlasStore, toy_ioi_acc_run: str, tmp_path: Path
) -> None:
    out = tmp_path / "acc.graphml"
    summary = export_graphml(atlas_store, toy_ioi_acc_run, out)
    graph = nx.read_graphml(out)
    assert summary.edges == graph.number_of_edges() > 0
    root = "('IO-S direction', 'end')"
    assert graph.nodes[root]["n_appearences"] > 0
    for u, v, data in graph.edges(data=True):
        assert data["type"] in {"d", "s"}
        assert isinstance(
            ast.literal_eval(data["prompts_appeared"]), list
        )  # the authors' repr of a list
        up = ast.literal_eval(u)
        assert len(up) == 4 and (isinstance(up[1], int) or up[1] in {"MLP", "AH bias", "Embedding"})
        assert v == root or len(ast.literal_eval(v)) == 4
    assert any(ast.literal_eval(u)[1] == "MLP" for u in graph.nodes if u != root)
    model_id = atlas_store._model_of(toy_ioi_acc_run)
    run_id = f"test-acc-reimport-{uuid.uuid4().hex[:8]}"
    try:
        imported = import_graphml(atlas_store, out, run_id, model=model_id)
        assert imported.format == "acc"

        def communication(run: str) -> dict[tuple[str, str, str, str], tuple[int, float]]:
            return {
                (e.writer.id, e.target.id, e.side, e.role): (e.n_prompts, e.mean_weight)
                for e in run_edges(atlas_store, run)
            }

        ingested, again = communication(toy_ioi_acc_run), communication(run_id)
        assert again.keys() == ingested.keys()
        for key, (n_prompts, mean_weight) in ingested.items():
            assert again[key][0] == n_prompts, key
            assert math.isclose(again[key][1], mean_weight, rel_tol=1e-9, abs_tol=1e-12), key
        # and the imported run is written as the same file again
        rewritten = export_graphml(atlas_store, run_id, tmp_path / "again.graphml")
        assert edge_multiset(nx.read_graphml(rewritten.path)) == edge_multiset(graph)
    finally:
        atlas_store.delete_run(run_id)
