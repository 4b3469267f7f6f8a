"""A fresh atlas built offline: ``neo4j-admin database import full`` from runs' shards.

For a new, large atlas the online loader's one writer (~50k relationships/s) is the bottleneck;
Neo4j's offline importer writes the store files directly. It is **offline and replaces the
database**: :func:`bulk_load` stops the local server, turns the shards into the importer's CSV
files (:func:`write_import_files`: Arrow converts whole columns, a header file and one data file
per shard for each node label or relationship type, the single label or type given on the
command line; several runs, of one model or several, at once: each model's components and
singular vectors and each run's prompts are an ID space of their own), imports them with
``--overwrite-destination`` into the server's ``neo4j`` database (everything that database
held is gone; the ``system`` database with the password is untouched), starts the server
again, then creates the
constraints and indexes, writes the model's records as ``load`` does (MERGE: the imported heads
and singular vectors gain their captions, the ALIGNED pairs are written) and completes each run
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from atlas.errors import AtlasError
from atlas.interchange.columnar import ColumnType, field_types
from atlas.interchange.shards import Shard
from atlas.scale.load import open_runs_shards, write_model_records
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
from ingest.run_ids import check_run_id

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
    run_ids: list[str]
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


def _field(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column as the importer reads it: a list joined by :data:`ARRAY`, and an empty string
    or list as null (an empty field: no property, as the online writer's null). Numbers stay
    numbers: Arrow's CSV writer prints a float as its shortest round-trip text, which the
    importer parses back exactly."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_list(column.type):
        column = pc.binary_join(column.cast(pa.list_(pa.string())), ARRAY)
    if pa.types.is_string(column.type):
        column = pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)
    return column


def _properties(table: pa.Table, names: Sequence[str], run_id: str) -> list[pa.Array]:
    """The ``names`` columns of ``table`` as fields, ``run_id`` the one column not stored."""
    return [
        pa.array([run_id] * table.num_rows, pa.string())
        if name == "run_id"
        else _field(table.column(name))
        for name in names
    ]


def _component_ids(kind: pa.Array | str, layer: pa.Array, head: pa.Array) -> pa.Array:
    """:func:`~ingest.records.types.component_id` of whole columns (``kind`` a column, or
    ``"head"`` for all rows)."""
    layer_text, head_text = layer.cast(pa.string()), head.cast(pa.string())
    heads = pc.binary_join_element_wise(layer_text, head_text, ".")
    if isinstance(kind, str):
        return heads
    others = pc.if_else(pc.is_null(layer), kind, pc.binary_join_element_wise(kind, layer_text, ""))
    return pc.if_else(pc.equal(kind, "head"), heads, others)


class ImportFiles:
    """CSV files for the importer: per node label or relationship type, a header file and one
    data file per shard (the importer reads them as one input)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.rows: dict[str, int] = {}
        self.headers: dict[str, list[str]] = {}
        self.parts: dict[str, list[Path]] = {}
        self.kinds: dict[str, tuple[str, str]] = {}  # name: (--nodes or --relationships, prefix)

    def write(
        self,
        name: str,
        header: Sequence[str],
        columns: Sequence[pa.Array],
        *,
        label: str = "",
        relationship_type: str = "",
    ) -> None:
        """Rows given as ``columns`` (in ``header`` order), for nodes labelled ``label`` (or
        by a ``:LABEL`` column) or relationships of type ``relationship_type``."""
        if name not in self.headers:
            self.headers[name] = list(header)
            self.parts[name] = []
            self.rows[name] = 0
            self.kinds[name] = (
                ("relationships", relationship_type) if relationship_type else ("nodes", label)
            )
        path = self.folder / f"{name}.{len(self.parts[name])}.csv"
        table = pa.table(list(columns), names=[str(n) for n in range(len(header))])
        pacsv.write_csv(table, path, pacsv.WriteOptions(include_header=False))
        self.parts[name].append(path)
        self.rows[name] += table.num_rows

    def close(self) -> None:
        """Write the header files (one line each)."""
        for name, header in self.headers.items():
            with (self.folder / f"{name}.header.csv").open("w", newline="") as handle:
                csv.writer(handle).writerow(header)

    def arguments(self) -> list[str]:
        """The importer's ``--nodes`` and ``--relationships`` arguments, nodes first."""
        arguments: dict[str, list[str]] = {"nodes": [], "relationships": []}
        for name, (option, prefix) in self.kinds.items():
            files = ",".join(map(str, [self.folder / f"{name}.header.csv", *self.parts[name]]))
            arguments[option].append(f"--{option}={prefix + '=' if prefix else ''}{files}")
        return arguments["nodes"] + arguments["relationships"]


