"""The `db` and `runs` commands against the real server, configured through NEO4J_* only."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from atlas.cli import main
from atlas.store.store import AtlasStore
from ingest.records.types import RunRecord

pytestmark = pytest.mark.integration


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


def test_wrong_password_in_cli_is_one_paragraph(runner: CliRunner) -> None:
    result = runner.invoke(main, ["runs", "list"], env={"NEO4J_PASSWORD": "wrong-password"})
    assert result.exit_code == 1
    assert "wrong user or password" in result.output
    assert "Traceback" not in result.output
