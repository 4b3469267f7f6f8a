"""`circuit-atlas import graphml` and `circuit-atlas export`: the method authors' graph files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

if TYPE_CHECKING:
    from atlas.interchange.graphml import GraphFormat


@click.group("import")
def import_group() -> None:
    """Bring results made elsewhere into the atlas as read-only runs."""


@import_group.command("graphml")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--run-id", required=True, help="Id of the read-only run to create.")
@click.option(
    "--model",
    default="gpt2",
    show_default=True,
    help="The model the graph describes ('gpt2' is GPT-2 small, the atlas's "
    "openai-community/gpt2, whose heads carry their IOI classes).",
)
@click.option(
    "--format",
    "graph_format",
    type=click.Choice(["auto", "sad", "acc"]),
    default="auto",
    show_default=True,
    help="sad: aggregated SAD graph (nodes (l, h) and (l, h, 'role'), edges with count); acc: "
    "the follow-up combined graph (nodes (l, h, 'dest', 'src'), edges with prompts_appeared).",
)
def import_graphml_command(file: Path, run_id: str, model: str, graph_format: str) -> None:
    """Import an authors' aggregated GraphML FILE as a read-only run.

    Writer → head edges become COMMUNICATES relationships (side q for the authors' type d,
    k for s; role = the role of the position written to), with the properties ingested runs
    have, so every template and `circuit` query works on the run. Display links (weight 2000)
    are skipped. One transaction; importing the same file again changes nothing; a run id
    that exists with other content is refused.

    \b
    Example, the published GPT-2 IOI graph:
      circuit-atlas import graphml \\
        $CIRCUIT_ATLAS_REFERENCE/sad-gpt2-ioi/nms-p256-f1.0-folded-expandedO-scaled.graphml \\
        --run-id gpt2-sad-authors
    """
    from ingest.run_ids import check_run_id

    check_run_id(run_id)  # before the file is read
    from atlas.interchange.runs import import_graphml
    from atlas.store.store import AtlasStore

    chosen = None if graph_format == "auto" else cast("GraphFormat", graph_format)
    summary = import_graphml(
        AtlasStore.connect(),
        file,
        run_id,
        model=model,
        graph_format=chosen,
    )
    click.echo(
        f"Imported {file.name} ({summary.format} format, sha256 {summary.source_sha256[:12]}…) "
        f"as read-only run '{summary.run_id}' of {summary.model_id}: {summary.edges} "
        f"COMMUNICATES edges among {summary.heads} heads "
        f"({summary.counts.relationships_created} relationships created)."
    )


@click.command("export")
@click.option("--run", "run_id", required=True, help="The run to export (ingested or imported).")
@click.option(
    "--format",
    "out_format",
    type=click.Choice(["graphml"]),
    default="graphml",
    show_default=True,
    help="Output format: the method authors' GraphML (SAD aggregated; for an ACC run, the ACC "
    "combined format).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file [default: <run>.graphml in the current folder].",
)
def export_command(run_id: str, out_format: str, out: Path | None) -> None:
    """Write a run's head-to-head communication as SAD aggregated GraphML.

    Nodes (l, h) are writers, (l, h, 'role') a head read at a role; edges carry type (d =
    query side, s = key side), weight (mean), count, total, and on imported runs the authors'
    prompt/src_token/dest_token; display links (weight 2000) are rebuilt. An imported SAD run
    gives back the file's edges.

    An ACC run (ingested with --method acc) is written in the authors' ACC combined format:
    nodes (l, h, 'dest_role', 'src_role') are firings, (l, 'MLP', r, r), (l, 'AH bias', r, r),
    (0, 'Embedding', r, r) other writers and ('IO-S direction', 'end') the root; edges carry
    type (d/s), weight (sum over prompts / traced prompts) and prompts_appeared. Importing the
    file gives the run's COMMUNICATES back. A run imported from that format is written as the
    file it was imported from (its nodes and edges, role pairs included).

    Example: circuit-atlas export --run gpt2-sad-authors
    """
    from atlas.interchange.runs import export_graphml
    from atlas.store.store import AtlasStore

    target = out or Path(f"{run_id.replace('/', '_')}.{out_format}")
    summary = export_graphml(AtlasStore.connect(), run_id, target)
    skipped = (
        f"; {summary.skipped} edges with a non-head writer or target left out"
        if summary.skipped
        else ""
    )
    click.echo(
        f"Wrote run '{run_id}' to {summary.path}: {summary.nodes} nodes, {summary.edges} "
        f"edges{skipped}."
    )
