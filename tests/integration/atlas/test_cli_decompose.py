"""`decompose` run in-process on the toy model: its JSON, CSV and table output (no database)."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from atlas.cli import main
from ingest.decomposition.activations import model_qk_svd
from ingest.decomposition.sad import FiringRule
from ingest.models.loading import LoadedModel
from ingest.pipeline import process_batch
from ingest.prompts.ioi import generate_prompts

ARGS = ["decompose", "--model", "toy-ioi", "--n-prompts", "24", "--seed", "7", "--batch-size", "10"]


def test_json_summary_matches_a_direct_decomposition(toy_model: LoadedModel) -> None:
    result = CliRunner().invoke(main, [*ARGS, "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == toy_model.n_layers * toy_model.n_heads
    # The same prompts in one batch, through the engine directly.
    prompts = generate_prompts(24, "mixed", seed=7)
    direct = process_batch(toy_model, model_qk_svd(toy_model.bridge), prompts, FiringRule())
    heads = zip(direct.firings.layer.tolist(), direct.firings.head.tolist(), strict=True)
    sizes: dict[tuple[int, int], list[int]] = {}
    for head, size in zip(heads, direct.firings.n_svs.tolist(), strict=True):
        sizes.setdefault(head, []).append(size)
    assert sizes
    for row in rows:
        mine = sizes.get((row["layer"], row["head_index"]), [])
        assert row["firings"] == len(mine)
        if mine:
            assert row["mean_svs"] == pytest.approx(sum(mine) / len(mine))
            top_end = row["top_source_roles"].get("END")
            if top_end is not None:
                assert 0 < top_end["count"] <= len(mine)


def test_csv_and_table_formats() -> None:
    csv = CliRunner().invoke(main, [*ARGS, "--format", "csv"])
    assert csv.exit_code == 0, csv.output
    table = pd.read_csv(io.StringIO(csv.stdout))
    assert {"head", "firings", "firing_rate", "mean_svs", "median_svs"} <= set(table.columns)
    assert table["firings"].sum() > 0
    text = CliRunner().invoke(main, ARGS)
    assert text.exit_code == 0, text.output
    assert "firings" in text.stdout and "top_source_roles" in text.stdout
    assert "mean IO−S logit difference" in text.stdout
