"""The shard format: a run's records as Parquet files plus a ``manifest.json`` written last.

A shard is one folder holding part of a run (a contiguous range of its batches), written by
``circuit-atlas trace --shard i/N`` without any database and read by ``circuit-atlas load``:

- ``prompts.parquet``, ``firings.parquet`` (each with its sparse set as a list of
  ``{index, rank, term, sign}``) and ``edges.parquet`` (the per-prompt WRITES: the firing's key,
  the writer, side, weight, position, role and ``parts``): one row per record, each with the
  ``batch`` it belongs to, appended batch by batch (memory is bounded by the batch);
- ``components.parquet``, ``singular_vectors.parquet`` and ``aligned.parquet``: the model's
  heads, σ values and ALIGNED pairs (small; every shard carries them, so any one is enough);
- ``manifest.json``, written last and atomically (a temporary file renamed): the run record, the
  model, the shard's index and count, its batches, the row count, size and sha256 of every file,
  the code's commit and the package versions. **A folder without a manifest is an incomplete
  shard** (a job killed while writing it): :func:`read_shard` refuses it, and tracing the same
  shard again replaces it.

Floats are stored as float64, so every weight a shard carries equals the one ``ingest`` writes.
Pure file I/O on ``ingest.records`` types (``pyarrow``); no database, no model.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from atlas.errors import AtlasError
from ingest.records.types import (
    AlignedRecord,
    BatchDone,
    ComponentRecord,
    FiringKey,
    FiringRecord,
    ModelRecord,
    PromptRecord,
    RecordBatch,
    RunRecord,
    SingularVectorRecord,
    SparseTerm,
    WriteEdgeRecord,
)

FORMAT = "circuit-atlas-shard"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PACKAGES = ("circuit-atlas", "torch", "transformer-lens", "transformers", "pyarrow", "numpy")

_I = pa.int64()
_F = pa.float64()
_S = pa.string()
_TERM = pa.struct([("index", _I), ("rank", _I), ("term", _F), ("sign", _I)])
_KEY = [("prompt", _I), ("layer", _I), ("head", _I), ("dest", _I), ("src", _I)]

SCHEMAS: dict[str, pa.Schema] = {
    "prompts": pa.schema(
        [
            ("batch", _I),
            ("idx", _I),
            ("text", _S),
            ("template", _S),
            ("order", _S),
            ("io", _S),
            ("s", _S),
            ("roles", _S),
            ("tokens", pa.list_(_S)),
            ("logit_diff", _F),
        ]
    ),
    "firings": pa.schema(
        [
            ("batch", _I),
            *_KEY,
            ("dest_role", _S),
            ("src_role", _S),
            ("attn", _F),
            ("score", _F),
            ("n_svs", _I),
            ("sparse_set", pa.list_(_TERM)),
        ]
    ),
    "edges": pa.schema(
        [
            ("batch", _I),
            *_KEY,
            ("writer_kind", _S),
            ("writer_layer", _I),
            ("writer_head", _I),
            ("side", _S),
            ("weight", _F),
            ("pos", _I),
            ("role", _S),
            ("parts", pa.list_(_F)),
        ]
    ),
    "components": pa.schema([("kind", _S), ("layer", _I), ("head", _I), ("ioi_class", _S)]),
    "singular_vectors": pa.schema([("layer", _I), ("head", _I), ("index", _I), ("sigma", _F)]),
    "aligned": pa.schema(
        [("a", pa.list_(_I)), ("side_a", _S), ("b", pa.list_(_I)), ("side_b", _S), ("cos", _F)]
    ),
}
RUN_TABLES = ("prompts", "firings", "edges")
MODEL_TABLES = ("components", "singular_vectors", "aligned")


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` of ``count`` (``0 <= index < count``), written ``i/N``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise AtlasError(f"Shard {self.index}/{self.count}: need 0 <= i < N (e.g. 0/2, 1/2).")

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        index, sep, count = text.partition("/")
        if not sep or not index.strip().isdigit() or not count.strip().isdigit():
            raise AtlasError(f"Shard '{text}' is not of the form i/N (e.g. 0/2).")
        return cls(int(index), int(count))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def batches(self, n_batches: int) -> range:
        """This shard's contiguous range of a run's ``n_batches`` batches (deterministic)."""
        return range(
            self.index * n_batches // self.count, (self.index + 1) * n_batches // self.count
        )

    def folder_name(self, run_id: str) -> str:
        return f"{run_id}.shard-{self.index:05d}-of-{self.count:05d}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


# ----- records → columns ---------------------------------------------------------------------


def _list_array(offsets: list[int], values: pa.Array) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)


def _prompt_table(batch: int, prompts: Sequence[PromptRecord]) -> pa.Table:
    return pa.table(
        {
            "batch": [batch] * len(prompts),
            "idx": [p.idx for p in prompts],
            "text": [p.text for p in prompts],
            "template": [p.template for p in prompts],
            "order": [p.order for p in prompts],
            "io": [p.io for p in prompts],
            "s": [p.s for p in prompts],
            "roles": [json.dumps(dict(p.roles), sort_keys=True) for p in prompts],
            "tokens": [list(p.tokens) for p in prompts],
            "logit_diff": [p.logit_diff for p in prompts],
        },
        schema=SCHEMAS["prompts"],
    )


def _firing_table(batch: int, firings: Sequence[FiringRecord]) -> pa.Table:
    offsets = [0]
    terms: list[SparseTerm] = []
    for firing in firings:
        terms += firing.sparse_set
        offsets.append(len(terms))
    term_values = pa.StructArray.from_arrays(
        [
            pa.array([t.index for t in terms], _I),
            pa.array([t.rank for t in terms], _I),
            pa.array([t.term for t in terms], _F),
            pa.array([t.sign for t in terms], _I),
        ],
        fields=list(_TERM),
    )
    columns: dict[str, Any] = {"batch": [batch] * len(firings)}
    for name in ("prompt", "layer", "head", "dest", "src", "dest_role", "src_role", "attn"):
        columns[name] = [getattr(f, name) for f in firings]
    columns["score"] = [f.score for f in firings]
    columns["n_svs"] = [f.n_svs for f in firings]
    arrays = [pa.array(columns[f.name], f.type) for f in SCHEMAS["firings"] if f.name in columns]
    return pa.Table.from_arrays(
        [*arrays, _list_array(offsets, term_values)], schema=SCHEMAS["firings"]
    )


def _edge_table(batch: int, edges: Sequence[WriteEdgeRecord]) -> pa.Table:
    offsets = [0]
    parts: list[float] = []
    for edge in edges:
        parts += edge.parts
        offsets.append(len(parts))
    columns: dict[str, list[Any]] = {"batch": [batch] * len(edges)}
    for name in ("prompt", "layer", "head", "dest", "src"):
        columns[name] = [getattr(e.firing, name) for e in edges]
    for name in ("writer_kind", "writer_layer", "writer_head", "side", "weight", "pos", "role"):
        columns[name] = [getattr(e, name) for e in edges]
    schema = SCHEMAS["edges"]
    arrays = [pa.array(columns[f.name], f.type) for f in schema if f.name != "parts"]
    return pa.Table.from_arrays([*arrays, _list_array(offsets, pa.array(parts, _F))], schema=schema)


def _model_tables(
    components: Sequence[ComponentRecord],
    singular_vectors: Sequence[SingularVectorRecord],
    aligned: Sequence[AlignedRecord],
) -> dict[str, pa.Table]:
    def rows(records: Sequence[Any], names: Sequence[str]) -> dict[str, list[Any]]:
        return {name: [getattr(r, name) for r in records] for name in names}

    return {
        "components": pa.table(
            rows(components, ("kind", "layer", "head", "ioi_class")), schema=SCHEMAS["components"]
        ),
        "singular_vectors": pa.table(
            rows(singular_vectors, ("layer", "head", "index", "sigma")),
            schema=SCHEMAS["singular_vectors"],
        ),
        "aligned": pa.table(
            {
                "a": [list(r.a) for r in aligned],
                "side_a": [r.side_a for r in aligned],
                "b": [list(r.b) for r in aligned],
                "side_b": [r.side_b for r in aligned],
                "cos": [r.cos for r in aligned],
            },
            schema=SCHEMAS["aligned"],
        ),
    }


# ----- writing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardHeader:
    """What a shard says about itself besides its rows (the manifest's fixed part)."""

    run: RunRecord
    model: ModelRecord
    align_params: str
    shard: ShardSpec
    batches: Sequence[int]
    n_batches: int  # of the whole run
    batch_size: int


class ShardWriter:
    """Writes one shard folder: :meth:`write_batch` per batch, then :meth:`finish` (the manifest).

    Opening a folder that holds an incomplete shard (no manifest) clears it first; a complete
    one is refused (:meth:`finish` would overwrite a shard another job may be loading).
    """

    def __init__(self, folder: Path, header: ShardHeader) -> None:
        self.folder = folder
        self.header = header
        if (folder / MANIFEST).exists():
            raise AtlasError(f"{folder} already holds a complete shard; remove it to trace again.")
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.iterdir():  # what a killed job left behind
            if stale.is_file():
                stale.unlink()
        self._writers = {
            name: pq.ParquetWriter(folder / f"{name}.parquet", SCHEMAS[name], compression="zstd")
            for name in RUN_TABLES
        }
        self.rows = dict.fromkeys(RUN_TABLES, 0)
        self.written_batches: list[int] = []

    def write_model(
        self,
        components: Sequence[ComponentRecord],
        singular_vectors: Sequence[SingularVectorRecord],
        aligned: Sequence[AlignedRecord],
    ) -> None:
        for name, table in _model_tables(components, singular_vectors, aligned).items():
            pq.write_table(table, self.folder / f"{name}.parquet", compression="zstd")
            self.rows[name] = table.num_rows

    def write_batch(self, index: int, records: RecordBatch) -> None:
        tables = {
            "prompts": _prompt_table(index, records.prompts),
            "firings": _firing_table(index, records.firings),
            "edges": _edge_table(index, records.edges),
        }
        for name, table in tables.items():
            if table.num_rows:
                self._writers[name].write_table(table)
            self.rows[name] += table.num_rows
        self.written_batches.append(index)

    def finish(self, extra: Mapping[str, Any] | None = None) -> Path:
        """Close the files, then write the manifest (atomically, last). Returns its path."""
        for writer in self._writers.values():
            writer.close()
        header = self.header
        if sorted(self.written_batches) != list(header.batches):
            raise AtlasError(
                f"Shard {header.shard} wrote batches {sorted(self.written_batches)}, expected "
                f"{list(header.batches)}; not finished."
            )
        files = {}
        for name in (*RUN_TABLES, *MODEL_TABLES):
            path = self.folder / f"{name}.parquet"
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
            files[path.name] = {
                "rows": self.rows[name],
                "bytes": path.stat().st_size,
                "sha256": file_sha256(path),
            }
        run = asdict(header.run)
        run["created_at"] = header.run.created_at.isoformat()
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "run": run,
            "model": asdict(header.model),
            "align_params": header.align_params,
            "shard": {"index": header.shard.index, "count": header.shard.count},
            "batches": list(header.batches),
            "n_batches": header.n_batches,
            "batch_size": header.batch_size,
            "rows": {name: self.rows[name] for name in (*RUN_TABLES, *MODEL_TABLES)},
            "files": files,
            "code": {"git_commit": header.run.git_commit, "format_version": FORMAT_VERSION},
            "packages": package_versions(),
            **(extra or {}),
        }
        temporary = self.folder / f".{MANIFEST}.tmp"
        with temporary.open("w") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.folder / MANIFEST)
        return self.folder / MANIFEST


