"""Asking the atlas: the Cypher templates of ``queries/`` and what is built from their rows.

:mod:`queries.templates` reads each template's typed header and binds parameters;
:mod:`~atlas.ask.lookups` runs templates as pandas DataFrames and route lookups as networkx
graphs; :mod:`~atlas.ask.circuits` builds the SAD circuit of a root head as a tree.
"""

from atlas.ask.circuits import Circuit, fetch_circuit, parse_head, render_tree
from atlas.ask.lookups import alternative_routes, edge_disjoint_routes, run_query

__all__ = [
    "Circuit",
    "alternative_routes",
    "edge_disjoint_routes",
    "fetch_circuit",
    "parse_head",
    "render_tree",
    "run_query",
]
