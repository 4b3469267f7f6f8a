"""`circuit-atlas report` on a run in the test server: every figure and an index."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pandas as pd
import pytest

from atlas.check.patching import PatchConfig, patch_run
from atlas.check.report import published_interventions, write_report
from atlas.store.store import AtlasStore
from ingest.models.loading import LoadedModel
from tests.fixtures.runs import scratch_toy_run


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
    written = write_report(atlas_store, toy_ioi_run, tmp_path, published=published).figures
    files = {figure.file for figure in written}
    assert {"sparse_set_sizes.png", "firing_counts.png", "circuit_3_1.png"} <= files
    # the authors' interventions are GPT-2 small's: not set beside a toy-ioi run (half empty)
    assert "published_vs_atlas.png" not in files
    index = (tmp_path / "index.md").read_text()
    for file in files:
        assert (tmp_path / file).stat().st_size > 10_000
        assert f"]({file})" in index


def test_report_draws_the_logit_circuit_of_an_acc_run(
    atlas_store: AtlasStore, toy_ioi_acc_run: str, tmp_path
) -> None:
    report = write_report(atlas_store, toy_ioi_acc_run, tmp_path, roots=["logit"])
    [circuit] = [figure for figure in report.figures if figure.file == "circuit_logit.png"]
    assert circuit.title == "Circuit of the IO−S logit (every seed)"
    assert (tmp_path / "circuit_logit.png").stat().st_size > 10_000


def test_cli_report(runner, toy_ioi_run: str, tmp_path) -> None:
    from atlas.cli import main

    result = runner.invoke(
        main, ["report", "--run", toy_ioi_run, "--out", str(tmp_path), "--no-published",
               "--root", "3.1", "--root", "2.3:END:S2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "circuit_2_3_END_S2.png").is_file() and "index.md" in result.output


@pytest.fixture(scope="module")
def small_run(atlas_store: AtlasStore, toy_model: LoadedModel) -> Iterator[str]:
    with scratch_toy_run(atlas_store, toy_model, "report") as run_id:
        yield run_id


def test_report_draws_the_patching_curve_once_patch_ran(
    atlas_store: AtlasStore, toy_model: LoadedModel, small_run: str, tmp_path
) -> None:
    before = write_report(atlas_store, small_run, tmp_path / "before", roots=["3.1"])
    assert not [f for f in before.figures if f.file.startswith("patching_")]
    [line] = before.skipped
    assert f"circuit-atlas patch --run {small_run}" in line
    assert line in (tmp_path / "before" / "index.md").read_text()

    config = PatchConfig(method="eap-ig", n_prompts=8, ig_steps=1, batch_size=8)
    patch_run(atlas_store, toy_model, small_run, config, show_progress=False)
    after = write_report(atlas_store, small_run, tmp_path / "after", roots=["3.1"])
    assert after.skipped == []
    files = [f.file for f in after.figures]
    assert len(files) == len(before.figures) + 1
    assert "patching_3_1_eap-ig.png" in files
    assert (tmp_path / "after" / "patching_3_1_eap-ig.png").stat().st_size > 10_000
    assert "](patching_3_1_eap-ig.png)" in (tmp_path / "after" / "index.md").read_text()
