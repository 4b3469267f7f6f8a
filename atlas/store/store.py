"""Batched, idempotent writes of ingestion records into Neo4j, and the run lifecycle.

Every writer is one parameterized ``UNWIND $rows`` statement that MERGEs on constrained keys,
so writing the same records twice creates nothing new. :meth:`AtlasStore.write_batch` writes a
whole :class:`~ingest.records.types.RecordBatch` in one transaction. The schema is created on the
first write if the database does not have the current version yet.

:meth:`AtlasStore.write_fresh_batch` is the fast path of an ingestion: a batch whose marker is
not set yet has nothing in the graph (its data and its marker commit in one transaction), so
its prompts, firings and their relationships are CREATEd rather than MERGEd, in two
statements: prompts, then firings with their sparse sets and edges, sent as columns (one list
per property) rather than one map per row. The nodes they point at (heads, writers, singular
vectors, the batch's prompts) are looked up once per statement instead of once per row. The
uniqueness constraints still stand behind every CREATE: writing a batch twice fails instead of
duplicating anything.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from neo4j import Driver, ManagedTransaction
from neo4j.exceptions import Neo4jError
from neo4j.time import DateTime

from atlas.settings import AtlasError, Neo4jSettings, load_settings
from atlas.store.connection import connect, explained_errors
from atlas.store.schema import SCHEMA_VERSION, head_labels, init_schema, schema_version
from ingest.records.types import (
    AlignedRecord,
    BatchDone,
    CommunicatesRecord,
    ComponentRecord,
    FiringRecord,
    ModelRecord,
    PromptRecord,
    RecordBatch,
    RunRecord,
    SingularVectorRecord,
    WriteEdgeRecord,
    component_id,
)
from queries.templates import load_template

if TYPE_CHECKING:
    from atlas.interchange.graphml import Edge

Row = dict[str, Any]

MERGE_MODEL = """
MERGE (m:Model {id: $row.id})
SET m.n_layers = $row.n_layers, m.n_heads = $row.n_heads,
    m.d_model = $row.d_model, m.d_head = $row.d_head
"""

MERGE_RUN = """
MERGE (m:Model {id: $row.model_id})
MERGE (r:Run {id: $row.id})
ON CREATE SET r.created_at = $row.created_at
SET r.model_id = $row.model_id, r.model_revision = $row.model_revision, r.method = $row.method,
    r.params = $row.params, r.dataset = $row.dataset, r.versions = $row.versions,
    r.git_commit = $row.git_commit, r.status = $row.status,
    r.schema_version = $row.schema_version
MERGE (r)-[:OF_MODEL]->(m)
"""

SET_RUN_STATUS = """
MATCH (r:Run {id: $run_id})
SET r.status = $status, r.finished_at = datetime(), r.error = $error
RETURN r.id AS id
"""

# Imported runs are left out: they have no WRITES to re-ingest and cannot be rewritten.
STALE_RUNS = """
MATCH (r:Run) WHERE coalesce(r.schema_version, 1) < $version AND NOT coalesce(r.read_only, false)
RETURN r.id AS id, coalesce(r.schema_version, 1) AS version ORDER BY id
"""

RUN_MODEL = "MATCH (r:Run {id: $run_id}) RETURN r.model_id AS model_id"

RUN_MODEL_SHAPE = """
MATCH (r:Run {id: $run_id})
OPTIONAL MATCH (r)-[:OF_MODEL]->(m:Model)
RETURN r.model_id AS model_id, m.n_layers AS n_layers, m.n_heads AS n_heads
"""

WRITE_COMPONENTS = """
UNWIND $rows AS row
MERGE (c:Component {model_id: row.model_id, id: row.id})
SET c.kind = row.kind, c.layer = row.layer, c.head = row.head,
    c.ioi_class = coalesce(row.ioi_class, c.ioi_class)
FOREACH (_ IN CASE WHEN row.kind = 'head' THEN [1] ELSE [] END | SET c:Head)
SET c:$(row.labels)
RETURN count(c) AS written
"""

WRITE_SINGULAR_VECTORS = """
UNWIND $rows AS row
MATCH (h:Component {model_id: row.model_id, id: row.head_id})
MERGE (sv:SingularVector {model_id: row.model_id, layer: row.layer, head: row.head,
                          index: row.index})
SET sv.sigma = row.sigma,
    sv.caption = 'v' + row.index + ' σ' + toString(round(row.sigma, 2)) // Browser style caption
