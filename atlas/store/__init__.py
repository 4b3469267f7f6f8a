"""The store: every write to and lifecycle change of the atlas in Neo4j.

:class:`AtlasStore` writes ``ingest.records`` in batched, parameterised ``UNWIND`` statements
(MERGE on constrained keys, or CREATE for a batch known to be absent), marks each batch done in
the same transaction, and aggregates per-prompt edges into ``COMMUNICATES`` when a run
completes. Its parts, one module each:

- :mod:`~atlas.store.store`: :class:`AtlasStore`, the batched writes and their transactions;
- :mod:`~atlas.store.runs`: the run lifecycle (create, complete, fail, list, show, delete,
  import a read-only run), which ``AtlasStore`` inherits;
- :mod:`~atlas.store.database`: the driver, the schema and one-statement queries they share;
- :mod:`~atlas.store.statements`: the Cypher text of every write and lifecycle statement;
- :mod:`~atlas.store.rows`: statement rows derived from the record dataclasses;
- :mod:`~atlas.store.columns`: a fresh batch's firings, terms and edges packed as columns;
- :mod:`~atlas.store.schema`: the constraints and indexes; :mod:`~atlas.store.connection`: the
  driver and its errors explained;
- :mod:`~atlas.store.writer`: drives a run from the ingestion pipeline into the store,
  resumably.

The store reads records only: it imports neither the Browser nor any file format
(``atlas.interchange`` converts what it parses into records first).
"""

from atlas.store.store import AtlasStore, PreparedWrite, WriteCounts

__all__ = ["AtlasStore", "PreparedWrite", "WriteCounts"]
