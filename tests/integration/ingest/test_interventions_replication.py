"""`replicate`: the comparison table's shape on random GPT-2-shaped weights (numbers differ)."""

from __future__ import annotations

from ingest.interventions.replication import PAPER, replicate
from ingest.models.loading import LoadedModel


def test_replicate_table_has_every_published_number(random_gpt2_model: LoadedModel) -> None:
    table = replicate(random_gpt2_model, n_prompts=4, batch_size=4, n_controls=1)
    assert list(table.columns) == ["quantity", "paper", "ours", "difference"]
    assert list(table["quantity"]) == [value.quantity for value in PAPER.values()]
    assert table.loc[1, "paper"] == 201 and table.loc[4, "paper"] == 12.5
    assert 0 <= table.loc[1, "ours"] <= 4
