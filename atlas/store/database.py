"""The atlas's Neo4j database as the store's classes share it: driver, schema, plain queries.

:class:`Database` is the base of :class:`~atlas.store.runs.RunLifecycle`, itself the base of
:class:`~atlas.store.store.AtlasStore`, the class the rest of the atlas uses.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from neo4j import Driver
from neo4j.exceptions import Neo4jError

from atlas.errors import UnknownRunError
from atlas.settings import Neo4jSettings
from atlas.store.connection import explained_errors
from atlas.store.schema import SCHEMA_VERSION, init_schema, schema_version
from atlas.store.statements import PREPARE_FOR_REPLANNING, RUN_MODEL


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


class Database:
    """One Neo4j database of the atlas: its driver, its schema, and one-statement queries."""

    def __init__(self, driver: Driver, settings: Neo4jSettings) -> None:
        self.driver = driver
        self.settings = settings
        self.database = settings.database
        self._schema_ready = False
        self._run_models: dict[str, str] = {}  # run id → model id, learnt once per run

    def init_schema(self) -> int:
        with explained_errors(self.settings):
            version = init_schema(self.driver, self.database)
        self._schema_ready = True
        return version

    def schema_version(self) -> int | None:
        with explained_errors(self.settings):
            return schema_version(self.driver, self.database)

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
            self._execute(PREPARE_FOR_REPLANNING)

    def _ensure_schema(self) -> None:
        if not self._schema_ready:
            current = self.schema_version()
            if current is None or current < SCHEMA_VERSION:
                self.init_schema()
            self._schema_ready = True

    def _execute(self, query: str, **parameters: Any) -> list[Any]:
        with explained_errors(self.settings):
            return self.driver.execute_query(
                query, parameters_=parameters, database_=self.database
            ).records

    def _read(self, query: str, **parameters: Any) -> list[Any]:
        """A read-only statement, routed to a reader when the URI is ``neo4j://`` (a cluster's
        followers or read replicas; the driver's bookmarks still show it this process's
        writes). On ``bolt://`` or a single server it runs where the writes do."""
        with explained_errors(self.settings):
            return self.driver.execute_query(
                query, parameters_=parameters, database_=self.database, routing_="r"
            ).records

    def _model_of(self, run_id: str) -> str:
        if run_id not in self._run_models:
            records = self._execute(RUN_MODEL, run_id=run_id)
            if not records:
                raise UnknownRunError(
                    f"Run '{run_id}' is not in the atlas; create it with create_run() first."
                )
            self._run_models[run_id] = records[0]["model_id"]
        return self._run_models[run_id]
