"""The run lifecycle: create, complete, fail, list, show and delete runs, and import one.

An ingested run is created ``running`` (:meth:`RunLifecycle.create_run`), gets its batches
(:class:`~atlas.store.store.AtlasStore`), and is completed, which aggregates its per-prompt
edges into ``COMMUNICATES``, or failed, or interrupted (Ctrl-C). A run still ``running`` whose
writing process is gone (killed, or it lost the database while failing) is shown as
``interrupted`` (:mod:`atlas.store.liveness`). An imported run is written whole, read-only, in
one transaction (:meth:`RunLifecycle.write_imported_run`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from neo4j import ManagedTransaction
from neo4j.exceptions import TransientError
from neo4j.time import DateTime

from atlas.errors import AtlasError, UnknownRunError
from atlas.store.connection import explained_errors
from atlas.store.database import Database, WriteCounts
from atlas.store.liveness import writer_identity, writer_is_gone
from atlas.store.rows import component_row, imported_communicates_row, model_row, run_row
from atlas.store.schema import AGGREGATES_VERSION, SCHEMA_VERSION
from atlas.store.statements import (
    ACC_GRAPH_EDGES,
    AGGREGATE_ANSWER,
    AGGREGATE_BROADCASTS,
    AGGREGATE_FEATURE_USES,
    AGGREGATE_FIRING_COUNTS,
    AGGREGATE_SPARSE_SET_COUNTS,
    AGGREGATED_SAD_RUNS_OF_MODEL,
    DELETE_BROADCASTS,
    DELETE_FEATURE_USES,
    DELETE_FIRING_COUNTS,
    DELETE_OTHER_COMMUNICATES,
    DELETE_RUN,
    DELETE_SPARSE_SET_COUNTS,
    DONE_BATCHES,
    HEAD_FIRINGS,
    LIST_RUNS,
    MERGE_MODEL,
    MERGE_RUN,
    RUN_MODEL_SHAPE,
    RUN_PROVENANCE,
    RUN_STATUS,
    RUNS_WITHOUT_AGGREGATES,
    SET_RUN_AGGREGATES_VERSION,
    SET_RUN_BEHAVIOUR,
    SET_RUN_PROPERTIES,
    SET_RUN_STATUS,
    SET_RUN_WRITER,
    SHOW_RUN,
    STALE_RUNS,
    WRITE_COMMUNICATES,
    WRITE_COMPONENTS,
)
from ingest.records.types import (
    ComponentRecord,
    ImportedCommunicatesRecord,
    ModelRecord,
    RunRecord,
    component_id,
)
from queries.templates import load_template

# Prompts whose partner firings the broadcast aggregate holds at once (a part of 64 prompts:
# ~130 MB of the query's memory on SmolLM2-135M, ~6 MB on toy-ioi).
BROADCAST_PROMPTS_PER_PART = 64


class RunLifecycle(Database):
    """Runs in the atlas: their status, summaries and deletion (a base of ``AtlasStore``)."""

    def create_run(self, run: RunRecord) -> None:
        """Record a run and its provenance (status ``running`` unless the record says else),
        and this process as its writer (:func:`~atlas.store.liveness.writer_identity`).

        An imported (read-only) run of the same id is refused.
        """
        self._ensure_schema()
        existing = self._execute(RUN_PROVENANCE, run_id=run.id)
        if existing and existing[0]["read_only"]:
            raise AtlasError(read_only_message(run.id, existing[0].data()))
        self._execute(MERGE_RUN, row=run_row(run))
        self._execute(SET_RUN_WRITER, run_id=run.id, writer=writer_identity())
        self._run_models[run.id] = run.model_id

    def complete_run(self, run_id: str) -> int:
        """Compute the run's aggregates and mark it complete; returns #COMMUNICATES."""
        self._model_of(run_id)
        communicates = self.aggregate_run(run_id)
        self._set_status(run_id, "complete", None)
        self.refresh_planner_statistics()
        return communicates

    def record_behaviour(self, run_id: str) -> dict[str, float]:
        """Set and return the run's ``ioi_accuracy`` (share of prompts with IO−S logit
        difference > 0), ``logit_diff_mean`` and ``logit_diff_min``, from its stored prompts
        (all of them, also those written before a resume); empty when it has none."""
        records = self._execute(SET_RUN_BEHAVIOUR, run_id=run_id)
        return records[0].data() if records else {}

    def fail_run(self, run_id: str, error: str) -> None:
        self._set_status(run_id, "failed", error)

    def interrupt_run(self, run_id: str) -> None:
        """Mark the run stopped by the user (Ctrl-C); it is resumable like a failed one."""
        self._set_status(run_id, "interrupted", None)

    def aggregate_run(self, run_id: str) -> int:
        """(Re)compute every per-run aggregate from the run's stored rows; returns #COMMUNICATES.

        The one function ``ingest`` (through :meth:`complete_run`), ``load``, ``load --bulk`` and
        ``db init`` call: COMMUNICATES (:meth:`aggregate_communication`), then the
        ``FiringCount`` and ``SparseSetCount`` nodes the whole-run templates read, and for a SAD
        run the broadcast aggregate ``shared_features`` reads (``FeatureUse``,
        ``FeatureWriters``, ``Broadcast``; :meth:`aggregate_broadcasts`). Each aggregate
        replaces the previous one in one transaction (deleted, then created from the stored
        rows), so recomputing gives the same nodes, never incremented ones.
        """
        communicates = self.aggregate_communication(run_id)
        self._replace(
            (DELETE_FIRING_COUNTS, AGGREGATE_FIRING_COUNTS),
            (DELETE_SPARSE_SET_COUNTS, AGGREGATE_SPARSE_SET_COUNTS),
            (DELETE_FEATURE_USES, AGGREGATE_FEATURE_USES),
            run_id=run_id,
        )
        self.aggregate_broadcasts(run_id)
        self._execute(SET_RUN_AGGREGATES_VERSION, run_id=run_id, version=AGGREGATES_VERSION)
        return communicates

    def aggregate_broadcasts(
        self, run_id: str, prompts_per_part: int = BROADCAST_PROMPTS_PER_PART
    ) -> None:
        """(Re)compute the run's ``FeatureWriters`` and ``Broadcast`` nodes (SAD runs; none for
        others), which follow the model's ALIGNED pairs: :meth:`realign_broadcasts` recomputes
        them when those are replaced. The partner firings are counted ``prompts_per_part``
        prompts at a time (the query's memory follows it, not the run's size)."""
        self._replace(
            (DELETE_BROADCASTS, AGGREGATE_BROADCASTS),
            run_id=run_id,
            prompts_per_part=prompts_per_part,
        )

    def realign_broadcasts(self, model_id: str) -> list[str]:
        """Recompute the broadcasts of every aggregated SAD run of ``model_id`` (after its
        ALIGNED pairs changed); returns those runs."""
        runs = [r["id"] for r in self._execute(AGGREGATED_SAD_RUNS_OF_MODEL, model_id=model_id)]
        for run_id in runs:
            self.aggregate_broadcasts(run_id)
        return runs

    def runs_without_aggregates(self) -> list[str]:
        """Complete ingested runs whose aggregates are missing or of an older version."""
        records = self._read(RUNS_WITHOUT_AGGREGATES, version=AGGREGATES_VERSION)
        return [record["id"] for record in records]

    def _replace(self, *statements: tuple[str, str], run_id: str, **parameters: Any) -> None:
        """Per (delete, create) pair, one write transaction running both for ``run_id`` (the
        create statement with ``parameters`` too)."""
        with explained_errors(self.settings), self.driver.session(database=self.database) as s:
            for delete, create in statements:

                def work(tx: ManagedTransaction, delete: str = delete, create: str = create):
                    tx.run(delete, run_id=run_id).consume()
                    tx.run(create, run_id=run_id, **parameters).consume()

                s.execute_write(work)

    def aggregate_communication(self, run_id: str) -> int:
        """(Re)compute the run's COMMUNICATES relationships from its per-prompt edges."""
        query = load_template("aggregate_communication").cypher
        communicates = int(self._execute(query, run_id=run_id)[0][0])
        # ACC runs: the seeds into the logit direction (nothing for a SAD run)
        return communicates + int(self._execute(AGGREGATE_ANSWER, run_id=run_id)[0][0])

    def acc_graph_rows(self, run_id: str) -> list[dict[str, Any]]:
        """An ACC run's edges per (writer, downstream firing roles, side), and its seeds'
        (:data:`~atlas.store.statements.ACC_GRAPH_EDGES`), for the authors' format."""
        self._model_of(run_id)
        return [record.data() for record in self._execute(ACC_GRAPH_EDGES, run_id=run_id)]

    def done_batches(self, run_id: str) -> set[int]:
        """Indices of the batches of ``run_id`` already written (empty for an unknown run)."""
        records = self._execute(DONE_BATCHES, run_id=run_id)
        return set(records[0]["done"]) if records else set()

    def stale_runs(self) -> list[tuple[str, int]]:
        """Runs written under an older schema version (id, version), which lack its data."""
        records = self._read(STALE_RUNS, version=SCHEMA_VERSION)
        return [(record["id"], record["version"]) for record in records]

    def run_status(self, run_id: str) -> str | None:
        """The run's status (``running``, ``interrupted``, ``failed``, ``complete``; see
        :func:`shown_status`); None: no such run."""
        records = self._read(RUN_STATUS, run_id=run_id)
        return shown_status(records[0]["status"], records[0]["writer"]) if records else None

    def list_runs(self) -> list[dict[str, Any]]:
        """Every run with its shown status (:func:`shown_status`), newest first."""
        rows = [record.data() for record in self._read(LIST_RUNS)]
        for row in rows:
            row["status"] = shown_status(row["status"], row["writer"])
        return rows

    def show_run(self, run_id: str) -> dict[str, Any] | None:
        """The run's properties (status as shown, :func:`shown_status`) and its counts."""
        records = self._read(SHOW_RUN, run_id=run_id)
        if not records:
            return None
        summary = records[0].data()
        run = {key: _plain(value) for key, value in summary["run"].items()}
        run["status"] = shown_status(run.get("status"), run.get("writer"))
        summary["run"] = run
        return summary

    def run_model(self, run_id: str) -> dict[str, Any] | None:
        """The run's ``model_id``, ``n_layers`` and ``n_heads`` (None if unknown) and ``method``:
        ``acc`` for a run ingested with ACC or imported from the authors' ACC format, else
        ``sad``. None: no such run."""
        records = self._read(RUN_MODEL_SHAPE, run_id=run_id)
        return records[0].data() if records else None

    def head_firings(self, run_id: str) -> dict[str, int]:
        """How often each head fires in the run (ingested runs; empty for imported ones)."""
        records = self._read(HEAD_FIRINGS, run_id=run_id)
        return {component_id("head", r["layer"], r["head"]): r["firings"] for r in records}

    def delete_run(self, run_id: str, attempts: int = 5) -> WriteCounts:
        """Delete everything of one run (and nothing else) in bounded transactions.

        The statements are auto-commit (``CALL … IN TRANSACTIONS``), which the driver does not
        retry; each deletes what is left of its part, so one that hits a transient error (a
        deadlock with another writer on a shared node) is run again, up to ``attempts`` times.
        """
        deleted_nodes = deleted_relationships = 0
        with explained_errors(self.settings), self.driver.session(database=self.database) as s:
            for statement in DELETE_RUN:
                for attempt in range(attempts):
                    try:
                        counters = s.run(statement, run_id=run_id).consume().counters
                        break
                    except TransientError:
                        if attempt == attempts - 1:
                            raise
                        time.sleep(0.5 * 2**attempt)
                deleted_nodes += counters.nodes_deleted
                deleted_relationships += counters.relationships_deleted
        self._run_models.pop(run_id, None)
        self.refresh_planner_statistics()
        return WriteCounts(-deleted_nodes, -deleted_relationships)

    def write_imported_run(
        self,
        run: RunRecord,
        provenance: Mapping[str, Any],
        model: ModelRecord | None,
        components: Sequence[ComponentRecord],
        communicates: Sequence[ImportedCommunicatesRecord],
    ) -> WriteCounts:
        """Write a read-only run from a graph file, in ONE transaction, idempotently.

        ``provenance`` (``source_file``, ``source_sha256``, ...) is set on the run with
        ``read_only: true``. An existing run of the same id must be this same import (same
        model and ``source_sha256``); anything else is refused. Re-importing leaves the same
        graph: edges are merged on their key and their properties set again; edges of the run
        that the file no longer has are removed.
        """
        if any(edge.run_id != run.id for edge in communicates):
            raise ValueError(f"an imported run's edges belong to it (run_id '{run.id}')")
        self._ensure_schema()
        comm_rows = [imported_communicates_row(c, model_id=run.model_id) for c in communicates]
        keys = [[r["writer_id"], r["head_id"], r["side"], r["role"]] for r in comm_rows]

        def work(tx: ManagedTransaction) -> WriteCounts:
            existing = tx.run(RUN_PROVENANCE, run_id=run.id).single()
            if existing is not None and not (
                existing["read_only"]
                and existing["model_id"] == run.model_id
                and existing["source_sha256"] == provenance["source_sha256"]
            ):
                raise AtlasError(
                    f"Run '{run.id}' already exists ({_describe_run(existing.data())}); "
                    "choose another --run-id or remove it first with "
                    f"`circuit-atlas runs delete {run.id}`."
                )
            statements: list[tuple[str, dict[str, Any]]] = []
            if model is not None:
                statements.append((MERGE_MODEL, {"row": model_row(model)}))
            statements += [
                (MERGE_RUN, {"row": run_row(run)}),
                (SET_RUN_PROPERTIES, {"run_id": run.id, "properties": dict(provenance)}),
                (WRITE_COMPONENTS, {"rows": [component_row(c) for c in components]}),
                (DELETE_OTHER_COMMUNICATES, {"run_id": run.id, "keys": keys}),
                (WRITE_COMMUNICATES, {"rows": comm_rows}),
            ]
            total = WriteCounts()
            for query, parameters in statements:
                counters = tx.run(query, parameters).consume().counters
                total += WriteCounts(
                    counters.nodes_created, counters.relationships_created, counters.properties_set
                )
            return total

        with explained_errors(self.settings), self.driver.session(database=self.database) as s:
            counts = s.execute_write(work)
        self._run_models[run.id] = run.model_id
        self.refresh_planner_statistics()
        return counts

    def _set_status(self, run_id: str, status: str, error: str | None) -> None:
        if not self._execute(SET_RUN_STATUS, run_id=run_id, status=status, error=error):
            raise UnknownRunError(f"Run '{run_id}' is not in the atlas.")


def shown_status(status: Any, writer: object) -> Any:
    """``interrupted`` for a run stored ``running`` whose writer process (``writer``, from
    :func:`~atlas.store.liveness.writer_identity`) is gone; the stored status otherwise."""
    gone = isinstance(writer, str) and writer_is_gone(writer)
    return "interrupted" if status == "running" and gone else status


def read_only_message(run_id: str, run: Mapping[str, Any]) -> str:
    """Why a read-only (imported) run cannot be written to, and what to do instead."""
    return (
        f"Run '{run_id}' is read-only ({_describe_run(run)}); it cannot be resumed or "
        f"rewritten. Use another --run-id, or `circuit-atlas runs delete {run_id}` first."
    )


def _describe_run(run: Mapping[str, Any]) -> str:
    if run.get("read_only"):
        return f"imported from {run.get('source_file')}, sha256 {run.get('source_sha256')}"
    return f"made by method '{run.get('method')}' for model {run.get('model_id')}"


def _plain(value: object) -> object:
    """Neo4j temporal values as ISO strings; everything else unchanged."""
    return value.iso_format() if isinstance(value, DateTime) else value
