"""Parsing and writing the authors' graph formats, checked against networkx on the files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import networkx as nx
import pytest

from atlas.errors import AtlasError
from atlas.interchange.graphml import (
    atlas_role,
    authors_acc_graph,
    authors_role,
    parse_graph,
    read_graphml,
    sad_graph,
    skipped_for_sad,
)
from tests.fixtures.authors_data import (
    ACC_EDGES,
    ACC_EXPECTED,
    sad_communication,
    sad_gpt2_file,
    write_acc_graph,
)

__all__ = ["sad_gpt2_file"]  # the fixture, imported for pytest


def test_sad_edges_match_the_file(sad_gpt2_file: Path) -> None:
    parsed = parse_graph(read_graphml(sad_gpt2_file))
    assert parsed.format == "sad"
    expected = sad_communication(sad_gpt2_file)
    assert len(expected) == 533  # 612 edges less 79 display links
    got = {(e.writer.id, e.target.id, e.side, authors_role(e.role)): e for e in parsed.edges}
    assert got.keys() == expected.keys()
    for key, data in expected.items():
        edge = got[key]
        assert edge.n_prompts == data["count"]
        assert math.isclose(edge.mean_weight, data["weight"])
        assert math.isclose(edge.source["total_weight"], edge.mean_weight * edge.n_prompts)
        assert edge.source["first_prompt"] == data["prompt"]
        assert authors_role(edge.source["dest_role"]) == data["dest_token"]
    roles = {e.role for e in parsed.edges}
    assert {"END", "END-1", "IO", "S1", "S1+1", "S2", "verb"} <= roles
    assert "end" not in roles
    assert parsed.head_firings["9.9"] == 305 and parsed.head_firings["0.1"] == 0


def test_sad_graph_writes_the_file_back(sad_gpt2_file: Path) -> None:
    original = nx.read_graphml(sad_gpt2_file)
    parsed = parse_graph(original)
    rebuilt = sad_graph(parsed.edges, parsed.head_firings)
    assert skipped_for_sad(parsed.edges) == 0
    assert dict(rebuilt.nodes(data=True)) == dict(original.nodes(data=True))
    assert {e: rebuilt.edges[e] for e in rebuilt.edges} == {
        e: original.edges[e] for e in original.edges
    }


def test_roles_are_renamed_both_ways() -> None:
    assert atlas_role("end") == "END" and atlas_role("end-1") == "END-1"
    assert atlas_role("S1+1") == "S1+1" and atlas_role("verb") == "verb"
    assert atlas_role(6) == 6
    for role in ("end", "end-1", "IO", "S1+1", "verb"):
        assert authors_role(atlas_role(role)) == role


def test_acc_edges_are_merged_per_writer_head_side_role(tmp_path: Path) -> None:
    parsed = parse_graph(read_graphml(write_acc_graph(tmp_path / "acc.graphml")))
    assert parsed.format == "acc"
    assert parsed.facts["traced_prompts"] == 3
    got = {(e.writer.id, e.target.id, e.side, e.role): e for e in parsed.edges}
    assert got.keys() == ACC_EXPECTED.keys()
    for key, (n_prompts, mean_weight) in ACC_EXPECTED.items():
        assert got[key].n_prompts == n_prompts, key
        assert math.isclose(got[key].mean_weight, mean_weight), key
    merged = got[("8.6", "9.9", "q", "END")].source
    assert merged["prompts"] == [0, 1, 2] and merged["merged_edges"] == 2
    assert sorted(json.loads(e)[0] for e in merged["authors_edges"]) == [
        "(8, 6, 'end', 'IO')", "(8, 6, 'end', 'S2')",
    ]  # fmt: skip
    kinds = {c.id: c.kind for c in parsed.components}
    assert kinds == {
        "logit_direction": "logit_direction", "embed": "embed", "mlp0": "mlp",
        "attn_bias3": "attn_bias",
        "5.5": "head", "8.6": "head", "9.9": "head",
    }  # fmt: skip
    assert skipped_for_sad(parsed.edges) == 4  # into logit; mlp0, embed, attn_bias3


def edge_multiset(graph: nx.Graph) -> list[tuple[str, str, str]]:
    """Every edge with its attributes, order-free (a MultiDiGraph's keys left out)."""
    return sorted((u, v, json.dumps(d, sort_keys=True)) for u, v, d in graph.edges(data=True))


def test_an_acc_file_is_rebuilt_from_what_its_import_keeps(tmp_path: Path) -> None:
    """The nodes and merged edges the import keeps give the file's graph back, read by
    networkx from a written file (the role pairs that the merge folds together included)."""
    original = read_graphml(write_acc_graph(tmp_path / "acc.graphml"))
    parsed = parse_graph(original)
    rebuilt = authors_acc_graph(parsed.nodes, parsed.edges)
    nx.write_graphml(rebuilt, tmp_path / "again.graphml")
    again = read_graphml(tmp_path / "again.graphml")
    assert dict(again.nodes(data=True)) == dict(original.nodes(data=True))
    assert edge_multiset(again) == edge_multiset(original)
    assert len(edge_multiset(original)) == len(ACC_EDGES)


def test_a_format_can_be_forced_and_must_fit(tmp_path: Path, sad_gpt2_file: Path) -> None:
    with pytest.raises(AtlasError, match="Not a SAD edge"):
        parse_graph(read_graphml(write_acc_graph(tmp_path / "acc.graphml")), "sad")
    with pytest.raises(AtlasError, match="Unknown format 'dot'"):
        parse_graph(read_graphml(sad_gpt2_file), "dot")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file"),
        ("this is not xml", "not a GraphML file"),
        ("<graphml><graph edgedefault='directed'><node id='a'/><node id='b'/>"
         "<edge source='a' target='b'/></graph></graphml>", "neither of the authors' formats"),
    ],
)  # fmt: skip
def test_bad_files_are_one_clear_line(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "graph.graphml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(AtlasError, match=message) as raised:
        parse_graph(read_graphml(path))
    assert "\n" not in str(raised.value)


def test_node_ids_must_be_tuples(tmp_path: Path) -> None:
    graph = nx.DiGraph()
    graph.add_edge("8.6", "9.9", type="d", weight=1.0, count=1, total=1.0)
    nx.write_graphml(graph, tmp_path / "ids.graphml")
    with pytest.raises(AtlasError, match="is not a tuple"):
        parse_graph(read_graphml(tmp_path / "ids.graphml"))
