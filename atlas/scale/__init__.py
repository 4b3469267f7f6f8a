"""Past one machine: tracing into shards without a database, and loading shards into it.

- :mod:`~atlas.scale.trace`: run :func:`ingest.pipeline.trace_run` over one shard's batches
  and write them in the shard format (:mod:`atlas.interchange.shards`); run many shards on an
  existing engine (a local process pool, or Ray);
- :mod:`~atlas.scale.load`: the one idempotent loader, shards → :class:`atlas.store.AtlasStore`
  through one writer, a marker per shard committed last, ``COMMUNICATES`` recomputed;
- :mod:`~atlas.scale.bulk`: a fresh atlas built offline by ``neo4j-admin database import full``
  from the shard files of one or several runs (the local server only).

Sits above the store and the shard format (it imports both); nothing below imports it.
"""
