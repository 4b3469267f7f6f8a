"""`replicate`: the comparison table's shape on random GPT-2-shaped weights (numbers differ)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from ingest.interventions.replication import PAPER, replicate
from ingest.models.loading import LoadedModel


@pytest.mark.integration
def test_replicate_table_has_every_published_number(random_gpt2_model: LoadedModel) -> None:
    table = replicate(random_gpt2_model, n_prompts=4, batch_size=4, n_controls=1)
    assert list(table.columns) == ["quantity", "paper", "ours", "difference"]
    assert list(table["quantity"]) == [value.quantity for value in PAPER.values()]
    assert table.loc[1, "paper"] == 201 and table.loc[4, "paper"] == 12.5
    assert 0 <= table.loc[1, "ours"] <= 4


@pytest.mark.unit
def test_replicate_without_weights_says_what_it_needs(tmp_path) -> None:
    from atlas.cli import main

    env = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = CliRunner(env=env).invoke(main, ["replicate", "--model", "gpt2"])
    assert result.exit_code != 0
    assert "--model-dir" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
