"""Records: the graph model as plain frozen dataclasses, and their construction from tensors.

:mod:`~ingest.records.types` has one dataclass per node and relationship (a model, a run, heads,
singular vectors, prompts, firings, per-prompt WRITES edges, aggregate COMMUNICATES, and
COMMUNICATES as a graph file gives them); :mod:`~ingest.records.build` turns a batch's tensors
into a :class:`RecordBatch`. Pure data, no I/O: ``atlas.store`` writes them.
"""

from ingest.records.build import (
    aligned_records,
    batch_records,
    model_component_records,
    model_record,
)
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
    "aligned_records",
    "batch_records",
    "component_id",
    "model_component_records",
    "model_record",
]
