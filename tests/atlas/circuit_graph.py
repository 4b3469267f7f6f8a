"""A hand-built atlas with a known circuit, shared by the circuit tests.

Roles: IO = 2, S1 = 4, S2 = 6, END = 8 (position 5 has no role). Root 3.0 END→IO [8→2] in
prompts 0 and 1. Prompt 0: 3.0 ← q 2.1 @END, q 1.1 @END, k 1.0 @IO; 2.1 fires END→S2 [8→6] ←
k 1.1 @S2, q 1.1 @END, q 0.1 @END; 1.1 fires S2→S1 [6→4] ← q 0.0 and END→S2 [8→6] ← q 0.0
(reached twice: reconvergence). Prompt 1: 3.0 ← q 2.1, k 1.0; 2.1 END→S2 ← k 1.1, q 0.1; 1.1
does not fire at S2 in prompt 1, so that branch ends. Decoys that must never be reached: 1.0
fires at position 5 (not at IO, where it wrote); 1.1 fires at S2 in prompt 2, whose root fires
END→S1 (other roles); the second run has the same firing keys plus edges of its own.
"""

from __future__ import annotations

from typing import Any

from ingest.records.types import FiringRecord, PromptRecord, RecordBatch, Side, WriteEdgeRecord

ROLES = {"IO": 2, "S1": 4, "S2": 6, "END": 8}
ROLE_AT = {position: role for role, position in ROLES.items()}
N_LAYERS, N_HEADS = 4, 2


def firing(run_id: str, prompt: int, head: str, dest: int, src: int) -> FiringRecord:
    layer, index = (int(part) for part in head.split("."))
    return FiringRecord(
        run_id, prompt, layer, index, dest, src, ROLE_AT.get(dest), ROLE_AT.get(src), 0.7, 1.0, 3
    )


def edge(into: FiringRecord, writer: str, side: Side, weight: float) -> WriteEdgeRecord:
    layer, head = (int(part) for part in writer.split("."))
    pos = into.dest if side == "q" else into.src
    return WriteEdgeRecord(into.key, layer, head, side, weight, pos, ROLE_AT.get(pos, "other"))


def circuit_batch(run_id: str) -> RecordBatch:
    """The run described in the module docstring."""
    f = {  # (prompt, head, dest, src) → firing
        key: firing(run_id, *key)
        for key in [
            (0, "3.0", 8, 2),
            (0, "2.1", 8, 6),
            (0, "1.1", 6, 4),
            (0, "1.1", 8, 6),
            (0, "1.0", 5, 4),
            (1, "3.0", 8, 2),
            (1, "2.1", 8, 6),
            (2, "3.0", 8, 4),
            (2, "1.1", 6, 4),
        ]
    }
    edges = [
        edge(f[0, "3.0", 8, 2], "2.1", "q", 0.9),
        edge(f[0, "3.0", 8, 2], "1.1", "q", 0.25),
        edge(f[0, "3.0", 8, 2], "1.0", "k", 0.5),
        edge(f[0, "2.1", 8, 6], "1.1", "k", 0.7),
        edge(f[0, "2.1", 8, 6], "1.1", "q", 0.35),
        edge(f[0, "2.1", 8, 6], "0.1", "q", 0.3),
        edge(f[0, "1.1", 6, 4], "0.0", "q", 0.4),
        edge(f[0, "1.1", 8, 6], "0.0", "q", 0.2),
        edge(f[0, "1.0", 5, 4], "0.1", "q", 0.6),
        edge(f[1, "3.0", 8, 2], "2.1", "q", 1.1),
        edge(f[1, "3.0", 8, 2], "1.0", "k", 0.3),
        edge(f[1, "2.1", 8, 6], "1.1", "k", 0.5),
        edge(f[1, "2.1", 8, 6], "0.1", "q", 0.1),
        edge(f[2, "3.0", 8, 4], "2.0", "q", 1.0),
        edge(f[2, "1.1", 6, 4], "0.0", "q", 0.95),
    ]
    return RecordBatch(prompts=prompts(run_id, 3), firings=list(f.values()), edges=edges)


def overlapping_batch(run_id: str) -> RecordBatch:
    """A second run: the same root firings, and 1.0 firing at IO, with edges of its own."""
    root = firing(run_id, 0, "3.0", 8, 2)
    at_io = firing(run_id, 0, "1.0", 2, 1)
    writer_21 = firing(run_id, 0, "2.1", 8, 6)
    edges = [
        edge(root, "2.0", "q", 5.0),
        edge(root, "1.0", "k", 5.0),
        edge(at_io, "0.0", "q", 5.0),
        edge(writer_21, "0.1", "k", 5.0),
    ]
    return RecordBatch(prompts=prompts(run_id, 1), firings=[root, at_io, writer_21], edges=edges)


def prompts(run_id: str, n: int) -> list[PromptRecord]:
    tokens = [f"t{i}" for i in range(9)]
    return [
        PromptRecord(run_id, i, " ".join(tokens), "T0", "ABBA", "Mary", "John", ROLES, tokens)
        for i in range(n)
    ]


def row(
    prompt: int,
    depth: int,
    firing: tuple[str, int, int],
    writer: str,
    side: str,
    weight: float,
    writer_src: int | None = None,
) -> dict[str, Any]:
    """One expected row of ``circuit.cypher``: ``firing`` is (head, dest, src)."""
    head, dest, src = firing
    layer, index = (int(part) for part in head.split("."))
    writer_layer, writer_head = (int(part) for part in writer.split("."))
    pos = dest if side == "q" else src
    return {
        "prompt": prompt,
        "depth": depth,
        "layer": layer,
        "head": index,
        "dest": dest,
        "src": src,
        "dest_role": ROLE_AT.get(dest),
        "src_role": ROLE_AT.get(src),
        "writer": writer,
        "writer_layer": writer_layer,
        "writer_head": writer_head,
        "side": side,
        "pos": pos,
        "role": ROLE_AT.get(pos, "other"),
        "weight": weight,
        "writer_src": writer_src,
        "writer_src_role": None if writer_src is None else ROLE_AT.get(writer_src),
    }


ROOT = ("3.0", 8, 2)
EXPECTED_ROWS = {  # per prompt: the traversal's edges, written from the docstring by hand
    0: [
        row(0, 0, ROOT, "2.1", "q", 0.9, writer_src=6),
        row(0, 0, ROOT, "1.1", "q", 0.25, writer_src=6),
        row(0, 0, ROOT, "1.0", "k", 0.5),
        row(0, 1, ("2.1", 8, 6), "1.1", "k", 0.7, writer_src=4),
        row(0, 1, ("2.1", 8, 6), "1.1", "q", 0.35, writer_src=6),
        row(0, 1, ("2.1", 8, 6), "0.1", "q", 0.3),
        row(0, 1, ("1.1", 8, 6), "0.0", "q", 0.2),
        row(0, 2, ("1.1", 6, 4), "0.0", "q", 0.4),
    ],
    1: [
        row(1, 0, ROOT, "2.1", "q", 1.1, writer_src=6),
        row(1, 0, ROOT, "1.0", "k", 0.3),
        row(1, 1, ("2.1", 8, 6), "1.1", "k", 0.5),
        row(1, 1, ("2.1", 8, 6), "0.1", "q", 0.1),
    ],
}