def write_import_files(runs: Mapping[str, Sequence[Shard]], folder: Path) -> ImportFiles:
    """The CSV files of the whole graph of the runs' shards (per run id, its shards), in the
    importer's header format, columns converted by Arrow: each model once (its heads, singular
    vectors and every writer its runs' edges name), each run with its prompts, firings and their
    relationships. Each model's components and vectors and each run's prompts are an ID space
    of their own (``Component0``, ``SV0``, ``Prompt0``, ...): equal ids of two models or two
    runs stay apart."""
    folder.mkdir(parents=True, exist_ok=True)
    files = ImportFiles(folder)
    spaces: dict[str, int] = {}  # model id: the number of its ID spaces
    first_shards: dict[str, Shard] = {}
    writers: dict[str, set[tuple[str, int | None, int | None]]] = {}
    next_firing = 0
    for number, (run_id, shards) in enumerate(runs.items()):
        model_id = shards[0].model.id
        if model_id not in spaces:
            spaces[model_id] = len(spaces)
            first_shards[model_id] = shards[0]
            writers[model_id] = set()
            _write_model(files, spaces[model_id], shards[0])
        next_firing = _write_run(
            files, number, spaces[model_id], run_id, shards, next_firing, writers[model_id]
        )
    for model_id, space in spaces.items():
        _write_components(files, space, first_shards[model_id], writers[model_id])
    files.close()
    return files


def _write_model(files: ImportFiles, space: int, shard: Shard) -> None:
    """The model node and its singular vectors (ID space ``SV<space>``)."""
    model = shard.model
    _, vectors, _ = shard.model_records()
    files.write(
        "model",
        ["id:ID(Model)", "n_layers:long", "n_heads:long", "d_model:long", "d_head:long"],
        [
            pa.array([v])
            for v in (model.id, model.n_layers, model.n_heads, model.d_model, model.d_head)
        ],
        label="Model",
    )
    sv_id = "{}.{}.{}".format
    files.write(
        f"singular_vectors.{space}",
        [f":ID(SV{space})", "model_id", "layer:long", "head:long", "index:long", "sigma:double"],
        [
            pa.array([sv_id(v.layer, v.head, v.index) for v in vectors], pa.string()),
            pa.array([model.id] * len(vectors), pa.string()),
            *(
                pa.array([getattr(v, name) for v in vectors], kind)
                for name, kind in (
                    ("layer", pa.int64()),
                    ("head", pa.int64()),
                    ("index", pa.int64()),
                    ("sigma", pa.float64()),
                )
            ),
        ],
        label="SingularVector",
    )


