"""`circuit-atlas validate`: causal validation of a circuit's edges by intervention."""

from __future__ import annotations

import json
from pathlib import Path

import click

from atlas.cli.options import check_run_method, format_option, run_method_option


@click.command()
@click.option("--run", "run_id", required=True, help="Run id (see `circuit-atlas runs list`).")
@click.option(
    "--root",
    required=True,
    help="The circuit's root head as layer.head, e.g. 9.9; on an ACC run also logit (the "
    "circuit of the IO−S logit direction, every seed firing a root).",
)
@click.option(
    "--top", default=10, show_default=True, type=click.IntRange(min=1), help="Edges to validate."
)
@click.option(
    "--mode",
    type=click.Choice(["global", "local"]),
    default="global",
    show_default=True,
    help="global: change the writer's output (every later head sees it); local: change only "
    "the downstream head's query or key input.",
)
@click.option(
    "--prompts",
    "max_prompts",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="At most this many prompts per edge (the first by prompt index).",
)
@click.option(
    "--controls",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Random control draws per prompt (SAD: other singular vectors of the head; ACC: "
    "other components of the writer's kind).",
)
@click.option("--boost", is_flag=True, help="Double the signal instead of removing it.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the control draws.")
@click.option("--dest-role", default="END", show_default=True, help="The root's query role.")
@click.option("--src-role", default="IO", show_default=True, help="The root's key role.")
@click.option(
    "--batch-size",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="Prompts per pass.",
)
@click.option("--rewrite", is_flag=True, help="Recompute edges that are already validated.")
@click.option(
    "--model-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Load the run's model from this directory instead of by its model id.",
)
@click.option("--device", default="cpu", show_default=True, help="Torch device: cpu or cuda[:N].")
@run_method_option
@format_option
def validate(
    run_id: str,
    root: str,
    top: int,
    mode: str,
    max_prompts: int,
    controls: int,
    boost: bool,
    seed: int,
    dest_role: str,
    src_role: str,
    batch_size: int,
    rewrite: bool,
    model_dir: Path | None,
    device: str,
    method: str | None,
    output_format: str,
) -> None:
    """Check a circuit's edges by intervention: remove each edge's signal and measure.

    For each of the root's TOP edges (most prompts first; the edges of `circuit-atlas
    circuit`), and each prompt where the edge exists: the writer's output at the written
    position, projected onto the downstream firing's sparse-set singular vectors (the signal
    the edge claims to send), is removed (or doubled with --boost) and the model re-run. A
    control removes as many random other singular vectors of the same head instead. Printed
    per edge: the mean change of the downstream firing's attention (dA) and of the IO−S logit
    difference (dLD), signal vs control, and the ratios mean|signal| / mean|control|.

    Results are stored in the atlas as (:Validation) nodes (template `validations`); edges
    already validated with the same settings are not recomputed (use --rewrite), so an
    interrupted validate is resumed by running it again.

    On an ACC run (ingested with --method acc) an edge is (writer component → one side of the
    reader's firings): MLPs, attention biases and the embedding are validated too, and a head
    writer keeps the source tokens it read in each prompt. The writer's output is removed (or
    doubled) where that side reads it (the destination token; on the source side every token
    up to the destination), in the reader's query or keys only (--mode local) or in the
    writer's own output (--mode global); a control does the same with a random component of
    the writer's kind. Printed besides dA and dLD: the change of the firing's relative
    attention (dRA_signal), its linear prediction from the edge's weight (dRA_predicted, exact
    in local mode) and the control's (dRA_control).

    Example: circuit-atlas validate --run gpt2-sad-256 --root 9.9 --top 10 --mode local
    """
    from atlas.store.store import AtlasStore

    check_run_method(AtlasStore.connect(), run_id, method)
    from atlas.check.validation import (
        ValidationConfig,
        format_table,
        run_model_id,
        validate_circuit,
    )
    from atlas.cli.options import load_model_quietly

    config = ValidationConfig(
        top=top,
        mode=mode,  # type: ignore[arg-type]
        factor=2.0 if boost else 0.0,
        max_prompts=max_prompts,
        n_controls=controls,
        seed=seed,
        batch_size=batch_size,
        dest_role=dest_role,
        src_role=src_role,
    )
    store = AtlasStore.connect()
    model_id, model_seed = run_model_id(store, run_id)
    model = load_model_quietly(model_id, model_dir, None, device, model_seed)
    table = validate_circuit(store, model, run_id, root, config, rewrite=rewrite)
    if output_format == "csv":
        click.echo(table.to_csv(index=False), nl=False)
    elif output_format == "json":
        click.echo(json.dumps(table.to_dict(orient="records"), indent=2, ensure_ascii=False))
    else:
        click.echo(format_table(table))