# ----- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """A complete shard on disk, its manifest read and its files checked."""

    folder: Path
    manifest: Mapping[str, Any] = field(repr=False)

    @property
    def spec(self) -> ShardSpec:
        return ShardSpec(self.manifest["shard"]["index"], self.manifest["shard"]["count"])

    @property
    def run(self) -> RunRecord:
        fields_ = dict(self.manifest["run"])
        fields_["created_at"] = datetime.fromisoformat(fields_["created_at"])
        return RunRecord(**fields_)

    @property
    def model(self) -> ModelRecord:
        return ModelRecord(**self.manifest["model"])

    @property
    def batches(self) -> list[int]:
        return list(self.manifest["batches"])

    @property
    def marker(self) -> str:
        """What the database records once the shard is loaded: ``i/N``."""
        return str(self.spec)

    def path(self, table: str) -> Path:
        return self.folder / f"{table}.parquet"

    def table(self, name: str) -> pa.Table:
        return pq.read_table(self.path(name), schema=SCHEMAS[name])

    def model_records(
        self,
    ) -> tuple[list[ComponentRecord], list[SingularVectorRecord], list[AlignedRecord]]:
        model_id = self.model.id
        components = [
            ComponentRecord(model_id, **row) for row in self.table("components").to_pylist()
        ]
        vectors = [
            SingularVectorRecord(model_id, **row)
            for row in self.table("singular_vectors").to_pylist()
        ]
        aligned = [
            AlignedRecord(
                model_id,
                tuple(row["a"]),  # type: ignore[arg-type]
                row["side_a"],
                tuple(row["b"]),  # type: ignore[arg-type]
                row["side_b"],
                row["cos"],
            )
            for row in self.table("aligned").to_pylist()
        ]
        return components, vectors, aligned

    def record_batches(self) -> Iterator[tuple[int, RecordBatch]]:
        """Each batch of the shard as the :class:`RecordBatch` ``trace_run`` yielded for it
        (marker included), in batch order."""
        run_id = self.manifest["run"]["id"]
        prompts = _split(self.table("prompts"))
        firings = _split(self.table("firings"))
        edges = _split(self.table("edges"))
        for index in self.batches:
            yield (
                index,
                RecordBatch(
                    prompts=_prompts(run_id, prompts.get(index)),
                    firings=_firings(run_id, firings.get(index)),
                    edges=_edges(run_id, edges.get(index)),
                    done=BatchDone(run_id, index),
                ),
            )