def _write_run(
    files: ImportFiles,
    number: int,
    space: int,
    run_id: str,
    shards: Sequence[Shard],
    next_firing: int,
    writers: set[tuple[str, int | None, int | None]],
) -> int:
    """The run node, its prompts (ID space ``Prompt<number>``), its firings (import ids from
    ``next_firing`` on) and their relationships into the model's ID spaces ``space``; adds the
    writers its edges name to ``writers``. Returns the next free firing id."""
    run = shards[0].manifest["run"]
    done = sorted(b for shard in shards for b in shard.batches)
    run_values = {
        "id:ID(Run)": pa.array([run["id"]]),
        "model_id": pa.array([run["model_id"]]),
        "model_revision": pa.array([run["model_revision"]], pa.string()),
        "method": pa.array([run["method"]]),
        "params": pa.array([to_json(run["params"])]),
        "dataset": pa.array([to_json(run["dataset"])]),
        "versions": pa.array([to_json(run["versions"])]),
        "git_commit": pa.array([run["git_commit"]], pa.string()),
        "status": pa.array(["running"]),
        "schema_version:long": pa.array([SCHEMA_VERSION]),
        "created_at:datetime": pa.array([run["created_at"]]),
        "done_batches:long[]": pa.array([done], pa.list_(pa.int64())),
        "loaded_shards:string[]": pa.array([sorted(s.marker for s in shards)]),
    }
    files.write("run", list(run_values), [_field(c) for c in run_values.values()], label="Run")
    files.write(
        "of_model",
        [":START_ID(Run)", ":END_ID(Model)"],
        [pa.array([run["id"]]), pa.array([run["model_id"]])],
        relationship_type="OF_MODEL",
    )
    prompt_space, component_space = f"Prompt{number}", f"Component{space}"
    for shard in shards:
        prompts = shard.table("prompts")
        idx = prompts.column("idx").combine_chunks()
        files.write(
            f"prompts.{number}",
            [f":ID({prompt_space})", *_header(PROMPT_PROPERTIES, "prompts")],
            [idx, *_properties(prompts, PROMPT_PROPERTIES, run_id)],
            label="Prompt",
        )
        files.write(
            f"has_prompt.{number}",
            [":START_ID(Run)", f":END_ID({prompt_space})"],
            [pa.array([run_id] * len(idx), pa.string()), idx],
            relationship_type="HAS_PROMPT",
        )
        firings = shard.table("firings")
        ids = pa.array(range(next_firing, next_firing + firings.num_rows), pa.int64())
        next_firing += firings.num_rows
        files.write(
            "firings",
            [":ID(Firing)", *_header(FIRING_NODE_PROPERTIES, "firings")],
            [ids, *_properties(firings, FIRING_NODE_PROPERTIES, run_id)],
            label="Firing",
        )
        layer, head = (firings.column(c).combine_chunks() for c in ("layer", "head"))
        files.write(
            f"of_head.{space}",
            [":START_ID(Firing)", f":END_ID({component_space})"],
            [ids, _component_ids("head", layer, head)],
            relationship_type="OF_HEAD",
        )
        files.write(
            f"in_prompt.{number}",
            [":START_ID(Firing)", f":END_ID({prompt_space})"],
            [ids, firings.column("prompt").combine_chunks()],
            relationship_type="IN_PROMPT",
        )
        sparse = firings.column("sparse_set").combine_chunks()
        owner = pc.list_parent_indices(sparse)  # per term, the row of its firing
        terms = sparse.flatten()
        sv_ids = pc.binary_join_element_wise(
            *(pc.take(c, owner).cast(pa.string()) for c in (layer, head)),
            terms.field("index").cast(pa.string()),
            ".",
        )
        files.write(
            f"uses.{space}",
            [
                ":START_ID(Firing)",
                f":END_ID(SV{space})",
                *_header(USE_PROPERTIES, "sparse_terms"),
            ],
            [pc.take(ids, owner), sv_ids, *(_field(terms.field(n)) for n in USE_PROPERTIES)],
            relationship_type="USES",
        )
        edges = shard.table("edges")
        kind, writer_layer, writer_head = (edges.column(c).combine_chunks() for c in WRITER)
        found = edges.select(list(WRITER)).group_by(list(WRITER)).aggregate([])
        writers.update(zip(*(found.column(c).to_pylist() for c in WRITER), strict=True))
        files.write(
            f"writes.{space}",
            [
                f":START_ID({component_space})",
                ":END_ID(Firing)",
                *_header(WRITES_PROPERTIES, "edges"),
            ],
            [
                _component_ids(kind, writer_layer, writer_head),
                _firing_of_edges(firings, ids, edges),
                *(_field(edges.column(n)) for n in WRITES_PROPERTIES),
            ],
            relationship_type="WRITES",
        )
    return next_firing


def _write_components(
    files: ImportFiles,
    space: int,
    shard: Shard,
    writers: set[tuple[str, int | None, int | None]],
) -> None:
    """The model's components (ID space ``Component<space>``): its heads, from the shard, and
    every other writer its runs' edges name (embeddings, MLPs, ...)."""
    model = shard.model
    components, _, _ = shard.model_records()
    rows: list[tuple[str, str, int | None, int | None, str | None]] = [
        (c.id, c.kind, c.layer, c.head, c.ioi_class) for c in components
    ]
    known = {c.id for c in components}
    for kind_, layer_, head_ in sorted(writers, key=str):
        cid = component_id(kind_, layer_, head_)  # type: ignore[arg-type]
        if cid not in known:
            known.add(cid)
            rows.append((cid, kind_, layer_, head_, None))
    labels = [
        ARRAY.join(["Component", "Head", *head_labels(layer_ or 0, ioi)])
        if kind_ == "head"
        else "Component"
        for _, kind_, layer_, _, ioi in rows
    ]
    cids, kinds, layers, heads, classes = (list(c) for c in zip(*rows, strict=True))
    files.write(
        f"components.{space}",
        [
            f":ID(Component{space})",
            ":LABEL",
            "model_id",
            "id",
            "kind",
            "layer:long",
            "head:long",
            "ioi_class",
        ],
        [
            pa.array(cids, pa.string()),
            pa.array(labels, pa.string()),
            pa.array([model.id] * len(rows), pa.string()),
            pa.array(cids, pa.string()),
            pa.array(kinds, pa.string()),
            pa.array(layers, pa.int64()),
            pa.array(heads, pa.int64()),
            _field(pa.array(classes, pa.string())),
        ],
    )


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


