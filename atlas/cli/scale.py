"""`circuit-atlas trace` (a run into Parquet shards, no database) and `circuit-atlas load`."""

from __future__ import annotations

import inspect
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from atlas.cli.ingest import ingest, run_config
from atlas.cli.options import batch_size_for, load_model_quietly, prompts_or_exit

if TYPE_CHECKING:
    from ingest.models.loading import LoadedModel

# trace takes every option of ingest that shapes the run (model, prompts, method, edges,
# alignment), as ingest defines them; the database ones (--run-id, --resume, --rewrite) not.
_NOT_FOR_TRACE = {"run_id", "resume", "rewrite", "quiet"}
_RUN_OPTIONS = [p for p in ingest.params if p.name not in _NOT_FOR_TRACE]
_CONFIG_OPTIONS = inspect.signature(run_config).parameters


def _config(options: dict[str, Any]) -> Any:
    prompts_or_exit(options["n_prompts"], options["prompt_type"], options["seed"])
    return run_config(**{name: options[name] for name in _CONFIG_OPTIONS})


def _trace(
    run_id: str | None,
    out: Path,
    shard: str | None,
    shards: int | None,
    workers: int,
    executor: str,
    as_json: bool,
    **options: Any,
) -> None:
    """Trace a run into shards: Parquet files and a manifest per shard, no database.

    With --shard i/N this process traces shard i of N (a contiguous range of the run's batches;
    run one such job per machine or per batch-queue slot). Without it, all --shards N shards
    (default: --workers) run on --workers local processes (one torch thread each) or, with
    --executor ray, as one Ray task per shard on the cluster `ray.init()` finds (RAY_ADDRESS or
    a running `ray start --head`; a GPU per task when the cluster has GPUs). A shard is
    complete once its manifest.json exists (written last); an incomplete one is never loaded and
    is replaced when traced again. Then `circuit-atlas load RUN DIR...`.

    \b
    Examples:
      circuit-atlas trace --model toy-ioi --n-prompts 1024 --run toy1k --shard 0/2 --out shards
      circuit-atlas trace --model toy-ioi --n-prompts 1024 --run toy1k --workers 2 --out shards
      circuit-atlas load toy1k shards
    """
    from atlas.interchange.shards import ShardSpec
    from atlas.scale.trace import ModelSpec, ShardJob, ShardResult, trace_shard, trace_shards

    config = _config(options)
    if shard is not None and (shards is not None or workers > 1):
        raise click.UsageError("--shard runs one shard here; it excludes --shards and --workers.")
    spec = ModelSpec(
        options["model_name"],
        str(options["model_dir"]) if options["model_dir"] else None,
        options["revision"],
        options["device"],
        options["seed"],
        options["prepend_bos"],
    )
    started = time.perf_counter()
    results: list[ShardResult] = []

    def report(result: ShardResult) -> None:
        results.append(result)
        what = (
            "already complete, kept"
            if result.skipped
            else (
                f"{result.prompts} prompts, {result.firings} firings, {result.edges} edges in "
                f"{result.seconds:.1f}s"
            )
        )
        click.echo(f"Shard {result.shard}: {what} → {result.folder}", err=True)

    def loaded() -> LoadedModel:
        return load_model_quietly(
            spec.model, options["model_dir"], spec.revision, spec.device, spec.seed
        )

    if shard is not None:
        model = spec.with_bos(loaded())
        config = replace(config, batch_size=batch_size_for(model, options["batch_size"]))
        chosen = run_id or config.default_run_id(model.provenance.model_id)
        click.echo(f"Run {chosen}, shard {shard}", err=True)
        report(trace_shard(model, config, chosen, ShardSpec.parse(shard), out))
    else:
        chosen = run_id
        if chosen is None or options["batch_size"] is None:  # the model decides them
            model = loaded()
            config = replace(config, batch_size=batch_size_for(model, options["batch_size"]))
            chosen = chosen or config.default_run_id(model.provenance.model_id)
        count = shards or workers
        click.echo(f"Run {chosen}: {count} shards on {workers} {executor} worker(s)", err=True)
        jobs = [ShardJob(spec, config, chosen, ShardSpec(i, count), str(out)) for i in range(count)]
        trace_shards(jobs, workers=workers, executor=executor, on_done=report)
    wall = time.perf_counter() - started
    if as_json:
        click.echo(
            json.dumps(
                {"run_id": chosen, "wall_seconds": wall, "shards": [r.__dict__ for r in results]},
                indent=2,
            )
        )
    else:
        click.echo(f"Traced {len(results)} shard(s) of run {chosen} in {wall:.1f}s into {out}.")


