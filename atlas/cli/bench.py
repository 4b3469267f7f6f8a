"""`circuit-atlas bench`: time the ingestion per stage, the reference check and the templates."""

from __future__ import annotations

import json

import click

# atlas.bench's workloads, named here so that `circuit-atlas` starts without torch (a unit test
# keeps the two equal).
WORKLOADS = ("toy-ioi", "random-gpt2")
ALL_WORKLOADS = (*WORKLOADS, "smollm2-135m")
SCALE_CELLS = (("toy-ioi", 1024), ("smollm2-135m", 256))  # bench --scale's default


@click.command()
@click.option(
    "--workload",
    "workloads",
    type=click.Choice(ALL_WORKLOADS),
    multiple=True,
    default=WORKLOADS,
    show_default=True,
    help="Model to ingest (repeat the option for several). smollm2-135m must be installed "
    "first (`circuit-atlas models install smollm2-135m`).",
)
@click.option(
    "--n-prompts",
    "prompt_counts",
    type=click.IntRange(min=1),
    multiple=True,
    default=(256, 1024),
    show_default=True,
    help="Prompts per run (repeat the option for several).",
)
@click.option(
    "--repeats", default=3, show_default=True, type=click.IntRange(min=1), help="Runs per cell."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Prompts per batch [default: each model's, as ingest chooses it: 32, smollm2-135m 16].",
)
@click.option("--device", default="cpu", show_default=True, help="Torch device: cpu or cuda[:N].")
@click.option(
    "--reference-prompts",
    default=4,
    show_default=True,
    type=click.IntRange(min=0),
    help="Prompts for the per-pair reference check (0 skips it).",
)
@click.option(
    "--query-repeats",
    default=20,
    show_default=True,
    type=click.IntRange(min=0),
    help="Timed runs of each template on the largest toy-ioi run (0 skips them).",
)
@click.option(
    "--warmup-runs",
    default=4,
    show_default=True,
    type=click.IntRange(min=0),
    help="Unmeasured toy-ioi runs first, at the smallest --n-prompts (Neo4j's JIT warms up).",
)
@click.option(
    "--method",
    "methods",
    type=click.Choice(["sad", "acc"]),
    multiple=True,
    default=("sad",),
    show_default=True,
    help="Method(s) to ingest with; repeat for both (columns 'toy-ioi 256' and "
    "'toy-ioi acc 256'). With acc, 'decompose' is 0 and 'trace' holds the firings, the "
    "answer's seeds and the tracing from them.",
)
@click.option(
    "--scale",
    is_flag=True,
    help="Instead: the paths past one machine (docs/scale.md) per workload and prompt count "
    "(default toy-ioi 1024 and smollm2-135m 256): ingest vs trace + load vs load --bulk, "
    "online rel/s vs bulk records/s, the trace stage on 1 vs 2 workers. On a server "
    "instance of its own (--scale-port), whose database the bulk import replaces.",
)
@click.option(
    "--scale-port",
    default=17797,
    show_default=True,
    type=click.IntRange(1024, 65534),
    help="With --scale: the Bolt port of its server instance (HTTP: the next port).",
)
@click.option("--json", "as_json", is_flag=True, help="Print every measurement as JSON.")
def bench(
    workloads: tuple[str, ...],
    prompt_counts: tuple[int, ...],
    repeats: int,
    batch_size: int | None,
    device: str,
    reference_prompts: int,
    query_repeats: int,
    warmup_runs: int,
    methods: tuple[str, ...],
    scale: bool,
    scale_port: int,
    as_json: bool,
) -> None:
    """Benchmark the ingestion: seconds per stage, write throughput, peak memory, queries.

    Every (workload, prompt count) is ingested --repeats times, each a fresh run in a fresh
    process that is deleted afterwards; the table shows medians and the machine's load
    average (figures from a busy machine are slower, not wrong). Stages: model load, svd,
    forward (model and cache), decompose (firings, sparse sets), trace (edges), records,
    write (Neo4j; it overlaps the compute of the next batch), aggregate (COMMUNICATES).
    Then the vectorized decomposition is checked against the slow per-pair reference on a
    few prompts (identical firings and sparse sets, and the speed ratio), and every read
    template with an example-toy header is timed (p50/p95) on the largest toy-ioi run.
    Needs a running Neo4j (`circuit-atlas server start`). Four toy-ioi warm-up runs come
    first and are reported apart: a freshly started Neo4j writes its first runs several times
    slower while its JIT compiles the write path.

    \b
    Examples:
      circuit-atlas bench                                   # the full table (minutes)
      circuit-atlas bench --workload toy-ioi --n-prompts 256 --repeats 1
      circuit-atlas bench --json > bench.json
      circuit-atlas bench --workload toy-ioi --n-prompts 256 --method sad --method acc
      circuit-atlas bench --scale                           # toy-ioi 1024, smollm2-135m 256
      circuit-atlas bench --scale --workload toy-ioi --n-prompts 256 --warmup-runs 1
      circuit-atlas bench --scale --workload smollm2-135m --n-prompts 256 --method acc
    """
    if scale:
        _scale_bench(
            workloads, prompt_counts, methods, batch_size, warmup_runs, scale_port, as_json
        )
        return
    from atlas.bench import run_bench
    from atlas.cli.quiet import quiet_libraries
    from atlas.store.store import AtlasStore

    quiet_libraries()
    AtlasStore.connect()  # fail fast, with the usual message, when Neo4j is down
    report = run_bench(
        workloads,
        prompt_counts,
        repeats=repeats,
        batch_size=batch_size,
        device=device,
        reference_prompts=reference_prompts,
        query_repeats=query_repeats,
        warmup_runs=warmup_runs,
        methods=methods,
        progress=lambda step: click.echo(f"bench: {step} ...", err=True),
    )
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.table())


def _scale_bench(
    workloads: tuple[str, ...],
    prompt_counts: tuple[int, ...],
    methods: tuple[str, ...],
    batch_size: int | None,
    warmup_runs: int,
    port: int,
    as_json: bool,
) -> None:
    """`bench --scale`: per (workload, prompt count, method),
    :func:`atlas.scale.bench.scale_bench`."""
    from atlas.cli.quiet import quiet_libraries
    from atlas.scale.bench import scale_bench, scale_table

    context = click.get_current_context()
    given = {
        name
        for name in ("workloads", "prompt_counts")
        if context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    }
    cells = [(w, n) for w in workloads for n in prompt_counts] if given else list(SCALE_CELLS)
    quiet_libraries()
    results = []
    for (model, n_prompts), method in ((cell, m) for cell in cells for m in methods):
        click.echo(f"bench --scale: {model} {n_prompts} prompts, {method} ...", err=True)
        results.append(
            scale_bench(
                model,
                n_prompts,
                batch_size=batch_size,
                bolt_port=port,
                warmup_runs=warmup_runs,
                method=method,
            )
        )
    click.echo(json.dumps(results, indent=2) if as_json else scale_table(results))
