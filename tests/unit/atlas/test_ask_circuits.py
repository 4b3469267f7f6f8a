"""Circuit building and rendering from hand-written template rows (no database): ``circuit``'s
per-edge rows and ``circuit_summary``'s per-group rows."""

from __future__ import annotations

from typing import Any

import pytest

from atlas.ask.circuits import (
    Node,
    build_circuit,
    circuit_edges,
    parse_head,
    render_tree,
    summary_circuit,
)
from tests.fixtures.circuit_graph import EXPECTED_ROWS, ROOT, row

ALL_ROWS = EXPECTED_ROWS[0] + EXPECTED_ROWS[1]
R = Node(3, 0, "END", "IO")
A = Node(2, 1, "END", "S2")
B = Node(1, 1, "S2", "S1")
C = Node(1, 1, "END", "S2")


def test_parse_head() -> None:
    assert parse_head("9.9") == (9, 9)
    assert parse_head(" 10.0 ") == (10, 0)
    for bad in ["9.9x", "9", "a.b", "9.-1", ""]:
        with pytest.raises(ValueError, match=r"layer\.head"):
            parse_head(bad)


def test_aggregated_counts_and_means_by_hand() -> None:
    circuit = build_circuit(ALL_ROWS, aggregate=True)
    summary = {
        target: [(e.side, e.writer, e.role, e.n_prompts, e.mean_weight, e.sources) for e in edges]
        for target, edges in circuit.edges.items()
    }
    assert circuit.roots == (R,)
    assert summary == {
        R: [
            ("q", "2.1", "END", 2, pytest.approx((0.9 + 1.1) / 2), (A,)),
            ("q", "1.1", "END", 1, pytest.approx(0.25), (C,)),
            ("k", "1.0", "IO", 2, pytest.approx((0.5 + 0.3) / 2), ()),
        ],
        A: [
            ("q", "0.1", "END", 2, pytest.approx((0.3 + 0.1) / 2), ()),
            ("q", "1.1", "END", 1, pytest.approx(0.35), (C,)),
            ("k", "1.1", "S2", 2, pytest.approx((0.7 + 0.5) / 2), (B,)),
        ],
        B: [("q", "0.0", "S2", 1, pytest.approx(0.4), ())],
        C: [("q", "0.0", "END", 1, pytest.approx(0.2), ())],
    }
    assert dict(circuit.prompts) == {R: 2, A: 2, B: 1, C: 1}


def test_aggregated_tree_renders_repeats_once() -> None:
    assert render_tree(build_circuit(ALL_ROWS, aggregate=True)) == "\n".join(
        [
            "3.0 END→IO  (2 prompts)",
            "├─ q  2.1 @END→S2  n=2  mean=+1.000",
            "│  ├─ q  0.1 @END  n=2  mean=+0.200",
            "│  ├─ q  1.1 @END→S2  n=1  mean=+0.350",
            "│  │  └─ q  0.0 @END  n=1  mean=+0.200",
            "│  └─ k  1.1 @S2→S1  n=2  mean=+0.600",
            "│     └─ q  0.0 @S2  n=1  mean=+0.400",
            "├─ q  1.1 @END→S2  n=1  mean=+0.250  (repeat)",
            "└─ k  1.0 @IO  n=2  mean=+0.400",
        ]
    )


def test_max_depth_and_min_prompts_trim_the_tree() -> None:
    circuit = build_circuit(ALL_ROWS, aggregate=True)
    assert render_tree(circuit, max_depth=1) == "\n".join(
        [
            "3.0 END→IO  (2 prompts)",
            "├─ q  2.1 @END→S2  n=2  mean=+1.000  …",
            "├─ q  1.1 @END→S2  n=1  mean=+0.250  …",
            "└─ k  1.0 @IO  n=2  mean=+0.400",
        ]
    )
    assert render_tree(circuit, min_prompts=2) == "\n".join(
        [
            "3.0 END→IO  (2 prompts)",
            "├─ q  2.1 @END→S2  n=2  mean=+1.000",
            "│  ├─ q  0.1 @END  n=2  mean=+0.200",
            "│  └─ k  1.1 @S2→S1  n=2  mean=+0.600",
            "└─ k  1.0 @IO  n=2  mean=+0.400",
        ]
    )
    assert render_tree(circuit, min_prompts=3).splitlines()[1].startswith("└─ (no edge in 3+")


