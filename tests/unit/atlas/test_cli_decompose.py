"""The `decompose` and top-level CLI: help and option errors (no model run, no database)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from atlas.cli import main

ARGS = ["decompose", "--model", "toy-ioi", "--n-prompts", "24", "--seed", "7", "--batch-size", "10"]


def test_help_teaches_every_command_and_option() -> None:
    top = CliRunner().invoke(main, ["--help"])
    assert top.exit_code == 0
    for command in ("decompose", "ingest", "circuit", "runs", "server", "db", "train-toy"):
        assert command in top.output
    result = CliRunner().invoke(main, ["decompose", "--help"])
    assert result.exit_code == 0
    for option in (
        "--model",
        "--model-dir",
        "--n-prompts",
        "--prompt-type",
        "--seed",
        "--batch-size",
        "--min-attention",
        "--sparse-fraction",
        "--format",
    ):
        assert option in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--prompt-type", "XYZ"], "XYZ"),
        (["--min-attention", "2"], "min_attention"),
        (["--n-prompts", "0"], "n-prompts"),
        (["--device", "cuda:7"], "cuda"),
    ],
)
def test_bad_options_give_clear_errors(arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(main, [*ARGS, *arguments])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