def read_shard(folder: Path, *, verify: bool = True) -> Shard:
    """The complete shard in ``folder``; an incomplete one (no manifest) or a file whose size or
    sha256 differs from the manifest's is refused with an :class:`AtlasError`."""
    manifest_path = folder / MANIFEST
    if not manifest_path.exists():
        raise AtlasError(
            f"{folder} is an incomplete shard (no {MANIFEST}: its trace job did not finish); it "
            "is never loaded. Run its `circuit-atlas trace --shard i/N` again."
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise AtlasError(f"{folder} is not a circuit-atlas shard of format {FORMAT_VERSION}.")
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.exists() or path.stat().st_size != expected["bytes"]:
            raise AtlasError(f"{path} is missing or has changed since its shard was written.")
        if verify and file_sha256(path) != expected["sha256"]:
            raise AtlasError(f"{path} does not match its sha256 in {manifest_path}.")
    return Shard(folder, manifest)


def shard_folders(paths: Sequence[Path]) -> list[Path]:
    """Shard folders under ``paths``: each path is a shard folder (it holds Parquet files or a
    manifest) or a folder whose subfolders are."""
    found = []
    for path in paths:
        if not path.is_dir():
            raise AtlasError(f"{path} is not a folder of shards.")
        if _is_shard_folder(path):
            found.append(path)
        else:
            found += sorted(child for child in path.iterdir() if _is_shard_folder(child))
    if not found:
        raise AtlasError(f"No shards under {', '.join(map(str, paths))}.")
    return found


def _is_shard_folder(path: Path) -> bool:
    return path.is_dir() and (
        (path / MANIFEST).exists() or any(path.glob("*.parquet")) or ".shard-" in path.name
    )


def _split(table: pa.Table) -> dict[int, pa.Table]:
    """The table's rows per batch (rows were written batch by batch, so each is contiguous)."""
    batches = table.column("batch").to_pylist()
    parts = {}
    start = 0
    for end in range(1, len(batches) + 1):
        if end == len(batches) or batches[end] != batches[start]:
            parts[batches[start]] = table.slice(start, end - start)
            start = end
    return parts


def _columns(table: pa.Table, names: Sequence[str]) -> list[list[Any]]:
    return [table.column(name).to_pylist() for name in names]


def _nested(column: pa.ChunkedArray) -> list[list[Any]]:
    """A list column as Python lists, without building one dict per struct element."""
    array = column.combine_chunks()
    offsets = array.offsets.to_pylist()
    values = array.values
    if isinstance(values.type, pa.StructType):
        fields_ = [values.field(i).to_pylist() for i in range(values.type.num_fields)]
        items: list[Any] = list(zip(*fields_, strict=True)) if fields_[0] else []
    else:
        items = values.to_pylist()
    return [items[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def _prompts(run_id: str, table: pa.Table | None) -> list[PromptRecord]:
    if table is None:
        return []
    names = ("idx", "text", "template", "order", "io", "s", "roles", "tokens", "logit_diff")
    return [
        PromptRecord(
            run_id=run_id,
            idx=idx,
            text=text,
            template=template,
            order=order,
            io=io,
            s=s,
            roles=json.loads(roles),
            tokens=tokens,
            logit_diff=logit_diff,
        )
        for idx, text, template, order, io, s, roles, tokens, logit_diff in zip(
            *_columns(table, names), strict=True
        )
    ]


def _firings(run_id: str, table: pa.Table | None) -> list[FiringRecord]:
    if table is None:
        return []
    names = ("prompt", "layer", "head", "dest", "src", "dest_role", "src_role", "attn", "score")
    columns = _columns(table, (*names, "n_svs"))
    sparse = _nested(table.column("sparse_set"))
    return [
        FiringRecord(run_id, *values, sparse_set=tuple(SparseTerm(*term) for term in terms))  # type: ignore[misc]
        for *values, terms in zip(*columns, sparse, strict=True)
    ]


def _edges(run_id: str, table: pa.Table | None) -> list[WriteEdgeRecord]:
    if table is None:
        return []
    key = ("prompt", "layer", "head", "dest", "src")
    rest = ("writer_layer", "writer_head", "side", "weight", "pos", "role", "writer_kind")
    parts = _nested(table.column("parts"))
    key_columns = _columns(table, key)
    return [
        WriteEdgeRecord(FiringKey(run_id, *k), *values, parts=tuple(p))  # type: ignore[misc]
        for k, values, p in zip(
            zip(*key_columns, strict=True),
            zip(*_columns(table, rest), strict=True),
            parts,
            strict=True,
        )
    ]
