"""The ingestion job, model side: model → prompts → decomposition → tracing → records.

Subpackages in the order the data moves:

- :mod:`ingest.models`: load a transformer through TransformerLens in the folded form the
  decomposition needs (GPT-2 and Llama families: the shipped toy-ioi model, random-weight
  GPT-2, SmolLM2-135M once installed), and refuse what the bilinear split cannot hold.
- :mod:`ingest.prompts`: seeded IOI prompts and their token roles, for any tokenizer.
- :mod:`ingest.decomposition`: the forward pass and the decomposition of every strong attention
  decision into singular-vector terms (SAD, and ACC's relative attention per side; the rotary
  frame for Llama-family models); pure tensor maths.
- :mod:`ingest.tracing`: credit each firing's signal to the upstream components that wrote it
  (heads for SAD; every component, seeded from the answer, for ACC).
- :mod:`ingest.records`: plain dataclasses, one per node and relationship of the graph model.
- :mod:`ingest.pipeline`: the one entry point, :func:`~ingest.pipeline.trace_run`, yielding a
  run's records batch by batch.
- :mod:`ingest.interventions`: causal checks of edges by editing signals and re-running.
- :mod:`ingest.patching`: independent patching circuits (EAP, EAP-IG, path patching).

Nothing here touches a database or prints: ``ingest`` never imports ``atlas``.
"""
