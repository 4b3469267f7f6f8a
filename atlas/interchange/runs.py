"""Import the method authors' graph files as read-only runs, and export any run as a SAD graph.

:func:`import_graphml` reads a file (:mod:`atlas.interchange.graphml` parses it), then writes in one
transaction a run of method ``sad-import`` (status ``complete``, ``read_only``, provenance:
file name, sha256, format) with its heads and ``COMMUNICATES`` edges, exactly the properties an
ingested run has, so every template works on both. :func:`export_graphml` writes a run's
head-to-head communication back in the SAD aggregated format, or an ACC run in the authors' ACC
combined format (importing that file gives the run's COMMUNICATES back; a run imported from
that format is written as the file it came from).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from atlas.errors import AtlasError, UnknownRunError
from atlas.interchange.graphml import (
    AuthorsGraph,
    Component,
    Edge,
    GraphFormat,
    acc_graph,
    authors_acc_graph,
    file_sha256,
    parse_graph,
    read_graphml,
    sad_graph,
    skipped_for_sad,
)
from atlas.store.store import AtlasStore, WriteCounts
from ingest.models.loading import DEFAULT_MODEL
from ingest.records.build import ioi_class_of
from ingest.records.types import (
    ComponentRecord,
    ImportedCommunicatesRecord,
    ModelRecord,
    RunRecord,
)
from ingest.run_ids import check_run_id
from ingest.runtime import git_commit

IMPORT_METHOD = "sad-import"
# Short names the CLI accepts for the atlas's id of GPT-2 small (so an imported run shares its
# heads, and their IOI classes, with ingested GPT-2 runs).
MODEL_ALIASES = {"gpt2": DEFAULT_MODEL, "gpt2-small": DEFAULT_MODEL}
KNOWN_SHAPES = {DEFAULT_MODEL: ModelRecord(DEFAULT_MODEL, 12, 12, 768, 64)}
_EDGE_KEYS = {  # the atlas's own COMMUNICATES properties (the rest are an imported format's)
    "run_id", "writer", "head", "side", "role", "n_prompts", "mean_weight", "n_prompts_abba",
    "n_prompts_baba",
}  # fmt: skip


@dataclass(frozen=True)
class ImportSummary:
    run_id: str
    model_id: str
    format: GraphFormat
    source_sha256: str
    heads: int
    edges: int
    counts: WriteCounts


@dataclass(frozen=True)
class ExportSummary:
    run_id: str
    path: Path
    nodes: int
    edges: int
    skipped: int


def model_id_of(name: str) -> str:
    """The atlas's model id for a CLI name (``gpt2`` → ``openai-community/gpt2``)."""
    return MODEL_ALIASES.get(name, name)


def import_graphml(
    store: AtlasStore,
    path: Path,
    run_id: str,
    *,
    model: str = "gpt2",
    graph_format: GraphFormat | None = None,
) -> ImportSummary:
    """Import an authors' GraphML file as the read-only run ``run_id`` (idempotent)."""
    check_run_id(run_id)
    parsed = parse_graph(read_graphml(path), graph_format)
    sha = file_sha256(path)
    if not parsed.edges:
        raise AtlasError(f"{path} has no communication edges to import.")
    model_id = model_id_of(model)
    components = _component_records(parsed, model_id)
    run = RunRecord(
        id=run_id,
        model_id=model_id,
        model_revision=None,
        method=IMPORT_METHOD,
        params={"format": parsed.format, **parsed.facts},
        dataset={"source_file": path.name},
        versions={"networkx": nx.__version__},
        git_commit=git_commit(),
        status="complete",
    )
    provenance = {
        "read_only": True,
        "source_file": path.name,
        "source_sha256": sha,
        "source_format": parsed.format,
        "support": parsed.facts.get("support"),
        "head_firings": json.dumps(dict(parsed.head_firings), sort_keys=True),
    }
    if parsed.format == "acc":
        provenance["authors_nodes"] = json.dumps(parsed.nodes, sort_keys=True)
    communicates = [_communicates_record(edge, run_id) for edge in parsed.edges]
    counts = store.write_imported_run(
        run, provenance, KNOWN_SHAPES.get(model_id), components, communicates
    )
    heads = sum(c.kind == "head" for c in parsed.components)
    return ImportSummary(run_id, model_id, parsed.format, sha, heads, len(parsed.edges), counts)


