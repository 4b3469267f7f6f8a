"""`replicate`: the comparison table's shape on random GPT-2-shaped weights (numbers differ)."""

from __future__ import annotations

import pytest

from ingest.interventions.replication import PAPER, PUBLISHED_CIRCUIT_SCORES, replicate
from ingest.models.loading import LoadedModel


def test_replicate_table_has_every_published_number(random_gpt2_model: LoadedModel) -> None:
    table = replicate(random_gpt2_model, n_prompts=4, batch_size=4, n_controls=1)
    assert list(table.columns) == ["quantity", "paper", "ours", "difference"]
    assert list(table["quantity"]) == [value.quantity for value in PAPER.values()]
    assert table.loc[1, "paper"] == 201 and table.loc[4, "paper"] == 12.5
    assert 0 <= table.loc[1, "ours"] <= 4


def test_replicate_scores_the_name_movers_circuit_against_wang_et_al(
    random_gpt2_model: LoadedModel,
) -> None:
    table = replicate(random_gpt2_model, n_prompts=4, batch_size=4, n_controls=1)
    rows = table.set_index("quantity")
    heads = rows.loc[PAPER["circuit_heads"].quantity]
    assert heads["paper"] == 33 and isinstance(heads["ours"], int) and heads["ours"] >= 0
    for key, published in zip(
        ("circuit_precision", "circuit_recall", "circuit_f1"), PUBLISHED_CIRCUIT_SCORES,
        strict=True,
    ):  # fmt: skip
        row = rows.loc[PAPER[key].quantity]
        assert row["paper"] == published
        assert 0.0 <= row["ours"] <= 1.0
        assert row["difference"] == pytest.approx(row["ours"] - published)
