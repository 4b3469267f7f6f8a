"""Record dataclasses as Arrow tables and back, with columns derived from the records' fields.

The shard format (:mod:`atlas.interchange.shards`) and the bulk importer's CSV headers
(:mod:`atlas.scale.bulk`) take their columns from here, so a field a record gains reaches both
by itself. A :class:`RecordTable` has one column per field of its record, typed from the field's
annotation, except:

- ``context`` fields, the same for every row of a file (a run's ``run_id``, a model's
  ``model_id``): left out, and given back when the rows are read;
- a field that is itself a record (an edge's :class:`~ingest.records.types.FiringKey`): its
  fields are spliced in under their own names (its context fields left out as well).

Types: ``int``, ``float``, ``str`` and ``bool`` become int64, float64, string and bool; a
``Literal`` of strings a string; ``X | None`` the type of ``X`` (Arrow columns are nullable);
``Sequence[X]`` and ``tuple[X, ...]`` a list of ``X`` (read back as a tuple); a record a struct
of its fields; a ``Mapping`` canonical JSON text (read back as a dict). Any other annotation
raises ``TypeError`` when the table is defined, so a field of a new kind cannot slip through.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from itertools import repeat
from typing import Any

import pyarrow as pa

_SCALARS: dict[Any, pa.DataType] = {
    int: pa.int64(),
    float: pa.float64(),
    str: pa.string(),
    bool: pa.bool_(),
}


@dataclass(frozen=True)
class ColumnType:
    """How one field's values are stored: the Arrow type, and the record's value ⇄ a column
    value (``None`` stays ``None``)."""

    arrow: pa.DataType
    to_column: Callable[[Any], Any] | None = None  # None: the value as it is
    from_column: Callable[[Any], Any] | None = None
    element: ColumnType | None = None  # a list's elements
    record: type | None = None  # a struct's record


def _strip_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint


def column_type(hint: Any) -> ColumnType:
    """The column type of a field annotated ``hint`` (module docstring); TypeError if none."""
    hint = _strip_optional(hint)
    if hint in _SCALARS:
        return ColumnType(_SCALARS[hint])
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal and args and all(isinstance(a, str) for a in args):
        return ColumnType(pa.string())
    if origin in (Mapping, dict):
        return ColumnType(pa.string(), _canonical_json, json.loads)
    if origin in (Sequence, list) or (origin is tuple and args):
        elements = {_strip_optional(a) for a in args if a is not Ellipsis}
        if len(elements) != 1:
            raise TypeError(f"no column type for {hint!r}: a list of one element type")
        element = column_type(elements.pop())
        return ColumnType(pa.list_(element.arrow), list, tuple, element=element)
    if isinstance(hint, type) and is_dataclass(hint):
        names = field_types(hint)
        return ColumnType(pa.struct([(name, t.arrow) for name, t in names.items()]), record=hint)
    raise TypeError(f"no column type for {hint!r}")


def _canonical_json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), sort_keys=True)


def field_types(record: type) -> dict[str, ColumnType]:
    """Every field of ``record`` with its column type, in field order."""
    hints = typing.get_type_hints(record)
    return {f.name: column_type(hints[f.name]) for f in fields(record)}


@dataclass(frozen=True)
class _Column:
    name: str
    type: ColumnType
    nested: str | None = None  # the record field this column was spliced from


class RecordTable:
    """The Arrow table of one record type, ``context`` fields left out (module docstring)."""

    def __init__(self, record: type, context: Sequence[str] = ()) -> None:
        self.record = record
        self.context = tuple(context)
        self._nested: dict[str, type] = {}
        columns: list[_Column] = []
        for name, kind in field_types(record).items():
            if name in self.context:
                continue
            if kind.record is not None:  # a record inside the record: its fields spliced in
                self._nested[name] = kind.record
                columns += [
                    _Column(inner, inner_kind, nested=name)
                    for inner, inner_kind in field_types(kind.record).items()
                    if inner not in self.context
                ]
            else:
                columns.append(_Column(name, kind))
        names = [c.name for c in columns]
        if len(set(names)) != len(names):
            raise TypeError(f"{record.__name__}: spliced fields clash with its own: {names}")
        missing = (
            set(self.context)
            - {f.name for f in fields(record)}
            - {f.name for nested in self._nested.values() for f in fields(nested)}
        )
        if missing:
            raise TypeError(f"{record.__name__} has no context fields {sorted(missing)}")
        self.columns = tuple(columns)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def schema(self, leading: Sequence[tuple[str, pa.DataType]] = ()) -> pa.Schema:
        """The table's schema, after the ``leading`` columns a file adds (a shard's batch)."""
        return pa.schema([*leading, *((c.name, c.type.arrow) for c in self.columns)])

    def arrays(self, records: Sequence[Any]) -> list[pa.Array]:
        """One Arrow array per column of ``records``."""
        out = []
        for column in self.columns:
            if column.nested is None:
                values = [getattr(r, column.name) for r in records]
            else:
                values = [getattr(getattr(r, column.nested), column.name) for r in records]
            out.append(_to_array(values, column.type))
        return out

    def to_table(
        self, records: Sequence[Any], leading: Mapping[str, tuple[pa.DataType, Any]] | None = None
    ) -> pa.Table:
        """``records`` as a table; ``leading``: columns of one value each (name → type, value)."""
        leading = leading or {}
        first = [pa.array([value] * len(records), kind) for kind, value in leading.values()]
        schema = self.schema([(name, kind) for name, (kind, _) in leading.items()])
        return pa.Table.from_arrays([*first, *self.arrays(records)], schema=schema)

    def records(self, table: pa.Table, **context: Any) -> list[Any]:
        """The records of ``table`` (its other columns ignored), ``context`` fields given."""
        if set(context) != set(self.context):
            raise TypeError(f"{self.record.__name__} rows need context {list(self.context)}")
        if not table.num_rows:
            return []
        values: dict[str, Iterable[Any]] = {
            c.name: _from_column(table.column(c.name), c.type) for c in self.columns
        }
        values.update((name, repeat(value)) for name, value in context.items())
        for name, nested in self._nested.items():
            inner = [values[f.name] for f in fields(nested)]
            values[name] = [nested(*row) for row in zip(*inner, strict=False)]
        ordered = [values[f.name] for f in fields(self.record)]
        return [self.record(*row) for row in zip(*ordered, strict=False)]


def _to_array(values: list[Any], kind: ColumnType) -> pa.Array:
    element = kind.element
    if element is not None and element.record is not None:  # a list of records: a struct list
        offsets = [0]
        items: list[Any] = []
        for value in values:
            items += value or ()
            offsets.append(len(items))
        struct = pa.StructArray.from_arrays(
            [
                _to_array([getattr(item, name) for item in items], inner)
                for name, inner in field_types(element.record).items()
            ],
            fields=list(element.arrow),
        )
        mask = pa.array([value is None for value in values])
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), struct, mask=mask)
    convert = kind.to_column
    if convert is not None:
        values = [None if value is None else convert(value) for value in values]
    return pa.array(values, kind.arrow)


def _from_column(column: pa.ChunkedArray, kind: ColumnType) -> Iterable[Any]:
    element = kind.element
    if element is None:
        python = column.to_pylist()
        convert = kind.from_column
        if convert is None:
            return python
        return [None if value is None else convert(value) for value in python]
    array = column.combine_chunks()
    offsets = array.offsets.to_pylist()
    values = array.values
    if element.record is not None:
        inner = [
            _from_column(pa.chunked_array([values.field(i)]), t)
            for i, t in enumerate(field_types(element.record).values())
        ]
        items: list[Any] = [element.record(*row) for row in zip(*inner, strict=True)]
    else:
        items = list(_from_column(pa.chunked_array([values]), element))
    valid = array.is_valid().to_pylist() if array.null_count else repeat(True)
    return [
        tuple(items[offsets[i] : offsets[i + 1]]) if ok else None
        for i, ok in zip(range(len(offsets) - 1), valid, strict=False)
    ]


__all__ = ["ColumnType", "RecordTable", "column_type", "field_types"]