trace = click.Command(
    "trace",
    callback=_trace,
    help=_trace.__doc__,
    params=[
        click.Option(["--run", "run_id"], help="Run id (default: derived as ingest derives it)."),
        click.Option(
            ["--out"],
            required=True,
            type=click.Path(file_okay=False, path_type=Path),
            help="Folder the shard folders are written into.",
        ),
        click.Option(["--shard"], help="Trace only shard i/N here (e.g. 0/2)."),
        click.Option(
            ["--shards"], type=click.IntRange(min=1), help="How many shards (default --workers)."
        ),
        click.Option(
            ["--workers"],
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Shards traced at once (local processes, one torch thread each).",
        ),
        click.Option(
            ["--executor"],
            type=click.Choice(["local", "ray"]),
            default="local",
            show_default=True,
            help="local: a process pool; ray: one Ray task per shard (pip install "
            "'circuit-atlas[ray]').",
        ),
        click.Option(["--json", "as_json"], is_flag=True, help="Print the shard results as JSON."),
        *_RUN_OPTIONS,
    ],
)


@click.command()
@click.argument("run_id")
@click.argument("folders", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--bulk",
    is_flag=True,
    help="Build a NEW database offline with neo4j-admin import from the shards (local server "
    "only; stops it, REPLACES its database, starts it again). For a fresh, large atlas.",
)
@click.option(
    "--yes",
    is_flag=True,
    help="With --bulk: replace the database without asking (scripts, batch jobs).",
)
@click.option("--no-verify", is_flag=True, help="Skip the sha256 check of the shard files.")
@click.option("--json", "as_json", is_flag=True, help="Print the load summary as JSON.")
def load(
    run_id: str,
    folders: tuple[Path, ...],
    bulk: bool,
    yes: bool,
    no_verify: bool,
    as_json: bool,
) -> None:
    """Load the complete shards of RUN_ID from FOLDERS into the atlas (one writer).

    With --bulk, RUN_ID may name several runs, comma-separated (e.g. gpt2-3k,smol-3k): the new
    database holds them all, of one model or several, imported at once.

    Each FOLDER is a shard folder or a folder of them. Shards whose marker is already in the
    database are skipped, and inside a shard so are batches already written, so loading again
    (after a crash, or twice) writes only what is missing and changes no count. COMMUNICATES
    is recomputed from the stored edges; the run is complete once all its batches are in.

    \b
    Examples:
      circuit-atlas load toy1k shards
      circuit-atlas load toy1k /mnt/a/shards /mnt/b/shards
      circuit-atlas load --bulk --yes toy1k shards   # fresh atlas, offline import
      circuit-atlas load --bulk --yes toy1k,smol256 shards smol-shards

    --bulk (SAD or ACC runs) is offline and REPLACES the local server's database: it stops the
    server, imports the shards with neo4j-admin into a new database (every run the atlas held
    is gone), starts the server and completes the runs. It asks first, unless --yes.
    """
    if yes and not bulk:
        raise click.UsageError("--yes confirms --bulk; plain `load` replaces nothing.")
    if "," in run_id and not bulk:
        raise click.UsageError(
            "Several runs (comma-separated) are one import with --bulk; without it, load one "
            "run per command."
        )
    if bulk:
        from atlas.scale.bulk import bulk_load, checked_run_ids

        run_ids = checked_run_ids([part.strip() for part in run_id.split(",")])
        runs = f"run{'s' if len(run_ids) > 1 else ''} {', '.join(run_ids)}"
        if not yes:
            click.confirm(
                f"load --bulk stops the local server and REPLACES its database with {runs} "
                "(every other run in it is lost). Continue?",
                abort=True,
                err=True,
            )

        summary: Any = bulk_load(run_ids, list(folders), verify=not no_verify)
        line = (
            f"Bulk-imported {runs}: {summary.nodes:,} nodes, {summary.relationships:,} "
            f"relationships in {summary.import_seconds:.1f}s ({summary.records_per_second():,.0f}"
            f" records/s; {summary.wall_seconds:.1f}s in all with CSV, restart and schema)."
        )
        if summary.empty_lists:
            line += f" {summary.empty_lists:,} empty lists set after the import (ACC)."
    else:
        from atlas.scale.load import load_shards
        from atlas.store.store import AtlasStore

        summary = load_shards(AtlasStore.connect(), run_id, list(folders), verify=not no_verify)
        state = "complete" if summary.complete else "incomplete (shards missing)"
        line = (
            f"Run {run_id} {state}: {summary.shards_loaded} shard(s) loaded, "
            f"{summary.shards_skipped} already there; {summary.batches_written} batches written "
            f"({summary.batches_skipped} already there): {summary.prompts} prompts, "
            f"{summary.firings} firings, {summary.edges} edges, {summary.communicates} "
            f"COMMUNICATES. {summary.relationships_created:,} relationships in "
            f"{summary.wall_seconds:.1f}s ({summary.relationships_per_second():,.0f}/s written)."
        )
    if as_json:
        click.echo(json.dumps(summary.__dict__, indent=2, default=str))
    else:
        click.echo(line)
