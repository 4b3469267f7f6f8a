"""Asking the atlas from Python: every template of ``queries/`` as a pandas DataFrame, and
route and circuit results as networkx graphs.

    from atlas.store.store import AtlasStore
    from atlas.ask.lookups import run_query, alternative_routes

    store = AtlasStore.connect()
    run_query(store, "head_inputs", run_id="gpt2-sad-256", layer=9, head=9, side="q")
    routes = alternative_routes(store, "gpt2-sad-256", "7.3", "9.9", min_prompts=5)
    routes.edge_disjoint, routes.graph          # redundancy degree, nx.MultiDiGraph

Parameters are checked against the template's header (unknown, missing and mistyped ones are
:class:`~queries.templates.TemplateError`), the run must exist and head parameters must name a
head of the run's model, and the template must answer on the run's method (a template marked
``// methods: sad`` is :class:`~atlas.errors.NotApplicableError` on an ACC run)
(:class:`~atlas.errors.AtlasError` otherwise, one line each). Values always travel as Cypher
parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import pandas as pd

from atlas.ask.circuits import parse_head
from atlas.errors import NotApplicableError, ParameterError, UnknownRunError
from atlas.store.store import AtlasStore
from queries.templates import Template, load_template

# Template parameters that name one head together: (layer parameter, head parameter).
HEAD_PARAMETERS = (("layer", "head"), ("from_layer", "from_head"), ("to_layer", "to_head"))


def head(text: str) -> tuple[int, int]:
    """``"9.9"`` → ``(9, 9)``; anything else is a :class:`ParameterError` (one line)."""
    try:
        return parse_head(text)
    except ValueError as error:
        raise ParameterError(str(error)) from None


def run_query(store: AtlasStore, name: str, **parameters: Any) -> pd.DataFrame:
    """The rows of template ``name`` as a DataFrame with the template's declared columns.

    ``run_id`` (when the template has it) must be a run of the atlas, and every head
    parameter pair (``layer``/``head``, ``from_layer``/``from_head``, ...) a head of its model.
    """
    template = load_template(name)
    bound = template.bind(parameters)
    if "run_id" in bound:
        run = check_heads(store, bound["run_id"], bound)
        check_applies(template, bound["run_id"], str(run["method"]))
    rows = store.read_template(name, **bound)
    frame = pd.DataFrame(rows, columns=[column.name for column in template.returns])
    for column in template.returns:  # declared ints stay ints where a null made pandas use floats
        if column.type.rstrip("?") == "int" and frame[column.name].dtype.kind == "f":
            frame[column.name] = frame[column.name].astype("Int64")
    return frame


def check_applies(template: Template, run_id: str, method: str) -> None:
    """Refuse, in one line, a template that does not answer on runs of ``method``."""
    if method not in template.methods:
        runs = " or ".join(m.upper() for m in template.methods)
        raise NotApplicableError(
            f"Template '{template.name}' does not apply to {method.upper()} run '{run_id}': it "
            f"reads what only {runs} runs store (SAD's singular vectors of each head's one Ω, "
            "linked by USES; an ACC firing's sparse sets index its two sides' own Ω)."
        )


def check_heads(store: AtlasStore, run_id: str, bound: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse an unknown run, or a head the run's model does not have, in one line; returns
    the run's model and method (:meth:`~atlas.store.store.AtlasStore.run_model`)."""
    shape = store.run_model(run_id)
    if shape is None:
        raise UnknownRunError(
            f"Run '{run_id}' is not in the atlas (see `circuit-atlas runs list`)."
        )
    n_layers, n_heads = shape.get("n_layers"), shape.get("n_heads")
    for layer_name, head_name in HEAD_PARAMETERS:
        layer, index = bound.get(layer_name), bound.get(head_name)
        if layer is None or index is None or n_layers is None or n_heads is None:
            continue
        if not (0 <= layer < n_layers and 0 <= index < n_heads):
            raise ParameterError(
                f"Head {layer}.{index} is not in model '{shape['model_id']}' of run '{run_id}' "
                f"({n_layers} layers × {n_heads} heads: 0.0 to {n_layers - 1}.{n_heads - 1})."
            )
    return shape


