"""Output a newcomer trips on: help texts, missing values, float precision (no database)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from atlas.cli import main
from atlas.cli.options import echo_frame


def help_of(*command: str) -> str:
    result = CliRunner().invoke(main, [*command, "--help"], terminal_width=100)
    assert result.exit_code == 0
    return result.output


def test_paths_help_describes_every_option() -> None:
    text = help_of("paths")
    assert "Longest route, in COMMUNICATES hops" in text
    assert "At most this many routes" in text


def test_import_help_keeps_its_example_as_written() -> None:
    lines = help_of("import", "graphml").splitlines()
    start = next(i for i, line in enumerate(lines) if "circuit-atlas import graphml \\" in line)
    assert lines[start + 2].strip() == "--run-id gpt2-sad-authors"


FRAME = pd.DataFrame(
    {"writer": ["0.2", "2.3"], "writer_class": [None, "name mover"], "w": [1 / 3, float("nan")]}
)


def test_table_shows_missing_values_as_a_dash(capsys: pytest.CaptureFixture[str]) -> None:
    echo_frame(FRAME, "table")
    out = capsys.readouterr().out
    assert "None" not in out and "NaN" not in out and "nan" not in out
    assert "0.333" in out and out.splitlines()[1].split()[1] == "-"


def test_json_keeps_full_precision_like_csv(capsys: pytest.CaptureFixture[str]) -> None:
    echo_frame(FRAME, "json")
    (first, _) = json.loads(capsys.readouterr().out)
    assert first["w"] == 1 / 3
