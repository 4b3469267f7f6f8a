"""The method authors' graph formats, read into and written from the atlas's communication edges.

Pure translation between GraphML files (read and written with networkx) and plain records; no
database. :mod:`atlas.interchange.runs` writes the records into a read-only run and reads a
run back.

**SAD aggregated format** (Franco & Crovella, *Sparse Attention Decomposition Applied to
Circuit Tracing*; ``full_tracing_build_graph.py``; the file in ``reference/sad-gpt2-ioi``). A
``nx.DiGraph`` whose node ids are Python tuple reprs: ``(l, h)`` is head l.h as a *writer*,
``(l, h, 'role')`` is head l.h *read at* the token of that role. An edge
``(wl, wh) → (l, h, role)`` aggregates, over prompts, the traversals in which the writer's
output at that token was among the contributions making up 70 % of one side of a firing of l.h:

- ``type``: ``d`` the destination (query) side, ``s`` the source (key) side → ``side`` q / k.
  ``role`` is the role of the position written to: the node's role, which the authors set to
  the firing's ``dest_token`` for ``d`` and its ``src_token`` for ``s`` (checked on every edge).
- ``count``: traversals. The authors add one per traversal and skip repeats only within the
  edge's *first* prompt, so repeats through several roots (9.6, 9.9, 10.0) or recursion paths
  in later prompts count again: ``count`` ≥ the number of distinct prompts, and can exceed the
  prompt count. ``prompt`` is **not** a count: it is the id of that first prompt, set once.
  The file holds no distinct-prompt count; the import stores ``count`` as ``n_prompts`` (an
  upper bound on the prompts; the run says so with ``support = 'traversals'``).
- ``weight`` = ``total / count``, the mean contribution per traversal → ``mean_weight``
  (like an ingested run's mean over its per-prompt ``WRITES`` weights).
- ``src_token``/``dest_token``: the downstream firing's key and query roles in the *first*
  traversal only (an integer position where the role was unknown).
- Edges ``(l, h, role) → (l, h)`` of weight 2000 are display links, not communication: their
  ``count`` is the sum of the counts into ``(l, h, role)``. The import skips them; the export
  rebuilds them.
- Node attribute ``nfiring``: the head's firings over the whole run (kept on the run).

**ACC combined format** (Franco & Crovella, *Pinpointing Attention-Causal Communication*;
``graphs_unification.py``). A ``nx.MultiDiGraph``; node ids ``(l, h, 'dest_role',
'src_role')`` are a firing of head l.h, ``(l, 'MLP', r, r)``, ``(l, 'AH bias', r, r)`` and
``(0, 'Embedding', r, r)`` other writers at role r, ``('IO-S direction', 'end')`` the logit
direction the trace starts from. An edge ``upstream → downstream`` of ``type`` d/s says the
upstream component's output at the downstream's query (d) or key (s) token carried part of
the downstream firing's score (of the logit difference, into the root). ``prompts_appeared``
lists the prompts; ``weight`` is the *sum* over those prompts divided by the number of traced
prompts N (the root node's ``n_appearences``, the largest in the file). Edges that share
(writer, downstream head, side, role) are merged into one communication edge (the atlas does
not key it by role pair): ``n_prompts`` = distinct prompts of the union, ``mean_weight`` =
Σ weight·N / Σ |prompts| (the mean per occurrence), ``prompts`` = the sorted union. The merge
loses the role pairs, so each communication edge also keeps the file's own edges it merged
(``authors_edges``: one JSON ``[upstream, downstream, attributes]`` each) and the run keeps
the file's node attributes (:attr:`AuthorsGraph.nodes`): :func:`authors_acc_graph` writes the
file's graph again from them.

Roles are renamed to the atlas's (``end`` → ``END``, ``end-1`` → ``END-1``, others matched
case-insensitively to :data:`ingest.prompts.ioi.ROLES`); roles the atlas does not know (``verb``,
``starts``, ``punct``) keep the authors' name.
"""

from __future__ import annotations

import ast
import hashlib
import json
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import networkx as nx

