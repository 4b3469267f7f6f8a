"""Rewritten templates give the rows of their previous formulation.

The previous Cypher of each rewritten template is kept in tests/fixtures as the independent
computation; the templates' own tests (tests/integration/atlas/test_ask_lookups.py) check known
answers.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atlas.store.store import AtlasStore
from ingest.records.types import CommunicatesRecord, ModelRecord, RunRecord
from queries.templates import load_template

FIXTURES = Path(__file__).parents[2] / "fixtures"

# (from_layer, from_head, to_layer, to_head): the name mover 3.1 from a layer-0 and a layer-1
# head, a layer-2 reader, one single hop, and a pair with no route (the reader is upstream).
ENDS = [(0, 2, 3, 1), (1, 0, 3, 1), (0, 0, 2, 3), (2, 3, 3, 1), (3, 1, 0, 2)]

DEEP_LAYERS, DEEP_HEADS = 8, 2


def rows(store: AtlasStore, query: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
    records = store.driver.execute_query(query, parameters, database_=store.database).records
    return [record.data() for record in records]


def compare_with_reference(
    store: AtlasStore,
    run_id: str,
    name: str,
    ends: list[tuple[int, int, int, int]],
    max_hops: int,
    cases: list[tuple[int, bool]],
) -> list[list[dict[str, Any]]]:
    """Assert that the template gives the reference's rows, in its order, for every pair of
    heads, hop count up to ``max_hops`` and (support floor, role consistency) case, with four
    limits spread over them for `paths`; return the reference's answers."""
    template = load_template(name)
    reference = (FIXTURES / f"{name}_reference.cypher").read_text()
    keys = ("from_layer", "from_head", "to_layer", "to_head")
    limits = itertools.cycle([1, 7, 20, 100_000])
    answers = []
    for pair, hops, (min_prompts, consistent) in itertools.product(
        ends, range(1, max_hops + 1), cases
    ):
        given = {
            **dict(zip(keys, pair, strict=True)),
            "max_hops": hops, "min_prompts": min_prompts, "consistent": consistent,
        }  # fmt: skip
        if name == "paths":
            given["limit"] = next(limits)
        expected = rows(store, reference, template.bind({**given, "run_id": run_id}))
        assert store.read_template(name, run_id=run_id, **given) == expected, given
        answers.append(expected)
    return answers


@pytest.mark.parametrize("name", ["paths", "alternative_routes"])
def test_routes_equal_the_single_pattern_formulation(
    atlas_store: AtlasStore, toy_ioi_run: str, name: str
) -> None:
    """On the shared toy-ioi run: hop counts 1..4, two support floors, with and without role
    consistency, on five pairs of heads."""
    # Every route of a low floor without role consistency would be slow in the reference.
    cases = [(1, True), (8, True), (8, False)]
    answers = compare_with_reference(atlas_store, toy_ioi_run, name, ENDS, 4, cases)
    # Most combinations have routes to compare (not only empty answers).
    assert sum(len(answer) > 3 for answer in answers) > len(answers) // 2


@pytest.fixture(scope="module")
def deep_run(atlas_store: AtlasStore) -> Iterator[str]:
    """A run of random COMMUNICATES on an 8-layer model (toy-ioi has 4 layers: no route there
    is longer than 3 hops): every head pair of increasing layers with probability 0.6, each with
    1–3 parallel relationships of distinct side and role, supports 1–6 (seeded)."""
    model_id = "routes-test-model"
    run_id = f"test-deep-routes-{uuid.uuid4().hex[:8]}"
    atlas_store.write_model(
        ModelRecord(id=model_id, n_layers=DEEP_LAYERS, n_heads=DEEP_HEADS, d_model=8, d_head=4)
    )
    atlas_store.create_run(
        RunRecord(
            id=run_id, model_id=model_id, model_revision=None, method="sad", params={},
            dataset={}, versions={}, git_commit=None,
        )
    )  # fmt: skip
    rng = random.Random(0)
    heads = [(layer, head) for layer in range(DEEP_LAYERS) for head in range(DEEP_HEADS)]
    kinds = [(side, role) for side in ("q", "k") for role in ("END", "S2", "IO")]
    communicates = [
        CommunicatesRecord(
            run_id=run_id,
            writer_layer=writer[0],
            writer_head=writer[1],
            layer=reader[0],
            head=reader[1],
            side=side,
            role=role,
            n_prompts=rng.randint(1, 6),
            mean_weight=round(rng.random(), 3),
        )
        for writer, reader in itertools.product(heads, heads)
        if writer[0] < reader[0] and rng.random() < 0.6
        for side, role in rng.sample(kinds, rng.randint(1, 3))
    ]
    atlas_store.write_communicates(communicates)
    yield run_id
    atlas_store.delete_run(run_id)


@pytest.mark.parametrize("name", ["paths", "alternative_routes"])
def test_long_routes_equal_the_single_pattern_formulation(
    atlas_store: AtlasStore, deep_run: str, name: str
) -> None:
    """Hop counts 1..6, so the branches of 4–6 hops (joined on their middle head) are compared
    too."""
    ends = [(0, 0, 7, 1), (0, 1, 6, 0), (1, 0, 5, 1)]
    cases = [(1, True), (3, True), (3, False)]
    answers = compare_with_reference(atlas_store, deep_run, name, ends, 6, cases)
    if name == "paths":  # routes of every length were found, so every branch was compared
        assert {row["hops"] for answer in answers for row in answer} == {1, 2, 3, 4, 5, 6}
