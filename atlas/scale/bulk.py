"""A fresh atlas built offline: ``neo4j-admin database import full`` from a run's shards.

For a new, large atlas the online loader's one writer (~50k relationships/s) is the bottleneck;
Neo4j's offline importer writes the store files directly. It is **offline and replaces the
database**: :func:`bulk_load` stops the local server, turns the shards into the importer's CSV
files (one header line each, then the rows), imports them with ``--overwrite-destination``
into the server's ``neo4j`` database (everything that database held is gone; the ``system``
database with the password is untouched), starts the server again, then creates the
constraints and indexes, writes the model's records as ``load`` does (MERGE: the imported heads
and singular vectors gain their captions, the ALIGNED pairs are written) and completes the run
(``COMMUNICATES`` aggregated from the stored WRITES). The graph equals what ``load`` (or
``ingest``) writes: the firings', prompts' and relationships' properties are the online
writer's (:mod:`atlas.store.columns`), typed from the records' fields.

ACC runs too, with one pass after the import: an ACC firing stores a side it did not trace as an
empty list (``sparse_dest`` or ``sparse_source`` = ``[]``, as ``ingest`` writes it), which the
importer's CSV cannot express (an empty array field, quoted or not, is no property: checked on
Neo4j 5.26.30 for ``long[]``, ``double[]`` and ``string[]``; its Parquet input, a beta since
5.25, was not adopted for one property). So those firings are found in the shards
(:func:`empty_firing_lists`) and, after the constraints exist and before the run is completed,
:meth:`~atlas.store.store.AtlasStore.set_empty_firing_lists` sets exactly those properties, by
firing key, in bounded auto-commit transactions; it fails unless each one was set. Everything
else ACC records carry is ordinary CSV: the firings' ``method``, ``query_bias``, ``dest_total``,
``n_svs_dest``, non-empty sparse sets and ``seed_weight``, the writers that are not heads (MLPs,
attention biases, the embedding) as components, and the WRITES' ``writer_pos`` and
``writer_role``; the logit direction and its COMMUNICATES come from completing the run, as after
``ingest``. SAD runs store no empty list (their firings have no per-side sets), so the pass has
nothing to do for them.

The local server only (Community has no online import and one user database); for a remote
server, run the same on its machine or use ``load``.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from itertools import repeat
from pathlib import Path
from typing import Any

import pyarrow as pa

from atlas.errors import AtlasError
from atlas.interchange.columnar import ColumnType, field_types
from atlas.interchange.shards import Shard
from atlas.scale.load import open_shards, write_model_records
from atlas.server.local import LocalServer, _java
from atlas.store.columns import EDGE_COLUMNS, FIRING_PROPERTIES, USE_COLUMNS
from atlas.store.connection import close_drivers
from atlas.store.rows import to_json
from atlas.store.schema import SCHEMA_VERSION, head_labels
from atlas.store.store import AtlasStore
from ingest.records.types import (
    FiringRecord,
    PromptRecord,
    SparseTerm,
    WriteEdgeRecord,
    component_id,
)

ARRAY = "\x1f"  # the importer's array delimiter: a character no token or number holds
ADMIN_TOOL = "org.neo4j.cli.AdminTool"

# The properties each node and relationship gets are the online writer's
# (atlas.store.columns: CREATE_FIRINGS, CREATE_PROMPTS), their types the records' fields.
FIRING_KEY = ("prompt", "layer", "head", "dest", "src")
WRITER = ("writer_kind", "writer_layer", "writer_head")
PROMPT_PROPERTIES = tuple(f.name for f in fields(PromptRecord))
FIRING_NODE_PROPERTIES = ("run_id", *FIRING_PROPERTIES)
USE_PROPERTIES = USE_COLUMNS[1:]  # sv_ref is the relationship's end
WRITES_PROPERTIES = EDGE_COLUMNS[1:]  # writer_ref is its start
_TYPES: dict[str, dict[str, ColumnType]] = {
    "prompts": field_types(PromptRecord),
    "firings": field_types(FiringRecord),
    "sparse_terms": field_types(SparseTerm),
    "edges": field_types(WriteEdgeRecord),
}
_CSV_TYPES = {pa.int64(): "long", pa.float64(): "double", pa.string(): "", pa.bool_(): "boolean"}


@dataclass
class BulkSummary:
    run_id: str
    nodes: int = 0
    relationships: int = 0
    csv_seconds: float = 0.0
    import_seconds: float = 0.0
    schema_seconds: float = 0.0  # constraints, indexes, the model's records, the aggregates
    empty_lists: int = 0  # the firings' empty lists set after the import (ACC runs)
    empty_lists_seconds: float = 0.0
    wall_seconds: float = 0.0
    files: dict[str, int] = field(default_factory=dict)

    def records_per_second(self) -> float:
        total = self.nodes + self.relationships
        return total / self.import_seconds if self.import_seconds else 0.0


def _csv_type(kind: ColumnType) -> str:
    """The importer's header type of a column (``long``, ``double[]``, "" for a string)."""
    if kind.element is not None:
        return (_CSV_TYPES[kind.element.arrow] or "string") + "[]"
    return _CSV_TYPES[kind.arrow]