from atlas.errors import AtlasError, ParameterError
from ingest.prompts.ioi import ROLES
from ingest.records.types import ComponentKind, Side, component_id

GraphFormat = Literal["sad", "acc"]
FORMATS: tuple[GraphFormat, ...] = ("sad", "acc")
DISPLAY_WEIGHT = 2000
SIDE_OF_TYPE: dict[str, Side] = {"d": "q", "s": "k"}
TYPE_OF_SIDE = {side: kind for kind, side in SIDE_OF_TYPE.items()}
_ATLAS_ROLE = {role.lower(): role for role in ROLES}
_ACC_KINDS: dict[str, ComponentKind] = {
    "MLP": "mlp",
    "AH bias": "attn_bias",
    "Embedding": "embed",
}


@dataclass(frozen=True)
class Component:
    """A node of the atlas a graph refers to: a head, another writer, or the logit direction."""

    kind: ComponentKind
    layer: int | None = None
    head: int | None = None

    @property
    def id(self) -> str:
        return component_id(self.kind, self.layer, self.head)


@dataclass(frozen=True)
class Edge:
    """One communication edge writer → target (a head, or the logit direction) of a run.

    ``source`` holds the format's own fields kept on the relationship (see the module notes).
    """

    writer: Component
    target: Component
    side: Side
    role: str
    n_prompts: int
    mean_weight: float
    source: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuthorsGraph:
    """A parsed file: its format, edges, per-head firing counts, format-level facts and (ACC)
    every node's attributes by node id."""

    format: GraphFormat
    edges: tuple[Edge, ...]
    head_firings: Mapping[str, int] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)
    nodes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def components(self) -> list[Component]:
        found = {c.id: c for e in self.edges for c in (e.writer, e.target)}
        return sorted(found.values(), key=lambda c: (c.layer or 0, c.head or 0, c.kind))


def atlas_role(role: object) -> object:
    """The atlas's name of an authors' role; unknown names and integer positions unchanged."""
    return _ATLAS_ROLE.get(role.lower(), role) if isinstance(role, str) else role


def authors_role(role: object) -> object:
    """The inverse of :func:`atlas_role` for the names the authors spell differently."""
    return role.lower() if role in {"END", "END-1"} else role


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_graphml(path: Path) -> nx.Graph:
    """The file as networkx reads it; a missing or malformed file is one :class:`AtlasError`."""
    if not path.is_file():
        raise AtlasError(f"No such file: {path}.")
    try:
        return nx.read_graphml(path)
    except (ElementTree.ParseError, nx.NetworkXError, ValueError, KeyError) as error:
        raise AtlasError(f"{path} is not a GraphML file networkx can read ({error}).") from None


def detect_format(graph: nx.Graph) -> GraphFormat:
    """``acc`` when edges carry ``prompts_appeared``, ``sad`` when they carry ``count``."""
    keys = {key for *_, data in graph.edges(data=True) for key in data}
    if "prompts_appeared" in keys:
        return "acc"
    if "count" in keys:
        return "sad"
    raise AtlasError(
        "The file is GraphML but in neither of the authors' formats: its edges have "
        f"{sorted(keys) or 'no attributes'}, not SAD's 'count' or ACC's 'prompts_appeared'."
    )


def parse_graph(graph: nx.Graph, graph_format: GraphFormat | None = None) -> AuthorsGraph:
    """The communication edges of an authors' graph (format detected unless given)."""
    chosen = graph_format or detect_format(graph)
    if chosen not in FORMATS:
        raise ParameterError(f"Unknown format '{chosen}'; known: {', '.join(FORMATS)}.")
    return parse_sad(graph) if chosen == "sad" else parse_acc(graph)


