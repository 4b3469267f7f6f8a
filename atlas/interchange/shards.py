"""The shard format: a run's records as Parquet files plus a ``manifest.json`` written last.

A shard is one folder holding part of a run (a contiguous range of its batches), written by
``circuit-atlas trace --shard i/N`` without any database and read by ``circuit-atlas load``:

- ``prompts.parquet``, ``firings.parquet`` and ``edges.parquet``: one row per
  :class:`~ingest.records.types.PromptRecord`, :class:`~ingest.records.types.FiringRecord` (its
  sparse set a list of ``{index, rank, term, sign}``) and
  :class:`~ingest.records.types.WriteEdgeRecord` (its firing's key spliced in), each with the
  ``batch`` it belongs to, appended batch by batch (memory is bounded by the batch);
- ``components.parquet``, ``singular_vectors.parquet`` and ``aligned.parquet``: the model's
  heads, σ values and ALIGNED pairs (small; every shard carries them, so any one is enough);

The columns are the records' fields (:mod:`atlas.interchange.columnar`; ``run_id`` and
``model_id`` are in the manifest), so a field a record gains is carried without an edit here:
ACC runs' firing fields and writer positions included.
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
from atlas.interchange.columnar import RecordTable
from ingest.records.types import (
    AlignedRecord,
    BatchDone,
    ComponentRecord,
    FiringRecord,
    ModelRecord,
    PromptRecord,
    RecordBatch,
    RunRecord,
    SingularVectorRecord,
    WriteEdgeRecord,
)

FORMAT = "circuit-atlas-shard"
FORMAT_VERSION = 2  # 2: columns derived from the records (ACC fields, writer_pos)
MANIFEST = "manifest.json"
PACKAGES = ("circuit-atlas", "torch", "transformer-lens", "transformers", "pyarrow", "numpy")

# Each file's columns are its record's fields (atlas.interchange.columnar): a field a record
# gains is in the next shard by itself. The run's and the model's ids are in the manifest.
RECORD_TABLES: dict[str, RecordTable] = {
    "prompts": RecordTable(PromptRecord, context=("run_id",)),
    "firings": RecordTable(FiringRecord, context=("run_id",)),
    "edges": RecordTable(WriteEdgeRecord, context=("run_id",)),
    "components": RecordTable(ComponentRecord, context=("model_id",)),
    "singular_vectors": RecordTable(SingularVectorRecord, context=("model_id",)),
    "aligned": RecordTable(AlignedRecord, context=("model_id",)),
}
RUN_TABLES = ("prompts", "firings", "edges")  # each row with the batch it belongs to
MODEL_TABLES = ("components", "singular_vectors", "aligned")
BATCH_COLUMN = ("batch", pa.int64())
SCHEMAS: dict[str, pa.Schema] = {
    name: table.schema([BATCH_COLUMN] if name in RUN_TABLES else [])
    for name, table in RECORD_TABLES.items()
}


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
        for name, records in zip(
            MODEL_TABLES, (components, singular_vectors, aligned), strict=True
        ):
            table = RECORD_TABLES[name].to_table(records)
            pq.write_table(table, self.folder / f"{name}.parquet", compression="zstd")
            self.rows[name] = table.num_rows

    def write_batch(self, index: int, records: RecordBatch) -> None:
        batch = {BATCH_COLUMN[0]: (BATCH_COLUMN[1], index)}
        for name, of_batch in zip(
            RUN_TABLES, (records.prompts, records.firings, records.edges), strict=True
        ):
            table = RECORD_TABLES[name].to_table(of_batch, batch)
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
        components, vectors, aligned = (
            RECORD_TABLES[name].records(self.table(name), model_id=model_id)
            for name in MODEL_TABLES
        )
        return components, vectors, aligned

    def record_batches(self) -> Iterator[tuple[int, RecordBatch]]:
        """Each batch of the shard as the :class:`RecordBatch` ``trace_run`` yielded for it
        (marker included), in batch order."""
        run_id = self.manifest["run"]["id"]
        tables = {name: _split(self.table(name)) for name in RUN_TABLES}

        def records(name: str, index: int) -> list[Any]:
            table = tables[name].get(index)
            return [] if table is None else RECORD_TABLES[name].records(table, run_id=run_id)

        for index in self.batches:
            yield (
                index,
                RecordBatch(
                    prompts=records("prompts", index),
                    firings=records("firings", index),
                    edges=records("edges", index),
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
