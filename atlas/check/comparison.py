"""How right is a circuit: precision, recall and F1 of one circuit against another. Pure.

A :class:`Circuit` is a set of heads (``"l.h"``) and, optionally, of edges (writer, reader,
side). Against a reference circuit R a predicted circuit C has precision |C ∩ R| / |C|,
recall |C ∩ R| / |R| and F1 their harmonic mean (0 where a denominator is 0), for heads and for
edges separately (:func:`ingest.tracing.circuits.score_sets`, the same maths ``replicate``
uses). Circuits come from three places:

* an atlas circuit (:func:`atlas_circuit`): its root heads (the root head, or for the IO−S
  logit direction of an ACC run every seed head) and every head that writes into or fires in
  its circuit (the rows of :func:`atlas.ask.circuits.circuit_edges`), its edges
  (writer, head, side) for head writers;
* the causally pruned atlas circuit (:func:`pruned_circuit`): only the edges whose stored
  ``validate`` effect on the logit difference beats the control's by at least ``ratio``, with
  the root head (none for the logit direction);
* a patching circuit (:func:`patching_circuit`): the top k edges by |score| (or those above a
  threshold) of ``patch``, its heads those among their writers and readers. For edges, only
  head → head query/key edges are comparable with an atlas circuit (SAD traces no values, MLPs
  or logits), so :func:`patching_circuit` keeps those in ``edges`` and the top k are taken
  among them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from ingest.tracing.circuits import is_head, score_sets

Edge = tuple[str, str, str]  # writer, reader, side


@dataclass(frozen=True)
class Circuit:
    name: str
    heads: frozenset[str]
    edges: frozenset[Edge] = field(default_factory=frozenset)


def atlas_circuit(name: str, roots: Set[str], records: Iterable[Mapping[str, Any]]) -> Circuit:
    """The heads and head → head edges of an atlas circuit from its root heads and its edge
    records (``head``, ``writer``, ``side``)."""
    heads, edges = set(roots), set()
    for record in records:
        heads.add(record["head"])
        if is_head(record["writer"]):
            heads.add(record["writer"])
            edges.add((record["writer"], record["head"], record["side"]))
    return Circuit(name, frozenset(heads), frozenset(edges))


def pruned_circuit(
    name: str, roots: Set[str], validations: Iterable[Mapping[str, Any]], ratio: float
) -> Circuit:
    """The causally pruned atlas circuit: the root heads and the validated edges with
    ``logit_ratio ≥ ratio`` (an edge without a control, ratio NaN, is never kept)."""
    kept = [v for v in validations if float(v["logit_ratio"]) >= ratio]
    return atlas_circuit(name, roots, kept)


def patching_circuit(
    name: str,
    rows: Sequence[Mapping[str, Any]],
    top_k: int | None = None,
    threshold: float | None = None,
) -> Circuit:
    """The patching circuit of ``rows`` (writer, reader, side, score; any order) at one size.

    Heads: those among the writers and readers of the top ``top_k`` edges by |score| (and/or
    of those with |score| ≥ ``threshold``). Edges: the same limits among head → head q/k edges.
    """

    def chosen(candidates: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        ordered = sorted(candidates, key=lambda r: -abs(float(r["score"])))
        if threshold is not None:
            ordered = [r for r in ordered if abs(float(r["score"])) >= threshold]
        return ordered if top_k is None else ordered[:top_k]

    heads = {c for r in chosen(rows) for c in (r["writer"], r["reader"]) if is_head(c)}
    comparable = [
        r for r in rows if is_head(r["writer"]) and is_head(r["reader"]) and r["side"] in "qk"
    ]
    edges = {(r["writer"], r["reader"], r["side"]) for r in chosen(comparable)}
    return Circuit(name, frozenset(heads), frozenset(edges))


@dataclass(frozen=True)
class CurvePoint:
    size: int
    n_heads: int
    precision: float
    recall: float
    f1: float


def curve(
    predicted: Circuit, rows: Sequence[Mapping[str, Any]], sizes: Iterable[int]
) -> list[CurvePoint]:
    """Head P/R/F1 of ``predicted`` against the patching circuit of each size (top k edges)."""
    points = []
    for size in sizes:
        reference = patching_circuit("patching", rows, top_k=size)
        s = score_sets(predicted.heads, reference.heads)
        points.append(CurvePoint(size, len(reference.heads), s.precision, s.recall, s.f1))
    return points


def default_sizes(n_edges: int) -> list[int]:
    """1, 2, 5, 10, 20, 50, … up to the number of edges."""
    sizes, base = [], 1
    while base <= n_edges:
        sizes += [s for s in (base, 2 * base, 5 * base) if s <= n_edges]
        base *= 10
    return sizes or [n_edges]


def reference_circuit(name: str, classes: Mapping[str, Iterable[str]]) -> Circuit:
    """A published circuit of heads by class (no edges)."""
    return Circuit(name, frozenset(h for heads in classes.values() for h in heads))
