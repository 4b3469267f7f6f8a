"""Records: the graph model as plain frozen dataclasses, and their construction from tensors.

:mod:`~ingest.records.types` has one dataclass per node and relationship (a model, a run, heads,
singular vectors, prompts, firings, per-prompt WRITES edges, aggregate COMMUNICATES, and
COMMUNICATES as a graph file gives them); :mod:`~ingest.records.build` turns a batch's tensors
into a :class:`RecordBatch`. Pure data, no I/O: ``atlas.store`` writes them. This package
imports only the types, so that the store and the query commands start without torch; import
the builders from :mod:`ingest.records.build`.
"""

from ingest.records.types import (
    AlignedRecord,
    BatchDone,
    CommunicatesRecord,
    ComponentRecord,
    FiringKey,
    FiringRecord,
    ImportedCommunicatesRecord,
    ModelRecord,
    PromptRecord,
    RecordBatch,
    RunRecord,
    SingularVectorRecord,
    SparseTerm,
    WriteEdgeRecord,
    component_id,
)

__all__ = [
    "AlignedRecord",
    "BatchDone",
    "CommunicatesRecord",
    "ComponentRecord",
    "FiringKey",
    "FiringRecord",
    "ImportedCommunicatesRecord",
    "ModelRecord",
    "PromptRecord",
    "RecordBatch",
    "RunRecord",
    "SingularVectorRecord",
    "SparseTerm",
    "WriteEdgeRecord",
    "component_id",
]
