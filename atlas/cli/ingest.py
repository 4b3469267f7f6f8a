"""`circuit-atlas ingest`: trace a model's firings on IOI prompts and write the run to Neo4j."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from atlas.cli.options import (
    acc_rule_or_exit,
    batch_size_for,
    bos_option,
    check_model_choice,
    firing_rule_or_exit,
    load_model_quietly,
    method_option,
    model_options,
)

if TYPE_CHECKING:
    from ingest.pipeline import IngestConfig


def check_edge_fraction(edge_fraction: float) -> None:
    if not 0.0 < edge_fraction <= 1.0:
        raise click.BadParameter(
            f"must lie in (0, 1], got {edge_fraction}", param_hint="--edge-fraction"
        )


def run_config(
    *,
    n_prompts: int,
    prompt_type: str,
    seed: int,
    batch_size: int | None,
    min_attention: float,
    min_layer: int,
    sparse_fraction: float,
    method: str,
    seed_fraction: float,
    all_firings: bool,
    edge_fraction: float,
    align_threshold: float,
    align_top_k: int,
) -> IngestConfig:
    """The run's settings from the options of `ingest` (and of `trace`, which takes them all).

    Without --batch-size the batch is 32 prompts here; :func:`~atlas.cli.options.batch_size_for`
    fits it to the model once the model is loaded."""
    from ingest.pipeline import MAX_BATCH_SIZE, IngestConfig

    check_edge_fraction(edge_fraction)
    return IngestConfig(
        n_prompts=n_prompts,
        prompt_type=prompt_type,
        seed=seed,
        batch_size=batch_size or MAX_BATCH_SIZE,
        rule=firing_rule_or_exit(min_attention, min_layer, sparse_fraction),
        edge_fraction=edge_fraction,
        method=method,
        acc_rule=acc_rule_or_exit(sparse_fraction),
        seed_fraction=seed_fraction,
        acc_all_firings=all_firings,
        align_threshold=align_threshold,
        align_top_k=align_top_k,
    )


@click.command()
@model_options
@bos_option
@method_option
@click.option(
    "--seed-fraction",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True),
    help="ACC: the seeds are the head components carrying the IO − S logit difference at END, "
    "largest first, up to this share of it.",
)
@click.option(
    "--all-firings",
    is_flag=True,
    help="ACC: store every firing (above uniform), not only those traced from the answer; "
    "the others have no edges.",
)
@click.option(
    "--edge-fraction",
    default=0.7,
    show_default=True,
    type=float,
    help="Per side of a firing, the smallest top set of writers carrying more than this "
    "fraction of the total upstream contribution become edges.",
)
@click.option(
    "--align-threshold",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True),
    help="Per model: singular vectors of different heads whose residual read directions have "
    "|cos| at least this are stored as ALIGNED (the same feature); random directions in "
    "d=768 reach about 0.2 at most.",
)
@click.option(
    "--align-top-k",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Per singular vector, at most this many ALIGNED partners of its own choosing.",
)
@click.option("--run-id", help="Id of the run (default: derived from the model and every setting).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run: skip written batches.")
@click.option(
    "--rewrite",
    is_flag=True,
    help="Recompute every batch of an existing run and write it again (idempotent).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def ingest(
    model_name: str,
    model_dir: Path | None,
    revision: str | None,
    device: str,
    n_prompts: int,
    prompt_type: str,
    seed: int,
    batch_size: int | None,
    min_attention: float,
    min_layer: int,
    sparse_fraction: float,
    prepend_bos: bool | None,
    method: str,
    seed_fraction: float,
    all_firings: bool,
    edge_fraction: float,
    align_threshold: float,
    align_top_k: int,
    run_id: str | None,
    resume: bool,
    rewrite: bool,
    quiet: bool,
) -> None:
    """Trace every firing of every head on IOI prompts and write the atlas into Neo4j.

    Per batch of prompts: one forward pass, the SAD decomposition of every firing, the upstream
    heads that write each firing's signal (edges), then one Neo4j transaction. Re-running the
    same command finds the same run id; after a crash or Ctrl-C add --resume to continue where
    it stopped. At the end, per-prompt edges are aggregated into COMMUNICATES relationships.

    With --method acc: per batch, the ACC decomposition (relative attention, both sides) of
    every pair attended above uniform, the answer's seeds, and the graph traced from them to
    every upstream component (heads per source token, MLPs, attention biases, embeddings).

    \b
    Examples:
      circuit-atlas server start
      circuit-atlas ingest --model toy-ioi --n-prompts 256 --seed 0
      circuit-atlas ingest --model toy-ioi --n-prompts 256 --method acc
      circuit-atlas ingest --model gpt2 --n-prompts 256 --batch-size 16 --resume
    """
    # Cheap checks first, before Neo4j, torch or the model: their errors come at once.
    from ingest.run_ids import check_run_id

    if run_id is not None:
        check_run_id(run_id)
    if resume and rewrite:
        raise click.UsageError("--resume and --rewrite exclude each other.")
    check_edge_fraction(edge_fraction)
    check_model_choice(model_name, model_dir, device)
    click.echo("Checking the settings and Neo4j ...", err=True)  # first feedback, in < 1 s
    from atlas.cli.quiet import driver_retries_reported_once
    from atlas.errors import Neo4jUnavailableError
    from atlas.store.store import AtlasStore
    from atlas.store.writer import check_run_id_free, ingest_run

    store = AtlasStore.connect()  # fails fast, before the model loads, when Neo4j is down
    if run_id is not None:
        check_run_id_free(store, run_id, resume, rewrite)
    config = run_config(
        n_prompts=n_prompts,
        prompt_type=prompt_type,
        seed=seed,
        batch_size=batch_size,
        min_attention=min_attention,
        min_layer=min_layer,
        sparse_fraction=sparse_fraction,
        method=method,
        seed_fraction=seed_fraction,
        all_firings=all_firings,
        edge_fraction=edge_fraction,
        align_threshold=align_threshold,
        align_top_k=align_top_k,
    )
    model = load_model_quietly(model_name, model_dir, revision, device, seed)
    if prepend_bos is not None:
        model.prepend_bos = prepend_bos
    config = replace(config, batch_size=batch_size_for(model, batch_size))
    chosen_id = run_id or config.default_run_id(model.provenance.model_id)
    click.echo(f"Run {chosen_id}", err=True)
    resume_hint = (
        f"Batches written so far are kept; continue with the same command plus --resume "
        f"(run id {chosen_id})."
    )
    try:
        with driver_retries_reported_once():
            summary = ingest_run(
                store,
                model,
                config,
                run_id=chosen_id,
                resume=resume,
                rewrite=rewrite,
                show_progress=not quiet,
            )
    except KeyboardInterrupt:
        raise click.ClickException(f"Interrupted. {resume_hint}") from None
    except Neo4jUnavailableError as error:  # lost during the run, after the driver's retries
        raise Neo4jUnavailableError(f"{error} {resume_hint}") from error
    seconds = ", ".join(f"{stage} {value:.1f}s" for stage, value in summary.stage_seconds.items())
    totals = store.show_run(summary.run_id) or {}  # the run's, not only this invocation's
    click.echo(
        f"Run {summary.run_id} complete: {totals.get('prompts', summary.prompts)} prompts, "
        f"{totals.get('firings', summary.firings)} firings, "
        f"{totals.get('edges', summary.edges)} edges, {summary.communicates} COMMUNICATES "
        f"(this time {summary.batches_written} batches written, {summary.prompts} prompts; "
        f"{summary.batches_skipped} batches already done).\n"
        f"Time: {summary.wall_seconds:.1f}s in all ({seconds}; the write overlaps the "
        f"compute). Wrote {summary.relationships_created} relationships "
        f"({summary.relationships_per_second():,.0f}/s). "
        f"Peak memory {summary.peak_memory_mb:,.0f} MiB.\n"
        f"IOI behaviour: accuracy {summary.behaviour.get('ioi_accuracy', float('nan')):.3f}, "
        f"IO−S logit difference mean {summary.behaviour.get('logit_diff_mean', float('nan')):.3f}"
        f", min {summary.behaviour.get('logit_diff_min', float('nan')):.3f}."
    )