def _header(names: Sequence[str], record: str) -> list[str]:
    types = _TYPES[record]
    return [f"{name}:{_csv_type(types[name])}".rstrip(":") for name in names]


def _values(
    table: pa.Table, names: Sequence[str], record: str, **constants: Any
) -> list[list[Any]]:
    """Per row of ``table``, its ``names`` columns as the importer's text (a ``constants`` value
    where given: the run id), None as an empty field (no property, as the online writer's
    null)."""
    columns: list[Iterable[Any]] = []
    for name in names:
        if name in constants:
            columns.append(repeat(constants[name]))
            continue
        kind = _TYPES[record][name]
        values = table.column(name).to_pylist()
        if kind.element is not None:
            columns.append(["" if v is None else _array(v) for v in values])
        else:
            columns.append([_num(v) for v in values])
    return [list(row) for row in zip(*columns, strict=False)][: table.num_rows]


def _array(values: Iterable[Any]) -> str:
    return ARRAY.join(repr(v) if isinstance(v, float) else str(v) for v in values)


def _num(value: Any) -> Any:
    """A float as Python's shortest round-trip text (the importer parses it back exactly)."""
    return repr(value) if isinstance(value, float) else ("" if value is None else value)


class _Files:
    """CSV files for the importer, one per node label set or relationship type."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.handles: dict[str, Any] = {}
        self.writers: dict[str, Any] = {}
        self.rows: dict[str, int] = {}
        self.nodes: list[str] = []
        self.relationships: list[str] = []

    def writer(self, name: str, header: Sequence[str], node: bool) -> Any:
        if name not in self.writers:
            handle = (self.folder / f"{name}.csv").open("w", newline="")
            self.handles[name] = handle
            self.writers[name] = csv.writer(handle)
            self.writers[name].writerow(header)
            self.rows[name] = 0
            (self.nodes if node else self.relationships).append(name)
        return self.writers[name]

    def rows_of(self, name: str, header: Sequence[str], rows: Iterable[Sequence[Any]], node: bool):
        writer = self.writer(name, header, node)
        before = self.rows[name]
        for row in rows:
            writer.writerow(row)
            self.rows[name] += 1
        return self.rows[name] - before

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()

    def arguments(self) -> list[str]:
        return [f"--nodes={self.folder / f'{n}.csv'}" for n in self.nodes] + [
            f"--relationships={self.folder / f'{r}.csv'}" for r in self.relationships
        ]


def write_import_files(run_id: str, shards: Sequence[Shard], folder: Path) -> _Files:
    """The CSV files of the whole graph of the run's shards (model, run, prompts, firings and
    their relationships), in the importer's header format."""
    folder.mkdir(parents=True, exist_ok=True)
    files = _Files(folder)
    first = shards[0]
    model = first.model
    run = first.manifest["run"]
    components, vectors, _ = first.model_records()
    files.rows_of(
        "model",
        ["id:ID(Model)", ":LABEL", "n_layers:long", "n_heads:long", "d_model:long", "d_head:long"],
        [[model.id, "Model", model.n_layers, model.n_heads, model.d_model, model.d_head]],
        True,
    )
    done = sorted(b for shard in shards for b in shard.batches)
    files.rows_of(
        "run",
        [
            "id:ID(Run)",
            ":LABEL",
            "model_id",
            "model_revision",
            "method",
            "params",
            "dataset",
            "versions",
            "git_commit",
            "status",
            "schema_version:long",
            "created_at:datetime",
            "done_batches:long[]",
            "loaded_shards:string[]",
        ],
        [
            [
                run["id"],
                "Run",
                run["model_id"],
                run["model_revision"] or "",
                run["method"],
                to_json(run["params"]),
                to_json(run["dataset"]),
                to_json(run["versions"]),
                run["git_commit"] or "",
                "running",
                SCHEMA_VERSION,
                run["created_at"],
                _array(done),
                _array(sorted(s.marker for s in shards)),
            ]
        ],
        True,
    )
    files.rows_of(
        "of_model",
        [":START_ID(Run)", ":END_ID(Model)", ":TYPE"],
        [[run["id"], model.id, "OF_MODEL"]],
        False,
    )

    # Heads from the shard, and every writer the edges refer to (embeddings, MLPs, ...).
    found = {c.id: c for c in components}
    writers: dict[str, tuple[str, int | None, int | None]] = {}
    for shard in shards:
        table = shard.table("edges").select(["writer_kind", "writer_layer", "writer_head"])
        for kind, layer, head in set(zip(*(c.to_pylist() for c in table.columns), strict=True)):
            writers.setdefault(component_id(kind, layer, head), (kind, layer, head))
    component_rows = []
    for cid, c in found.items():
        labels = (
            ["Component", "Head", *head_labels(c.layer or 0, c.ioi_class)]
            if c.kind == "head"
            else ["Component"]
        )
        component_rows.append(
            [
                cid,
                ARRAY.join(labels),
                model.id,
                cid,
                c.kind,
                _num(c.layer),
                _num(c.head),
                c.ioi_class or "",
            ]
        )
    for cid, (kind, layer, head) in writers.items():
        if cid not in found:
            labels = (
                ["Component", "Head", *head_labels(layer or 0, None)]
                if kind == "head"
                else ["Component"]
            )
            component_rows.append(
                [cid, ARRAY.join(labels), model.id, cid, kind, _num(layer), _num(head), ""]
            )
    files.rows_of(
        "components",
        [
            ":ID(Component)",
            ":LABEL",
            "model_id",
            "id",
            "kind",
            "layer:long",
            "head:long",
            "ioi_class",
        ],
        component_rows,
        True,
    )
    sv_id = "{}.{}.{}".format
    files.rows_of(
        "singular_vectors",
        [
            ":ID(SV)",
            ":LABEL",
            "model_id",
            "layer:long",
            "head:long",
            "index:long",
            "sigma:double",
        ],
        (
            [
                sv_id(v.layer, v.head, v.index),
                "SingularVector",
                model.id,
                v.layer,
                v.head,
                v.index,
                repr(v.sigma),
            ]
            for v in vectors
        ),
        True,
    )
    next_firing = 0
    for shard in shards:
        prompts = shard.table("prompts")
        files.rows_of(
            "prompts",
            [":ID(Prompt)", ":LABEL", *_header(PROMPT_PROPERTIES, "prompts")],
            (
                [idx, "Prompt", *values]
                for idx, values in zip(
                    prompts.column("idx").to_pylist(),
                    _values(prompts, PROMPT_PROPERTIES, "prompts", run_id=run_id),
                    strict=True,
                )
            ),
            True,
        )
        files.rows_of(
            "has_prompt",
            [":START_ID(Run)", ":END_ID(Prompt)", ":TYPE"],
            ([run_id, idx, "HAS_PROMPT"] for idx in prompts.column("idx").to_pylist()),
            False,
        )
        firings = shard.table("firings")
        n = firings.num_rows
        ids = range(next_firing, next_firing + n)
        key = [firings.column(k).to_pylist() for k in FIRING_KEY]
        key_of = {k: fid for fid, k in zip(ids, zip(*key, strict=True), strict=True)}
        files.rows_of(
            "firings",
            [":ID(Firing)", ":LABEL", *_header(FIRING_NODE_PROPERTIES, "firings")],
            (
                [fid, "Firing", *values]
                for fid, values in zip(
                    ids,
                    _values(firings, FIRING_NODE_PROPERTIES, "firings", run_id=run_id),
                    strict=True,
                )
            ),
            True,
        )
        prompt, layers, heads = key[0], key[1], key[2]
        files.rows_of(
            "of_head",
            [":START_ID(Firing)", ":END_ID(Component)", ":TYPE"],
            (
                [fid, component_id("head", layer, head), "OF_HEAD"]
                for fid, layer, head in zip(ids, layers, heads, strict=True)
            ),
            False,
        )
        files.rows_of(
            "in_prompt",
            [":START_ID(Firing)", ":END_ID(Prompt)", ":TYPE"],
            ([fid, p, "IN_PROMPT"] for fid, p in zip(ids, prompt, strict=True)),
            False,
        )
        sparse = firings.column("sparse_set").combine_chunks()
        offsets = sparse.offsets.to_pylist()
        terms = pa.Table.from_struct_array(sparse.values)
        sv_index = terms.column("index").to_pylist()
        term_values = _values(terms, USE_PROPERTIES, "sparse_terms")

        def uses(
            offsets: list[int] = offsets,
            sv_index: list[int] = sv_index,
            term_values: list[list[Any]] = term_values,
            ids: range = ids,
            layers: list[int] = layers,
            heads: list[int] = heads,
        ) -> Iterable[list[Any]]:
            for n, fid in enumerate(ids):
                for j in range(offsets[n], offsets[n + 1]):
                    yield [fid, sv_id(layers[n], heads[n], sv_index[j]), "USES", *term_values[j]]

        files.rows_of(
            "uses",
            [":START_ID(Firing)", ":END_ID(SV)", ":TYPE", *_header(USE_PROPERTIES, "sparse_terms")],
            uses(),
            False,
        )
        edges = shard.table("edges")
        writer = zip(*(edges.column(k).to_pylist() for k in WRITER), strict=True)
        edge_keys = zip(*(edges.column(k).to_pylist() for k in FIRING_KEY), strict=True)
        files.rows_of(
            "writes",
            [
                ":START_ID(Component)",
                ":END_ID(Firing)",
                ":TYPE",
                *_header(WRITES_PROPERTIES, "edges"),
            ],
            (
                [component_id(*w), key_of[k], "WRITES", *values]
                for w, k, values in zip(
                    writer, edge_keys, _values(edges, WRITES_PROPERTIES, "edges"), strict=True
                )
            ),
            False,
        )
        next_firing += n
    files.close()
    return files


