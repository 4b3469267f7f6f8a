"""The store's rows and columns hold every field of their records, and the statements read them.

No Neo4j needed: rows are built from sample records and checked against the record
dataclasses (``dataclasses.fields``) and the Cypher text of the statements that take them.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, fields, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import ingest.records.types as types
from atlas.store import statements
from atlas.store.columns import (
    EDGE_COLUMNS,
    FIRING_PROPERTIES,
    USE_COLUMNS,
    firing_columns,
)
from atlas.store.rows import SPECS, RowSpec
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
    RunRecord,
    SingularVectorRecord,
    SparseTerm,
    WriteEdgeRecord,
)

_TERMS = (SparseTerm(7, 0, 0.25, 1), SparseTerm(3, 1, -0.125, -1))
_FIRING = FiringRecord(
    run_id="run",
    prompt=4,
    layer=9,
    head=6,
    dest=14,
    src=2,
    dest_role="END",
    src_role="IO",
    attn=0.75,
    score=0.5,
    n_svs=2,
    sparse_set=_TERMS,
)

SAMPLES: dict[type, Any] = {
    ModelRecord: ModelRecord("gpt", 12, 12, 768, 64),
    RunRecord: RunRecord(
        "run",
        "gpt",
        "main",
        "sad",
        {"threshold": 0.3, "tags": ["a"]},
        {"n_prompts": 8},
        {"torch": "2.5"},
        "abc123",
        datetime(2025, 1, 2, tzinfo=UTC),
        "complete",
    ),
    ComponentRecord: ComponentRecord("gpt", "head", 9, 6, "name mover"),
    SingularVectorRecord: SingularVectorRecord("gpt", 9, 6, 3, 1.5),
    AlignedRecord: AlignedRecord("gpt", (1, 2, 3), "q", (4, 5, 6), "k", 0.875),
    PromptRecord: PromptRecord(
        run_id="run",
        idx=4,
        text="When Mary and John",
        template="t0",
        order="ABBA",
        io="Mary",
        s="John",
        roles={"IO": 2},
        tokens=("When", " Mary"),
        logit_diff=1.25,
    ),
    SparseTerm: _TERMS[0],
    FiringRecord: _FIRING,
    WriteEdgeRecord: WriteEdgeRecord(
        firing=_FIRING.key,
        writer_layer=None,
        writer_head=None,
        side="k",
        weight=0.5,
        pos=2,
        role="IO",
        writer_kind="mlp",
        parts=(0.5,),
    ),
    CommunicatesRecord: CommunicatesRecord(
        run_id="run",
        writer_layer=3,
        writer_head=0,
        layer=9,
        head=6,
        side="q",
        role="END",
        n_prompts=5,
        mean_weight=0.25,
    ),
    ImportedCommunicatesRecord: ImportedCommunicatesRecord(
        "run", "head", 9, 6, "logit_direction", None, None, "q", "IO", 7, 0.5, {"weight_sum": 3.5}
    ),
    BatchDone: BatchDone("run", 3),
}

# Statements that take rows of a record: (statement, the row's name in it, the keys it reads
# besides the record's: the run's model_id given as context, an imported edge's optional source).
READERS: dict[type, list[tuple[str, str, set[str]]]] = {
    ModelRecord: [(statements.MERGE_MODEL, r"\$row", set())],
    RunRecord: [(statements.MERGE_RUN, r"\$row", set())],
    ComponentRecord: [(statements.WRITE_COMPONENTS, "row", set())],
    SingularVectorRecord: [(statements.WRITE_SINGULAR_VECTORS, "row", set())],
    AlignedRecord: [(statements.WRITE_ALIGNED, "row", set())],
    PromptRecord: [
        (statements.WRITE_PROMPTS, "row", set()),
        (statements.CREATE_PROMPTS, "row", set()),
    ],
    SparseTerm: [(statements.WRITE_FIRINGS, "term", set())],
    FiringRecord: [(statements.WRITE_FIRINGS, "row", {"model_id"})],
    WriteEdgeRecord: [(statements.WRITE_EDGES, "row", {"model_id"})],
    CommunicatesRecord: [(statements.WRITE_COMMUNICATES, "row", {"model_id", "source"})],
    ImportedCommunicatesRecord: [(statements.WRITE_COMMUNICATES, "row", {"model_id"})],
    BatchDone: [(statements.MARK_BATCH_DONE, "row", set())],
}


def _record_types() -> set[type]:
    """The record dataclasses of ingest.records.types that are written row by row."""
    found = {v for v in vars(types).values() if isinstance(v, type) and is_dataclass(v)}
    return found - {types.RecordBatch, FiringKey}  # a batch of records; a firing's key, flattened


def _name(record_type: Any) -> str:
    return record_type.__name__


def _covered(spec: RowSpec, row: dict[str, Any]) -> set[str]:
    """The record's fields whose value the row holds (under their name, nested, or carried)."""
    covered = set()
    for f in fields(spec.record):
        if f.name in spec.carried:
            assert spec.carried[f.name] in row, (spec.record, f.name)
            covered.add(f.name)
        elif f.name in spec.flatten:
            if all(n.name in row for n in fields(spec.flatten[f.name])):
                covered.add(f.name)
        elif f.name in row:
            covered.add(f.name)
    return covered