def test_one_prompt_tree_has_positions_and_weights() -> None:
    assert render_tree(build_circuit(EXPECTED_ROWS[0], aggregate=False)) == "\n".join(
        [
            "3.0 END→IO [8→2]  prompt 0",
            "├─ q  2.1 @END[8]→S2[6]  w=+0.900",
            "│  ├─ q  1.1 @END[8]→S2[6]  w=+0.350",
            "│  │  └─ q  0.0 @END[8]  w=+0.200",
            "│  ├─ q  0.1 @END[8]  w=+0.300",
            "│  └─ k  1.1 @S2[6]→S1[4]  w=+0.700",
            "│     └─ q  0.0 @S2[6]  w=+0.400",
            "├─ q  1.1 @END[8]→S2[6]  w=+0.250  (repeat)",
            "└─ k  1.0 @IO[2]  w=+0.500",
        ]
    )


def test_writer_firing_twice_at_a_position_counts_its_edge_once() -> None:
    rows = [row(0, 0, ROOT, "2.1", "q", 0.9, writer_src=src) for src in (6, 4)]
    circuit = build_circuit(rows, aggregate=False)
    (edge,) = circuit.edges[circuit.roots[0]]
    assert (edge.n_prompts, edge.mean_weight, len(edge.sources)) == (1, 0.9, 2)
    assert render_tree(circuit).splitlines()[1:] == [
        "└─ q  2.1 @END[8]  w=+0.900",
        "   ├─ 2.1 END→S1 [8→4]  prompt 0",
        "   └─ 2.1 END→S2 [8→6]  prompt 0",
    ]


def test_flat_edges_are_breadth_first_with_depth() -> None:
    records = circuit_edges(build_circuit(ALL_ROWS, aggregate=True))
    assert [(r["depth"], r["head"], r["side"], r["writer"]) for r in records] == [
        (1, "3.0", "q", "2.1"),
        (1, "3.0", "q", "1.1"),
        (1, "3.0", "k", "1.0"),
        (2, "2.1", "q", "0.1"),
        (2, "2.1", "q", "1.1"),
        (2, "2.1", "k", "1.1"),
        (2, "1.1", "q", "0.0"),
        (3, "1.1", "q", "0.0"),
    ]
    assert records[0]["writer_firings"] == ["2.1 END→S2"]
    assert len(circuit_edges(build_circuit(ALL_ROWS, aggregate=True), max_depth=1)) == 3


def test_min_prompts_also_hides_a_writer_firing_seen_in_fewer_prompts() -> None:
    rows = [row(p, 0, ROOT, "2.1", "q", 0.9, writer_src=6) for p in range(3)]
    rows.append(row(0, 0, ROOT, "2.1", "q", 0.9, writer_src=4))
    circuit = build_circuit(rows, aggregate=True)
    shown = render_tree(circuit, min_prompts=2)
    assert "2.1 END→S2" in shown and "2.1 END→S1" not in shown
    assert "(1 more in < 2 prompts)" in shown
    assert "2.1 END→S1" in render_tree(circuit, min_prompts=1)


