"""`load --bulk` replaces the database only when confirmed (before anything is read or
stopped); `--yes` belongs to --bulk."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from atlas.cli import main


def test_bulk_asks_first_and_a_no_stops_before_the_shards_are_read(tmp_path: Path) -> None:
    (tmp_path / "not-a-shard").mkdir()  # would be refused if it were read
    result = CliRunner().invoke(main, ["load", "--bulk", "r", str(tmp_path)], input="n\n")
    assert result.exit_code == 1
    assert "REPLACES its database" in result.output
    assert "Aborted" in result.output and "No shards" not in result.output


def test_yes_without_bulk_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["load", "--yes", "r", str(tmp_path)])
    assert result.exit_code == 2
    assert "--yes confirms --bulk" in result.output


def test_bulk_refuses_a_bad_or_repeated_run_id_before_asking(tmp_path: Path) -> None:
    for given, message in (
        ("a,,b", "Invalid run id ''"),
        ("a,b,a", "Name each run to import once"),
    ):
        result = CliRunner().invoke(main, ["load", "--bulk", given, str(tmp_path)])
        assert result.exit_code == 1 and message in result.output, result.output
        assert "REPLACES" not in result.output


def test_several_runs_without_bulk_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["load", "a,b", str(tmp_path)])
    assert result.exit_code == 2
    assert "one import with --bulk" in result.output and "Traceback" not in result.output
