"""SAD circuits in memory, and how right a circuit's heads are: pure.

:func:`circuit_heads` is the traversal of ``queries/circuit.cypher`` over one traced batch,
without a database: start at the root head's firings ``dest_role → src_role``; for every edge
into a reached firing, the writer head joins the circuit and the traversal continues into the
writer's own firings of the same prompt whose destination is the position it wrote to
(``pos``); a branch ends where the writer does not fire there. The circuit's heads are the root
and every writer reached, each with the prompts it was reached in, so the heads of an atlas
circuit (``compare-circuits``, :func:`atlas.check.comparison.atlas_circuit`) and of an in-memory
run (``replicate``) are the same set for the same prompts.

:func:`score_sets`: a predicted set C against a reference set R has precision |C ∩ R| / |C|,
recall |C ∩ R| / |R| and F1 their harmonic mean (0 where a denominator is 0), with the lists
of what is in both, only predicted and only in the reference.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ingest.decomposition.sad import Firings
from ingest.tracing.upstream import Edges

_HEAD = re.compile(r"\d+\.\d+")


def is_head(component: str) -> bool:
    return _HEAD.fullmatch(component) is not None


def _head_order(head: str) -> tuple[int, int]:
    layer, index = head.split(".")
    return int(layer), int(index)


def circuit_heads(
    firings: Firings,
    edges: Edges,
    role_labels: Sequence[Sequence[str]],
    root: tuple[int, int],
    dest_role: str = "END",
    src_role: str = "IO",
) -> dict[str, set[int]]:
    """Per head ``"l.h"`` of the root's circuit, the batch prompts it is in (the root: the
    prompts where it fires ``dest_role → src_role``)."""
    prompt, layer, head = firings.prompt.tolist(), firings.layer.tolist(), firings.head.tolist()
    dest, src = firings.dest.tolist(), firings.src.tolist()
    by_writer_firing: dict[tuple[int, int, int, int], list[int]] = defaultdict(list)
    for f in range(len(prompt)):
        by_writer_firing[(prompt[f], layer[f], head[f], dest[f])].append(f)
    edges_into: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for f, w_layer, w_head, pos in zip(
        edges.firing.tolist(),
        edges.writer_layer.tolist(),
        edges.writer_head.tolist(),
        edges.pos.tolist(),
        strict=True,
    ):
        edges_into[f].append((w_layer, w_head, pos))
    frontier = [
        f
        for f in range(len(prompt))
        if (layer[f], head[f]) == root
        and role_labels[prompt[f]][dest[f]] == dest_role
        and role_labels[prompt[f]][src[f]] == src_role
    ]
    heads: dict[str, set[int]] = defaultdict(set)
    for f in frontier:
        heads[f"{root[0]}.{root[1]}"].add(prompt[f])
    reached = set(frontier)
    while frontier:
        following = []
        for f in frontier:
            for w_layer, w_head, pos in edges_into[f]:
                heads[f"{w_layer}.{w_head}"].add(prompt[f])
                for up in by_writer_firing[(prompt[f], w_layer, w_head, pos)]:
                    if up not in reached:
                        reached.add(up)
                        following.append(up)
        frontier = following
    return dict(heads)


@dataclass(frozen=True)
class Scores:
    """Precision, recall and F1 of a predicted set against a reference set, with the lists."""

    precision: float
    recall: float
    f1: float
    both: tuple[str, ...]
    predicted_only: tuple[str, ...]
    reference_only: tuple[str, ...]


def score_sets(predicted: Iterable[Any], reference: Iterable[Any]) -> Scores:
    predicted, reference = set(predicted), set(reference)
    hits = len(predicted & reference)
    precision = hits / len(predicted) if predicted else 0.0
    recall = hits / len(reference) if reference else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Scores(
        precision,
        recall,
        f1,
        _sorted(predicted & reference),
        _sorted(predicted - reference),
        _sorted(reference - predicted),
    )


def _sorted(items: set[Any]) -> tuple[str, ...]:
    def key(item: Any) -> Any:
        if isinstance(item, str) and is_head(item):
            return (0, _head_order(item), "")
        return (1, (0, 0), str(item))

    return tuple(str(item) if not isinstance(item, tuple) else _edge_text(item)
                 for item in sorted(items, key=key))  # fmt: skip


def _edge_text(edge: tuple[str, str, str]) -> str:
    writer, reader, side = edge
    return f"{writer}→{reader}.{side}"
