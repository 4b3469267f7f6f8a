"""Batched, idempotent writes of ingestion records into Neo4j.

Every writer is one parameterized ``UNWIND $rows`` statement that MERGEs on constrained keys,
so writing the same records twice creates nothing new. :meth:`AtlasStore.write_batch` writes a
whole :class:`~ingest.records.types.RecordBatch` in one transaction. The schema is created on the
first write if the database does not have the current version yet.

:meth:`AtlasStore.write_fresh_batch` is the fast path of an ingestion: a batch whose marker is
not set yet has nothing in the graph (its data and its marker commit in one transaction), so
its prompts, firings and their relationships are CREATEd rather than MERGEd, in two
statements: prompts, then firings with their sparse sets and edges, sent as columns (one list
per property, :mod:`~atlas.store.columns`) rather than one map per row. The nodes they point at
(heads, writers, singular vectors, the batch's prompts) are looked up once per statement instead
of once per row. The uniqueness constraints still stand behind every CREATE: writing a batch's
records again under another marker fails instead of duplicating anything.

A fresh batch's transaction first reads its marker and writes nothing when it is already set.
That is the commit-unknown case: the connection broke (a Neo4j restart, say) after the server
had committed the batch but before the driver heard so, and the driver runs the transaction
again. Batch writes retry for :data:`BATCH_RETRY_SECONDS`, long enough for a local server to
be restarted, so an ingest rides through a restart.

The statements' text is in :mod:`~atlas.store.statements`, the rows they take are built by
:mod:`~atlas.store.rows`, and the run lifecycle (create, complete, delete, import, ...) is
inherited from :class:`~atlas.store.runs.RunLifecycle`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from neo4j import ManagedTransaction
from neo4j.exceptions import ClientError

from atlas.errors import AtlasError, ParameterError
from atlas.settings import Neo4jSettings, load_settings
from atlas.store.columns import FRESH_CHUNK_FIRINGS, firing_columns, fresh_firing_chunks
from atlas.store.connection import connect, explained_errors
from atlas.store.database import WriteCounts
from atlas.store.rows import (
    Row,
    RowBuilder,
    aligned_row,
    communicates_row,
    component_row,
    edge_row,
    firing_row,
    marker_row,
    model_row,
    prompt_row,
    singular_vector_row,
)
from atlas.store.runs import RunLifecycle
from atlas.store.statements import (
    ALIGNED_PARAMS,
    BATCH_ALREADY_DONE,
    CREATE_FIRINGS,
    CREATE_PROMPTS,
    DELETE_ALIGNED,
    MARK_BATCH_DONE,
    MERGE_MODEL,
    SET_ALIGNED_PARAMS,
    SET_EMPTY_FIRING_LISTS,
    WRITE_ALIGNED,
    WRITE_COMMUNICATES,
    WRITE_COMPONENTS,
    WRITE_EDGES,
    WRITE_FIRINGS,
    WRITE_PROMPTS,
    WRITE_SINGULAR_VECTORS,
)
from ingest.records.types import (
    AlignedRecord,
    BatchDone,
    CommunicatesRecord,
    ComponentRecord,
    FiringRecord,
    ModelRecord,
    PromptRecord,
    RecordBatch,
    SingularVectorRecord,
    WriteEdgeRecord,
)
from queries.templates import load_template

__all__ = [
    "BATCH_RETRY_SECONDS",
    "FRESH_CHUNK_FIRINGS",
    "AtlasStore",
    "PreparedWrite",
    "WriteCounts",
]

# How long the driver retries a batch's transaction while the server does not answer (its
# default is 30 s; a local server's stop and start take up to a minute on a busy machine).
BATCH_RETRY_SECONDS = 120.0
# Rows per statement of set_empty_firing_lists (a few MB of parameters; the server commits
# every 10,000 of them).
EMPTY_LISTS_CHUNK = 50_000


@dataclass(frozen=True)
class _Statement:
    """One statement of a write transaction and how many rows it must report written."""

    query: str
    what: str
    parameters: dict[str, Any]
    expected: int


@dataclass(frozen=True)
class PreparedWrite:
    """The statements of one write transaction, built ahead of it (in another thread, say).

    ``guard``: the batch marker of a fresh batch; when it is already set, the transaction
    writes nothing.
    """

    statements: tuple[_Statement, ...]
    guard: BatchDone | None = None


def _rows_statement(query: str, what: str, rows: list[Row]) -> _Statement:
    """An ``UNWIND $rows`` statement that must write every row."""
    return _Statement(query, what, {"rows": rows}, len(rows))


class AtlasStore(RunLifecycle):
    """The atlas in one Neo4j database. Create with :meth:`connect` (shared driver)."""

    @classmethod
    def connect(cls, settings: Neo4jSettings | None = None) -> AtlasStore:
        settings = settings or load_settings()
        return cls(connect(settings), settings)

    # ----- model-wide data -----------------------------------------------------------------

    def write_model(self, model: ModelRecord) -> None:
        self._ensure_schema()
        self._execute(MERGE_MODEL, row=model_row(model))

    def aligned_params(self, model_id: str) -> str | None:
        """The parameters (JSON) the model's ALIGNED edges were computed with; None: never."""
        records = self._execute(ALIGNED_PARAMS, model_id=model_id)
        return records[0]["params"] if records else None

    def replace_aligned(self, model_id: str, rows: Sequence[AlignedRecord], params: str) -> None:
        """Make the model's ALIGNED edges exactly ``rows`` (computed with ``params``).

        The model and its singular vectors must be written first. The parameters are recorded
        last, so an interrupted replacement is redone by the next ingestion of the model. Before
        that, the broadcast aggregate of the model's runs, which follows the ALIGNED pairs, is
        recomputed (:meth:`~atlas.store.runs.RunLifecycle.realign_broadcasts`).
        """
        self._ensure_schema()
        self._execute(DELETE_ALIGNED, model_id=model_id)
        self.write_batch(RecordBatch(aligned=rows))
        self.realign_broadcasts(model_id)
        self._execute(SET_ALIGNED_PARAMS, model_id=model_id, params=params)

    def read_template(self, name: str, **parameters: Any) -> list[dict[str, Any]]:
        """The rows of the read-only template ``queries/<name>.cypher``, as plain dicts.

        Parameters are checked and coerced against the template's header (defaults filled in)
        and sent as Cypher parameters; the query runs in a read transaction.
        """
        template = load_template(name)
        if template.mode != "read":
            raise ParameterError(
                f"Template '{name}' writes to the database; it is not a read query."
            )
        bound = template.bind(parameters)
        try:
            with explained_errors(self.settings):
                records = self.driver.execute_query(
                    template.cypher, parameters_=bound, database_=self.database, routing_="r"
                ).records
        except ClientError as error:  # a value the header admits but the query cannot take
            given = ", ".join(f"{key}={value!r}"[:60] for key, value in parameters.items())
            raise ParameterError(
                f"Neo4j rejected template '{name}' with {given or 'its defaults'}: "
                f"{' '.join((error.message or str(error)).split())[:300]}"
            ) from error
        if not records:
            return []
        # Templates return values (no nodes, relationships or paths), so a row is its keys and
        # values as they came: 3-8× faster than Record.data(), which walks every value.
        keys = records[0].keys()
        return [dict(zip(keys, record.values(), strict=True)) for record in records]

    # ----- batched writers -----------------------------------------------------------------

    def write_components(self, rows: Sequence[ComponentRecord]) -> WriteCounts:
        return self.write_batch(RecordBatch(components=rows))

    def write_singular_vectors(self, rows: Sequence[SingularVectorRecord]) -> WriteCounts:
        return self.write_batch(RecordBatch(singular_vectors=rows))

    def write_prompts(self, rows: Sequence[PromptRecord]) -> WriteCounts:
        return self.write_batch(RecordBatch(prompts=rows))

    def write_firings(self, rows: Sequence[FiringRecord]) -> WriteCounts:
        return self.write_batch(RecordBatch(firings=rows))

    def write_edges(self, rows: Sequence[WriteEdgeRecord]) -> WriteCounts:
        return self.write_batch(RecordBatch(edges=rows))

    def write_communicates(self, rows: Sequence[CommunicatesRecord]) -> WriteCounts:
        return self.write_batch(RecordBatch(communicates=rows))

    def set_empty_firing_lists(
        self, run_id: str, rows: Sequence[dict[str, Any]], chunk: int = EMPTY_LISTS_CHUNK
    ) -> int:
        """Set the empty list properties of imported firings, which ``load --bulk``'s importer
        cannot write (:data:`~atlas.store.statements.SET_EMPTY_FIRING_LISTS`); returns how many.

        Each row is ``{"key": [prompt, layer, head, dest, src], "empty": {name: []}}``. Sent
        ``chunk`` rows per auto-commit statement, which sets them in bounded transactions. Raises
        AtlasError unless every property was set (a row whose firing is not in the run).
        """
        expected = sum(len(row["empty"]) for row in rows)
        written = 0
        with explained_errors(self.settings), self.driver.session(database=self.database) as s:
            for start in range(0, len(rows), chunk):
                result = s.run(
                    SET_EMPTY_FIRING_LISTS, run_id=run_id, rows=rows[start : start + chunk]
                )
                written += result.consume().counters.properties_set
        if written != expected:
            raise AtlasError(
                f"Only {written} of {expected} empty lists of run {run_id}'s firings could be "
                "set: the others' firings are not in the atlas."
            )
        return written

    def write_fresh_batch(self, batch: RecordBatch) -> WriteCounts:
        """Write one not-yet-written ingestion batch and its marker in ONE transaction, by CREATE
        (:meth:`prepare_fresh_batch`, then :meth:`write_prepared`)."""
        return self.write_prepared(self.prepare_fresh_batch(batch))

    def write_batch(self, batch: RecordBatch) -> WriteCounts:
        """Write all records of a batch in ONE transaction, by MERGE (:meth:`prepare_batch`,
        then :meth:`write_prepared`)."""
        return self.write_prepared(self.prepare_batch(batch))

    def prepare_fresh_batch(
        self, batch: RecordBatch, chunk_firings: int = FRESH_CHUNK_FIRINGS
    ) -> PreparedWrite:
        """The statements that CREATE a not-yet-written ingestion batch and set its marker.

        ``batch.done`` names the run and the batch. The batch must be whole: every firing's
        prompt and every edge's firing belong to it, and it is not in the graph yet (its
        marker is not set), which is what a run's unmarked batches are. The model's heads and
        singular vectors must exist (ingestion writes them first). Use :meth:`prepare_batch` to
        write records again (``--rewrite``) or in pieces. Reads the graph only to learn the
        run's model, once per run. Firings go in statements of ``chunk_firings`` each.
        """
        if batch.done is None:
            raise ValueError("a fresh batch needs its marker (batch.done)")
        if batch.singular_vectors or batch.communicates:
            raise ValueError("a fresh batch holds prompts, firings and edges only")
        run_id = batch.done.run_id
        model_id = self._model_of(run_id)
        firings = [
            _Statement(
                CREATE_FIRINGS,
                "firings",
                firing_columns(run_id, model_id, chunk, edges_of),
                len(chunk),
            )
            for chunk, edges_of in fresh_firing_chunks(run_id, batch, chunk_firings)
        ]
        return PreparedWrite(
            (
                _rows_statement(WRITE_COMPONENTS, "components", self._component_rows(batch)),
                _rows_statement(CREATE_PROMPTS, "prompts", _rows(batch.prompts, prompt_row)),
                *firings,
                _rows_statement(MARK_BATCH_DONE, "batch markers", [marker_row(batch.done)]),
            ),
            guard=batch.done,
        )

    def prepare_batch(self, batch: RecordBatch) -> PreparedWrite:
        """The statements that MERGE all records of a batch; components they use are merged too.

        Prompts must be written before (or with) their firings, firings before their edges.
        """
        statements = [
            (WRITE_COMPONENTS, "components", self._component_rows(batch)),
            (
                WRITE_SINGULAR_VECTORS,
                "singular vectors",
                _rows(batch.singular_vectors, singular_vector_row),
            ),
            (WRITE_ALIGNED, "aligned pairs", _rows(batch.aligned, aligned_row)),
            (WRITE_PROMPTS, "prompts", _rows(batch.prompts, prompt_row)),
            (WRITE_FIRINGS, "firings", self._run_rows(batch.firings, firing_row)),
            (WRITE_EDGES, "edges", self._run_rows(batch.edges, edge_row)),
            (
                WRITE_COMMUNICATES,
                "communicates",
                self._run_rows(batch.communicates, communicates_row),
            ),
        ]
        if batch.done is not None:
            statements.append((MARK_BATCH_DONE, "batch markers", [marker_row(batch.done)]))
        return PreparedWrite(tuple(_rows_statement(*statement) for statement in statements))

    def write_prepared(self, prepared: PreparedWrite) -> WriteCounts:
        """Run prepared statements in ONE write transaction; each must write all it expects.

        The statements are sent back to back and their counts read afterwards: the driver
        packs the next statement while the server runs the previous one (Bolt pipelining; the
        server still runs them in order). Any failed check rolls the whole transaction back.
        A guarded write (a fresh batch) whose marker is already set writes nothing and
        returns zero counts: an earlier attempt of it committed.
        """
        self._ensure_schema()
        guard = prepared.guard

        def work(tx: ManagedTransaction) -> WriteCounts:
            if (
                guard is not None
                and tx.run(BATCH_ALREADY_DONE, run_id=guard.run_id, index=guard.index).single(
                    strict=True
                )["done"]
            ):
                return WriteCounts()
            sent = [
                (statement, tx.run(statement.query, **statement.parameters))
                for statement in prepared.statements
                if statement.expected
            ]
            total = WriteCounts()
            for statement, result in sent:
                written = result.single(strict=True)["written"]
                if written != statement.expected:
                    raise AtlasError(
                        f"Only {written} of {statement.expected} {statement.what} could be "
                        "written: the others refer to a run, prompt, head or firing that is not "
                        "in the atlas. Write runs first, prompts before firings, firings before "
                        "their edges."
                    )
                counters = result.consume().counters
                total += WriteCounts(
                    counters.nodes_created, counters.relationships_created, counters.properties_set
                )
            return total

        with (
            explained_errors(self.settings),
            self.driver.session(
                database=self.database, max_transaction_retry_time=BATCH_RETRY_SECONDS
            ) as s,
        ):
            return s.execute_write(work)

    # ----- helpers -------------------------------------------------------------------------

    def _component_rows(self, batch: RecordBatch) -> list[Row]:
        """The batch's components plus every head or writer its other records refer to.

        Explicit component records come first and win (they may carry ``ioi_class``); the
        others are collected as distinct keys first (a batch refers to a few dozen components
        from ~10⁵ records).
        """
        model_of = self._model_of
        referenced = dict.fromkeys(
            [(sv.model_id, "head", sv.layer, sv.head) for sv in batch.singular_vectors]
            + [(model_of(f.run_id), "head", f.layer, f.head) for f in batch.firings]
            + [
                (model_of(e.firing.run_id), e.writer_kind, e.writer_layer, e.writer_head)
                for e in batch.edges
            ]
        )
        for c in batch.communicates:
            model = model_of(c.run_id)
            referenced[(model, c.writer_kind, c.writer_layer, c.writer_head)] = None
            referenced[(model, "head", c.layer, c.head)] = None
        found: dict[tuple[str, str], ComponentRecord] = {}
        for component in [*batch.components, *(ComponentRecord(*key) for key in referenced)]:
            found.setdefault((component.model_id, component.id), component)
        return [component_row(component) for component in found.values()]

    def _run_rows(self, records: Iterable[Any], to_row: RowBuilder) -> list[Row]:
        """Rows of run-scoped records, each with its run's ``model_id``."""
        return [to_row(record, model_id=self._model_of(_run_id(record))) for record in records]


def _rows(records: Iterable[Any], to_row: RowBuilder) -> list[Row]:
    return [to_row(record) for record in records]


def _run_id(record: FiringRecord | WriteEdgeRecord | CommunicatesRecord) -> str:
    return record.firing.run_id if isinstance(record, WriteEdgeRecord) else record.run_id
