"""A hand-built run for the query templates, with answers worked out by hand (see the tests).

Model: 4 layers × 3 heads. Roles as in ``circuit_graph`` (IO 2, S1 4, S2 6, END 8). Prompts
0, 1 are ABBA of template T0; 2, 3 BABA of T1. Root 3.0 fires END→IO [8→2] in every prompt.

    into 3.0  q@END: p0 2.1 (0.6) 2.2 (0.4) | p1 2.1 (0.5) 2.2 (0.5) | p2 2.1 (1.0)
                     | p3 2.2 (0.9) 1.0 (0.1)
              k@IO:  1.1 in every prompt (0.5); 0.1 in p0, p1 (0.2)
    2.1 END→S2 in p0, p1, p2 ← q@END 1.0;  k@S2 1.0 in p0 (0.3), 1.2 in p1 (-0.2)
    2.2 END→S2 in p0, p1, p3 ← q@END 1.0
    1.0 END→S1 in p0, p1 ← q@END 0.0;  1.0 S2→S1 in p2 ← q@S2 0.0 (a role-inconsistent hop)

Sparse sets of 3.0 (singular-vector indices by rank): p0 [0, 1], p1 [0, 1], p2 [0, 2],
p3 [1, 0]; 2.1 uses [0] in p0, p1 and [1] in p2, 2.2 uses [0]. ALIGNED: 3.0#0 (q) ~ 2.2#0 (q)
0.9 (1.0 writes both at END in p3: a broadcast),
3.0#1 (q) ~ 3.1#0 (q) 0.6 (3.1 never fires), 3.0#0 (k) ~ 2.2#1 (q) 0.55.
"""

from __future__ import annotations

from dataclasses import replace

from ingest.records.types import (
    AlignedRecord,
    FiringRecord,
    RecordBatch,
    Side,
    SingularVectorRecord,
    SparseTerm,
    WriteEdgeRecord,
)
from tests.atlas.circuit_graph import ROLE_AT, prompts

N_LAYERS, N_HEADS = 4, 3
MODEL_ID = "query-test-model"


def firing(
    run_id: str, prompt: int, head: str, dest: int, src: int, svs: list[int]
) -> FiringRecord:
    layer, index = (int(part) for part in head.split("."))
    terms = tuple(
        SparseTerm(index=k, rank=m, term=1.0 - 0.1 * m, sign=1) for m, k in enumerate(svs)
    )
    return FiringRecord(
        run_id, prompt, layer, index, dest, src, ROLE_AT.get(dest), ROLE_AT.get(src), 0.8, 2.0,
        len(svs), terms,
    )  # fmt: skip


def edge(into: FiringRecord, writer: str, side: Side, parts: list[float]) -> WriteEdgeRecord:
    layer, head = (int(part) for part in writer.split("."))
    pos = into.dest if side == "q" else into.src
    return WriteEdgeRecord(
        into.key, layer, head, side, sum(parts), pos, ROLE_AT.get(pos, "other"), parts=parts
    )


def query_batch(run_id: str) -> RecordBatch:
    """The run of the module docstring (its model and singular vectors included)."""
    root = {p: firing(run_id, p, "3.0", 8, 2, svs) for p, svs in
            [(0, [0, 1]), (1, [0, 1]), (2, [0, 2]), (3, [1, 0])]}  # fmt: skip
    f21 = {p: firing(run_id, p, "2.1", 8, 6, [0] if p < 2 else [1]) for p in (0, 1, 2)}
    f22 = {p: firing(run_id, p, "2.2", 8, 6, [0]) for p in (0, 1, 3)}
    f10 = {p: firing(run_id, p, "1.0", 8, 4, [0]) for p in (0, 1)}
    f10_s2 = firing(run_id, 2, "1.0", 6, 4, [0])
    edges = [
        edge(root[0], "2.1", "q", [0.5, 0.1]),
        edge(root[0], "2.2", "q", [0.1, 0.3]),
        edge(root[1], "2.1", "q", [0.25, 0.25]),
        edge(root[1], "2.2", "q", [0.3, 0.2]),
        edge(root[2], "2.1", "q", [0.75, 0.25]),
        edge(root[3], "2.2", "q", [0.6, 0.3]),
        edge(root[3], "1.0", "q", [0.02, 0.08]),
        *(edge(root[p], "1.1", "k", [0.25, 0.25]) for p in range(4)),
        *(edge(root[p], "0.1", "k", [0.1, 0.1]) for p in (0, 1)),
        *(edge(f21[p], "1.0", "q", [0.7]) for p in (0, 1, 2)),
        edge(f21[0], "1.0", "k", [0.3]),
        edge(f21[1], "1.2", "k", [-0.2]),
        edge(f22[0], "1.0", "q", [0.4]),
        edge(f22[1], "1.0", "q", [0.4]),
        edge(f22[3], "1.0", "q", [0.4]),
        *(edge(f10[p], "0.0", "q", [0.5]) for p in (0, 1)),
        edge(f10_s2, "0.0", "q", [0.5]),
    ]
    vectors = [
        SingularVectorRecord(MODEL_ID, layer, head, index, 1.0 / (index + 1))
        for layer in range(N_LAYERS)
        for head in range(N_HEADS)
        for index in range(3)
    ]
    aligned = [
        AlignedRecord(MODEL_ID, (2, 2, 0), "q", (3, 0, 0), "q", 0.9),
        AlignedRecord(MODEL_ID, (3, 0, 1), "q", (3, 1, 0), "q", 0.6),
        AlignedRecord(MODEL_ID, (2, 2, 1), "q", (3, 0, 0), "k", 0.55),
    ]
    orders = ["ABBA", "ABBA", "BABA", "BABA"]
    run_prompts = [
        replace(p, order=orders[p.idx], template=f"T{p.idx // 2}") for p in prompts(run_id, 4)
    ]
    firings = [*root.values(), *f21.values(), *f22.values(), *f10.values(), f10_s2]
    return RecordBatch(
        singular_vectors=vectors,
        aligned=aligned,
        prompts=run_prompts,
        firings=firings,
        edges=edges,
    )
