"""The ingestion job, model side: model → prompts → decomposition → tracing → records.

Subpackages in the order the data moves:

- :mod:`ingest.models`: load a transformer through TransformerLens in the folded form the
  decomposition needs (GPT-2 family, the shipped toy-ioi model, random-weight GPT-2).
- :mod:`ingest.prompts`: seeded IOI prompts and their token roles, for any tokenizer.
- :mod:`ingest.decomposition`: the forward pass and the sparse attention decomposition (SAD) of
  every strong attention decision into singular-vector terms; pure tensor maths.
- :mod:`ingest.tracing`: credit each firing's signal to the upstream heads that wrote it.
- :mod:`ingest.records`: plain dataclasses, one per node and relationship of the graph model.
- :mod:`ingest.pipeline`: one batch through all of the above.
- :mod:`ingest.interventions`: causal checks of edges by editing signals and re-running.

Nothing here touches a database or prints: ``ingest`` never imports ``atlas``.
"""
