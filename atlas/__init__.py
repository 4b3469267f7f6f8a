"""The graph side of Circuit Atlas: Neo4j store, local server, query layer, checks, CLI.

Subpackages:

- :mod:`atlas.store`: the graph model's schema, batched idempotent writes of ``ingest`` records,
  the run lifecycle (create, resume, complete, delete); all database access lives here.
- :mod:`atlas.server`: a local Neo4j Community server from Maven Central jars, without Docker.
- :mod:`atlas.ask`: the Cypher templates of ``queries/``, run as tables, routes and circuits.
- :mod:`atlas.check`: causal validation of circuit edges, patching circuits and the comparison
  of circuits (precision, recall, F1), and the run report with its figures.
- :mod:`atlas.browser`: the Neo4j Browser's style, guide and deep links.
- :mod:`atlas.interchange`: the method authors' GraphML formats, imported and exported, and
  the Parquet shard format of a traced run.
- :mod:`atlas.scale`: tracing into shards without a database (local workers or Ray), the one
  idempotent shard loader and the offline bulk import.
- :mod:`atlas.bench`: the figures ``circuit-atlas bench`` prints.
- :mod:`atlas.cli`: the ``circuit-atlas`` command; the only place errors become messages.
"""
