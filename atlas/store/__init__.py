"""The store: every write to and lifecycle change of the atlas in Neo4j.

:class:`AtlasStore` writes ``ingest.records`` in batched, parameterised ``UNWIND`` statements
(MERGE on constrained keys, or CREATE for a batch known to be absent), marks each batch done in
the same transaction, and aggregates per-prompt edges into ``COMMUNICATES`` when a run
completes. :mod:`~atlas.store.schema` owns the constraints and indexes; :mod:`~atlas.store.writer`
drives a run from the ingestion pipeline into the store, resumably.
"""

from atlas.store.store import AtlasStore, PreparedWrite, WriteCounts

__all__ = ["AtlasStore", "PreparedWrite", "WriteCounts"]
