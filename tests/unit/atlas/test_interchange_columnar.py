"""Record dataclasses ⇄ Arrow tables: columns derived from the fields, values round-trip."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import pyarrow as pa
import pytest

from atlas.interchange.columnar import RecordTable, column_type


@dataclass(frozen=True)
class Inner:
    run: str
    a: int
    b: float


@dataclass(frozen=True)
class Outer:
    run: str
    key: Inner
    kind: Literal["x", "y"]
    count: int | None
    names: Sequence[str]
    triple: tuple[int, int, int]
    roles: Mapping[str, int]
    items: Sequence[Inner] = ()
    maybe: Sequence[int] | None = None
    flag: bool = False


def test_columns_are_the_fields_with_nested_records_spliced_and_context_left_out() -> None:
    table = RecordTable(Outer, context=("run",))
    assert table.names == [
        "a", "b", "kind", "count", "names", "triple", "roles", "items", "maybe", "flag"
    ]  # fmt: skip
    schema = table.schema([("batch", pa.int64())])
    assert schema.field("batch").type == pa.int64()
    assert schema.field("count").type == pa.int64()
    assert schema.field("kind").type == pa.string()
    assert schema.field("roles").type == pa.string()  # JSON text
    assert schema.field("triple").type == pa.list_(pa.int64())
    assert schema.field("items").type == pa.list_(
        pa.struct([("run", pa.string()), ("a", pa.int64()), ("b", pa.float64())])
    )


def test_records_round_trip_none_and_empty_lists_apart() -> None:
    table = RecordTable(Outer, context=("run",))
    records = [
        Outer("r", Inner("r", 1, 0.1), "x", 3, ("a", "b"), (1, 2, 3), {"IO": 2, "S1": 4},
              (Inner("z", 5, 1e-300), Inner("w", -1, 2.5)), (), True),
        Outer("r", Inner("r", 2, -0.0), "y", None, (), (0, 0, 0), {}, (), None),
    ]  # fmt: skip
    back = table.records(table.to_table(records), run="r")
    assert back == records
    assert back[0].maybe == () and back[1].maybe is None


def test_a_type_without_a_column_is_refused() -> None:
    @dataclass(frozen=True)
    class Odd:
        when: datetime

    with pytest.raises(TypeError, match="no column type"):
        RecordTable(Odd)
    with pytest.raises(TypeError, match="one element type"):
        column_type(tuple[int, str])


def test_unknown_context_fields_are_refused() -> None:
    with pytest.raises(TypeError, match="context"):
        RecordTable(Inner, context=("model_id",))
