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


@click.command("compare-circuits")
@click.option("--run", "run_id", required=True, help="Run id (see `circuit-atlas runs list`).")
@click.option(
    "--root",
    required=True,
    help="The atlas circuit's root head, e.g. 3.1 or 9.9; on an ACC run also logit: the IO−S "
    "logit direction (every seed firing a root).",
)
@click.option(
    "--against",
    default="patch:eap",
    show_default=True,
    help="patch:eap|eap-ig|path (the run's stored patching circuit) or reference:wang2022-ioi.",
)
@click.option("--top-k", type=click.IntRange(min=1), help="Patching circuit: its top k edges.")
@click.option("--threshold", type=float, help="Patching circuit: edges with |score| ≥ this.")
@click.option(
    "--ratio",
    default=2.0,
    show_default=True,
    type=float,
    help="Causally pruned circuit: validated edges whose |ΔLD| beats the control's this much.",
)
@click.option("--dest-role", default="END", show_default=True, help="The root's query role.")
@click.option("--src-role", default="IO", show_default=True, help="The root's key role.")
@click.option(
    "--min-prompts",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Atlas circuit: only edges seen in at least this many prompts (and, for --root logit, "
    "seed heads that are seeds in that many).",
)
@click.option(
    "--faithfulness/--no-faithfulness",
    default=True,
    show_default=True,
    help="Also run the model with only each circuit's heads clean (loads the run's model).",
)
@click.option("--prompts", "n_prompts", default=64, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the P/R/F1 curve over patching-circuit sizes as a PNG into this folder.",
)
@click.option("--lists/--no-lists", default=True, show_default=True, help="Print the head lists.")
@_MODEL_DIR
@_DEVICE
@format_option
def compare_circuits(
    run_id: str,
    root: str,
    against: str,
    top_k: int | None,
    threshold: float | None,
    ratio: float,
    dest_role: str,
    src_role: str,
    min_prompts: int,
    faithfulness: bool,
    n_prompts: int,
    out: Path | None,
    lists: bool,
    model_dir: Path | None,
    device: str,
    output_format: str,
) -> None:
    """Precision, recall and F1 of an atlas circuit against a patching or reference circuit.

    Compares the heads (and, against a patching circuit, the head → head query/key edges) of
    the root's atlas circuit and of its causally pruned circuit (validated edges whose effect
    on the logit difference beats the control by --ratio; run `validate` first) with the run's
    patching circuit at the chosen size, or with a published reference circuit. Faithfulness:
    the share of the clean−corrupted logit difference kept when only the circuit's heads run
    clean.

    On an ACC run --root logit compares the circuit of the IO−S logit direction: the union of
    the circuits traced from every seed firing (the roles do not apply); its pruned circuit is
    the validated edges alone (`validate --root logit`). A SAD run has no such circuit.
    --min-prompts keeps only the atlas circuit's edges seen in that many prompts (a SAD circuit
    aggregated over many prompts can hold most of the model's heads).

    Example: circuit-atlas compare-circuits --run toy-ioi-run --root 3.1 --against patch:eap
    --top-k 50
    """
    from atlas.ask.circuits import root_head
    from atlas.check.compare import Against, compare_circuits, comparison_table, curve_figure
    from atlas.check.validation import run_model_id
    from atlas.cli.options import load_model_quietly
    from atlas.store.store import AtlasStore

    target = Against.parse(against)
    store = AtlasStore.connect()
    root_head(store, run_id, root)  # an unknown run or root fails before the model loads
    model = None
    if faithfulness:
        model_id, model_seed = run_model_id(store, run_id)
        model = load_model_quietly(model_id, model_dir, None, device, model_seed)
    comparison = compare_circuits(
        store, run_id, root, target, top_k=top_k, threshold=threshold, ratio=ratio,
        dest_role=dest_role, src_role=src_role, model=model, n_prompts=n_prompts,
        min_prompts=min_prompts,
    )  # fmt: skip
    echo_frame(pd.DataFrame(comparison_table(comparison)), output_format)
    if target.kind == "reference" and output_format == "table":
        from ingest.interventions.replication import PUBLISHED_CIRCUIT_SCORES

        p, r, f1 = PUBLISHED_CIRCUIT_SCORES
        click.echo(
            f"The method authors' GPT-2 circuit against {target.name}: precision {p:.3f}, "
            f"recall {r:.3f}, F1 {f1:.3f}."
        )
    if lists and output_format == "table":
        click.echo(
            f"\nagainst {comparison.reference.name} ({len(comparison.reference.heads)} heads)"
        )
        for row in comparison.rows:
            click.echo(f"{row.circuit.name}:")
            click.echo(f"  both:           {' '.join(row.heads.both) or '-'}")
            click.echo(f"  atlas only:     {' '.join(row.heads.predicted_only) or '-'}")
            click.echo(f"  reference only: {' '.join(row.heads.reference_only) or '-'}")
    if out is not None and comparison.curves:
        import matplotlib

        matplotlib.use("Agg")
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"compare_{root.replace('.', '_')}_{target.name}.png"
        curve_figure(comparison).savefig(path, dpi=110)
        click.echo(f"Wrote {path}", err=True)
