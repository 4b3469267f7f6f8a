"""`report`'s numbers against a direct pandas computation (no server)."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from atlas.check.figures import firing_count_table, published_table
from atlas.check.report import published_interventions


@pytest.fixture(scope="module")
def published() -> pd.DataFrame:
    try:
        return published_interventions()
    except Exception as error:  # the reference folder lives beside the checkout
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            raise
        pytest.skip(f"published interventions not available: {error}")


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
