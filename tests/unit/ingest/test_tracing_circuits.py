"""The in-memory circuit traversal on a hand-built batch, and P/R/F1 of hand-built sets."""

from __future__ import annotations

import pytest
import torch

from ingest.decomposition.sad import Firings
from ingest.tracing.circuits import circuit_heads, score_sets
from ingest.tracing.upstream import Edges

# Two prompts; positions 0..5 with roles below (prompt 1 has IO and S swapped in place).
ROLES = [
    ["other", "IO", "S1", "S1+1", "S2", "END"],
    ["other", "S1", "IO", "S1+1", "S2", "END"],
]
# (prompt, layer, head, dest, src)
FIRINGS = [
    (0, 3, 1, 5, 1),  # 0: root END→IO
    (0, 2, 3, 5, 4),  # 1: 2.3 END→S2, reached through its query-side edge at END
    (0, 1, 0, 4, 3),  # 2: 1.0 S2→S1+1, reached from 2.3's key side at S2
    (0, 1, 0, 2, 1),  # 3: 1.0 at S1: nobody writes there, never reached
    (0, 2, 2, 3, 2),  # 4: 2.2 fires, but the edge from it goes to a position it does not fire at
    (1, 3, 1, 5, 1),  # 5: prompt 1: 3.1 END→S1, not a root (src role S1)
    (1, 3, 1, 5, 2),  # 6: prompt 1: root END→IO
]
# (firing, writer layer, writer head, side, pos)
EDGES = [
    (0, 2, 3, 0, 5),  # 2.3 writes the root's query at END → continue into firing 1
    (0, 2, 2, 1, 1),  # 2.2 writes the root's key at IO: 2.2 does not fire at 1, branch ends
    (1, 1, 0, 1, 4),  # 1.0 writes 2.3's key at S2 → continue into firing 2
    (2, 0, 5, 0, 4),  # 0.5 writes 1.0's query at S2 (layer 0 never fires)
    (3, 0, 7, 0, 2),  # into an unreached firing: 0.7 is not in the circuit
    (5, 2, 1, 0, 5),  # into a non-root firing of prompt 1: 2.1 is not in the circuit
    (6, 1, 1, 0, 5),  # 1.1 writes prompt 1's root query
]


def batch() -> tuple[Firings, Edges]:
    n, r = len(FIRINGS), 4
    column = list(zip(*FIRINGS, strict=True))
    firings = Firings(
        *(torch.tensor(c) for c in column),
        attention=torch.ones(n),
        score=torch.ones(n),
        sv_order=torch.zeros(n, r, dtype=torch.long),
        sorted_terms=torch.zeros(n, r),
        signs=torch.ones(n, r),
        n_svs=torch.ones(n, dtype=torch.long),
    )
    e = list(zip(*EDGES, strict=True))
    edges = Edges(
        *(torch.tensor(c) for c in e),
        weight=torch.ones(len(EDGES)),
        parts=torch.zeros(len(EDGES), r),
    )
    return firings, edges


def test_circuit_heads_follow_edges_into_the_writers_firings() -> None:
    firings, edges = batch()
    heads = circuit_heads(firings, edges, ROLES, (3, 1))
    assert heads == {
        "3.1": {0, 1},
        "2.3": {0},
        "2.2": {0},
        "1.0": {0},
        "0.5": {0},
        "1.1": {1},
    }
    # another root's roles: 3.1 END→S1 exists in prompt 1 only, its writer 2.1 joins
    assert circuit_heads(firings, edges, ROLES, (3, 1), "END", "S1") == {"3.1": {1}, "2.1": {1}}
    assert circuit_heads(firings, edges, ROLES, (3, 0)) == {}


def test_precision_recall_f1_and_lists() -> None:
    s = score_sets({"9.9", "9.6", "8.6", "1.1"}, {"9.9", "9.6", "10.0", "8.6", "7.3", "5.5"})
    assert (s.precision, s.recall) == (0.75, 0.5)
    assert s.f1 == pytest.approx(2 * 0.75 * 0.5 / 1.25)  # 0.6
    assert s.both == ("8.6", "9.6", "9.9")
    assert s.predicted_only == ("1.1",)
    assert s.reference_only == ("5.5", "7.3", "10.0")  # by layer, not as text


def test_empty_and_identical_sets() -> None:
    assert score_sets(set(), {"1.1"}).f1 == 0.0
    assert score_sets({"1.1"}, set()).precision == 0.0
    same = score_sets({"1.1", "2.2"}, {"2.2", "1.1"})
    assert (same.precision, same.recall, same.f1) == (1.0, 1.0, 1.0)