MERGE (h)-[:HAS_SV]->(sv)
RETURN count(sv) AS written
"""

WRITE_ALIGNED = """
UNWIND $rows AS row
MATCH (a:SingularVector {model_id: row.model_id, layer: row.a[0], head: row.a[1],
                         index: row.a[2]})
MATCH (b:SingularVector {model_id: row.model_id, layer: row.b[0], head: row.b[1],
                         index: row.b[2]})
MERGE (a)-[r:ALIGNED {side_a: row.side_a, side_b: row.side_b}]->(b)
SET r.model_id = row.model_id, r.cos = row.cos
RETURN count(r) AS written
"""

ALIGNED_PARAMS = "MATCH (m:Model {id: $model_id}) RETURN properties(m)['aligned_params'] AS params"

# The model's ALIGNED edges, dropped before a recomputation with other parameters.
DELETE_ALIGNED = """
MATCH (:SingularVector {model_id: $model_id})-[r:ALIGNED]->()
DELETE r
"""

SET_ALIGNED_PARAMS = "MATCH (m:Model {id: $model_id}) SET m.aligned_params = $params"

WRITE_PROMPTS = """
UNWIND $rows AS row
MATCH (r:Run {id: row.run_id})
MERGE (p:Prompt {run_id: row.run_id, idx: row.idx})
SET p.text = row.text, p.template = row.template, p.order = row.order, p.io = row.io,
    p.s = row.s, p.roles = row.roles, p.tokens = row.tokens
MERGE (r)-[:HAS_PROMPT]->(p)
RETURN count(p) AS written
"""

WRITE_FIRINGS = """
UNWIND $rows AS row
MATCH (h:Component {model_id: row.model_id, id: row.head_id})
MATCH (p:Prompt {run_id: row.run_id, idx: row.prompt})
MERGE (f:Firing {run_id: row.run_id, prompt: row.prompt, layer: row.layer, head: row.head,
                 dest: row.dest, src: row.src})
SET f.dest_role = row.dest_role, f.src_role = row.src_role, f.attn = row.attn,
    f.score = row.score, f.n_svs = row.n_svs
MERGE (f)-[:OF_HEAD]->(h)
MERGE (f)-[:IN_PROMPT]->(p)
WITH f, row
CALL (f, row) {
  UNWIND row.sparse_set AS term
  MERGE (sv:SingularVector {model_id: row.model_id, layer: row.layer, head: row.head,
                            index: term.index})
  MERGE (f)-[u:USES]->(sv)
  SET u.rank = term.rank, u.term = term.term, u.sign = term.sign
}
RETURN count(f) AS written
"""

WRITE_EDGES = """
UNWIND $rows AS row
MATCH (f:Firing {run_id: row.run_id, prompt: row.prompt, layer: row.layer, head: row.head,
                 dest: row.dest, src: row.src})
USING INDEX f:Firing(run_id, prompt, layer, head, dest, src)
MATCH (w:Component {model_id: row.model_id, id: row.writer_id})
MERGE (w)-[e:WRITES {side: row.side}]->(f)
SET e.weight = row.weight, e.pos = row.pos, e.role = row.role, e.parts = row.parts
RETURN count(e) AS written
"""

WRITE_COMMUNICATES = """
UNWIND $rows AS row
MATCH (w:Component {model_id: row.model_id, id: row.writer_id})
MATCH (h:Component {model_id: row.model_id, id: row.head_id})
MERGE (w)-[c:COMMUNICATES {run_id: row.run_id, writer: w.id, head: h.id, side: row.side,
                           role: row.role}]->(h)
SET c.n_prompts = row.n_prompts, c.mean_weight = row.mean_weight
SET c += coalesce(row.source, {}) // an imported run's own fields (atlas.interchange.graphml)
RETURN count(c) AS written
"""

CREATE_PROMPTS = """
UNWIND $rows AS row
MATCH (r:Run {id: row.run_id})
CREATE (p:Prompt {run_id: row.run_id, idx: row.idx, text: row.text, template: row.template,
                  order: row.order, io: row.io, s: row.s, roles: row.roles, tokens: row.tokens})