def run_edges(store: AtlasStore, run_id: str) -> list[Edge]:
    """A run's COMMUNICATES edges as :class:`~atlas.interchange.graphml.Edge` records."""
    if store.show_run(run_id) is None:
        raise UnknownRunError(
            f"Run '{run_id}' is not in the atlas (see `circuit-atlas runs list`)."
        )
    return [_edge(row) for row in store.read_template("run_communication", run_id=run_id)]


def run_sad_graph(store: AtlasStore, run_id: str) -> tuple[nx.DiGraph, int]:
    """The run in the SAD format, and how many of its edges the format could not hold."""
    summary = store.show_run(run_id)
    if summary is None:
        raise UnknownRunError(
            f"Run '{run_id}' is not in the atlas (see `circuit-atlas runs list`)."
        )
    edges = run_edges(store, run_id)
    stored = summary["run"].get("head_firings")
    firings = json.loads(stored) if stored else store.head_firings(run_id)
    return sad_graph(edges, firings), skipped_for_sad(edges)


def export_graphml(store: AtlasStore, run_id: str, out: Path) -> ExportSummary:
    """Write run ``run_id`` as GraphML at ``out``: an ACC run (method ``acc``) in the authors'
    ACC combined format, a run imported from that format as the file it was imported from
    (its nodes and edges, which importing the written file gives back), any other run in the
    SAD aggregated format."""
    summary = store.show_run(run_id)
    if summary is None:
        raise UnknownRunError(
            f"Run '{run_id}' is not in the atlas (see `circuit-atlas runs list`)."
        )
    graph: nx.Graph
    run = summary["run"]
    if run.get("method") == "acc":
        graph, skipped = acc_graph(store.acc_graph_rows(run_id)), 0
    elif run.get("source_format") == "acc":
        nodes = json.loads(run.get("authors_nodes") or "{}")
        graph, skipped = authors_acc_graph(nodes, run_edges(store, run_id)), 0
    else:
        graph, skipped = run_sad_graph(store, run_id)
    try:
        nx.write_graphml(graph, out)
    except OSError as error:
        raise AtlasError(f"Cannot write {out}: {error.strerror}.") from None
    return ExportSummary(run_id, out, graph.number_of_nodes(), graph.number_of_edges(), skipped)


def _component_records(parsed: AuthorsGraph, model_id: str) -> list[ComponentRecord]:
    """The file's components; for a model of known shape every head (like ingestion writes)."""
    found = {c.id: c for c in parsed.components}
    shape = KNOWN_SHAPES.get(model_id)
    if shape is not None:
        for layer in range(shape.n_layers):
            for head in range(shape.n_heads):
                found.setdefault(f"{layer}.{head}", Component("head", layer, head))
    return [
        ComponentRecord(
            model_id,
            c.kind,
            c.layer,
            c.head,
            ioi_class=ioi_class_of(model_id, c.id) if c.kind == "head" else None,
        )
        for c in found.values()
    ]


def _communicates_record(edge: Edge, run_id: str) -> ImportedCommunicatesRecord:
    """A parsed edge as the record the store writes for an imported run."""
    return ImportedCommunicatesRecord(
        run_id=run_id,
        writer_kind=edge.writer.kind,
        writer_layer=edge.writer.layer,
        writer_head=edge.writer.head,
        target_kind=edge.target.kind,
        target_layer=edge.target.layer,
        target_head=edge.target.head,
        side=edge.side,
        role=edge.role,
        n_prompts=edge.n_prompts,
        mean_weight=edge.mean_weight,
        source=edge.source,
    )


def _edge(row: dict[str, Any]) -> Edge:
    return Edge(
        writer=Component(row["writer_kind"], row["writer_layer"], row["writer_head"]),
        target=Component(row["target_kind"], row["layer"], row["head"]),
        side=row["side"],
        role=row["role"],
        n_prompts=row["n_prompts"],
        mean_weight=row["mean_weight"],
        source={k: v for k, v in row["properties"].items() if k not in _EDGE_KEYS},
    )