def parse_sad(graph: nx.Graph) -> AuthorsGraph:
    """The SAD aggregated format: one atlas edge per communication edge (display links skipped)."""
    edges: dict[tuple[str, str, Side, object], Edge] = {}
    for u, v, data in graph.edges(data=True):
        up, down = _node(u), _node(v)
        if len(up) == 3 and up[:2] == down:
            continue  # display link (l, h, role) → (l, h), weight 2000
        if len(up) != 2 or len(down) != 3:
            raise AtlasError(f"Not a SAD edge (writer (l, h) → (l, h, 'role')): {u} → {v}.")
        side = _side(data, u, v)
        expected = data.get("dest_token" if side == "q" else "src_token")
        if expected is not None and expected != down[2]:
            raise AtlasError(
                f"Edge {u} → {v}: type {data['type']} should read at {expected!r}, not "
                f"{down[2]!r}; the file does not follow the SAD format."
            )
        edge = Edge(
            writer=Component("head", *_layer_head(up, u)),
            target=Component("head", *_layer_head(down[:2], v)),
            side=side,
            role=str(atlas_role(down[2])),
            n_prompts=int(data["count"]),
            mean_weight=float(data["weight"]),
            source={
                "traversals": int(data["count"]),
                "total_weight": float(data["total"]),
                "first_prompt": data.get("prompt"),
                "src_role": atlas_role(data.get("src_token")),
                "dest_role": atlas_role(data.get("dest_token")),
            },
        )
        key = (edge.writer.id, edge.target.id, edge.side, edge.role)
        if key in edges:
            raise AtlasError(f"Two edges of the file map to one atlas edge {key}; cannot import.")
        edges[key] = edge
    firings = {
        component_id("head", *_layer_head(node, n)): int(data["nfiring"])
        for n, data in graph.nodes(data=True)
        if "nfiring" in data and len(node := _node(n)) == 2
    }
    return AuthorsGraph("sad", tuple(edges.values()), firings, {"support": "traversals"})


def parse_acc(graph: nx.Graph) -> AuthorsGraph:
    """The ACC combined format: edges merged per (writer, head, side, role), see module notes."""
    appearances = [
        int(d["n_appearences"]) for _, d in graph.nodes(data=True) if "n_appearences" in d
    ]
    merged: dict[tuple[str, str, Side, str], list[tuple[float, list[int]]]] = defaultdict(list)
    authors: dict[tuple[str, str, Side, str], list[str]] = defaultdict(list)
    parts: dict[tuple[str, str, Side, str], tuple[Component, Component]] = {}
    all_prompts: set[int] = set()
    roots = set()
    for u, v, data in graph.edges(data=True):
        up, down = _node(u), _node(v)
        writer = _acc_component(up, u)
        side = _side(data, u, v)
        if len(down) == 2 and isinstance(down[0], str):
            target, role = Component("logit_direction"), down[1]
            roots.add(down[0])
        elif len(down) == 4 and isinstance(down[1], int):
            target = Component("head", *_layer_head(down[:2], v))
            role = down[2] if side == "q" else down[3]
        else:
            raise AtlasError(f"Not an ACC edge target (a head firing or the logit node): {v}.")
        prompts = _prompt_list(data.get("prompts_appeared"), u, v)
        all_prompts.update(prompts)
        key = (writer.id, target.id, side, str(atlas_role(role)))
        parts[key] = (writer, target)
        merged[key].append((float(data["weight"]), prompts))
        authors[key].append(json.dumps([u, v, dict(data)], sort_keys=True))
    traced = max(appearances, default=0) or len(all_prompts)
    edges = []
    for key, items in merged.items():
        union = sorted({p for _, prompts in items for p in prompts})
        occurrences = sum(len(prompts) for _, prompts in items)
        total = sum(weight * traced for weight, _ in items)
        writer, target = parts[key]
        edges.append(
            Edge(
                writer=writer,
                target=target,
                side=key[2],
                role=key[3],
                n_prompts=len(union),
                mean_weight=total / occurrences if occurrences else 0.0,
                source={
                    "prompts": union,
                    "merged_edges": len(items),
                    "authors_edges": sorted(authors[key]),
                },
            )
        )
    facts = {"support": "prompts", "traced_prompts": traced, "root": sorted(roots)}
    nodes = {str(n): dict(data) for n, data in graph.nodes(data=True)}
    return AuthorsGraph("acc", tuple(edges), {}, facts, nodes)


