"""The parameters of :data:`~atlas.store.statements.CREATE_FIRINGS`: a fresh batch as columns.

A fresh batch's firings, their sparse-set terms and their edges are sent as maps of equally
long lists (one list per property) rather than one map per row: lists of primitives pack and
unpack far faster. The nodes they link (heads and writers, singular vectors, prompts) are
listed once each and referred to by position, so the statement looks each up once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any

from ingest.records.types import FiringRecord, RecordBatch, WriteEdgeRecord, component_id

# Firings per CREATE_FIRINGS statement of a fresh batch (~4k relationships on toy-ioi). Chunks
# let the driver send one while the server creates the one before; measured on toy-ioi, 256
# prompts: 8 statements per 32-prompt batch wrote 9-12 % faster than one.
FRESH_CHUNK_FIRINGS = 500

# What a Firing node stores besides its run_id (the statement's $run_id): every field of the
# record but its sparse set, which goes in the `uses` columns.
FIRING_PROPERTIES = tuple(
    f.name for f in fields(FiringRecord) if f.name not in {"run_id", "sparse_set"}
)
USE_COLUMNS = ("sv_ref", "rank", "term", "sign")  # SparseTerm: its index is in sv_ref
# WriteEdgeRecord: its writer is in writer_ref, its firing is the firing whose edges it is
EDGE_COLUMNS = (
    "writer_ref",
    "side",
    "weight",
    "pos",
    "role",
    "parts",
    "writer_pos",
    "writer_role",
)

_firing_values = attrgetter(*FIRING_PROPERTIES)


def fresh_firing_chunks(
    run_id: str, batch: RecordBatch, chunk_firings: int = FRESH_CHUNK_FIRINGS
) -> list[tuple[Sequence[FiringRecord], list[list[WriteEdgeRecord]]]]:
    """A fresh batch's firings in chunks of ``chunk_firings``, each with its firings' edges.

    Raises ValueError unless the batch is whole: one run's firings, every firing's prompt in
    the batch, every edge's firing in the batch.
    """
    prompts = {prompt.idx for prompt in batch.prompts}
    firings = batch.firings
    if any(firing.run_id != run_id for firing in firings):
        raise ValueError("a fresh batch holds one run's firings")
    not_whole = ValueError(
        "a fresh batch must be whole: every firing of its run and prompts, every edge of its "
        "firings"
    )
    if not prompts.issuperset(firing.prompt for firing in firings):
        raise not_whole
    position = {firing.key: n for n, firing in enumerate(firings)}
    edges_of: list[list[WriteEdgeRecord]] = [[] for _ in firings]
    for edge in batch.edges:
        n = position.get(edge.firing)
        if n is None:
            raise not_whole
        edges_of[n].append(edge)
    return [
        (firings[start : start + chunk_firings], edges_of[start : start + chunk_firings])
        for start in range(0, len(firings), chunk_firings)
    ]


def firing_columns(
    run_id: str,
    model_id: str,
    firings: Sequence[FiringRecord],
    edges_of: Sequence[Sequence[WriteEdgeRecord]],
) -> dict[str, Any]:
    """:data:`CREATE_FIRINGS`'s parameters: firings, their sparse-set terms and their edges as
    columns, each firing's terms and edges contiguous, and the nodes they link listed once."""
    components: dict[str, int] = {}
    vectors: dict[tuple[int, int, int], int] = {}
    prompts: dict[int, int] = {}
    component = components.setdefault
    vector = vectors.setdefault
    prompt = prompts.setdefault
    firing_rows: list[tuple[Any, ...]] = []
    use_rows: list[tuple[Any, ...]] = []
    edge_rows: list[tuple[Any, ...]] = []
    for firing, edges in zip(firings, edges_of, strict=True):
        layer, head = firing.layer, firing.head
        head_id = component_id("head", layer, head)
        firing_rows.append(
            (
                component(head_id, len(components)),
                prompt(firing.prompt, len(prompts)),
                len(use_rows),
                len(edge_rows),
                *_firing_values(firing),
            )
        )
        use_rows += [
            (vector((layer, head, term.index), len(vectors)), term.rank, term.term, term.sign)
            for term in firing.sparse_set
        ]
        edge_rows += [
            (
                component(edge.writer_id, len(components)),
                edge.side,
                edge.weight,
                edge.pos,
                edge.role,
                list(edge.parts) or None,
                edge.writer_pos,
                edge.writer_role,
            )
            for edge in edges
        ]
    firing_names = ("head_ref", "prompt_ref", "uses_from", "edges_from", *FIRING_PROPERTIES)
    columns = _columns(firing_names, firing_rows)
    columns["uses_from"].append(len(use_rows))
    columns["edges_from"].append(len(edge_rows))
    return {
        "run_id": run_id,
        "model_id": model_id,
        "components": list(components),
        "singular_vectors": [list(key) for key in vectors],
        "prompts": list(prompts),
        "firings": columns,
        "uses": _columns(USE_COLUMNS, use_rows),
        "edges": _columns(EDGE_COLUMNS, edge_rows),
    }


def _columns(names: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> dict[str, list[Any]]:
    """Rows of equal length as one list per column name."""
    columns = zip(*rows, strict=True) if rows else ([] for _ in names)
    return {name: list(column) for name, column in zip(names, columns, strict=True)}
