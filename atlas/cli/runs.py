"""`circuit-atlas runs`: list, show and delete the runs in the atlas."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

from atlas.cli.options import echo_records, format_option

# Run properties the store keeps as JSON text (Neo4j properties cannot nest): decoded for output.
JSON_PROPERTIES = ("params", "dataset", "versions")
IMPORT_METHOD = "sad-import"  # atlas.interchange.runs.IMPORT_METHOD (not imported: no networkx)


@click.group()
def runs() -> None:
    """List, show and delete ingestion runs."""


@runs.command("list")
@format_option
def runs_list(output_format: str) -> None:
    """Every run with its model, method, status and prompt count."""
    from atlas.store.store import AtlasStore

    rows = AtlasStore.connect().list_runs()
    echo_records(rows, output_format, table=_echo_run_lines)


def _echo_run_lines(rows: Sequence[Mapping[str, Any]]) -> None:
    if not rows:
        click.echo("No runs in the atlas.")
        return
    header = ("run", "status", "model", "method", "prompts", "created")
    table = [
        (
            str(row["id"]),
            str(row["status"]),
            str(row["model_id"]),
            str(row["method"]),
            # an imported graph has edges but no prompts of its own
            "imported" if row["method"] == IMPORT_METHOD else str(row["prompts"]),
            str(row["created_at"])[:19].replace("T", " "),
        )
        for row in rows
    ]
    widths = [max(len(cells[i]) for cells in (header, *table)) for i in range(len(header))]
    for cells in (header, *table):  # left-aligned, so every line starts with its run id
        click.echo("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())


@runs.command("show")
@click.argument("run_id")
@format_option
def runs_show(run_id: str, output_format: str) -> None:
    """A run's provenance and every count: prompts, firings, sparse-set uses, WRITES,
    COMMUNICATES and validations.

    --format json prints one object, {"run": {...provenance...}, "counts": {...}}, with the
    run's params, dataset and versions as nested objects (csv: one row, those as JSON text).
    """
    from atlas.errors import UnknownRunError
    from atlas.store.store import AtlasStore

    store = AtlasStore.connect()
    summary = store.show_run(run_id)
    if summary is None:
        raise UnknownRunError(f"Run '{run_id}' is not in the atlas (see `runs list`).")
    provenance = decoded_provenance(summary["run"])
    rows = store.read_template("run_counts", run_id=run_id)
    counts = rows[0] if rows else {}
    if output_format == "json":
        click.echo(json.dumps({"run": provenance, "counts": counts}, indent=2, default=str))
    elif output_format == "csv":
        echo_records([{**provenance, **counts}], "csv")
    else:
        for key, value in sorted(provenance.items()):
            shown = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value
            click.echo(f"{key + ':':17}{shown}")
        for key, value in counts.items():
            click.echo(f"{key + ':':17}{value}")


def decoded_provenance(run: Mapping[str, Any]) -> dict[str, Any]:
    """The run's properties with :data:`JSON_PROPERTIES` decoded, and within them any text that
    holds a JSON object or list (``versions.processing``); other text is kept as it is."""
    decoded = dict(run)
    for key in JSON_PROPERTIES:
        value = _decoded(decoded.get(key))
        decoded[key] = (
            {k: _decoded(v) for k, v in value.items()} if isinstance(value, dict) else value
        )
    return {key: decoded[key] for key in sorted(decoded) if key in run}


def _decoded(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(value)
    return value


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
