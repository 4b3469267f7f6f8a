"""Rewritten templates give the rows of their previous formulation, on the shared toy-ioi run.

The previous Cypher of each rewritten template is kept in tests/fixtures as the independent
computation; the templates' own tests (tests/integration/atlas/test_ask_lookups.py) check known
answers.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from atlas.store.store import AtlasStore
from queries.templates import load_template

FIXTURES = Path(__file__).parents[2] / "fixtures"

# (from_layer, from_head, to_layer, to_head): the name mover 3.1 from a layer-0 and a layer-1
# head, a layer-2 reader, one single hop, and a pair with no route (the reader is upstream).
ENDS = [(0, 2, 3, 1), (1, 0, 3, 1), (0, 0, 2, 3), (2, 3, 3, 1), (3, 1, 0, 2)]


def rows(store: AtlasStore, query: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    records = store.driver.execute_query(query, parameters, database_=store.database).records
    return [record.data() for record in records]


@pytest.mark.parametrize("name", ["paths", "alternative_routes"])
def test_routes_equal_the_single_pattern_formulation(
    atlas_store: AtlasStore, toy_ioi_run: str, name: str
) -> None:
    """Hop counts 1..4, two support floors, with and without role consistency, four limits, on
    five (source, target) pairs: the same rows in the same order as the template's previous
    formulation, one quantified path pattern."""
    template = load_template(name)
    reference = (FIXTURES / f"{name}_reference.cypher").read_text()
    keys = ("from_layer", "from_head", "to_layer", "to_head")
    compared = routed = 0
    limits = itertools.cycle([1, 7, 20, 100_000])  # paths: each limit on a quarter of the cases
    # Every route of a low floor without role consistency would be slow in the reference.
    for ends, max_hops, (min_prompts, consistent) in itertools.product(
        ENDS, range(1, 5), [(1, True), (8, True), (8, False)]
    ):
        given = {
            **dict(zip(keys, ends, strict=True)),
            "max_hops": max_hops, "min_prompts": min_prompts, "consistent": consistent,
        }  # fmt: skip
        if name == "paths":
            given["limit"] = next(limits)
        expected = rows(atlas_store, reference, template.bind({**given, "run_id": toy_ioi_run}))
        assert atlas_store.read_template(name, run_id=toy_ioi_run, **given) == expected, given
        compared += 1
        routed += len(expected) > 3
    # Most combinations have routes to compare (not only empty answers).
    assert routed > compared // 2, (routed, compared)
