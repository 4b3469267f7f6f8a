"""The graph side of Circuit Atlas: Neo4j store, local server, query layer, checks, CLI.

Subpackages:

- :mod:`atlas.store`: the graph model's schema, batched idempotent writes of ``ingest`` records,
  the run lifecycle (create, resume, complete, delete); all database access lives here.
- :mod:`atlas.server`: a local Neo4j Community server from Maven Central jars, without Docker.
- :mod:`atlas.ask`: the Cypher templates of ``queries/``, run as tables, routes and circuits.
- :mod:`atlas.check`: causal validation of circuit edges and the run report with its figures.
- :mod:`atlas.browser`: the Neo4j Browser's style, guide and deep links.
- :mod:`atlas.interchange`: the method authors' GraphML formats, imported and exported.
- :mod:`atlas.bench`: the figures ``circuit-atlas bench`` prints.
- :mod:`atlas.cli`: the ``circuit-atlas`` command; the only place errors become messages.
"""
