"""Rewritten templates give the rows of their previous formulation, on the shared toy-ioi run.

The previous Cypher of each rewritten template is kept here as the independent computation; the
templates' own tests (tests/integration/atlas/test_ask_lookups.py) check known answers.
"""

from __future__ import annotations

from typing import Any

import pytest

from atlas.store.store import AtlasStore
from queries.templates import load_template

# paths and alternative_routes before the writer-layer pruning: the same quantified path pattern
# without `(w.layer > $from_layer OR w = a)`.
PREVIOUS_ROUTES = """
MATCH (r:Run {id: $run_id})
WITH r.model_id AS model, toString($from_layer) + '.' + toString($from_head) AS from_id,
     toString($to_layer) + '.' + toString($to_head) AS to_id
MATCH (a:Component {model_id: model, id: from_id})
MATCH (b:Component {model_id: model, id: to_id})
MATCH p = (a) (()-[c:COMMUNICATES]->(x:Component)
               WHERE c.run_id = $run_id AND c.n_prompts >= $min_prompts
                 AND (x.layer < $to_layer OR x = b)){1,6} (b)
WHERE size(c) <= $max_hops
  AND (NOT $consistent
       OR all(i IN range(0, size(c) - 2) WHERE c[i].side = 'k' OR c[i + 1].role = c[i].role))
"""


def previous(name: str) -> str:
    """The template's text with its route-finding part replaced by the previous one."""
    cypher = load_template(name).cypher
    tail = cypher[cypher.index("WHERE size(c) <= $max_hops") :]
    tail = tail[tail.index("\nWITH ") :]
    return PREVIOUS_ROUTES + tail


def rows(store: AtlasStore, query: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    records = store.driver.execute_query(query, parameters, database_=store.database).records
    return [record.data() for record in records]


@pytest.mark.parametrize("name", ["paths", "alternative_routes"])
@pytest.mark.parametrize(
    ("ends", "extra"),
    [
        ((0, 2, 3, 1), {"min_prompts": 1}),
        ((1, 0, 3, 1), {"min_prompts": 5, "consistent": False}),
        ((0, 2, 3, 1), {"min_prompts": 1, "max_hops": 2}),
    ],
)
def test_routes_equal_the_previous_formulation(
    atlas_store: AtlasStore, toy_ioi_run: str, name: str, ends: tuple[int, ...], extra: dict
) -> None:
    template = load_template(name)
    keys = ("from_layer", "from_head", "to_layer", "to_head")
    given = {**dict(zip(keys, ends, strict=True)), **extra}
    if "limit" in {p.name for p in template.parameters}:
        given["limit"] = 100_000
    bound = template.bind({**given, "run_id": toy_ioi_run})
    now = atlas_store.read_template(name, run_id=toy_ioi_run, **given)
    assert len(now) > 3
    assert now == rows(atlas_store, previous(name), bound)