CREATE (r)-[:HAS_PROMPT]->(p)
RETURN count(p) AS written
"""

# Columnar: `$firings`, `$uses` and `$edges` are maps of equally long lists, one entry per
# firing, sparse-set term and edge (lists of primitives pack and unpack far faster than one map
# per row). A firing's terms are `$uses` entries `uses_from[i] .. uses_from[i + 1] - 1`, its
# edges likewise by `edges_from`. `*_ref` are positions in the lists $components,
# $singular_vectors and $prompts of the nodes linked; a missing node shortens its list, and then
# nothing is written (count check).
CREATE_FIRINGS = """
CALL () {
  UNWIND $components AS id
  MATCH (c:Component {model_id: $model_id, id: id})
  RETURN collect(c) AS components
}
CALL () {
  UNWIND $singular_vectors AS key
  MATCH (sv:SingularVector {model_id: $model_id, layer: key[0], head: key[1], index: key[2]})
  RETURN collect(sv) AS vectors
}
CALL () {
  UNWIND $prompts AS idx
  MATCH (p:Prompt {run_id: $run_id, idx: idx})
  RETURN collect(p) AS prompts
}
WITH components, vectors, prompts
WHERE size(components) = size($components) AND size(vectors) = size($singular_vectors)
  AND size(prompts) = size($prompts)
UNWIND range(0, size($firings.layer) - 1) AS i
WITH components, vectors, i, components[$firings.head_ref[i]] AS h,
     prompts[$firings.prompt_ref[i]] AS p
CREATE (f:Firing {run_id: $run_id, prompt: $firings.prompt[i], layer: $firings.layer[i],
                  head: $firings.head[i], dest: $firings.dest[i], src: $firings.src[i],
                  dest_role: $firings.dest_role[i], src_role: $firings.src_role[i],
                  attn: $firings.attn[i], score: $firings.score[i], n_svs: $firings.n_svs[i]})
CREATE (f)-[:OF_HEAD]->(h)
CREATE (f)-[:IN_PROMPT]->(p)
WITH f, i, components, vectors
CALL (f, i, vectors) {
  UNWIND range($firings.uses_from[i], $firings.uses_from[i + 1] - 1) AS j
  WITH f, j, vectors[$uses.sv_ref[j]] AS sv
  CREATE (f)-[:USES {rank: $uses.rank[j], term: $uses.term[j], sign: $uses.sign[j]}]->(sv)
}
CALL (f, i, components) {
  UNWIND range($firings.edges_from[i], $firings.edges_from[i + 1] - 1) AS j
  WITH f, j, components[$edges.writer_ref[j]] AS w
  CREATE (w)-[:WRITES {side: $edges.side[j], weight: $edges.weight[j], pos: $edges.pos[j],
                       role: $edges.role[j], parts: $edges.parts[j]}]->(f)
}
RETURN count(f) AS written
"""

# Firings per CREATE_FIRINGS statement of a fresh batch (~4k relationships on toy-ioi). Chunks
# let the driver send one while the server creates the one before; measured on toy-ioi, 256
# prompts: 8 statements per 32-prompt batch wrote 9-12 % faster than one.
FRESH_CHUNK_FIRINGS = 500

MARK_BATCH_DONE = """
UNWIND $rows AS row
MATCH (r:Run {id: row.run_id})
SET r.done_batches = [b IN coalesce(r.done_batches, []) WHERE b <> row.index] + row.index
RETURN count(r) AS written
"""

DONE_BATCHES = "MATCH (r:Run {id: $run_id}) RETURN coalesce(r.done_batches, []) AS done"

LIST_RUNS = """
MATCH (r:Run)
RETURN r.id AS id, r.model_id AS model_id, r.method AS method, r.status AS status,
       toString(r.created_at) AS created_at, COUNT { (r)-[:HAS_PROMPT]->() } AS prompts
ORDER BY r.created_at DESC
"""

SHOW_RUN = """
MATCH (r:Run {id: $run_id})
RETURN properties(r) AS run,
       COUNT { (r)-[:HAS_PROMPT]->() } AS prompts,
       COUNT { MATCH (f:Firing {run_id: $run_id}) } AS firings,
       COUNT { MATCH (:Firing {run_id: $run_id})<-[e:WRITES]-() } AS edges,
       COUNT { MATCH ()-[c:COMMUNICATES {run_id: $run_id}]->() } AS communicates
"""

RUN_PROVENANCE = """
MATCH (r:Run {id: $run_id})
RETURN r.method AS method, r.model_id AS model_id, r.read_only AS read_only,
       r.source_file AS source_file, r.source_sha256 AS source_sha256
