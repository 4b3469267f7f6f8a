"""The ``circuit-atlas`` command line: one click group, every command defined in this file."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # the model stack (torch, transformers) loads only when a command needs it
    from ingest.decomposition import FiringRule
    from ingest.ioi import IOIPrompt
    from ingest.models import LoadedModel


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="circuit-atlas")
def main() -> None:
    """Circuit Atlas: sparse attention decomposition of IOI circuits, stored in Neo4j.

    Typical flow: `decompose` to inspect a model's attention decisions, `server start` to run
    Neo4j locally, `ingest` to write a run into the atlas, then `circuit` or Cypher to query it.
    """


# ---------------------------------------------------------------------------------------------
# Model options and the decomposition
# ---------------------------------------------------------------------------------------------


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
    """:func:`ingest.models.load_model`, with loading problems turned into one-paragraph errors."""
    from ingest.models import ModelUnavailableError, UnsupportedModelError, load_model

    click.echo(f"Loading {model_dir or model_name} on {device} ...", err=True)
    try:
        return load_model(
            model_name, model_dir=model_dir, revision=revision, device=device, seed=seed
        )
    except (ModelUnavailableError, UnsupportedModelError, ValueError) as error:
        raise click.ClickException(str(error)) from error


def firing_rule_or_exit(min_attention: float, min_layer: int, sparse_fraction: float) -> FiringRule:
    from ingest.decomposition import FiringRule

    try:
        return FiringRule(
            min_attention=min_attention, min_layer=min_layer, sparse_fraction=sparse_fraction
        )
    except ValueError as error:
        raise click.BadParameter(str(error)) from error


def generate_prompts_or_exit(n_prompts: int, prompt_type: str, seed: int) -> list[IOIPrompt]:
    from ingest.ioi import generate_prompts

    try:
        return generate_prompts(n_prompts, prompt_type, seed=seed)
    except ValueError as error:
        raise click.BadParameter(str(error)) from error


@main.command()
@model_options
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="table: heads that fire, human-readable; csv/json: every head, machine-readable.",
)
def decompose(
    model_name: str,
    model_dir: Path | None,
    revision: str | None,
    device: str,
    n_prompts: int,
    prompt_type: str,
    seed: int,
    batch_size: int,
    min_attention: float,
    min_layer: int,
    sparse_fraction: float,
    output_format: str,
) -> None:
    """Decompose every strong attention decision of every head on IOI prompts (no database).

    A (dest, src) pair of a head fires when its attention is at least --min-attention, its
    score is non-negative and src is not the first token. Each firing's score is split exactly
    into the d_head terms of the head's query-key SVD; its sparse set |S| is the smallest set of
    largest terms that exceeds the score. Prints, per head: firings, firing rate (share of
    destination tokens at which the head fires), mean and median |S|, and for each destination
    role the most frequent source role (e.g. END→IO for a name mover).

    Example: circuit-atlas decompose --model toy-ioi --n-prompts 256 --seed 0
    """
    import torch
    from tqdm import tqdm

    from ingest.activations import model_qk_svd
    from ingest.decomposition import Firings
    from ingest.pipeline import chunks, process_batch
    from ingest.summary import format_top_roles, head_summary

    rule = firing_rule_or_exit(min_attention, min_layer, sparse_fraction)
    prompts = generate_prompts_or_exit(n_prompts, prompt_type, seed)
    model = load_model_or_exit(model_name, model_dir, revision, device, seed)
    svd = model_qk_svd(model.bridge)
    parts: list[Firings] = []
    role_labels: list[list[str]] = []
    n_destinations = 0
    logit_diffs = []
    offset = 0
    with tqdm(total=len(prompts), desc="decompose", unit="prompt", file=sys.stderr) as bar:
        for chunk in chunks(prompts, batch_size):
            result = process_batch(model, svd, chunk, rule)
            firings = result.firings.to("cpu")
            parts.append(replace(firings, prompt=firings.prompt + offset))
            role_labels += result.role_labels
            n_destinations += int(result.batch.mask[:, rule.min_src :].sum())
            logit_diffs.append(result.logit_diff)
            offset += len(chunk)
            bar.update(len(chunk))
    all_firings = Firings.concat(parts)
    summary = head_summary(all_firings, role_labels, n_destinations, model.n_layers, model.n_heads)
    if output_format == "csv":
        flat = summary.assign(top_source_roles=summary["top_source_roles"].map(json.dumps))
        click.echo(flat.to_csv(index=False), nl=False)
    elif output_format == "json":
        click.echo(summary.to_json(orient="records", indent=2))
    else:
        mean_diff = float(torch.cat(logit_diffs).mean())
        click.echo(
            f"{model.provenance.model_id}: {len(prompts)} {prompt_type} prompts (seed {seed}), "
            f"{len(all_firings)} firings, mean IO−S logit difference {mean_diff:.3f}"
        )
        firing_heads = summary[summary["firings"] > 0]
        table = firing_heads.assign(
            firing_rate=firing_heads["firing_rate"].map("{:.3f}".format),
            mean_svs=firing_heads["mean_svs"].map("{:.2f}".format),
            median_svs=firing_heads["median_svs"].map("{:.1f}".format),
            top_source_roles=firing_heads["top_source_roles"].map(format_top_roles),
        ).drop(columns=["layer", "head_index"])
        click.echo(table.to_string(index=False))