def empty_firing_lists(shards: Sequence[Shard]) -> list[dict[str, Any]]:
    """Per firing of the shards with an empty list property (an ACC side not traced: its
    ``sparse_dest`` or ``sparse_source``), its key and those properties as empty lists: what the
    importer's CSV cannot write (:meth:`AtlasStore.set_empty_firing_lists` sets them)."""
    names = [name for name in FIRING_PROPERTIES if _TYPES["firings"][name].element is not None]
    rows = []
    for shard in shards:
        firings = shard.table("firings")
        keys = zip(*(firings.column(k).to_pylist() for k in FIRING_KEY), strict=True)
        lists = zip(*(firings.column(name).to_pylist() for name in names), strict=True)
        for key, values in zip(keys, lists, strict=True):
            empty: dict[str, list[Any]] = {
                n: [] for n, v in zip(names, values, strict=True) if v is not None and not v
            }
            if empty:
                rows.append({"key": list(key), "empty": empty})
    return rows


def bulk_load(
    run_id: str,
    paths: Sequence[Path],
    *,
    server: LocalServer | None = None,
    verify: bool = True,
    keep_files: bool = False,
) -> BulkSummary:
    """Replace the local server's database with the run of these shards (module docstring)."""
    started = time.perf_counter()
    server = server or LocalServer.configured()
    if not server.is_installed():
        raise AtlasError("The local server is not installed: `circuit-atlas server install`.")
    conf = server.instance / "conf"
    if not (conf / "neo4j.conf").exists():
        raise AtlasError("Start the local server once (`circuit-atlas server start`) first.")
    shards = open_shards(run_id, paths, verify=verify)
    summary = BulkSummary(run_id)
    folder = server.instance / "import" / f"bulk-{os.getpid()}"
    clock = time.perf_counter()
    files = write_import_files(run_id, shards, folder)
    summary.csv_seconds = time.perf_counter() - clock
    summary.files = dict(files.rows)
    server.stop()
    close_drivers(server.bolt_uri)  # their bookmarks name the old database's transactions
    try:
        clock = time.perf_counter()
        command = [
            _java(),
            "-Xmx1g",
            "-cp",
            f"{server.plugins}/*:{server.lib}/*",
            ADMIN_TOOL,
            "database",
            "import",
            "full",
            "neo4j",  # before the file lists, whose arity is open-ended
            "--overwrite-destination=true",
            "--id-type=string",
            f"--array-delimiter=U+{ord(ARRAY):04X}",
            "--multiline-fields=true",  # a prompt's text or token may hold a line break
            "--skip-bad-entries-logging=true",
            "--bad-tolerance=0",
            f"--report-file={folder / 'import.report'}",
            *files.arguments(),
        ]
        env = {**os.environ, "NEO4J_HOME": str(server.home), "NEO4J_CONF": str(conf)}
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        summary.import_seconds = time.perf_counter() - clock
        if result.returncode != 0:
            raise AtlasError(
                f"neo4j-admin import failed (exit {result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )
        summary.nodes = _imported(result.stdout, "nodes")
        summary.relationships = _imported(result.stdout, "relationships")
    finally:
        if not keep_files:
            shutil.rmtree(folder, ignore_errors=True)
        settings = server.start()  # the database is new either way: start it to finish it
    clock = time.perf_counter()
    store = AtlasStore.connect(settings)
    store.init_schema()
    write_model_records(store, shards[0])  # MERGE: what the import has, plus captions, ALIGNED
    schema_seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    summary.empty_lists = store.set_empty_firing_lists(run_id, empty_firing_lists(shards))
    summary.empty_lists_seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    if set(range(shards[0].manifest["n_batches"])) <= {b for s in shards for b in s.batches}:
        store.record_behaviour(run_id)
        store.complete_run(run_id)
    else:
        store.aggregate_run(run_id)
    summary.schema_seconds = schema_seconds + time.perf_counter() - clock
    summary.wall_seconds = time.perf_counter() - started
    return summary


def _imported(output: str, what: str) -> int:
    """The importer's final count of nodes or relationships ("IMPORT DONE ... 12 nodes")."""
    match = re.findall(rf"Imported:\s*(?:.*?\n)*?\s*([\d,]+) {what}", output)
    if match:
        return int(match[-1].replace(",", ""))
    found = re.findall(rf"([\d,]+) {what}", output)
    return int(found[-1].replace(",", "")) if found else 0


__all__ = ["BulkSummary", "bulk_load", "empty_firing_lists", "write_import_files"]
