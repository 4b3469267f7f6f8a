"""Tracing: credit each firing's signal to the upstream heads that wrote it (SAD).

A writer head w's contribution to the query side of a firing is
``Σ_{k∈S} sign_k √σ_k (u_k · o_w(i)) / s_i`` (key side: ``v_k`` and position j); per side, the
smallest set of writers carrying more than the edge fraction of the total becomes edges.
:mod:`~ingest.tracing.components` credits ACC's sides to every upstream component exactly
(heads per source token, MLPs, attention biases, the embedding) and seeds tracing from the
answer; :mod:`~ingest.tracing.acc_circuit` runs that tracing from the seeds down.
"""

from ingest.tracing.upstream import Edges, trace_firings, upstream_contributions

__all__ = [
    "Edges",
    "trace_firings",
    "upstream_contributions",
]
