"""`report`: the published interventions' numbers against pandas, and the figures of a run."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from atlas.check.figures import firing_count_table, published_table
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


@pytest.mark.unit
def test_published_figure_numbers_match_a_direct_pandas_computation(published) -> None:
    """Experiment A, 8.6 → 9.9 at END: the bar is the mean of logit_diff_interv − logit_diff
    over the prompts where 9.9's END firing exists, per intervention type."""
    table = published_table(published)
    for kind, mode in (("A", "global"), ("B", "local")):
        rows = published[
            (published["experiment"] == "A")
            & (published["intervention_type"] == kind)
            & published["is_ablated"]
            & (published["edges"] == str([("(8, 6)", "(9, 9, 'end')")]))
        ]
        expected = rows["logit_diff_interv"].astype(float) - rows["logit_diff"].astype(float)
        bar = table[(table["label"] == "A: 8.6→9.9@end") & (table["mode"] == mode)]
        assert len(bar) == 1
        assert bar["count"].item() == len(rows) > 100
        assert bar["mean"].item() == pytest.approx(expected.mean(), abs=1e-9)
    # the paper's headline: removing 8.6's signal into 9.9 lowers the logit difference by ≈ 0.5
    global_bar = table[(table["label"] == "A: 8.6→9.9@end") & (table["mode"] == "global")]
    assert -0.7 < global_bar["mean"].item() < -0.3
    # every row of the file is counted once in some bar
    assert table["count"].sum() == int((published["is_ablated"] & ~published["is_boosting"]).sum())


@pytest.mark.unit
def test_firing_count_table_matches_pandas() -> None:
    counts = pd.DataFrame(
        [
            (1, 0, "END", "IO", 5, 4, 2.0),
            (1, 0, "S2", "S1", 3, 3, 1.0),
            (2, 1, "END", "IO", 9, 7, 3.0),
        ],
        columns=["layer", "head", "dest_role", "src_role", "firings", "prompts", "mean_n_svs"],
    )
    table = firing_count_table(counts, max_pairs=1)
    assert list(table.index) == ["1.0", "2.1"]
    assert list(table.columns) == ["END→IO", "(other pairs)"]
    assert table.loc["2.1", "END→IO"] == 7 and table.loc["1.0", "(other pairs)"] == 3


@pytest.mark.integration
def test_report_writes_every_figure_and_an_index(
    atlas_store: AtlasStore, toy_ioi_run: str, tmp_path, published
) -> None:
    written = write_report(atlas_store, toy_ioi_run, tmp_path, published=published)
    files = {figure.file for figure in written}
    assert {"sparse_set_sizes.png", "firing_counts.png", "circuit_3_1.png"} <= files
    assert "published_vs_atlas.png" in files
    index = (tmp_path / "index.md").read_text()
    for file in files:
        assert (tmp_path / file).stat().st_size > 10_000
        assert f"]({file})" in index


@pytest.mark.integration
def test_cli_report(runner, toy_ioi_run: str, tmp_path) -> None:
    from atlas.cli import main

    result = runner.invoke(
        main, ["report", "--run", toy_ioi_run, "--out", str(tmp_path), "--no-published",
               "--root", "3.1", "--root", "2.3:END:S2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "circuit_2_3_END_S2.png").is_file() and "index.md" in result.output