def routes_graph(edges: pd.DataFrame) -> nx.MultiDiGraph:
    """Head → head communication edges as a MultiDiGraph (one edge per side and role).

    ``edges`` needs ``writer``, ``reader``, ``side``, ``role`` columns (``alternative_routes``,
    ``head_inputs``-like rows); the other columns become edge attributes, keyed ``side@role``.
    """
    graph = nx.MultiDiGraph()
    for record in edges.to_dict("records"):
        attributes = {k: v for k, v in record.items() if k not in {"writer", "reader"}}
        key = f"{record['side']}@{record['role']}"
        graph.add_edge(record["writer"], record["reader"], key=key, **attributes)
    return graph


def edge_disjoint_routes(graph: nx.MultiDiGraph, source: str, target: str) -> int:
    """The most routes source → target that share no head pair (max flow, capacity 1 each).

    Parallel edges of one pair (other side or role) count as one: cutting what one head sends
    another cuts them all. By Menger's theorem this is also the fewest head pairs whose
    removal disconnects target from source.
    """
    if source not in graph or target not in graph:
        return 0
    simple = nx.DiGraph()
    simple.add_edges_from(graph.edges(), capacity=1)
    return int(nx.maximum_flow_value(simple, source, target))


@dataclass(frozen=True)
class Routes:
    """The routes between two heads: their hops (``alternative_routes`` rows), the graph they
    form, how many routes there are and how many of them are edge-disjoint."""

    source: str
    target: str
    edges: pd.DataFrame
    graph: nx.MultiDiGraph
    routes: int
    edge_disjoint: int


def alternative_routes(
    store: AtlasStore, run_id: str, source: str, target: str, **parameters: Any
) -> Routes:
    """Every route from head ``source`` down to head ``target`` and the redundancy degree.

    ``parameters`` are the other ``alternative_routes`` template parameters (``max_hops``,
    ``min_prompts``, ``consistent``).
    """
    (from_layer, from_head), (to_layer, to_head) = head(source), head(target)
    edges = run_query(
        store,
        "alternative_routes",
        run_id=run_id,
        from_layer=from_layer,
        from_head=from_head,
        to_layer=to_layer,
        to_head=to_head,
        **parameters,
    )
    graph = routes_graph(edges)
    total = int(edges["total_routes"].iloc[0]) if len(edges) else 0
    return Routes(source, target, edges, graph, total, edge_disjoint_routes(graph, source, target))


def circuit_graph(
    store: AtlasStore,
    run_id: str,
    root: str,
    dest_role: str = "END",
    src_role: str = "IO",
    prompt: int | None = None,
) -> nx.MultiDiGraph:
    """The SAD circuit of ``root`` (``circuit.cypher``) as a head-level MultiDiGraph.

    Nodes are heads; an edge writer → head per (side, role written) carries ``n_prompts``
    (distinct prompts where the traversal reached it) and ``mean_weight``; ``depth`` is the
    smallest depth at which the reader was reached (0: the root).
    """
    layer, index = head(root)
    frame = run_query(
        store,
        "circuit",
        run_id=run_id,
        layer=layer,
        head=index,
        dest_role=dest_role,
        src_role=src_role,
        prompt=prompt,
    )
    if frame.empty:
        return routes_graph(pd.DataFrame(columns=["writer", "reader", "side", "role"]))
    frame["reader"] = frame["layer"].astype(str) + "." + frame["head"].astype(str)
    edges = (
        frame.groupby(["writer", "reader", "side", "role"], as_index=False)
        .agg(
            n_prompts=("prompt", "nunique"),
            mean_weight=("weight", "mean"),
            depth=("depth", "min"),
        )
        .sort_values(["depth", "reader", "n_prompts"], ascending=[True, True, False])
    )
    return routes_graph(edges)


def write_graphml(graph: nx.MultiDiGraph, path: Path) -> None:
    """Write a route or circuit graph as GraphML (list-valued attributes as text)."""
    plain = nx.MultiDiGraph()
    plain.add_nodes_from(graph.nodes)
    for writer, reader, key, attributes in graph.edges(keys=True, data=True):
        values = {k: _graphml_value(v) for k, v in attributes.items()}
        plain.add_edge(writer, reader, key=key, **values)
    nx.write_graphml(plain, path)


def _graphml_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value
