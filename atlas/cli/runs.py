"""`circuit-atlas runs`: list, show and delete the runs in the atlas."""

from __future__ import annotations

import click


@click.group()
def runs() -> None:
    """List, show and delete ingestion runs."""


@runs.command("list")
def runs_list() -> None:
    """Every run with its model, method, status and prompt count."""
    from atlas.store.store import AtlasStore

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
    from atlas.errors import UnknownRunError
    from atlas.store.store import AtlasStore

    summary = AtlasStore.connect().show_run(run_id)
    if summary is None:
        raise UnknownRunError(f"Run '{run_id}' is not in the atlas (see `runs list`).")
    for key, value in sorted(summary.pop("run").items()):
        click.echo(f"{key + ':':16}{value}")
    for key, value in summary.items():
        click.echo(f"{key + ':':16}{value}")


@runs.command("delete")
@click.argument("run_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def runs_delete(run_id: str, yes: bool) -> None:
    """Delete a run and everything it wrote (nothing shared), in bounded transactions."""
    from atlas.errors import UnknownRunError
    from atlas.store.store import AtlasStore

    store = AtlasStore.connect()
    if store.show_run(run_id) is None:
        raise UnknownRunError(f"Run '{run_id}' is not in the atlas (see `runs list`).")
    if not yes:
        click.confirm(f"Delete run '{run_id}' and all its prompts, firings and edges?", abort=True)
    counts = store.delete_run(run_id)
    click.echo(
        f"Deleted run '{run_id}': {-counts.nodes_created} nodes, "
        f"{-counts.relationships_created} relationships."
    )