def sad_graph(edges: Iterable[Edge], head_firings: Mapping[str, int]) -> nx.DiGraph:
    """A run's head-to-head communication in the SAD aggregated format, display links included.

    Edges an imported SAD run kept give back the authors' fields exactly; for other runs
    ``count`` is ``n_prompts`` (distinct prompts), ``total`` = weight × count, and ``prompt``,
    ``src_token`` and ``dest_token`` are left out. Writers that are not heads, and the logit
    direction, have no place in the format and are left out (see :func:`skipped_for_sad`).

    A node ``(l, h, role)`` does not say the side, so a writer feeding both sides of l.h at one
    role (a firing role → role, e.g. END → END) needs two edges between the same nodes: the
    graph is then a ``MultiDiGraph`` with one edge of type ``d`` and one of type ``s`` (as in
    the authors' follow-up format) instead of the authors' merge into one edge.
    """
    payloads = [_sad_edge(edge) for edge in edges if _is_head_to_head(edge)]
    pairs = [(u, v) for u, v, _ in payloads]
    graph = nx.DiGraph() if len(set(pairs)) == len(pairs) else nx.MultiDiGraph()
    for u, v, data in payloads:
        graph.add_edge(u, v, **data)
    for node in [n for n in graph.nodes if len(_node(n)) == 3]:
        incoming = list(graph.in_edges(node, data=True))
        first = min(incoming, key=lambda e: (e[2].get("prompt", 0), e[0]))[2]
        link = {"weight": DISPLAY_WEIGHT, "total": DISPLAY_WEIGHT, "type": first["type"]}
        link["count"] = sum(data["count"] for *_, data in incoming)
        link |= {k: first[k] for k in ("src_token", "dest_token") if k in first}
        graph.add_edge(node, repr(_node(node)[:2]), **link)
    for node in graph.nodes:
        head = component_id("head", *_layer_head(_node(node)[:2], node))
        if head in head_firings:
            graph.nodes[node]["nfiring"] = head_firings[head]
    return graph


ACC_ROOT = ("IO-S direction", "end")
_ACC_NAMES = {kind: name for name, kind in _ACC_KINDS.items()}


def acc_graph(rows: Iterable[Mapping[str, Any]]) -> nx.MultiDiGraph:
    """An ingested ACC run in the authors' combined format (see the module notes).

    ``rows``: one per (writer, downstream firing's roles, side) with ``kind``/``layer``/
    ``head`` of the writer, ``role`` (the position written, for a head the writer's own firing
    destination) and ``writer_role`` (a head's source token), ``f_layer``/``f_head``/
    ``dest_role``/``src_role`` of the downstream firing (``f_layer`` None: the logit direction),
    ``side``, ``prompts`` (one per occurrence) and ``total`` (the weights' sum). A head writer is
    its firing node ``(l, h, dest_role, src_role)``; other writers ``(l, 'MLP', r, r)``,
    ``(l, 'AH bias', r, r)``, ``(0, 'Embedding', r, r)``. Edge ``weight`` is ``total / N`` with
    N the prompts the trace started in (the root's ``n_appearences``).
    """
    rows = list(rows)
    traced = {p for row in rows if row["f_layer"] is None for p in row["prompts"]}
    n_traced = len(traced) or len({p for row in rows for p in row["prompts"]}) or 1
    graph = nx.MultiDiGraph()
    root = repr(ACC_ROOT)
    graph.add_node(root, n_appearences=n_traced)
    for row in sorted(rows, key=lambda r: repr(sorted(r.items()))):
        role = authors_role(row["role"])
        if row["kind"] == "head":
            up = (row["layer"], row["head"], role, authors_role(row["writer_role"]))
        elif row["kind"] == "embed":
            up = (0, _ACC_NAMES["embed"], role, role)
        else:
            up = (row["layer"], _ACC_NAMES[row["kind"]], role, role)
        if row["f_layer"] is None:
            down = root
        else:
            dest, src = authors_role(row["dest_role"]), authors_role(row["src_role"])
            down = repr((row["f_layer"], row["f_head"], dest, src))
        graph.add_edge(
            repr(up),
            down,
            weight=float(row["total"]) / n_traced,
            type=TYPE_OF_SIDE[row["side"]],
            prompts_appeared=repr(sorted(int(p) for p in row["prompts"])),
        )
    return graph