def _firing_of_edges(firings: pa.Table, ids: pa.Array, edges: pa.Table) -> pa.Array:
    """Per edge row, the import id of its firing (the firing with its key, in the same shard)."""
    keys = list(FIRING_KEY)
    rows = pa.array(range(edges.num_rows), pa.int64())
    by_key = firings.select(keys).append_column("firing", ids)
    found = (
        edges.select(keys)
        .append_column("row", rows)
        .join(by_key, keys=keys, join_type="left outer")
        .sort_by("row")
        .column("firing")
        .combine_chunks()
    )
    if found.null_count:
        raise AtlasError(f"{found.null_count} edges of a shard refer to firings it does not hold")
    return found


def checked_run_ids(run_ids: Sequence[str]) -> list[str]:
    """``run_ids`` as a list once each is a valid run id, named once (else an error)."""
    for run_id in run_ids:
        check_run_id(run_id)
    if not run_ids or len(set(run_ids)) != len(run_ids):
        raise AtlasError(f"Name each run to import once: {', '.join(run_ids) or 'none given'}.")
    return list(run_ids)


def bulk_load(
    run_ids: Sequence[str],
    paths: Sequence[Path],
    *,
    server: LocalServer | None = None,
    verify: bool = True,
    keep_files: bool = False,
) -> BulkSummary:
    """Replace the local server's database with the runs ``run_ids`` of these shards, several
    runs and models in one import (module docstring)."""
    started = time.perf_counter()
    server = server or LocalServer.configured()
    if not server.is_installed():
        raise AtlasError("The local server is not installed: `circuit-atlas server install`.")
    conf = server.instance / "conf"
    if not (conf / "neo4j.conf").exists():
        raise AtlasError("Start the local server once (`circuit-atlas server start`) first.")
    runs = open_runs_shards(checked_run_ids(run_ids), paths, verify=verify)
    summary = BulkSummary(list(run_ids))
    folder = server.instance / "import" / f"bulk-{os.getpid()}"
    clock = time.perf_counter()
    files = write_import_files(runs, folder)
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
    for shard in {shards[0].model.id: shards[0] for shards in runs.values()}.values():
        write_model_records(store, shard)  # per model, MERGE: the import's, captions, ALIGNED
    schema_seconds = time.perf_counter() - clock
    for run_id, shards in runs.items():
        clock = time.perf_counter()
        summary.empty_lists += store.set_empty_firing_lists(run_id, empty_firing_lists(shards))
        summary.empty_lists_seconds += time.perf_counter() - clock
        clock = time.perf_counter()
        if set(range(shards[0].manifest["n_batches"])) <= {b for s in shards for b in s.batches}:
            store.record_behaviour(run_id)
            store.complete_run(run_id)
        else:
            store.aggregate_run(run_id)
        schema_seconds += time.perf_counter() - clock
    summary.schema_seconds = schema_seconds
    summary.wall_seconds = time.perf_counter() - started
    return summary


def _imported(output: str, what: str) -> int:
    """The importer's final count of nodes or relationships ("IMPORT DONE ... 12 nodes")."""
    match = re.findall(rf"Imported:\s*(?:.*?\n)*?\s*([\d,]+) {what}", output)
    if match:
        return int(match[-1].replace(",", ""))
    found = re.findall(rf"([\d,]+) {what}", output)
    return int(found[-1].replace(",", "")) if found else 0


__all__ = [
    "BulkSummary",
    "ImportFiles",
    "bulk_load",
    "checked_run_ids",
    "empty_firing_lists",
    "write_import_files",
]
