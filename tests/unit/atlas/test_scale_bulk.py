"""``load --bulk``: the firings' empty lists that the importer's CSV cannot hold (an ACC side not
traced) are found in the shards, to be set after the import, and nothing else is."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from atlas.interchange.shards import ShardHeader, ShardSpec, ShardWriter, read_shard
from atlas.scale.bulk import empty_firing_lists
from ingest.records.types import (
    FiringRecord,
    ModelRecord,
    PromptRecord,
    RecordBatch,
    RunRecord,
    SparseTerm,
)

RUN = "run-x"
MODEL = ModelRecord("m", 3, 4, 8, 2)


def acc_firing(
    prompt: int, dest: int, sparse_dest: tuple[int, ...], sparse_source: tuple[int, ...]
) -> FiringRecord:
    return FiringRecord(RUN, prompt, 2, 1, dest, 1, "END", "IO", 0.5, 1.0, len(sparse_source),
                        method="acc", query_bias=0.25, dest_total=0.75,
                        n_svs_dest=len(sparse_dest), sparse_dest=sparse_dest,
                        sparse_source=sparse_source)  # fmt: skip


def write_shard(folder: Path, index: int, batches: dict[int, list[FiringRecord]]) -> Path:
    run = RunRecord(
        RUN, "m", None, "acc", {}, {}, {}, None, created_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    header = ShardHeader(run, MODEL, "{}", ShardSpec(index, 2), list(batches), 2, 8)
    writer = ShardWriter(folder / f"s{index}", header)
    writer.write_model([], [], [])
    for batch, firings in batches.items():
        prompts = [
            PromptRecord(RUN, p, "When Mary and John", "t0", "ABB", "Mary", "John", {"END": 9},
                         ("When",), 1.0)
            for p in sorted({f.prompt for f in firings})
        ]  # fmt: skip
        writer.write_batch(batch, RecordBatch(prompts=prompts, firings=firings))
    writer.finish()
    return folder / f"s{index}"


def test_the_empty_lists_of_every_shard_and_only_those(tmp_path: Path) -> None:
    sad = FiringRecord(RUN, 0, 1, 0, 4, 2, None, None, 0.5, 0.125, 1, (SparseTerm(3, 0, 1.0, 1),))
    first = write_shard(
        tmp_path,
        0,
        {
            0: [
                sad,  # a SAD firing: no lists at all (None), nothing to set
                acc_firing(0, 9, (), (4, 5)),  # the query side not traced
                acc_firing(0, 8, (1,), (2,)),  # both traced
            ],
        },
    )
    second = write_shard(tmp_path, 1, {1: [acc_firing(1, 9, (), ())]})  # neither side

    rows = empty_firing_lists([read_shard(first), read_shard(second)])

    assert rows == [
        {"key": [0, 2, 1, 9, 1], "empty": {"sparse_dest": []}},
        {"key": [1, 2, 1, 9, 1], "empty": {"sparse_dest": [], "sparse_source": []}},
    ]
