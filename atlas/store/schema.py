"""Constraints and indexes of the graph model, created idempotently and versioned.

The graph model itself is described in docs/neo4j.md ("Graph model").

Every MERGE key has a uniqueness constraint (composite ``IS UNIQUE`` works on Community;
``NODE KEY`` does not), including COMMUNICATES, whose key (run, writer, head, side, role) is
stored on the relationship. The small per-firing relationships (OF_HEAD, IN_PROMPT, USES,
WRITES) are merged by expanding from their new firing, under Neo4j's locks on both ends; they
deliberately have no relationship index, which would tempt the planner to scan a whole run
per row. Bump :data:`SCHEMA_VERSION` whenever the statements change.
"""

from __future__ import annotations

from neo4j import Driver

SCHEMA_VERSION = 5

# The version of the per-run aggregates `complete_run` computes (FiringCount, SparseSetCount, ...):
# a complete run with an older one gets them recomputed from its stored rows by `db init`.
# 2: the broadcast aggregate `shared_features` reads (FeatureUse, FeatureWriters, Broadcast) and
# COMMUNICATES' per-name-order prompt counts (`compare` by order).
AGGREGATES_VERSION = 2

# What each version added that older runs cannot have (read by `db init`'s upgrade message).
# Version 5 added an index of PATCH_EDGE by run (a run's patching circuit was found by scanning
# every run's). Versions 3 and 4 added the per-run aggregates' indexes (4: the broadcast
# aggregate's): `db init` computes the aggregates of older complete runs from their stored rows,
# so they lack nothing.
UPGRADE_NOTES = {
    2: "WRITES.parts (each edge's weight per singular vector) and ALIGNED singular vectors",
}

CONSTRAINTS = {
    "model_id": "FOR (n:Model) REQUIRE n.id IS UNIQUE",
    "run_id": "FOR (n:Run) REQUIRE n.id IS UNIQUE",
    "component_key": "FOR (n:Component) REQUIRE (n.model_id, n.id) IS UNIQUE",
    "singular_vector_key": (
        "FOR (n:SingularVector) REQUIRE (n.model_id, n.layer, n.head, n.index) IS UNIQUE"
    ),
    "prompt_key": "FOR (n:Prompt) REQUIRE (n.run_id, n.idx) IS UNIQUE",
    "firing_key": (
        "FOR (n:Firing) REQUIRE (n.run_id, n.prompt, n.layer, n.head, n.dest, n.src) IS UNIQUE"
    ),
    "atlas_meta_name": "FOR (n:AtlasMeta) REQUIRE n.name IS UNIQUE",
    "communicates_key": (
        "FOR ()-[r:COMMUNICATES]-() REQUIRE (r.run_id, r.writer, r.head, r.side, r.role) IS UNIQUE"
    ),
    "validation_key": (
        "FOR (n:Validation) REQUIRE (n.run_id, n.writer, n.head, n.side, n.role, n.dest_role, "
        "n.src_role, n.mode, n.factor) IS UNIQUE"
    ),
    "patching_key": "FOR (n:Patching) REQUIRE (n.run_id, n.method, n.metric) IS UNIQUE",
    "patch_edge_key": (
        "FOR ()-[r:PATCH_EDGE]-() REQUIRE (r.run_id, r.method, r.metric, r.writer, r.reader, "
        "r.side) IS UNIQUE"
    ),
}

INDEXES = {
    "run_status": "FOR (n:Run) ON (n.status)",
    "run_model": "FOR (n:Run) ON (n.model_id)",
    "head_layer_head": "FOR (n:Head) ON (n.layer, n.head)",
    "head_ioi_class": "FOR (n:Head) ON (n.ioi_class)",
    "component_kind": "FOR (n:Component) ON (n.kind)",
    "prompt_run": "FOR (n:Prompt) ON (n.run_id)",
    "firing_run": "FOR (n:Firing) ON (n.run_id)",
    "firing_run_head": "FOR (n:Firing) ON (n.run_id, n.layer, n.head)",
    # A head's firings at one role pair (firings with a null role are not in it: templates use
    # it only with both roles given).
    "firing_run_head_roles": (
        "FOR (n:Firing) ON (n.run_id, n.layer, n.head, n.dest_role, n.src_role)"
    ),
    # A head's firings in one prompt by key position (the unique key seeks by dest, not by src).
    "firing_run_prompt_head_src": "FOR (n:Firing) ON (n.run_id, n.prompt, n.layer, n.head, n.src)",
    "firing_roles": "FOR (n:Firing) ON (n.dest_role, n.src_role)",
    "communicates_run": "FOR ()-[r:COMMUNICATES]-() ON (r.run_id)",
    "patch_edge_rank": "FOR ()-[r:PATCH_EDGE]-() ON (r.run_id, r.method, r.metric, r.rank)",
    # The per-run aggregates (atlas.store.runs.RunLifecycle.aggregate_run), read by run.
    "firing_count_run": "FOR (n:FiringCount) ON (n.run_id)",
    "sparse_set_count_run": "FOR (n:SparseSetCount) ON (n.run_id)",
    # The broadcast aggregate (shared_features), read by its key less the role filter (the
    # roles may be absent, and a composite index leaves out nodes without one of its
    # properties); deleted by run through the same indexes (their other properties are always
    # set).
    "feature_use_head": "FOR (n:FeatureUse) ON (n.run_id, n.layer, n.head)",
    "feature_writers_vector": (
        "FOR (n:FeatureWriters) ON (n.run_id, n.layer, n.head, n.index, n.side)"
    ),
    "broadcast_pair": (
        "FOR (n:Broadcast) ON (n.run_id, n.layer, n.head, n.index, n.side, n.partner_layer, "
        "n.partner_head, n.partner_index, n.partner_side)"
    ),
}

_RECORD_VERSION = """
MERGE (m:AtlasMeta {name: 'schema'})
SET m.version = $version, m.updated_at = datetime()
"""

_READ_VERSION = "MATCH (m:AtlasMeta {name: 'schema'}) RETURN m.version AS version"


def schema_statements() -> list[str]:
    """The DDL, one statement each (names are fixed constants, never user input)."""
    return [
        *(f"CREATE CONSTRAINT {name} IF NOT EXISTS {body}" for name, body in CONSTRAINTS.items()),
        *(f"CREATE INDEX {name} IF NOT EXISTS {body}" for name, body in INDEXES.items()),
    ]


def schema_version(driver: Driver, database: str) -> int | None:
    records = driver.execute_query(_READ_VERSION, database_=database).records
    return records[0]["version"] if records else None


def init_schema(driver: Driver, database: str) -> int:
    """Create missing constraints and indexes, wait for them, record the version."""
    for statement in schema_statements():
        driver.execute_query(statement, database_=database)
    driver.execute_query("CALL db.awaitIndexes(300)", database_=database)
    driver.execute_query(_RECORD_VERSION, version=SCHEMA_VERSION, database_=database)
    return SCHEMA_VERSION


def head_labels(layer: int, ioi_class: str | None) -> list[str]:
    """Display labels of a head: ``Layer<layer>``, plus its IOI class in CamelCase if known.

    >>> head_labels(9, "name mover")
    ['Layer9', 'NameMover']
    >>> head_labels(7, "S-inhibition")
    ['Layer7', 'SInhibition']
    """
    labels = [f"Layer{layer}"]
    if ioi_class:
        words = ioi_class.replace("-", " ").split()
        labels.append("".join(word[:1].upper() + word[1:] for word in words))
    return labels
