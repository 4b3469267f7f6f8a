"""Statement parameters ("rows") derived from the record dataclasses of ``ingest.records``.

A row holds every field of its record under the field's name, unless the record's
:class:`RowSpec` says otherwise:

- ``convert``: the value is transformed (a mapping to JSON text, a tuple to a plain list);
- ``flatten``: a nested record's fields are spliced in (an edge's firing key);
- ``carried``: the field is left out because the derived key it names holds it
  (``writer_kind``, ``writer_layer`` and ``writer_head`` are in ``writer_id``);
- ``derived``: keys computed from the whole record (``head_id``, the Browser's ``labels``).

A field that a record gains therefore reaches its row by itself, and leaving one out takes an
entry in ``carried``; tests/unit/atlas/test_rows.py checks both, and that every statement
reads every key of its rows. The run-scoped writers add the run's ``model_id`` when they
build a row (``build(record, model_id=...)``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from operator import attrgetter
from typing import Any

from atlas.store.schema import SCHEMA_VERSION, head_labels
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
    component_id,
)

Row = dict[str, Any]
RowBuilder = Callable[..., Row]


def to_json(value: object) -> str:
    """A JSON-able value as canonical JSON text (sorted keys; anything else via ``str``)."""
    return json.dumps(value, sort_keys=True, default=str)


@dataclass(frozen=True)
class RowSpec:
    """How a record becomes a row: the exceptions to "every field under its own name"."""

    record: type
    convert: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    flatten: Mapping[str, type] = field(default_factory=dict)
    carried: Mapping[str, str] = field(default_factory=dict)
    derived: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = {f.name for f in fields(self.record)}
        for what, given in [
            ("convert", self.convert),
            ("flatten", self.flatten),
            ("carried", self.carried),
        ]:
            unknown = set(given) - names
            if unknown:
                raise TypeError(f"{self.record.__name__} has no fields {sorted(unknown)} ({what})")
        if set(self.carried) & (set(self.convert) | set(self.flatten)):
            raise TypeError(f"{self.record.__name__}: a carried field is not in the row")
        missing = set(self.carried.values()) - set(self.derived)
        if missing:
            raise TypeError(f"{self.record.__name__}: carried into unknown keys {sorted(missing)}")
        if not all(is_dataclass(nested) for nested in self.flatten.values()):
            raise TypeError(f"{self.record.__name__}: only a dataclass field can be flattened")

    def paths(self) -> list[tuple[str, str]]:
        """(row key, attribute path) of every field value the row holds, in field order."""
        found = []
        for f in fields(self.record):
            if f.name in self.carried:
                continue
            nested = self.flatten.get(f.name)
            if nested is None:
                found.append((f.name, f.name))
            else:
                found += [(n.name, f"{f.name}.{n.name}") for n in fields(nested)]
        return found

    def keys(self) -> list[str]:
        """Every key of the rows built, context keys (``model_id``) aside."""
        return [key for key, _ in self.paths()] + list(self.derived)

    def builder(self) -> RowBuilder:
        """``build(record, **context)``: the record's row, plus the ``context`` keys given."""
        paths = self.paths()
        keys = tuple(key for key, _ in paths)
        getter = attrgetter(*(path for _, path in paths))
        values = getter if len(paths) > 1 else lambda record: (getter(record),)
        convert = tuple(self.convert.items())
        derived = tuple(self.derived.items())

        def build(record: Any, /, **context: Any) -> Row:
            row = dict(zip(keys, values(record), strict=True))
            for key, to_value in convert:
                row[key] = to_value(row[key])
            for key, of_record in derived:
                row[key] = of_record(record)
            if context:
                row.update(context)
            return row

        return build


def _optional_list(values: Any) -> list[Any] | None:
    return None if values is None else list(values)


def _head_id(record: Any) -> str:
    return component_id("head", record.layer, record.head)


def _browser_labels(component: ComponentRecord) -> list[str]:
    """The display labels the Browser style colours heads by (atlas/browser/): Layer9, ..."""
    if component.kind == "head" and component.layer is not None:
        return head_labels(component.layer, component.ioi_class)
    return []


_WRITER = {"writer_kind": "writer_id", "writer_layer": "writer_id", "writer_head": "writer_id"}
_writer_id = attrgetter("writer_id")
_SPARSE_TERM = RowSpec(SparseTerm)  # a firing's sparse set is a list of its rows
sparse_term_row = _SPARSE_TERM.builder()

SPECS: dict[type, RowSpec] = {
    spec.record: spec
    for spec in [
        RowSpec(ModelRecord),
        RowSpec(
            RunRecord,
            convert={"params": to_json, "dataset": to_json, "versions": to_json},
            derived={"schema_version": lambda _: SCHEMA_VERSION},
        ),
        RowSpec(ComponentRecord, derived={"id": attrgetter("id"), "labels": _browser_labels}),
        RowSpec(SingularVectorRecord, derived={"head_id": _head_id}),
        RowSpec(AlignedRecord, convert={"a": list, "b": list}),
        RowSpec(PromptRecord, convert={"roles": to_json, "tokens": list}),
        _SPARSE_TERM,
        RowSpec(
            FiringRecord,
            convert={
                "sparse_set": lambda terms: [sparse_term_row(term) for term in terms],
                "sparse_dest": _optional_list,
                "sparse_source": _optional_list,
            },
            derived={"head_id": _head_id},
        ),
        RowSpec(
            WriteEdgeRecord,
            flatten={"firing": FiringKey},
            convert={"parts": lambda parts: list(parts) or None},  # hand-built edges: none
            carried=_WRITER,
            derived={"writer_id": _writer_id},
        ),
        RowSpec(
            CommunicatesRecord,
            carried={**_WRITER, "layer": "head_id", "head": "head_id"},
            derived={"writer_id": _writer_id, "head_id": _head_id},
        ),
        RowSpec(
            ImportedCommunicatesRecord,
            convert={"source": dict},
            carried={
                **_WRITER,
                "target_kind": "head_id",
                "target_layer": "head_id",
                "target_head": "head_id",
            },
            derived={"writer_id": _writer_id, "head_id": attrgetter("target_id")},
        ),
        RowSpec(BatchDone),
    ]
}

model_row = SPECS[ModelRecord].builder()
run_row = SPECS[RunRecord].builder()
component_row = SPECS[ComponentRecord].builder()
singular_vector_row = SPECS[SingularVectorRecord].builder()
aligned_row = SPECS[AlignedRecord].builder()
prompt_row = SPECS[PromptRecord].builder()
firing_row = SPECS[FiringRecord].builder()
edge_row = SPECS[WriteEdgeRecord].builder()
communicates_row = SPECS[CommunicatesRecord].builder()
imported_communicates_row = SPECS[ImportedCommunicatesRecord].builder()
marker_row = SPECS[BatchDone].builder()