def authors_acc_graph(
    nodes: Mapping[str, Mapping[str, Any]], edges: Iterable[Edge]
) -> nx.MultiDiGraph:
    """The ACC file an imported run was made from: its nodes with their attributes, and every
    edge each communication edge merged (``source["authors_edges"]``, see the module notes)."""
    graph = nx.MultiDiGraph()
    for node, data in sorted(nodes.items()):
        graph.add_node(node, **data)
    originals = []
    for edge in edges:
        kept = edge.source.get("authors_edges")
        if kept is None:
            raise AtlasError(
                f"Edge {edge.writer.id} → {edge.target.id} of this imported ACC run does not "
                "keep the file's own edges (imported by an older version); import the file again."
            )
        originals += [json.loads(text) for text in kept]
    for u, v, data in sorted(originals, key=lambda e: (e[0], e[1], json.dumps(e[2]))):
        graph.add_edge(u, v, **data)
    return graph


def _is_head_to_head(edge: Edge) -> bool:
    return edge.writer.kind == "head" and edge.target.kind == "head"


def _sad_edge(edge: Edge) -> tuple[str, str, dict[str, Any]]:
    """One edge in the SAD layout: writer node, downstream node, the authors' attributes."""
    source = edge.source
    count = int(source.get("traversals", edge.n_prompts))
    data: dict[str, Any] = {
        "weight": edge.mean_weight,
        "total": float(source.get("total_weight", edge.mean_weight * count)),
        "type": TYPE_OF_SIDE[edge.side],
        "count": count,
    }
    if source.get("first_prompt") is not None:
        data["prompt"] = source["first_prompt"]
    for name, key in (("src_token", "src_role"), ("dest_token", "dest_role")):
        if source.get(key) is not None:
            data[name] = authors_role(source[key])
    writer = repr((edge.writer.layer, edge.writer.head))
    return writer, repr((edge.target.layer, edge.target.head, authors_role(edge.role))), data


def skipped_for_sad(edges: Iterable[Edge]) -> int:
    """How many edges :func:`sad_graph` cannot write (a writer or target that is not a head)."""
    return sum(not _is_head_to_head(e) for e in edges)


def _node(node_id: str) -> tuple[Any, ...]:
    try:
        value = ast.literal_eval(node_id)
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, tuple):
        raise AtlasError(f"Node id {node_id!r} is not a tuple like (9, 9, 'end'): not the format.")
    return value


def _layer_head(pair: tuple[Any, ...], node_id: str) -> tuple[int, int]:
    if len(pair) != 2 or not all(isinstance(x, int) for x in pair):
        raise AtlasError(f"Node {node_id} does not start with a head (layer, head).")
    return pair[0], pair[1]


def _side(data: Mapping[str, Any], u: str, v: str) -> Side:
    if data.get("type") not in SIDE_OF_TYPE:
        raise AtlasError(f"Edge {u} → {v} has type {data.get('type')!r}, not 'd' or 's'.")
    return SIDE_OF_TYPE[data["type"]]


def _acc_component(node: tuple[Any, ...], node_id: str) -> Component:
    if len(node) == 4 and isinstance(node[0], int):
        if isinstance(node[1], int):
            return Component("head", node[0], node[1])
        if node[1] in _ACC_KINDS:
            kind = _ACC_KINDS[node[1]]
            return Component(kind) if kind == "embed" else Component(kind, node[0])
    raise AtlasError(
        f"Not an ACC writer node (layer, head|'MLP'|'AH bias'|'Embedding', ...): {node_id}."
    )


def _prompt_list(text: object, u: str, v: str) -> list[int]:
    try:
        prompts = ast.literal_eval(text) if isinstance(text, str) else None
    except (ValueError, SyntaxError):
        prompts = None
    if not isinstance(prompts, list) or not all(isinstance(p, int) for p in prompts):
        raise AtlasError(f"Edge {u} → {v}: prompts_appeared {text!r} is not a list of prompts.")
    return prompts
