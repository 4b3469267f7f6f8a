"""The `decompose` and top-level CLI: help and option errors (no model run, no database)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from atlas.cli import main

if TYPE_CHECKING:
    from ingest.models.loading import LoadedModel

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


def test_prompts_are_drawn_lazily() -> None:
    """decompose and trace draw their prompts batch by batch: asking for 10¹² prompts costs
    nothing up front (a list would not fit in memory), and they are the seeded sequence."""
    from itertools import islice

    from atlas.cli.options import prompts_or_exit
    from ingest.prompts.ioi import generate_prompts

    prompts = prompts_or_exit(10**12, "mixed", 7)
    assert list(islice(prompts, 3)) == generate_prompts(3, "mixed", seed=7)


def test_without_batch_size_each_model_gets_its_default_and_a_given_one_is_kept(
    toy_model: LoadedModel, smollm2: LoadedModel
) -> None:
    """32 for the toy model's 16 heads, 16 for SmolLM2-135M's 270 (ingest.pipeline's rule)."""
    from atlas.cli.options import batch_size_for

    assert batch_size_for(toy_model, None) == 32
    assert batch_size_for(smollm2, None) == 16
    assert batch_size_for(smollm2, 7) == 7
