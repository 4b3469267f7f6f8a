"""Output frictions against a real run: `runs list` reads as a table, declared int columns
stay ints in CSV even where a null would make them floats."""

from __future__ import annotations

import csv
import io

from click.testing import CliRunner

from atlas.cli import main
from ingest.records.types import RunRecord


def test_runs_list_has_a_header_and_the_run(
    runner: CliRunner, toy_ioi_run: str, atlas_run: RunRecord
) -> None:
    result = runner.invoke(main, ["runs", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["run", "status", "model", "method", "prompts", "created"]
    (line,) = [line for line in lines if line.startswith(toy_ioi_run)]
    assert line.split()[1:5] == ["complete", "toy-ioi", "sad", "64"]
    # ids of other lengths are left-aligned too: every line starts with its run's id
    (short,) = [line for line in lines if line.startswith(atlas_run.id + " ")]
    assert short.split()[1] == "running"


def test_csv_writes_integer_positions_as_integers(runner: CliRunner, toy_ioi_run: str) -> None:
    args = ["query", "circuit", "--run", toy_ioi_run, "-p", "layer=3", "-p", "head=1"]
    result = runner.invoke(main, [*args, "-p", "prompt=0", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert rows
    for row in rows:
        for column in ("prompt", "pos", "writer_src", "dest", "src"):
            assert "." not in row[column], (column, row[column])


def test_a_run_that_is_not_complete_says_so_on_every_lookup(
    runner: CliRunner, atlas_run: RunRecord, toy_ioi_run: str
) -> None:
    result = runner.invoke(main, ["query", "run_counts", "--run", atlas_run.id])
    assert result.exit_code == 0, result.output
    assert f"Warning: run '{atlas_run.id}' is running, not complete" in result.output
    complete = runner.invoke(main, ["query", "run_counts", "--run", toy_ioi_run])
    assert "Warning" not in complete.output
