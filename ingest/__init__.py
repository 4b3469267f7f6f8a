"""The ingestion job: model → IOI prompts → decomposition → tracing → records.

Everything here is pure computation (tensors in, tensors or records out). No database access
and no printing: I/O lives in :mod:`atlas`.
"""