def test_every_record_type_has_a_spec_and_a_sample() -> None:
    assert set(SPECS) == _record_types()
    assert set(SAMPLES) == set(SPECS) == set(READERS)


@pytest.mark.parametrize("record_type", sorted(SPECS, key=_name))
def test_row_covers_every_field(record_type: type) -> None:
    spec = SPECS[record_type]
    record = SAMPLES[record_type]
    row = spec.builder()(record)
    assert _covered(spec, row) == {f.name for f in fields(record_type)}
    assert set(row) == set(spec.keys())
    for key, path in spec.paths():  # values kept as they are, or converted
        value = record
        for name in path.split("."):
            value = getattr(value, name)
        expected = spec.convert[key](value) if key in spec.convert else value
        assert row[key] == expected, (record_type, key)


@pytest.mark.parametrize("record_type", sorted(READERS, key=_name))
def test_statements_read_every_key_of_their_rows(record_type: type) -> None:
    keys = set(SPECS[record_type].keys())
    for statement, name, context in READERS[record_type]:
        read = set(re.findall(rf"{name}\.(\w+)", statement))
        assert read == keys | context, (record_type, read ^ (keys | context))


def test_context_keys_are_added() -> None:
    row = SPECS[FiringRecord].builder()(_FIRING, model_id="gpt")
    assert row["model_id"] == "gpt"
    assert row["sparse_set"] == [
        {"index": 7, "rank": 0, "term": 0.25, "sign": 1},
        {"index": 3, "rank": 1, "term": -0.125, "sign": -1},
    ]


def test_a_new_field_reaches_the_row_and_dropping_one_must_be_said() -> None:
    @dataclass(frozen=True)
    class Grown:
        run_id: str
        weight: float
        added: int = 0

    assert RowSpec(Grown).builder()(Grown("r", 0.5, 3)) == {
        "run_id": "r",
        "weight": 0.5,
        "added": 3,
    }
    with pytest.raises(TypeError, match="no fields"):
        RowSpec(Grown, carried={"missing": "x"}, derived={"x": len})
    with pytest.raises(TypeError, match="unknown keys"):
        RowSpec(Grown, carried={"added": "nowhere"})


def test_fresh_batch_columns_cover_every_field() -> None:
    firing_names = {f.name for f in fields(FiringRecord)}
    assert set(FIRING_PROPERTIES) == firing_names - {"run_id", "sparse_set"}  # $run_id; $uses
    # a term's index is its vector (sv_ref); an edge's writer is writer_ref, its firing the row's
    assert set(USE_COLUMNS) == {f.name for f in fields(SparseTerm)} - {"index"} | {"sv_ref"}
    edge_names = {f.name for f in fields(WriteEdgeRecord)}
    carried = {"firing", "writer_kind", "writer_layer", "writer_head"}
    assert set(EDGE_COLUMNS) == edge_names - carried | {"writer_ref"}
    query = statements.CREATE_FIRINGS
    refs = {"head_ref", "prompt_ref", "uses_from", "edges_from"}
    assert set(re.findall(r"\$firings\.(\w+)", query)) == set(FIRING_PROPERTIES) | refs
    assert set(re.findall(r"\$uses\.(\w+)", query)) == set(USE_COLUMNS)
    assert set(re.findall(r"\$edges\.(\w+)", query)) == set(EDGE_COLUMNS)

    edge = SAMPLES[WriteEdgeRecord]
    columns = firing_columns("run", "gpt", [_FIRING], [[edge]])
    assert columns["firings"]["uses_from"] == [0, 2]
    assert columns["firings"]["edges_from"] == [0, 1]
    assert columns["components"] == ["9.6", "mlp"]
    assert columns["singular_vectors"] == [[9, 6, 7], [9, 6, 3]]
    assert {name: values[0] for name, values in columns["edges"].items()} == {
        "writer_ref": 1,
        "side": "k",
        "weight": 0.5,
        "pos": 2,
        "role": "IO",
        "parts": [0.5],
        "writer_pos": None,
        "writer_role": None,
    }
    for name in FIRING_PROPERTIES:
        assert columns["firings"][name] == [getattr(_FIRING, name)]


def test_the_store_imports_neither_the_browser_nor_a_file_format() -> None:
    store = Path(__file__).resolve().parents[3] / "atlas" / "store"
    for module in sorted(store.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not name.startswith(("atlas.browser", "atlas.interchange")), (module, name)
