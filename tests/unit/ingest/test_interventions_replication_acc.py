"""`replicate --method acc`'s table on a tiny random GPT-2: every published value, ours beside."""

from __future__ import annotations

import math

from ingest.interventions.replication_acc import ACC_PAPER, _names, replicate_acc
from ingest.models.loading import random_gpt2


def test_the_acc_table_has_every_published_value_beside_ours() -> None:
    model = random_gpt2(seed=1, n_layers=2, n_heads=2, d_model=32)
    table = replicate_acc(model, n_prompts=6, batch_size=3)
    assert list(table.columns) == ["quantity", "paper", "ours", "difference"]
    assert list(table["quantity"]) == [value.quantity for value in ACC_PAPER.values()]
    assert list(table["paper"]) == [value.paper for value in ACC_PAPER.values()]
    by_quantity = dict(zip(table["quantity"], table["ours"], strict=True))
    # the tiny model has no head 9.9: nothing feeds the root through it, no |S| mode
    assert by_quantity[ACC_PAPER["root_9.9"].quantity] == 0
    assert math.isnan(by_quantity[ACC_PAPER["mode_9.9"].quantity])
    assert by_quantity[ACC_PAPER["nodes"].quantity] > 0


def test_writer_lists_compare_by_name_without_roles() -> None:
    assert _names("4.11 (S1+1, S1), 3.7, 2.2") == {"4.11", "3.7", "2.2"}
    assert _names("mlp0 (IO)") == {"mlp0"}
