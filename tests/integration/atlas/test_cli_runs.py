"""The `db` and `runs` commands against the real server, configured through NEO4J_* only."""

from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner

from atlas.cli import main
from atlas.store.store import AtlasStore
from ingest.records.types import RunRecord


def test_db_init_reports_the_schema_version(runner: CliRunner) -> None:
    result = runner.invoke(main, ["db", "init"])
    assert result.exit_code == 0, result.output
    assert "Schema version" in result.output


def test_runs_list_show_delete(
    runner: CliRunner, atlas_store: AtlasStore, atlas_run: RunRecord
) -> None:
    listed = runner.invoke(main, ["runs", "list"])
    assert atlas_run.id in listed.output
    shown = runner.invoke(main, ["runs", "show", atlas_run.id])
    assert shown.exit_code == 0 and "running" in shown.output
    deleted = runner.invoke(main, ["runs", "delete", atlas_run.id, "--yes"])
    assert deleted.exit_code == 0, deleted.output
    assert atlas_store.show_run(atlas_run.id) is None
    missing = runner.invoke(main, ["runs", "show", atlas_run.id])
    assert missing.exit_code == 1 and "not in the atlas" in missing.output


def test_runs_list_and_show_as_json_and_csv(runner: CliRunner, atlas_run: RunRecord) -> None:
    listed = json.loads(runner.invoke(main, ["runs", "list", "--format", "json"]).output)
    mine = next(row for row in listed if row["id"] == atlas_run.id)
    assert mine["status"] == "running" and mine["prompts"] == 0
    as_csv = runner.invoke(main, ["runs", "list", "--format", "csv"]).output
    assert atlas_run.id in [row["id"] for row in csv.DictReader(io.StringIO(as_csv))]

    shown = runner.invoke(main, ["runs", "show", atlas_run.id, "--format", "json"])
    assert shown.exit_code == 0, shown.output
    summary = json.loads(shown.output)
    assert summary["run"]["id"] == atlas_run.id
    # Stored as JSON text, printed as nested objects.
    assert summary["run"]["params"] == atlas_run.params
    assert summary["run"]["versions"] == atlas_run.versions
    assert summary["counts"] == {
        "prompts": 0, "firings": 0, "sparse_set_uses": 0, "writes": 0, "communicates": 0,
        "validations": 0,
    }  # fmt: skip
    row = runner.invoke(main, ["runs", "show", atlas_run.id, "--format", "csv"]).output
    (parsed,) = csv.DictReader(io.StringIO(row))
    assert parsed["id"] == atlas_run.id and json.loads(parsed["params"]) == atlas_run.params


def test_runs_show_counts_a_real_run(
    runner: CliRunner, atlas_store: AtlasStore, toy_ioi_run: str
) -> None:
    """Every count of the shared toy-ioi run, equal to the store's own summary."""
    shown = runner.invoke(main, ["runs", "show", toy_ioi_run, "--format", "json"])
    summary = json.loads(shown.output)
    counts, stored = summary["counts"], atlas_store.show_run(toy_ioi_run)
    assert stored is not None and summary["run"]["status"] == "complete"
    assert counts["prompts"] == 64 == summary["run"]["dataset"]["n_prompts"]
    for key in ("firings", "communicates"):
        assert counts[key] == stored[key] > 0
    assert counts["writes"] == stored["edges"]
    assert counts["sparse_set_uses"] >= counts["firings"]
    assert isinstance(summary["run"]["versions"]["processing"], dict)  # JSON text inside JSON text
    table = runner.invoke(main, ["runs", "show", toy_ioi_run]).output
    assert f"sparse_set_uses:{counts['sparse_set_uses']}" in table.replace(" ", "")


def test_wrong_password_in_cli_is_one_paragraph(runner: CliRunner) -> None:
    result = runner.invoke(main, ["runs", "list"], env={"NEO4J_PASSWORD": "wrong-password"})
    assert result.exit_code == 1
    assert "wrong user or password" in result.output
    assert "Traceback" not in result.output
