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
    svd = model_qk_svd(model.bridge, dtype=model.bridge.cfg.dtype)
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


# ---------------------------------------------------------------------------------------------
# Neo4j: local server, schema, runs (logic in atlas.server / atlas.store; imports stay lazy)
# ---------------------------------------------------------------------------------------------


@main.command()
@model_options
@click.option(
    "--method",
    type=click.Choice(["sad"]),
    default="sad",
    show_default=True,
    help="Attribution method: sad (Franco & Crovella 2024, heads as writers).",
)
@click.option(
    "--edge-fraction",
    default=0.7,
    show_default=True,
    type=float,
    help="Per side of a firing, the smallest top set of writers carrying more than this "
    "fraction of the total upstream contribution become edges.",
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
    batch_size: int,
    min_attention: float,
    min_layer: int,
    sparse_fraction: float,
    method: str,
    edge_fraction: float,
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

    \b
    Examples:
      circuit-atlas server start
      circuit-atlas ingest --model toy-ioi --n-prompts 256 --seed 0
      circuit-atlas ingest --model gpt2 --n-prompts 256 --batch-size 16 --resume
    """
    from atlas.ingestion import IngestConfig, ingest_run
    from atlas.store import AtlasStore

    if resume and rewrite:
        raise click.UsageError("--resume and --rewrite exclude each other.")
    if not 0.0 < edge_fraction <= 1.0:
        raise click.BadParameter(
            f"must lie in (0, 1], got {edge_fraction}", param_hint="--edge-fraction"
        )
    rule = firing_rule_or_exit(min_attention, min_layer, sparse_fraction)
    generate_prompts_or_exit(n_prompts, prompt_type, seed)
    store = AtlasStore.connect()  # fails fast, before the model loads, when Neo4j is down
    model = load_model_or_exit(model_name, model_dir, revision, device, seed)
    config = IngestConfig(
        n_prompts=n_prompts,
        prompt_type=prompt_type,
        seed=seed,
        batch_size=batch_size,
        rule=rule,
        edge_fraction=edge_fraction,
    )
    chosen_id = run_id or config.default_run_id(model.provenance.model_id)
    click.echo(f"Run {chosen_id}", err=True)
    try:
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
        raise click.ClickException(
            f"Interrupted. Batches written so far are kept; continue with the same command "
            f"plus --resume (run id {chosen_id})."
        ) from None
    seconds = ", ".join(f"{stage} {value:.1f}s" for stage, value in summary.stage_seconds.items())
    click.echo(
        f"Run {summary.run_id} complete: {summary.prompts} prompts, {summary.firings} firings, "
        f"{summary.edges} edges, {summary.communicates} COMMUNICATES "
        f"({summary.batches_written} batches written, {summary.batches_skipped} already done).\n"
        f"Time: {seconds}. Wrote {summary.relationships_created} relationships "
        f"({summary.relationships_per_second():,.0f}/s). "
        f"Peak memory {summary.peak_memory_mb:,.0f} MiB."
    )


@main.group()
def server() -> None:
    """Run a local Neo4j Community 5.26 without Docker (jars fetched once with Maven)."""


@server.command("install")
@click.option("--force", is_flag=True, help="Fetch the jars again even if they are present.")
def server_install(force: bool) -> None:
    """Copy Neo4j, the Browser and APOC into var/neo4j (cached: skipped when up to date)."""
    from atlas.server import LocalServer

    local = LocalServer.configured()
    ran = local.install(force=force)
    state = "installed" if ran else "already installed (pom unchanged)"
    size = local.disk_usage() / 2**20
    click.echo(f"Neo4j {local.version()} {state} in {local.home} ({size:.0f} MiB of jars).")


@server.command("start")
@click.option("--bolt-port", type=int, help="Bolt port (default: last used, else 7687).")
@click.option("--http-port", type=int, help="HTTP/Browser port (default: last used, else 7474).")
@click.option("--timeout", default=180.0, show_default=True, help="Seconds to wait for Bolt.")
def server_start(bolt_port: int | None, http_port: int | None, timeout: float) -> None:
    """Start the local server on 127.0.0.1 and wait until Bolt answers."""
    import time

    from atlas.server import LocalServer

    local = LocalServer.configured(bolt_port, http_port)
    already = local.running_pid()
    started = time.monotonic()
    settings = local.start(timeout=timeout)
    verb = "already running" if already else f"started in {time.monotonic() - started:.1f} s"
    click.echo(f"Neo4j {local.version()} {verb} (pid {local.running_pid()}).")
    click.echo(f"  Bolt:     {settings.uri}")
    click.echo(f"  Browser:  {local.browser_url}")
    click.echo(f"  User:     {settings.user}; password in {local.credentials_file} (mode 0600)")


@server.command("stop")
def server_stop() -> None:
    """Shut the local server down cleanly."""
    from atlas.server import LocalServer

    pid = LocalServer.configured().stop()
    click.echo(f"Neo4j (pid {pid}) stopped." if pid else "The local Neo4j is not running.")


@server.command("status")
def server_status() -> None:
    """Version, pid, ports, data folder and where the password is stored."""
    from atlas.server import LocalServer

    for key, value in LocalServer.configured().status().items():
        click.echo(f"{key + ':':13}{value}")


@main.group()
def db() -> None:
    """The atlas database: schema and benchmark (settings: NEO4J_* or the local server)."""


@db.command("init")
def db_init() -> None:
    """Create constraints and indexes (idempotent) and record the schema version."""
    from atlas.store import AtlasStore

    store = AtlasStore.connect()
    click.echo(f"Schema version {store.init_schema()} ready in {store.settings.uri}.")


@db.command("bench")
@click.option("--relationships", default=100_000, show_default=True, help="How many to write.")
@click.option("--batch-firings", default=2500, show_default=True, help="Firings per transaction.")
@click.option("--keep", is_flag=True, help="Keep the benchmark run instead of deleting it.")
def db_bench(relationships: int, batch_firings: int, keep: bool) -> None:
    """Write synthetic firings in batches and print relationships per second."""
    from atlas.bench import run_benchmark
    from atlas.store import AtlasStore

    result = run_benchmark(AtlasStore.connect(), relationships, batch_firings, keep)
    click.echo(
        f"{result.relationships} relationships and {result.nodes} nodes in {result.batches} "
        f"batches: {result.write_seconds:.1f} s, {result.relationships_per_second:,.0f} rel/s"
    )
    if result.delete_seconds is not None:
        click.echo(f"Deleted run {result.run_id} in {result.delete_seconds:.1f} s.")


@main.group()
def runs() -> None:
    """List, show and delete ingestion runs."""


@runs.command("list")
def runs_list() -> None:
    """Every run with its model, method, status and prompt count."""
    from atlas.store import AtlasStore

    rows = AtlasStore.connect().list_runs()
    if not rows:
        click.echo("No runs in the atlas.")
    for row in rows:
        click.echo(
            f"{row['id']}  {row['status']:9} {row['model_id']}  {row['method']}  "
            f"{row['prompts']} prompts  {row['created_at']}"
        )


@runs.command("show")
@click.argument("run_id")
def runs_show(run_id: str) -> None:
    """A run's provenance and how many prompts, firings and edges it has."""
    from atlas.store import AtlasStore

    summary = AtlasStore.connect().show_run(run_id)
    if summary is None:
        raise click.ClickException(f"Run '{run_id}' is not in the atlas (see `runs list`).")
    for key, value in sorted(summary.pop("run").items()):
        click.echo(f"{key + ':':16}{value}")
    for key, value in summary.items():
        click.echo(f"{key + ':':16}{value}")


@runs.command("delete")
@click.argument("run_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def runs_delete(run_id: str, yes: bool) -> None:
    """Delete a run and everything it wrote (nothing shared), in bounded transactions."""
    from atlas.store import AtlasStore

    store = AtlasStore.connect()
    if store.show_run(run_id) is None:
        raise click.ClickException(f"Run '{run_id}' is not in the atlas (see `runs list`).")
    if not yes:
        click.confirm(f"Delete run '{run_id}' and all its prompts, firings and edges?", abort=True)
    counts = store.delete_run(run_id)
    click.echo(
        f"Deleted run '{run_id}': {-counts.nodes_created} nodes, "
        f"{-counts.relationships_created} relationships."
    )


# ---------------------------------------------------------------------------------------------
# The toy IOI model (logic in ingest.toy_model)
# ---------------------------------------------------------------------------------------------


@main.command("train-toy")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("ingest/fixtures/toy-ioi"),
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

    from ingest.toy_model import ToyConfig, ToyTrainingError, check_convergence, save_fixture
    from ingest.toy_model import train_toy as run_training

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
    try:
        check_convergence(metrics)
    except ToyTrainingError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"Saved to {save_fixture(result, out)}")


# ---------------------------------------------------------------------------------------------
# Circuits (logic in atlas.circuits, Cypher in queries/circuit.cypher)
# ---------------------------------------------------------------------------------------------


@main.command()
@click.option("--run", "run_id", required=True, help="Run id (see `circuit-atlas runs list`).")
@click.option("--root", required=True, help="The root head as layer.head, e.g. 9.9.")
@click.option("--prompt", type=click.IntRange(min=0), help="One prompt's firings (default: all).")
@click.option("--dest-role", default="END", show_default=True, help="The root's query role.")
@click.option("--src-role", default="IO", show_default=True, help="The root's key role.")
@click.option("--max-depth", type=click.IntRange(min=1), help="Show at most this many levels.")
@click.option(
    "--min-prompts",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Hide aggregated edges seen in fewer prompts.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["tree", "json", "csv"]),
    default="tree",
    show_default=True,
    help="tree: indented text; json/csv: one record per edge (with depth).",
)
def circuit(
    run_id: str,
    root: str,
    prompt: int | None,
    dest_role: str,
    src_role: str,
    max_depth: int | None,
    min_prompts: int,
    output_format: str,
) -> None:
    """Trace a head's circuit upstream (the SAD recursion) and print it as a tree.

    Starts at the root head's firings DEST-ROLE→SRC-ROLE (a name mover attending from END to
    IO, by default). For each upstream head that wrote into such a firing (query side q at the
    destination, key side k at the source), it continues into that writer's own firing at the
    position it wrote to, and so on until a writer does not fire there (layer 0 never does).
    With --prompt, the tree shows one prompt's firings with positions and weights w; without,
    it is aggregated over prompts: n = prompts with that edge, mean = its mean weight.

    A line `q  8.6 @END→S2  n=150  mean=+1.234` reads: 8.6 wrote the query side at END in 150
    prompts, and fires END→S2 there itself (the tree continues below it).

    Example: circuit-atlas circuit --run gpt2-sad-256 --root 9.9 --max-depth 3 --min-prompts 20
    """
    import csv

    from atlas.circuits import circuit_edges, fetch_circuit, render_tree
    from atlas.store import AtlasStore

    store = AtlasStore.connect()
    found = fetch_circuit(store, run_id, root, dest_role, src_role, prompt)
    if output_format == "tree":
        click.echo(render_tree(found, max_depth, min_prompts))
        return
    records = circuit_edges(found, max_depth, min_prompts)
    if output_format == "json":
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
        return
    fields = list(records[0]) if records else []
    writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({**record, "writer_firings": ";".join(record["writer_firings"])})