def test_several_roots_each_counted_by_the_prompts_it_is_a_root_in() -> None:
    """As for the logit direction's seeds: 2.1 END→S2 is a root in prompt 2 only (reached from
    3.0 in prompts 0 and 1). With min_prompts 2 it starts nothing, but is still reached."""
    rows = [*ALL_ROWS, row(2, 0, ("2.1", 8, 6), "0.1", "q", 0.5)]
    circuit = build_circuit(rows, aggregate=True)
    assert circuit.roots == (A, R)
    assert dict(circuit.root_prompts) == {A: 1, R: 2}
    assert circuit.roots_in(2) == [R] and circuit.roots_in(1) == [A, R]
    first = [(r["depth"], r["head"], r["writer"]) for r in circuit_edges(circuit)][:3]
    assert first == [(1, "2.1", "0.1"), (1, "2.1", "1.1"), (1, "2.1", "1.1")]
    common = circuit_edges(circuit, min_prompts=2)
    assert [(r["depth"], r["head"], r["side"], r["writer"], r["n_prompts"]) for r in common] == [
        (1, "3.0", "q", "2.1", 2),
        (1, "3.0", "k", "1.0", 2),
        (2, "2.1", "q", "0.1", 3),
        (2, "2.1", "k", "1.1", 2),
    ]


def group_row(
    target: Node,
    counts: tuple[int, int],
    side: str | None = None,
    writer: str | None = None,
    role: str | None = None,
    weights: tuple[float, ...] = (),
    sources: tuple[Node, ...] = (),
) -> dict[str, Any]:
    """One ``circuit_summary`` row: ``counts`` is the class's (prompts, root_prompts)."""
    return {
        "layer": target.layer,
        "head": target.head,
        "dest_role": target.dest_role,
        "src_role": target.src_role,
        "prompts": counts[0],
        "root_prompts": counts[1],
        "side": side,
        "writer": writer,
        "role": role,
        "n_prompts": None if side is None else len(weights),  # one edge per prompt here
        "mean_weight": sum(weights) / len(weights) if weights else None,
        "weights": list(weights),
        "source_layers": [source.layer for source in sources],
        "source_heads": [source.head for source in sources],
        "source_dest_roles": [source.dest_role for source in sources],
        "source_src_roles": [source.src_role for source in sources],
    }


SUMMARY_ROWS = [  # the circuit of ALL_ROWS (test_aggregated_counts_and_means_by_hand), by group
    group_row(R, (2, 2), "q", "2.1", "END", (0.9, 1.1), (A,)),
    group_row(R, (2, 2), "q", "1.1", "END", (0.25,), (C,)),
    group_row(R, (2, 2), "k", "1.0", "IO", (0.5, 0.3)),
    group_row(A, (2, 0), "k", "1.1", "S2", (0.7, 0.5), (B,)),
    group_row(A, (2, 0), "q", "0.1", "END", (0.3, 0.1)),
    group_row(A, (2, 0), "q", "1.1", "END", (0.35,), (C,)),
    group_row(B, (1, 0), "q", "0.0", "S2", (0.4,)),
    group_row(C, (1, 0), "q", "0.0", "END", (0.2,)),
]


def test_summary_rows_build_the_circuit_of_the_per_edge_rows() -> None:
    summary = summary_circuit(SUMMARY_ROWS)
    assert summary == build_circuit(ALL_ROWS, aggregate=True)  # means by fmean: equal digits
    assert render_tree(summary) == render_tree(build_circuit(ALL_ROWS, aggregate=True))


def test_summary_row_without_an_edge_is_a_class_reached_only_as_a_writer_firing() -> None:
    leaf = Node(0, 1, "END", "other")
    rows = [
        group_row(R, (3, 2), "q", "0.1", "END", (1.0, 3.0), (leaf,)),
        group_row(leaf, (1, 0)),
        group_row(A, (1, 0)),  # not a root: root_prompts 0
    ]
    circuit = summary_circuit(rows)
    assert circuit.roots == (R,) and circuit.root_prompts == {R: 2}
    assert dict(circuit.prompts) == {R: 3, leaf: 1, A: 1}
    assert list(circuit.edges) == [R]
    (edge,) = circuit.edges[R]
    assert (edge.n_prompts, edge.mean_weight, edge.sources, edge.pos) == (2, 2.0, (leaf,), None)
