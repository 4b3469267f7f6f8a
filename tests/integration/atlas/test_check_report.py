"""`circuit-atlas report` on a run in the test server: every figure and an index."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from atlas.check.report import published_interventions, write_report
from atlas.store.store import AtlasStore


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    try:
        return published_interventions()
    except Exception as error:  # the reference folder lives beside the checkout
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            raise
        pytest.skip(f"published interventions not available: {error}")


def test_report_writes_every_figure_and_an_index(
    atlas_store: AtlasStore, toy_ioi_run: str, tmp_path, published
) -> None:
    written = write_report(atlas_store, toy_ioi_run, tmp_path, published=published)
    files = {figure.file for figure in written}
    assert {"sparse_set_sizes.png", "firing_counts.png", "circuit_3_1.png"} <= files
    # the authors' interventions are GPT-2 small's: not set beside a toy-ioi run (half empty)
    assert "published_vs_atlas.png" not in files
    index = (tmp_path / "index.md").read_text()
    for file in files:
        assert (tmp_path / file).stat().st_size > 10_000
        assert f"]({file})" in index


def test_cli_report(runner, toy_ioi_run: str, tmp_path) -> None:
    from atlas.cli import main

    result = runner.invoke(
        main, ["report", "--run", toy_ioi_run, "--out", str(tmp_path), "--no-published",
               "--root", "3.1", "--root", "2.3:END:S2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "circuit_2_3_END_S2.png").is_file() and "index.md" in result.output
