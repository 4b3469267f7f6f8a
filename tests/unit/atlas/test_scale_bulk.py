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

import pytest

from atlas.errors import AtlasError
from atlas.interchange.shards import ShardHeader, ShardSpec, ShardWriter, read_shard
from atlas.scale.bulk import ARRAY, empty_firing_lists, write_import_files
from atlas.scale.load import open_runs_shards
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
    files = write_import_files({RUN: [read_shard(tmp_path / "s")]}, out)
    assert files.rows["writes.0"] == 4 and files.rows["uses.0"] == 3

    prompts = read(out, "prompts.0")
    assert [p["text"] for p in prompts] == [p.text for p in PROMPTS]  # quotes, line break
    assert prompts[1]["template"] == ""  # an empty string is no property, as before
    assert [float(p["logit_diff:double"]) for p in prompts] == [0.1, 1 / 3]
    assert prompts[0]["tokens:string[]"].split(ARRAY) == ["He", " said"]

    firings = {f[":ID(Firing)"]: f for f in read(out, "firings")}
    key = ("prompt:long", "layer:long", "head:long", "dest:long", "src:long")
    firing_of = {tuple(int(f[k]) for k in key): fid for fid, f in firings.items()}
    assert [float(f["score:double"]) for f in firings.values()] == [1 / 3, 1e-300]
    assert [f["dest_role"] for f in firings.values()] == ["END", ""]  # None: an empty field

    writes = read(out, "writes.0")
    for edge, row in zip(EDGES, writes, strict=True):
        firing = edge.firing
        assert (
            row[":END_ID(Firing)"]
            == firing_of[(firing.prompt, firing.layer, firing.head, firing.dest, firing.src)]
        )
        assert float(row["weight:double"]) == edge.weight
        assert [float(p) for p in row["parts:double[]"].split(ARRAY) if p] == list(edge.parts)
    assert [w[":START_ID(Component0)"] for w in writes] == ["0.3", "1.0", "embed", "mlp0"]
    assert writes[0]["writer_pos:long"] == "" and writes[1]["writer_pos:long"] == "2"

    uses = read(out, "uses.0")
    assert [(firings[u[":START_ID(Firing)"]]["layer:long"], u[":END_ID(SV0)"]) for u in uses] == [
        ("2", "2.1.7"),
        ("2", "2.1.1"),
        ("1", "1.0.3"),
    ]
    assert [float(u["term:double"]) for u in uses] == [2.0, -0.1, 0.7]

    components = {c[":ID(Component0)"]: c for c in read(out, "components.0")}
    assert set(components) == {"2.1", "0.3", "1.0", "embed", "mlp0"}
    assert components["2.1"][":LABEL"].split(ARRAY) == ["Component", "Head", "Layer2", "NameMover"]
    assert components["embed"][":LABEL"] == "Component" and components["embed"]["layer:long"] == ""
    assert set(read(out, "of_head.0")[0]) == {":START_ID(Firing)", ":END_ID(Component0)"}
    assert "--relationships=WRITES=" in " ".join(files.arguments())


def test_runs_of_two_models_keep_their_ids_apart(tmp_path: Path) -> None:
    """Two runs of two models, in one import: each run's prompts and each model's components
    and vectors are an ID space of their own (both models have a head 2.1 and a vector 2.1.7,
    both runs a prompt 0); firing ids go on across runs."""
    shards = {}
    for number, (run_id, model_id) in enumerate((("run-a", "m"), ("run-c", "other"))):
        run = RunRecord(run_id, model_id, None, "sad", {}, {}, {}, None,
                        created_at=datetime(2026, 1, 2, tzinfo=UTC))  # fmt: skip
        model = ModelRecord(model_id, 3, 4, 8, 2)
        folder = tmp_path / f"s{number}"
        writer = ShardWriter(folder, ShardHeader(run, model, "{}", ShardSpec(0, 1), [0], 1, 8))
        writer.write_model(
            [ComponentRecord(model_id, "head", 2, 1, None)],
            [SingularVectorRecord(model_id, 2, 1, 7, 1.5)],
            [],
        )
        firing = FiringRecord(run_id, 0, 2, 1, 9, 4, None, None, 0.5, 0.5, 1,
                              (SparseTerm(7, 0, 2.0, 1),))  # fmt: skip
        prompt = PromptRecord(run_id, 0, "When", "t0", "ABB", "Mary", "John", {}, ("When",), 1.0)
        edge = WriteEdgeRecord(firing.key, 0, 3, "q", 0.2, 2, None, "head", (0.1,), None, None)
        writer.write_batch(0, RecordBatch(prompts=[prompt], firings=[firing], edges=[edge]))
        writer.finish()
        shards[run_id] = [read_shard(folder)]
    out = tmp_path / "csv"
    files = write_import_files(shards, out)

    assert [m["id:ID(Model)"] for m in read(out, "model")] == ["m", "other"]
    for space, model_id in enumerate(("m", "other")):
        components = read(out, f"components.{space}")
        assert {(c[f":ID(Component{space})"], c["model_id"]) for c in components} == {
            ("2.1", model_id),
            ("0.3", model_id),
        }
        assert [v[f":ID(SV{space})"] for v in read(out, f"singular_vectors.{space}")] == ["2.1.7"]
        assert [u[f":END_ID(SV{space})"] for u in read(out, f"uses.{space}")] == ["2.1.7"]
        [prompt] = read(out, f"prompts.{space}")
        assert prompt[f":ID(Prompt{space})"] == "0"
        [of_head] = read(out, f"of_head.{space}")
        assert of_head[f":END_ID(Component{space})"] == "2.1"
        [in_prompt] = read(out, f"in_prompt.{space}")
        assert in_prompt[f":END_ID(Prompt{space})"] == "0"
        [has_prompt] = read(out, f"has_prompt.{space}")
        assert (has_prompt[":START_ID(Run)"], has_prompt[f":END_ID(Prompt{space})"]) == (
            ("run-a", "run-c")[space],
            "0",
        )
    assert [f[":ID(Firing)"] for f in read(out, "firings")] == ["0", "1"]
    assert [w[":END_ID(Firing)"] for space in (0, 1) for w in read(out, f"writes.{space}")] == [
        "0",
        "1",
    ]
    assert [(r[":START_ID(Run)"], r[":END_ID(Model)"]) for r in read(out, "of_model")] == [
        ("run-a", "m"),
        ("run-c", "other"),
    ]
    arguments = " ".join(files.arguments())
    assert arguments.count("--nodes=Prompt=") == 2 and arguments.count("--nodes=Firing=") == 1


def test_runs_to_load_are_named_and_each_has_shards(tmp_path: Path) -> None:
    write_shard(tmp_path, 0, {0: [acc_firing(0, 9, (1,), (2,))]})
    write_shard(tmp_path, 1, {1: [acc_firing(1, 9, (1,), (2,))]})
    assert [len(s) for s in open_runs_shards([RUN], [tmp_path]).values()] == [2]
    with pytest.raises(AtlasError, match="No shards of run run-x in"):
        open_runs_shards([RUN, "run-x"], [tmp_path])
    with pytest.raises(AtlasError, match=r"Shards of other runs \(run-b\) given to load run c\."):
        open_runs_shards(["c"], [tmp_path])
