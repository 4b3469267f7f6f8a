"""``load --bulk``'s files. The importer's CSV, read back with Python's ``csv`` module: every
relationship ends at the node its record names, floats survive exactly, lists are joined by the
array delimiter and an absent value is an empty field (no property). The firings' empty lists,
which that CSV cannot hold (an ACC side not traced), are found in the shards to be set after the
import, and nothing else is. That the importer builds from them the graph ``ingest`` writes is
tested against Neo4j in ``tests/integration/atlas/test_scale_bulk.py``."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

from atlas.interchange.shards import ShardHeader, ShardSpec, ShardWriter, read_shard
from atlas.scale.bulk import ARRAY, empty_firing_lists, write_import_files
from ingest.records.types import (
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

RUN = "run-b"
MODEL = ModelRecord("m", 3, 4, 8, 2)
PROMPTS = [
    PromptRecord(RUN, 0, 'He said "hi",\nthen left', "t0", "ABB", "Mary", "John",
                 {"IO": 2}, ("He", " said"), 0.1),
    PromptRecord(RUN, 1, "When", "", "BAB", "John", "Mary", {"IO": 1}, ("When",), 1 / 3),
]  # fmt: skip
FIRINGS = [
    FiringRecord(RUN, 0, 2, 1, 9, 4, "END", "IO", 0.75, 1 / 3, 2,
                 (SparseTerm(7, 0, 2.0, 1), SparseTerm(1, 1, -0.1, -1))),
    FiringRecord(RUN, 1, 1, 0, 4, 2, None, None, 0.5, 1e-300, 1, (SparseTerm(3, 0, 0.7, 1),)),
]  # fmt: skip
KEY_A = FiringKey(RUN, 0, 2, 1, 9, 4)
KEY_B = FiringKey(RUN, 1, 1, 0, 4, 2)
EDGES = [
    WriteEdgeRecord(KEY_B, 0, 3, "q", 0.2, 2, "IO", "head", (0.1, 0.1), None, None),
    WriteEdgeRecord(KEY_A, 1, 0, "k", 0.5, 4, "IO", "head", (1 / 3,), 2, "IO"),
    WriteEdgeRecord(KEY_A, None, None, "q", 0.125, 9, "END", "embed"),
    WriteEdgeRecord(KEY_A, 0, None, "q", -0.0625, 9, "END", "mlp", (1.0,)),
]


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


def read(folder: Path, name: str) -> list[dict[str, str]]:
    """A file's rows as header name → field, from its header file and its data files."""
    with (folder / f"{name}.header.csv").open(newline="") as handle:
        [header] = list(csv.reader(handle))
    rows = []
    for part in sorted(folder.glob(f"{name}.[0-9]*.csv")):
        with part.open(newline="") as handle:
            rows += [dict(zip(header, row, strict=True)) for row in csv.reader(handle)]
    return rows


def test_import_files_hold_the_shard_rows(tmp_path: Path) -> None:
    run = RunRecord(RUN, "m", None, "sad", {"method": "sad"}, {"n_prompts": 2}, {}, None,
                    created_at=datetime(2026, 1, 2, tzinfo=UTC))  # fmt: skip
    writer = ShardWriter(tmp_path / "s", ShardHeader(run, MODEL, "{}", ShardSpec(0, 1), [0], 1, 8))
    vectors = [
        SingularVectorRecord("m", layer, head, index, 1.5)
        for layer, head, index in [(2, 1, 7), (2, 1, 1), (1, 0, 3)]
    ]
    writer.write_model([ComponentRecord("m", "head", 2, 1, "name mover")], vectors, [])
    writer.write_batch(0, RecordBatch(prompts=PROMPTS, firings=FIRINGS, edges=EDGES))
    writer.finish()
    out = tmp_path / "csv"
    files = write_import_files(RUN, [read_shard(tmp_path / "s")], out)
    assert files.rows["writes"] == 4 and files.rows["uses"] == 3

    prompts = read(out, "prompts")
    assert [p["text"] for p in prompts] == [p.text for p in PROMPTS]  # quotes, line break
    assert prompts[1]["template"] == ""  # an empty string is no property, as before
    assert [float(p["logit_diff:double"]) for p in prompts] == [0.1, 1 / 3]
    assert prompts[0]["tokens:string[]"].split(ARRAY) == ["He", " said"]

    firings = {f[":ID(Firing)"]: f for f in read(out, "firings")}
    key = ("prompt:long", "layer:long", "head:long", "dest:long", "src:long")
    firing_of = {tuple(int(f[k]) for k in key): fid for fid, f in firings.items()}
    assert [float(f["score:double"]) for f in firings.values()] == [1 / 3, 1e-300]
    assert [f["dest_role"] for f in firings.values()] == ["END", ""]  # None: an empty field

    writes = read(out, "writes")
    for edge, row in zip(EDGES, writes, strict=True):
        firing = edge.firing
        assert (
            row[":END_ID(Firing)"]
            == firing_of[(firing.prompt, firing.layer, firing.head, firing.dest, firing.src)]
        )
        assert float(row["weight:double"]) == edge.weight
        assert [float(p) for p in row["parts:double[]"].split(ARRAY) if p] == list(edge.parts)
    assert [w[":START_ID(Component)"] for w in writes] == ["0.3", "1.0", "embed", "mlp0"]
    assert writes[0]["writer_pos:long"] == "" and writes[1]["writer_pos:long"] == "2"

    uses = read(out, "uses")
    assert [(firings[u[":START_ID(Firing)"]]["layer:long"], u[":END_ID(SV)"]) for u in uses] == [
        ("2", "2.1.7"),
        ("2", "2.1.1"),
        ("1", "1.0.3"),
    ]
    assert [float(u["term:double"]) for u in uses] == [2.0, -0.1, 0.7]

    components = {c[":ID(Component)"]: c for c in read(out, "components")}
    assert set(components) == {"2.1", "0.3", "1.0", "embed", "mlp0"}
    assert components["2.1"][":LABEL"].split(ARRAY) == ["Component", "Head", "Layer2", "NameMover"]
    assert components["embed"][":LABEL"] == "Component" and components["embed"]["layer:long"] == ""
    assert set(read(out, "of_head")[0]) == {":START_ID(Firing)", ":END_ID(Component)"}
    assert "--relationships=WRITES=" in " ".join(files.arguments())
