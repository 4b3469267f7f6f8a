"""`circuit-atlas server` and `db`: the local Neo4j server, the schema and the write benchmark."""

from __future__ import annotations

import click

from atlas.cli.options import echo_records, format_option


@click.group()
def server() -> None:
    """Run a local Neo4j Community 5.26 without Docker (jars fetched once with Maven)."""


@server.command("install")
@click.option("--force", is_flag=True, help="Fetch the jars again even if they are present.")
def server_install(force: bool) -> None:
    """Copy Neo4j, the Browser and APOC into <data dir>/neo4j (cached: skipped when up to date)."""
    from atlas.server.local import LocalServer

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

    from atlas.server.local import LocalServer

    local = LocalServer.configured(bolt_port, http_port)
    already = local.running_pid()
    started = time.monotonic()
    settings = local.start(timeout=timeout)
    verb = "already running" if already else f"started in {time.monotonic() - started:.1f} s"
    click.echo(f"Neo4j {local.version()} {verb} (pid {local.running_pid()}).")
    click.echo(f"  Bolt:     {settings.uri}")
    click.echo(f"  Browser:  {local.browser_url} (applies the atlas style and opens its guide)")
    click.echo(f"  User:     {settings.user}; password in {local.credentials_file} (mode 0600)")


@server.command("stop")
def server_stop() -> None:
    """Shut the local server down cleanly."""
    from atlas.server.local import LocalServer

    pid = LocalServer.configured().stop()
    click.echo(f"Neo4j (pid {pid}) stopped." if pid else "The local Neo4j is not running.")


@server.command("status")
@format_option
def server_status(output_format: str) -> None:
    """Version, pid, ports, data folder and where the password is stored.

    --format json prints one object (csv: a header and one row).
    """
    import json

    from atlas.server.local import LocalServer

    status = LocalServer.configured().status()
    if output_format == "json":
        click.echo(json.dumps(status, indent=2))
    elif output_format == "csv":
        echo_records([status], "csv")
    else:
        for key, value in status.items():
            click.echo(f"{key + ':':13}{value}")


@click.group()
def db() -> None:
    """The atlas database: schema and benchmark (settings: NEO4J_* or the local server)."""


@db.command("init")
def db_init() -> None:
    """Create constraints and indexes (idempotent) and record the schema version.

    On a database of an older schema version the new constraints and indexes are added in
    place, and complete runs without the current per-run aggregates (the counts the whole-run
    templates read) get them, computed from their stored rows. Runs written before keep
    working, but lack what the new version stores (they are named, with what they lack:
    re-ingest them with --rewrite to get it).
    """
    from atlas.store.schema import UPGRADE_NOTES
    from atlas.store.store import AtlasStore

    store = AtlasStore.connect()
    before = store.schema_version()
    version = store.init_schema()
    upgraded = "" if before in (None, version) else f" (upgraded from version {before})"
    click.echo(f"Schema version {version} ready in {store.settings.uri}{upgraded}.")
    for run_id in store.runs_without_aggregates():
        store.aggregate_run(run_id)
        click.echo(f"Computed the per-run aggregates of run '{run_id}' from its stored rows.")
    for run_id, old in store.stale_runs():
        missing = "; ".join(note for v, note in UPGRADE_NOTES.items() if v > old)
        if not missing:
            continue
        click.echo(
            f"Run '{run_id}' was written under schema version {old} and lacks {missing}: "
            "re-ingest it (same command with --rewrite) to query those.",
            err=True,
        )


@db.command("bench")
@click.option("--relationships", default=100_000, show_default=True, help="How many to write.")
@click.option(
    "--batch-prompts", default=32, show_default=True, help="Prompts (100 firings each) per batch."
)
@click.option("--keep", is_flag=True, help="Keep the benchmark run instead of deleting it.")
def db_bench(relationships: int, batch_prompts: int, keep: bool) -> None:
    """Write synthetic firings in batches and print relationships per second.

    The database's share alone: no model, the same fresh-batch writes as an ingestion. The
    whole job per stage is `circuit-atlas bench`.
    """
    from atlas.bench import run_benchmark
    from atlas.store.store import AtlasStore

    result = run_benchmark(AtlasStore.connect(), relationships, batch_prompts, keep)
    click.echo(
        f"{result.relationships} relationships and {result.nodes} nodes in {result.batches} "
        f"batches: {result.write_seconds:.1f} s, {result.relationships_per_second:,.0f} rel/s"
    )
    if result.delete_seconds is not None:
        click.echo(f"Deleted run {result.run_id} in {result.delete_seconds:.1f} s.")
