"""The shard format: every record field is a column, and a written shard reads back the very
records it was given (ACC fields, non-head writers and their source positions included)."""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from atlas.interchange.shards import (
    RECORD_TABLES,
    RUN_TABLES,
    SCHEMAS,
    ShardHeader,
    ShardSpec,
    ShardWriter,
    read_shard,
)
from ingest.records.types import (
    AlignedRecord,
    BatchDone,
    ComponentRecord,
    FiringKey,
    FiringRecord,
    ModelRecord,
    PromptRecord,
    RecordBatch,
    RunRecord,
    SingularVectorRecord,
    SparseTerm,
    WriteEdgeRecord,
)

# What each shard file holds, written out here (not read from the code under test), and the
# fields a file leaves to its manifest.
FILES = {
    "prompts": (PromptRecord, {"run_id"}),
    "firings": (FiringRecord, {"run_id"}),
    "edges": (WriteEdgeRecord, {"run_id"}),
    "components": (ComponentRecord, {"model_id"}),
    "singular_vectors": (SingularVectorRecord, {"model_id"}),
    "aligned": (AlignedRecord, {"model_id"}),
}


def leaf_fields(record: type, context: set[str]) -> set[str]:
    """The record's fields, those of a record-typed field (FiringKey) in its place."""
    names = set()
    for f in fields(record):
        nested = {"firing": FiringKey}.get(f.name)
        names |= leaf_fields(nested, context) if nested else {f.name}
    return names - context


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_record_field_is_a_shard_column(name: str) -> None:
    record, context = FILES[name]
    assert RECORD_TABLES[name].record is record
    columns = set(SCHEMAS[name].names) - ({"batch"} if name in RUN_TABLES else set())
    assert columns == leaf_fields(record, context)


RUN = "run-x"
KEY = FiringKey(RUN, 3, 2, 1, 9, 4)
PROMPTS = [
    PromptRecord(RUN, 3, "When Mary and John ...", "t0", "ABB", "Mary", "John",
                 {"IO": 2, "S1": 4, "END": 9}, ("When", " Mary"), 1.25),
]  # fmt: skip
FIRINGS = [
    FiringRecord(RUN, 3, 2, 1, 9, 4, "END", "IO", 0.75, 1.5, 2,
                 (SparseTerm(7, 0, 2.0, 1), SparseTerm(1, 1, -0.5, -1)), method="acc",
                 query_bias=0.25, dest_total=1.25, n_svs_dest=3, sparse_dest=(4, 5, 6),
                 sparse_source=(7, 1), seed_weight=0.5),
    FiringRecord(RUN, 3, 1, 0, 4, 2, None, None, 0.5, 0.125, 0),
]  # fmt: skip
EDGES = [
    WriteEdgeRecord(KEY, 1, 3, "k", 0.5, 4, "IO", "head", (0.25, 0.25), 2, "IO"),
    WriteEdgeRecord(KEY, None, None, "q", 0.125, 9, "END", "embed"),
    WriteEdgeRecord(KEY, 0, None, "q", -0.0625, 9, "END", "mlp", (1.0,)),
]
MODEL = ModelRecord("m", 3, 4, 8, 2)
COMPONENTS = [ComponentRecord("m", "head", 2, 1, "name mover"), ComponentRecord("m", "head", 0, 0)]
VECTORS = [SingularVectorRecord("m", 2, 1, 0, 3.5)]
ALIGNED = [AlignedRecord("m", (1, 3, 0), "q", (2, 1, 0), "k", 0.875)]


def non_default(record: Any) -> set[str]:
    """The fields of ``record`` whose value differs from the field's default."""
    found = set()
    for f in fields(record):
        default = f.default if f.default is not MISSING else MISSING
        value = getattr(record, f.name)
        if default is MISSING or value != default:
            found.add(f.name)
    return found


def test_the_examples_set_every_field() -> None:
    """So the round trip below exercises every field of every record of a shard."""
    for records in (PROMPTS, FIRINGS, EDGES, COMPONENTS, VECTORS, ALIGNED):
        covered = set().union(*(non_default(r) for r in records))
        assert covered == {f.name for f in fields(records[0])}, type(records[0]).__name__
        assert all(is_dataclass(r) for r in records)


def test_a_shard_reads_back_the_records_it_was_given(tmp_path: Path) -> None:
    run = RunRecord(RUN, "m", None, "acc", {"method": "acc"}, {"n_prompts": 1}, {}, None,
                    created_at=datetime(2026, 1, 2, tzinfo=UTC))  # fmt: skip
    header = ShardHeader(run, MODEL, "{}", ShardSpec(0, 1), [0], 1, 8)
    writer = ShardWriter(tmp_path / "s", header)
    writer.write_model(COMPONENTS, VECTORS, ALIGNED)
    writer.write_batch(0, RecordBatch(prompts=PROMPTS, firings=FIRINGS, edges=EDGES))
    writer.finish()

    shard = read_shard(tmp_path / "s")
    assert shard.run == run and shard.model == MODEL
    assert shard.model_records() == (COMPONENTS, VECTORS, ALIGNED)
    [(index, batch)] = list(shard.record_batches())
    assert index == 0 and batch.done == BatchDone(RUN, 0)
    assert [list(batch.prompts), list(batch.firings), list(batch.edges)] == [
        PROMPTS,
        FIRINGS,
        EDGES,
    ]
