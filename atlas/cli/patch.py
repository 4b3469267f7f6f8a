"""`circuit-atlas patch` (a run's patching circuit) and `circuit-atlas compare-circuits`."""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from atlas.cli.options import echo_frame, format_option

_MODEL_DIR = click.option(
    "--model-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Load the run's model from this directory instead of by its model id.",
)
_DEVICE = click.option(
    "--device", default="cpu", show_default=True, help="Torch device: cpu or cuda[:N]."
)


@click.command()
@click.option("--run", "run_id", required=True, help="Run id (see `circuit-atlas runs list`).")
@click.option(
    "--method",
    type=click.Choice(["eap", "eap-ig", "path"]),
    default="eap",
    show_default=True,
    help="eap: edge attribution patching (TransformerLens); eap-ig: with integrated gradients; "
    "path: exact direct path patching, head → head and head → logit (one forward per edge).",
)
@click.option(
    "--prompts",
    "n_prompts",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="The run's first K prompts, each with its ABC counterpart.",
)
@click.option(
    "--metric", type=click.Choice(["logit-diff"]), default="logit-diff", show_default=True
)
@click.option(
    "--ig-steps", default=5, show_default=True, type=click.IntRange(min=1), help="EAP-IG steps."
)
@click.option(
    "--batch-size",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="Prompts per pass.",
)
@click.option("--rewrite", is_flag=True, help="Recompute even if stored with these settings.")
@_MODEL_DIR
@_DEVICE
@format_option
def patch(
    run_id: str,
    method: str,
    n_prompts: int,
    metric: str,
    ig_steps: int,
    batch_size: int,
    rewrite: bool,
    model_dir: Path | None,
    device: str,
    output_format: str,
) -> None:
    """Score every edge between components by patching, and store it as the run's patching circuit.

    On the run's own prompts (clean) and their ABC counterparts (corrupted), each edge writer →
    reader (embedding, heads, MLPs → a head's q/k/v input, an MLP, the logits) gets the change of
    the IO−S logit difference when it carries its clean value instead of its corrupted one.
    Stored as PATCH_EDGE relationships (score, rank) keyed by run, method and metric (template
    `patch_edges`); re-running with the same settings reads them back, and an interrupted run
    resumes. Prints the 20 strongest edges.

    Example: circuit-atlas patch --run toy-ioi-run --method eap --prompts 64
    """
    from atlas.check.patching import PatchConfig, patch_run
    from atlas.check.validation import run_model_id
    from atlas.cli.options import load_model_quietly
    from atlas.store.store import AtlasStore

    config = PatchConfig(
        method=method,  # type: ignore[arg-type]
        metric=metric,
        n_prompts=n_prompts,
        ig_steps=ig_steps,
        batch_size=batch_size,
    )
    store = AtlasStore.connect()
    model_id, model_seed = run_model_id(store, run_id)
    model = load_model_quietly(model_id, model_dir, None, device, model_seed)
    summary = patch_run(store, model, run_id, config, rewrite=rewrite)
    click.echo(
        f"{summary.status}: {summary.edges} {summary.method} edges of run '{run_id}' on "
        f"{summary.n_prompts} prompts ({summary.seconds:.1f} s)",
        err=True,
    )
    frame = pd.DataFrame(summary.top, columns=["writer", "reader", "side", "score", "rank"])
    echo_frame(frame, output_format)