"""

SET_RUN_PROPERTIES = "MATCH (r:Run {id: $run_id}) SET r += $properties"

DELETE_OTHER_COMMUNICATES = """
MATCH ()-[c:COMMUNICATES {run_id: $run_id}]->()
WHERE NOT [c.writer, c.head, c.side, c.role] IN $keys
DELETE c
"""

HEAD_FIRINGS = """
MATCH (f:Firing {run_id: $run_id})
RETURN f.layer AS layer, f.head AS head, count(*) AS firings
"""

# Auto-commit statements: each deletes in bounded inner transactions.
DELETE_RUN = (
    "MATCH ()-[c:COMMUNICATES {run_id: $run_id}]->() "
    "CALL (c) { DELETE c } IN TRANSACTIONS OF 10000 ROWS",
    "MATCH (f:Firing {run_id: $run_id}) CALL (f) { DETACH DELETE f } IN TRANSACTIONS OF 1000 ROWS",
    "MATCH (p:Prompt {run_id: $run_id}) CALL (p) { DETACH DELETE p } IN TRANSACTIONS OF 5000 ROWS",
    "MATCH (v:Validation {run_id: $run_id}) DETACH DELETE v",
    "MATCH (r:Run {id: $run_id}) DETACH DELETE r",
)


@dataclass(frozen=True)
class WriteCounts:
    """What a write changed in the graph (all zero when it was already there)."""

    nodes_created: int = 0
    relationships_created: int = 0
    properties_set: int = 0

    def __add__(self, other: WriteCounts) -> WriteCounts:
        return WriteCounts(
            self.nodes_created + other.nodes_created,
            self.relationships_created + other.relationships_created,
            self.properties_set + other.properties_set,
        )


@dataclass(frozen=True)
class _Statement:
    """One statement of a write transaction and how many rows it must report written."""

    query: str
    what: str
    parameters: dict[str, Any]
    expected: int


@dataclass(frozen=True)
class PreparedWrite:
    """The statements of one write transaction, built ahead of it (in another thread, say)."""

    statements: tuple[_Statement, ...]


def _rows_statement(query: str, what: str, rows: list[Row]) -> _Statement:
    """An ``UNWIND $rows`` statement that must write every row."""
    return _Statement(query, what, {"rows": rows}, len(rows))


class AtlasStore:
    """The atlas in one Neo4j database. Create with :meth:`connect` (shared driver)."""

    def __init__(self, driver: Driver, settings: Neo4jSettings) -> None:
        self.driver = driver
        self.settings = settings
        self.database = settings.database
        self._schema_ready = False
        self._run_models: dict[str, str] = {}

    @classmethod
    def connect(cls, settings: Neo4jSettings | None = None) -> AtlasStore:
        settings = settings or load_settings()
        return cls(connect(settings), settings)

    # ----- schema --------------------------------------------------------------------------

    def init_schema(self) -> int:
        with explained_errors(self.settings):
            version = init_schema(self.driver, self.database)
        self._schema_ready = True
        return version

    def schema_version(self) -> int | None:
        with explained_errors(self.settings):
            return schema_version(self.driver, self.database)

    def stale_runs(self) -> list[tuple[str, int]]:
        """Runs written under an older schema version (id, version), which lack its data."""
        records = self._execute(STALE_RUNS, version=SCHEMA_VERSION)
        return [(record["id"], record["version"]) for record in records]

    def _ensure_schema(self) -> None:
        if not self._schema_ready:
            current = self.schema_version()
            if current is None or current < SCHEMA_VERSION:
                self.init_schema()
            self._schema_ready = True

    # ----- run lifecycle -------------------------------------------------------------------

    def write_model(self, model: ModelRecord) -> None:
        self._ensure_schema()
        self._execute(MERGE_MODEL, row=_model_row(model))

    def aligned_params(self, model_id: str) -> str | None:
        """The parameters (JSON) the model's ALIGNED edges were computed with; None: never."""
        records = self._execute(ALIGNED_PARAMS, model_id=model_id)
        return records[0]["params"] if records else None

    def replace_aligned(self, model_id: str, rows: Sequence[AlignedRecord], params: str) -> None:
        """Make the model's ALIGNED edges exactly ``rows`` (computed with ``params``).

        The model and its singular vectors must be written first. The parameters are recorded
        last, so an interrupted replacement is redone by the next ingestion of the model.
        """
        self._ensure_schema()
        self._execute(DELETE_ALIGNED, model_id=model_id)
        self.write_batch(RecordBatch(aligned=rows))
        self._execute(SET_ALIGNED_PARAMS, model_id=model_id, params=params)

    def create_run(self, run: RunRecord) -> None:
        """Record a run and its provenance (status ``running`` unless the record says else).

        An imported (read-only) run of the same id is refused.
        """
        self._ensure_schema()
        existing = self._execute(RUN_PROVENANCE, run_id=run.id)
        if existing and existing[0]["read_only"]:
            raise AtlasError(read_only_message(run.id, existing[0].data()))
        self._execute(MERGE_RUN, row=_run_row(run))
        self._run_models[run.id] = run.model_id

    def complete_run(self, run_id: str) -> int:
        """Aggregate the run's communication and mark it complete; returns #COMMUNICATES."""
        self._model_of(run_id)
        communicates = self.aggregate_communication(run_id)
        self._set_status(run_id, "complete", None)
        self.refresh_planner_statistics()
        return communicates

    def set_run_properties(self, run_id: str, properties: Mapping[str, Any]) -> None:
        """Set scalar properties on a run (e.g. the model's IOI behaviour on its prompts)."""
        self._execute(SET_RUN_PROPERTIES, run_id=run_id, properties=dict(properties))

    def fail_run(self, run_id: str, error: str) -> None:
        self._set_status(run_id, "failed", error)

    def aggregate_communication(self, run_id: str) -> int:
        """(Re)compute the run's COMMUNICATES relationships from its per-prompt edges."""
        query = load_template("aggregate_communication").cypher
        return int(self._execute(query, run_id=run_id)[0][0])

    def done_batches(self, run_id: str) -> set[int]:
        """Indices of the batches of ``run_id`` already written (empty for an unknown run)."""
        records = self._execute(DONE_BATCHES, run_id=run_id)
        return set(records[0]["done"]) if records else set()

    def list_runs(self) -> list[dict[str, Any]]:
        return [record.data() for record in self._execute(LIST_RUNS)]

    def show_run(self, run_id: str) -> dict[str, Any] | None:
        records = self._execute(SHOW_RUN, run_id=run_id)
        if not records:
            return None
        summary = records[0].data()
        summary["run"] = {key: _plain(value) for key, value in summary["run"].items()}
        return summary

    def run_model(self, run_id: str) -> dict[str, Any] | None:
        """The run's ``model_id``, ``n_layers`` and ``n_heads`` (None if unknown); None: no run."""
        records = self._execute(RUN_MODEL_SHAPE, run_id=run_id)
        return records[0].data() if records else None

    def read_template(self, name: str, **parameters: Any) -> list[dict[str, Any]]:
        """The rows of the read-only template ``queries/<name>.cypher``, as plain dicts.

        Parameters are checked and coerced against the template's header (defaults filled in)
        and sent as Cypher parameters; the query runs in a read transaction.
        """
        template = load_template(name)
        if template.mode != "read":
            raise AtlasError(f"Template '{name}' writes to the database; it is not a read query.")
        bound = template.bind(parameters)
        with explained_errors(self.settings):
            records = self.driver.execute_query(
                template.cypher, parameters_=bound, database_=self.database, routing_="r"
            ).records
        return [record.data() for record in records]

    def delete_run(self, run_id: str) -> WriteCounts:
        """Delete everything of one run (and nothing else) in bounded transactions."""
        deleted_nodes = deleted_relationships = 0
        with explained_errors(self.settings), self.driver.session(database=self.database) as s:
            for statement in DELETE_RUN:
                counters = s.run(statement, run_id=run_id).consume().counters
                deleted_nodes += counters.nodes_deleted
                deleted_relationships += counters.relationships_deleted
        self._run_models.pop(run_id, None)
        self.refresh_planner_statistics()
        return WriteCounts(-deleted_nodes, -deleted_relationships)

    def refresh_planner_statistics(self) -> None:
        """Resample the indexes and drop cached query plans (``db.prepareForReplanning``).

        Completing, importing or deleting a run moves the counts the planner costs plans with
        by orders of magnitude, and Neo4j keeps a cached plan until its own resampling catches
        up. Seen without this: ``alternative_routes`` planned while no COMMUNICATES existed
        scanned the whole COMMUNICATES index once per hop after an ingest, 6.5 s instead of
        0.15 s on 256 prompts (31 s on 1,024). Best effort: a server that refuses it (not an
        admin, resampling past its 60 s timeout) keeps its own background resampling, and the
        run's data stand either way; an unreachable server still raises.
        """
        with contextlib.suppress(Neo4jError):
            self._execute("CALL db.prepareForReplanning(60)")

    def head_firings(self, run_id: str) -> dict[str, int]:
        """How often each head fires in the run (ingested runs; empty for imported ones)."""
        records = self._execute(HEAD_FIRINGS, run_id=run_id)
        return {component_id("head", r["layer"], r["head"]): r["firings"] for r in records}

    def write_imported_run(
        self,
        run: RunRecord,
        provenance: Mapping[str, Any],
        model: ModelRecord | None,
        components: Sequence[ComponentRecord],
        edges: Sequence[Edge],
    ) -> WriteCounts:
        """Write a read-only run from a graph file, in ONE transaction, idempotently.

        ``provenance`` (``source_file``, ``source_sha256``, ...) is set on the run with
        ``read_only: true``. An existing run of the same id must be this same import (same
        model and ``source_sha256``); anything else is refused. Re-importing leaves the same
        graph: edges are merged on their key and their properties set again; edges of the run
        that the file no longer has are removed.
        """
        self._ensure_schema()
        comm_rows = [_imported_comm_row(edge, run.id, run.model_id) for edge in edges]
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
                statements.append((MERGE_MODEL, {"row": _model_row(model)}))
            statements += [
                (MERGE_RUN, {"row": _run_row(run)}),
                (SET_RUN_PROPERTIES, {"run_id": run.id, "properties": dict(provenance)}),
                (WRITE_COMPONENTS, {"rows": [_component_row(c) for c in components]}),
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
        firings = _fresh_firing_statements(run_id, self._model_of(run_id), batch, chunk_firings)
        return PreparedWrite(
            (
                _rows_statement(WRITE_COMPONENTS, "components", self._component_rows(batch)),
                _rows_statement(CREATE_PROMPTS, "prompts", _rows(batch.prompts, _prompt_row)),
                *firings,
                _rows_statement(MARK_BATCH_DONE, "batch markers", [_marker_row(batch.done)]),
            )
        )

    def prepare_batch(self, batch: RecordBatch) -> PreparedWrite:
        """The statements that MERGE all records of a batch; components they use are merged too.

        Prompts must be written before (or with) their firings, firings before their edges.
        """
        statements = [
            (WRITE_COMPONENTS, "components", self._component_rows(batch)),
            (WRITE_SINGULAR_VECTORS, "singular vectors", _rows(batch.singular_vectors, _sv_row)),
            (WRITE_ALIGNED, "aligned pairs", _rows(batch.aligned, _aligned_row)),
            (WRITE_PROMPTS, "prompts", _rows(batch.prompts, _prompt_row)),
            (WRITE_FIRINGS, "firings", self._run_rows(batch.firings, _firing_row)),
            (WRITE_EDGES, "edges", self._run_rows(batch.edges, _edge_row)),
            (WRITE_COMMUNICATES, "communicates", self._run_rows(batch.communicates, _comm_row)),
        ]
        if batch.done is not None:
            statements.append((MARK_BATCH_DONE, "batch markers", [_marker_row(batch.done)]))
        return PreparedWrite(tuple(_rows_statement(*statement) for statement in statements))

    def write_prepared(self, prepared: PreparedWrite) -> WriteCounts:
        """Run prepared statements in ONE write transaction; each must write all it expects.

        The statements are sent back to back and their counts read afterwards: the driver
        packs the next statement while the server runs the previous one (Bolt pipelining; the
        server still runs them in order). Any failed check rolls the whole transaction back.
        """
        self._ensure_schema()

        def work(tx: ManagedTransaction) -> WriteCounts:
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

        with explained_errors(self.settings), self.driver.session(database=self.database) as s:
            return s.execute_write(work)

    # ----- helpers -------------------------------------------------------------------------

    def _execute(self, query: str, **parameters: Any) -> list[Any]:
        with explained_errors(self.settings):
            return self.driver.execute_query(
                query, parameters_=parameters, database_=self.database
            ).records

    def _set_status(self, run_id: str, status: str, error: str | None) -> None:
        if not self._execute(SET_RUN_STATUS, run_id=run_id, status=status, error=error):
            raise AtlasError(f"Run '{run_id}' is not in the atlas.")

    def _model_of(self, run_id: str) -> str:
        if run_id not in self._run_models:
            records = self._execute(RUN_MODEL, run_id=run_id)
            if not records:
                raise AtlasError(
                    f"Run '{run_id}' is not in the atlas; create it with create_run() first."
                )
            self._run_models[run_id] = records[0]["model_id"]
        return self._run_models[run_id]

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
        return [_component_row(component) for component in found.values()]

    def _run_rows(self, records: Iterable[Any], to_row: Callable[[Any, str], Row]) -> list[Row]:
        return [to_row(record, self._model_of(_run_id(record))) for record in records]


def _fresh_firing_statements(
    run_id: str, model_id: str, batch: RecordBatch, chunk_firings: int
) -> list[_Statement]:
    """:data:`CREATE_FIRINGS` statements for a fresh batch, ``chunk_firings`` firings each.

    Each firing's terms and edges go in its firing's chunk. Several chunks let the driver send
    the next one while the server creates the previous one (see :meth:`AtlasStore.write_prepared`).
    """
    prompts = {prompt.idx for prompt in batch.prompts}
    firings = batch.firings
    if any(firing.run_id != run_id for firing in firings):
        raise ValueError("a fresh batch holds one run's firings")
    not_whole = ValueError(
        "a fresh batch must be whole: every firing of its run and prompts, every edge of its "
        "firings"
    )
    if not prompts.issuperset(firing.prompt for firing in firings):
        raise not_whole
    position = {firing.key: n for n, firing in enumerate(firings)}
    edges_of: list[list[WriteEdgeRecord]] = [[] for _ in firings]
    for edge in batch.edges:
        n = position.get(edge.firing)
        if n is None:
            raise not_whole
        edges_of[n].append(edge)
    statements = []
    for start in range(0, len(firings), chunk_firings):
        chunk = slice(start, start + chunk_firings)
        parameters = _firing_columns(run_id, model_id, firings[chunk], edges_of[chunk])
        statements.append(_Statement(CREATE_FIRINGS, "firings", parameters, len(firings[chunk])))
    return statements


def _firing_columns(
    run_id: str,
    model_id: str,
    firings: Sequence[FiringRecord],
    edges_of: Sequence[Sequence[WriteEdgeRecord]],
) -> dict[str, Any]:
    """:data:`CREATE_FIRINGS`'s parameters: firings, their sparse-set terms and their edges as
    columns, each firing's terms and edges contiguous, and the nodes they link listed once."""
    components: dict[str, int] = {}
    vectors: dict[tuple[int, int, int], int] = {}
    prompts: dict[int, int] = {}
    component = components.setdefault
    vector = vectors.setdefault
    prompt = prompts.setdefault
    firing_rows: list[tuple[Any, ...]] = []
    use_rows: list[tuple[Any, ...]] = []
    edge_rows: list[tuple[Any, ...]] = []
    for firing, edges in zip(firings, edges_of, strict=True):
        layer, head = firing.layer, firing.head
        head_id = component_id("head", layer, head)
        firing_rows.append(
            (
                component(head_id, len(components)),
                prompt(firing.prompt, len(prompts)),
                len(use_rows),
                len(edge_rows),
                *_firing_values(firing),
            )
        )
        use_rows += [
            (vector((layer, head, term.index), len(vectors)), term.rank, term.term, term.sign)
            for term in firing.sparse_set
        ]
        edge_rows += [
            (
                component(edge.writer_id, len(components)),
                edge.side,
                edge.weight,
                edge.pos,
                edge.role,
                list(edge.parts) or None,
            )
            for edge in edges
        ]
    firing_names = ("head_ref", "prompt_ref", "uses_from", "edges_from", *_FIRING_PROPERTIES)
    columns = _columns(firing_names, firing_rows)
    columns["uses_from"].append(len(use_rows))
    columns["edges_from"].append(len(edge_rows))
    return {
        "run_id": run_id,
        "model_id": model_id,
        "components": list(components),
        "singular_vectors": [list(key) for key in vectors],
        "prompts": list(prompts),
        "firings": columns,
        "uses": _columns(("sv_ref", "rank", "term", "sign"), use_rows),
        "edges": _columns(("writer_ref", "side", "weight", "pos", "role", "parts"), edge_rows),
    }


def _columns(names: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> dict[str, list[Any]]:
    """Rows of equal length as one list per column name."""
    columns = zip(*rows, strict=True) if rows else ([] for _ in names)
    return {name: list(column) for name, column in zip(names, columns, strict=True)}


def _rows(records: Iterable[Any], to_row: Callable[[Any], Row]) -> list[Row]:
    return [to_row(record) for record in records]


def _run_id(record: FiringRecord | WriteEdgeRecord | CommunicatesRecord) -> str:
    return record.firing.run_id if isinstance(record, WriteEdgeRecord) else record.run_id


def _marker_row(done: BatchDone) -> Row:
    return {"run_id": done.run_id, "index": done.index}


def _model_row(model: ModelRecord) -> Row:
    return {
        "id": model.id,
        "n_layers": model.n_layers,
        "n_heads": model.n_heads,
        "d_model": model.d_model,
        "d_head": model.d_head,
    }


def _run_row(run: RunRecord) -> Row:
    return {
        "id": run.id,
        "model_id": run.model_id,
        "model_revision": run.model_revision,
        "method": run.method,
        "params": _json(run.params),
        "dataset": _json(run.dataset),
        "versions": _json(run.versions),
        "git_commit": run.git_commit,
        "created_at": run.created_at,
        "status": run.status,
        "schema_version": SCHEMA_VERSION,
    }


def _component_row(component: ComponentRecord) -> Row:
    return {
        "model_id": component.model_id,
        "id": component.id,
        "kind": component.kind,
        "layer": component.layer,
        "head": component.head,
        "ioi_class": component.ioi_class,
        # display labels the Browser style colours by (atlas/browser/): Layer9, NameMover
        "labels": head_labels(component.layer, component.ioi_class)
        if component.kind == "head" and component.layer is not None
        else [],
    }


def _sv_row(sv: SingularVectorRecord) -> Row:
    return {
        "model_id": sv.model_id,
        "head_id": component_id("head", sv.layer, sv.head),
        "layer": sv.layer,
        "head": sv.head,
        "index": sv.index,
        "sigma": sv.sigma,
    }


def _aligned_row(pair: AlignedRecord) -> Row:
    return {
        "model_id": pair.model_id,
        "a": list(pair.a),
        "b": list(pair.b),
        "side_a": pair.side_a,
        "side_b": pair.side_b,
        "cos": pair.cos,
    }


def _prompt_row(prompt: PromptRecord) -> Row:
    return {
        "run_id": prompt.run_id,
        "idx": prompt.idx,
        "text": prompt.text,
        "template": prompt.template,
        "order": prompt.order,
        "io": prompt.io,
        "s": prompt.s,
        "roles": _json(prompt.roles),
        "tokens": list(prompt.tokens),
    }


_FIRING_PROPERTIES = (
    "prompt",
    "layer",
    "head",
    "dest",
    "src",
    "dest_role",
    "src_role",
    "attn",
    "score",
    "n_svs",
)


_firing_values = attrgetter(*_FIRING_PROPERTIES)


def _firing_properties(firing: FiringRecord) -> Row:
    """The properties a Firing node stores, except ``run_id`` (both write paths use them)."""
    return dict(zip(_FIRING_PROPERTIES, _firing_values(firing), strict=True))


def _firing_row(firing: FiringRecord, model_id: str) -> Row:
    return {
        "model_id": model_id,
        "head_id": component_id("head", firing.layer, firing.head),
        "run_id": firing.run_id,
        **_firing_properties(firing),
        "sparse_set": [
            {"index": t.index, "rank": t.rank, "term": t.term, "sign": t.sign}
            for t in firing.sparse_set
        ],
    }


def _edge_row(edge: WriteEdgeRecord, model_id: str) -> Row:
    key = edge.firing
    return {
        "model_id": model_id,
        "writer_id": edge.writer_id,
        "run_id": key.run_id,
        "prompt": key.prompt,
        "layer": key.layer,
        "head": key.head,
        "dest": key.dest,
        "src": key.src,
        "side": edge.side,
        "weight": edge.weight,
        "pos": edge.pos,
        "role": edge.role,
        "parts": list(edge.parts) or None,  # hand-built edges may have none
    }


def _comm_row(comm: CommunicatesRecord, model_id: str) -> Row:
    return {
        "model_id": model_id,
        "writer_id": comm.writer_id,
        "head_id": component_id("head", comm.layer, comm.head),
        "run_id": comm.run_id,
        "side": comm.side,
        "role": comm.role,
        "n_prompts": comm.n_prompts,
        "mean_weight": comm.mean_weight,
    }


def _imported_comm_row(edge: Edge, run_id: str, model_id: str) -> Row:
    return {
        "model_id": model_id,
        "writer_id": edge.writer.id,
        "head_id": edge.target.id,
        "run_id": run_id,
        "side": edge.side,
        "role": edge.role,
        "n_prompts": edge.n_prompts,
        "mean_weight": edge.mean_weight,
        "source": dict(edge.source),
    }


def _describe_run(run: Mapping[str, Any]) -> str:
    if run.get("read_only"):
        return f"imported from {run.get('source_file')}, sha256 {run.get('source_sha256')}"
    return f"made by method '{run.get('method')}' for model {run.get('model_id')}"


def read_only_message(run_id: str, run: Mapping[str, Any]) -> str:
    """Why a read-only (imported) run cannot be written to, and what to do instead."""
    return (
        f"Run '{run_id}' is read-only ({_describe_run(run)}); it cannot be resumed or "
        f"rewritten. Use another --run-id, or `circuit-atlas runs delete {run_id}` first."
    )


def _plain(value: object) -> object:
    """Neo4j temporal values as ISO strings; everything else unchanged."""
    return value.iso_format() if isinstance(value, DateTime) else value


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)
