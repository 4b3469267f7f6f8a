"""Circuit comparison maths against hand-built circuits whose P/R/F1 are known."""

from __future__ import annotations

import pytest

from atlas.check.comparison import (
    atlas_circuit,
    curve,
    default_sizes,
    patching_circuit,
    pruned_circuit,
    reference_circuit,
)
from ingest.records.build import GPT2_IOI_CLASSES
from ingest.tracing.circuits import score_sets

ATLAS_RECORDS = [
    {"head": "3.1", "writer": "2.3", "side": "q"},
    {"head": "3.1", "writer": "embed", "side": "k"},
    {"head": "2.3", "writer": "1.0", "side": "k"},
    {"head": "2.3", "writer": "mlp0", "side": "q"},
]
PATCH_ROWS = [
    {"writer": "3.1", "reader": "logit", "side": "in", "score": 2.0},
    {"writer": "2.3", "reader": "3.1", "side": "q", "score": -1.5},
    {"writer": "mlp0", "reader": "2.3", "side": "q", "score": 1.2},
    {"writer": "0.2", "reader": "2.3", "side": "k", "score": 0.9},
    {"writer": "1.0", "reader": "2.3", "side": "v", "score": 0.5},
    {"writer": "1.0", "reader": "2.3", "side": "k", "score": 0.1},
]


def test_atlas_and_patching_circuits() -> None:
    atlas = atlas_circuit("sad", {"3.1"}, ATLAS_RECORDS)
    assert atlas.heads == {"3.1", "2.3", "1.0"}
    assert atlas.edges == {("2.3", "3.1", "q"), ("1.0", "2.3", "k")}
    top3 = patching_circuit("eap", PATCH_ROWS, top_k=3)  # logit, 2.3→3.1, mlp0→2.3
    assert top3.heads == {"3.1", "2.3"}
    # edges: the top 3 head → head q/k edges: 2.3→3.1 q, 0.2→2.3 k, 1.0→2.3 k
    assert top3.edges == {("2.3", "3.1", "q"), ("0.2", "2.3", "k"), ("1.0", "2.3", "k")}
    heads = score_sets(atlas.heads, top3.heads)
    assert (heads.precision, heads.recall) == (pytest.approx(2 / 3), 1.0)
    assert heads.f1 == pytest.approx(0.8)
    edges = score_sets(atlas.edges, top3.edges)
    assert (edges.precision, edges.recall) == (1.0, pytest.approx(2 / 3))
    above = patching_circuit("eap", PATCH_ROWS, threshold=0.8)
    assert above.heads == {"3.1", "2.3", "0.2"}


def test_pruned_circuit_keeps_edges_beating_the_control() -> None:
    validations = [
        {"head": "3.1", "writer": "2.3", "side": "q", "logit_ratio": 12.0},
        {"head": "2.3", "writer": "1.0", "side": "k", "logit_ratio": 1.5},
    ]
    pruned = pruned_circuit("pruned", {"3.1"}, validations, ratio=2.0)
    assert pruned.heads == {"3.1", "2.3"} and pruned.edges == {("2.3", "3.1", "q")}


def test_logit_direction_circuit_has_every_seed_head_and_no_root_in_its_pruned_circuit() -> None:
    """Seed heads 3.1, 3.3 and 2.0 (2.0 with no edge kept) and the edges into them: 6 heads,
    of which the 4 of a patching circuit of 3.1, 3.3, 2.3, 0.2 (P 4/6, R 1, F1 0.8)."""
    records = [
        *ATLAS_RECORDS,  # 3.1 ← 2.3 (q), embed (k); 2.3 ← 1.0 (k), mlp0 (q)
        {"head": "2.3", "writer": "0.2", "side": "k"},  # 2.3 reached again from another seed
        {"head": "3.3", "writer": "mlp2", "side": "q"},
    ]
    logit = atlas_circuit("atlas logit", {"3.1", "3.3", "2.0"}, records)
    assert logit.heads == {"3.1", "3.3", "2.0", "2.3", "1.0", "0.2"}
    assert logit.edges == {("2.3", "3.1", "q"), ("1.0", "2.3", "k"), ("0.2", "2.3", "k")}
    rows = [
        {"writer": "3.1", "reader": "logit_direction", "side": "in", "score": 3.0},
        {"writer": "3.3", "reader": "logit_direction", "side": "in", "score": -2.0},
        {"writer": "2.3", "reader": "3.1", "side": "q", "score": 1.0},
        {"writer": "0.2", "reader": "2.3", "side": "k", "score": 0.5},
        {"writer": "1.1", "reader": "2.3", "side": "v", "score": 0.4},
    ]
    reference = patching_circuit("eap-ig", rows, top_k=4)
    assert reference.heads == {"3.1", "3.3", "2.3", "0.2"}
    heads = score_sets(logit.heads, reference.heads)
    assert (heads.precision, heads.recall) == (pytest.approx(4 / 6), 1.0)
    assert heads.f1 == pytest.approx(0.8)
    edges = score_sets(logit.edges, reference.edges)  # its q/k edges: 2.3→3.1, 0.2→2.3
    assert (edges.precision, edges.recall, edges.f1) == pytest.approx((2 / 3, 1.0, 0.8))
    validations = [
        {"head": "3.1", "writer": "2.3", "side": "q", "logit_ratio": 4.0},
        {"head": "3.3", "writer": "mlp2", "side": "q", "logit_ratio": 3.0},
        {"head": "2.3", "writer": "1.0", "side": "k", "logit_ratio": 1.0},
        {"head": "2.3", "writer": "embed", "side": "k", "logit_ratio": float("nan")},
    ]
    pruned = pruned_circuit("pruned", set(), validations, ratio=2.0)
    assert pruned.heads == {"3.1", "2.3", "3.3"} and pruned.edges == {("2.3", "3.1", "q")}
    heads = score_sets(pruned.heads, reference.heads)
    assert (heads.precision, heads.recall) == (1.0, pytest.approx(3 / 4))


def test_curve_over_sizes() -> None:
    atlas = atlas_circuit("sad", {"3.1"}, ATLAS_RECORDS)
    points = curve(atlas, PATCH_ROWS, [1, 2, 4])
    assert [p.n_heads for p in points] == [1, 2, 3]  # {3.1}, {3.1, 2.3}, + 0.2
    assert [p.precision for p in points] == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    assert [p.recall for p in points] == pytest.approx([1.0, 1.0, 2 / 3])
    assert default_sizes(120) == [1, 2, 5, 10, 20, 50, 100]


def test_the_ioi_reference_circuit_has_26_heads_in_7_classes() -> None:
    reference = reference_circuit("wang2022", GPT2_IOI_CLASSES)
    assert len(GPT2_IOI_CLASSES) == 7 and len(reference.heads) == 26
