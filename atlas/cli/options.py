"""Options and error handling shared by the commands that run a model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # the model stack (torch, transformers) loads only when a command needs it
    from ingest.decomposition.sad import FiringRule
    from ingest.models.loading import LoadedModel
    from ingest.prompts.ioi import IOIPrompt


TABLE_FORMATS = click.Choice(["table", "json", "csv"])


def format_option(command: Any) -> Any:
    """``--format table|json|csv`` for commands that print a table of results."""
    return click.option(
        "--format",
        "output_format",
        type=TABLE_FORMATS,
        default="table",
        show_default=True,
        help="table: aligned text; json: a list of records; csv: a header and one line per row.",
    )(command)


def bos_option(command: Callable[..., None]) -> Callable[..., None]:
    """``--bos/--no-bos``: start IOI prompts with BOS (default: as the tokenizer does)."""
    return click.option(
        "--bos/--no-bos",
        "prepend_bos",
        default=None,
        help="Prepend the tokenizer's BOS token to every prompt, or not. Default: follow the "
        "tokenizer (GPT-2 family: yes; SmolLM2: no).",
    )(command)


def model_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options every model-running command shares (model, weights, device, prompts)."""
    options = [
        click.option(
            "--model",
            "model_name",
            default="openai-community/gpt2",
            show_default=True,
            help="Hugging Face model id (loaded from your HF cache), 'toy-ioi' (the trained IOI "
            "model shipped with the project) or 'random-gpt2' (random GPT-2-small-shaped weights).",
        ),
        click.option(
            "--model-dir",
            type=click.Path(exists=True, file_okay=False, path_type=Path),
            help="A local Hugging Face model directory (config.json, weights, tokenizer); "
            "overrides --model.",
        ),
        click.option("--revision", help="Hub revision (branch, tag or commit) of --model."),
        click.option(
            "--device", default="cpu", show_default=True, help="Torch device: cpu or cuda[:N]."
        ),
        click.option(
            "--n-prompts",
            default=256,
            show_default=True,
            type=click.IntRange(min=1),
            help="How many IOI prompts to generate.",
        ),
        click.option(
            "--prompt-type",
            type=click.Choice(["mixed", "ABBA", "BABA"]),
            default="mixed",
            show_default=True,
            help="IOI name order: ABBA, BABA, or an even mix.",
        ),
        click.option(
            "--seed",
            default=0,
            show_default=True,
            type=int,
            help="Seed of the prompt generator (and of random-gpt2's weights).",
        ),
        click.option(
            "--batch-size",
            default=32,
            show_default=True,
            type=click.IntRange(min=1),
            help="Prompts per forward pass; memory grows with it, not with --n-prompts.",
        ),
        click.option(
            "--min-attention",
            default=0.5,
            show_default=True,
            type=float,
            help="A pair fires when its attention probability is at least this.",
        ),
        click.option(
            "--min-layer",
            default=1,
            show_default=True,
            type=click.IntRange(min=0),
            help="Heads below this layer are not decomposed (layer 0 reads only embeddings).",
        ),
        click.option(
            "--sparse-fraction",
            default=1.0,
            show_default=True,
            type=float,
            help="The sparse set is the smallest descending prefix of terms whose sum exceeds "
            "this fraction of the score.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def load_model_or_exit(
    model_name: str, model_dir: Path | None, revision: str | None, device: str, seed: int
) -> LoadedModel:
    """:func:`ingest.models.load_model`, with loading problems turned into one-line errors.

    The model libraries' progress bars and advisory warnings are silenced first
    (:func:`atlas.cli.quiet.quiet_libraries`).
    """
    from atlas.cli.quiet import quiet_libraries
    from ingest.models.loading import ModelUnavailableError, UnsupportedModelError, load_model

    quiet_libraries()
    click.echo(f"Loading {model_dir or model_name} on {device} ...", err=True)
    try:
        return load_model(
            model_name, model_dir=model_dir, revision=revision, device=device, seed=seed
        )
    except (ModelUnavailableError, UnsupportedModelError, ValueError) as error:
        raise click.ClickException(str(error)) from error


def firing_rule_or_exit(min_attention: float, min_layer: int, sparse_fraction: float) -> FiringRule:
    from ingest.decomposition.sad import FiringRule

    try:
        return FiringRule(
            min_attention=min_attention, min_layer=min_layer, sparse_fraction=sparse_fraction
        )
    except ValueError as error:
        raise click.BadParameter(str(error)) from error


def generate_prompts_or_exit(
    n_prompts: int, prompt_type: str, seed: int, tokenizer: Any = None
) -> list[IOIPrompt]:
    from ingest.prompts.ioi import generate_prompts

    try:
        return generate_prompts(n_prompts, prompt_type, seed=seed, tokenizer=tokenizer)
    except ValueError as error:
        raise click.BadParameter(str(error)) from error
