"""`circuit-atlas replicate`: the paper's GPT-2 setting, compared with its published numbers."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import click

from atlas.cli.options import echo_frame, format_option

NEEDS_WEIGHTS = (
    "replicate needs GPT-2 small's weights, which cannot be downloaded here. Provide them in "
    "one of two ways: (1) a Hugging Face cache that holds openai-community/gpt2 (config.json, "
    "model.safetensors, tokenizer files), made on a machine with internet by loading the model "
    "once with transformers and copied here, HF_HOME pointing at it; or (2) a directory "
    "written by save_pretrained (model and tokenizer), passed as --model-dir. About 550 MB; "
    "a CPU is enough (256 prompts take minutes). "
    "(Loading said: {reason}.)"
)


@click.command()
@click.option(
    "--model",
    "model_name",
    default="gpt2",
    show_default=True,
    help="gpt2 (from your Hugging Face cache), or random-gpt2 to check the table's shape.",
)
@click.option(
    "--model-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A local GPT-2 small checkpoint directory; overrides --model.",
)
@click.option("--device", default="cpu", show_default=True, help="Torch device: cpu or cuda[:N].")
@click.option(
    "--n-prompts",
    default=256,
    show_default=True,
    type=click.IntRange(min=1),
    help="The paper used 256 mixed prompts, seed 0; fewer only for a quick look.",
)
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--method",
    type=click.Choice(["sad", "acc"]),
    default="sad",
    show_default=True,
    help="sad: the SAD paper's numbers (arXiv 2410.00340); acc: the ACC paper's aggregated "
    "GPT-2 IOI graph (NeurIPS 2025): the root's feeders and their prompts, who feeds 9.9, "
    "8.6 and 5.5, per-prompt graph sizes and modes of |S|.",
)
@format_option
def replicate(
    model_name: str,
    model_dir: Path | None,
    device: str,
    n_prompts: int,
    batch_size: int,
    method: str,
    output_format: str,
) -> None:
    """Re-run SAD's GPT-2 setting and compare with the paper's numbers.

    Runs 256 mixed IOI prompts (seed 0) through GPT-2 small in memory (nothing is written to
    the atlas) and prints, for each published number, the paper's value, ours and the
    difference: how often the name movers 9.9, 9.6 and 10.0 fire END→IO, the mean |S| of 9.9
    END→IO, its top query-side writers, the baseline IO−S logit difference, and the change of
    the logit difference when 8.6's signal (and 7.9's plus 7.3's) into 9.9 is removed,
    against a random singular-vector control.

    With --method acc, the ACC trace of the same prompts (in memory) is compared with the ACC
    paper's published graph instead (see docs/concepts.md, ACC).

    Example: circuit-atlas replicate --model-dir ~/models/gpt2 --method acc
    """
    from tqdm import tqdm

    from ingest.interventions.replication import replicate as run_replication
    from ingest.models.loading import ModelUnavailableError, load_model

    try:
        model = load_model(model_name, model_dir=model_dir, device=device)
    except ModelUnavailableError as error:
        raise ModelUnavailableError(
            NEEDS_WEIGHTS.format(reason=str(error).split(". ")[0])
        ) from error
    with tqdm(total=n_prompts, unit="prompt", desc="replicate", file=sys.stderr) as bar:
        if method == "acc":
            from ingest.interventions.replication_acc import replicate_acc

            table = replicate_acc(
                model, n_prompts=n_prompts, batch_size=batch_size, progress=bar.update
            )
        else:
            table = run_replication(
                model, n_prompts=n_prompts, batch_size=batch_size, progress=bar.update
            )

    def show(value: object) -> str:
        if isinstance(value, float):
            return (
                "n/a"
                if math.isnan(value)
                else f"{value:+.2f}"
                if abs(value) < 100
                else f"{value:.0f}"
            )
        return str(value)

    if output_format != "table":
        echo_frame(table, output_format)
        return
    click.echo(f"{model.provenance.model_id}, {n_prompts} mixed prompts, seed 0, {method}")
    formatters = {c: show for c in table.columns[1:]}
    click.echo(table.to_string(index=False, formatters=formatters, na_rep="n/a"))
