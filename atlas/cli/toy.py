"""`circuit-atlas train-toy`: train the small IOI model shipped as `toy-ioi`."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("train-toy")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("ingest/models/fixtures/toy-ioi"),
    show_default=True,
    help="Directory for weights (safetensors), config, tokenizer and metadata.json.",
)
@click.option("--steps", default=2500, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--seed",
    default=0,
    show_default=True,
    help="Seeds initialisation and data. The fixture is seed 0; other seeds may converge to "
    "another circuit, without a name mover (README, toy model section).",
)
def train_toy(out: Path, steps: int, seed: int) -> None:
    """Train the small GPT-2 that performs IOI (the `toy-ioi` model) and save it to --out.

    4 layers, d_model 128, 4 heads, word-level tokenizer; loss on the answer token only, AdamW
    with warm-up and cosine decay. For the first 700 steps no position but END may attend to IO,
    and END only from layer 1 up (this curriculum blocks shortcuts through S2 and through layer 0,
    so name movers form). Evaluated on held-out name pairs; refuses to save (exit 1) unless
    accuracy ≥ 0.99 and every IO−S logit difference is positive. About 6 min on 2 threads.
    """
    from tqdm import tqdm

    from ingest.models.toy import ToyConfig, check_convergence, save_fixture
    from ingest.models.toy import train_toy as run_training

    config = ToyConfig(steps=steps, seed=seed)
    with tqdm(total=steps, desc="train-toy", unit="step", file=sys.stderr) as bar:

        def on_step(step: int, loss: float) -> None:
            bar.update(1)
            if step % 25 == 0:
                bar.set_postfix(loss=f"{loss:.3f}")

        result = run_training(config, on_step)
    metrics = result.metrics
    click.echo(
        f"Trained {steps} steps in {result.train_seconds:.0f} s. Held-out ({metrics.n_prompts} "
        f"prompts): accuracy {metrics.accuracy:.4f}, IO−S logit difference mean "
        f"{metrics.mean_logit_diff:.2f}, min {metrics.min_logit_diff:.2f}."
    )
    check_convergence(metrics)  # ToyTrainingError: reported by atlas.cli, nothing is saved
    click.echo(f"Saved to {save_fixture(result, out)}")
