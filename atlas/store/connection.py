"""One Neo4j driver per process, and Neo4j failures turned into one-paragraph errors."""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from contextlib import contextmanager

from neo4j import Driver, GraphDatabase
from neo4j.exceptions import (
    AuthError,
    ClientError,
    ConfigurationError,
    DatabaseUnavailable,
    ServiceUnavailable,
    SessionExpired,
)

from atlas.errors import Neo4jUnavailableError
from atlas.settings import Neo4jSettings

_drivers: dict[tuple[str, str, str], Driver] = {}


def get_driver(settings: Neo4jSettings) -> Driver:
    """The process-wide driver for these settings (created on first use, closed at exit)."""
    key = (settings.uri, settings.user, settings.password)
    if key not in _drivers:
        with explained_errors(settings):
            _drivers[key] = _new_driver(settings)
    return _drivers[key]


def _new_driver(settings: Neo4jSettings) -> Driver:
    return GraphDatabase.driver(
        settings.uri,
        auth=(settings.user, settings.password),
        connection_timeout=5.0,
        # The server's query notifications (e.g. "label does not exist" before the first
        # run) are advice for query authors; errors still raise as exceptions.
        notifications_min_severity="OFF",
    )


def close_drivers(uri: str | None = None) -> None:
    """Close the process's drivers: all of them, or only those to ``uri``."""
    for key in [key for key in _drivers if uri is None or key[0] == uri]:
        _drivers.pop(key).close()


atexit.register(close_drivers)


@contextmanager
def explained_errors(settings: Neo4jSettings) -> Iterator[None]:
    """Re-raise unreachable-server, unavailable-database and bad-credential errors as
    :class:`Neo4jUnavailableError`."""
    try:
        yield
    except AuthError as error:
        raise Neo4jUnavailableError(
            f"Neo4j at {settings.uri} rejected user '{settings.user}' "
            f"(credentials from {settings.source}): wrong user or password. Fix NEO4J_USER / "
            "NEO4J_PASSWORD, or unset NEO4J_URI to use the local server's stored credentials "
            "(`circuit-atlas server status` shows where they are)."
        ) from error
    except ConfigurationError as error:
        raise Neo4jUnavailableError(
            f"Cannot use the Neo4j URI {settings.uri!r} (settings from {settings.source}): "
            f"{' '.join(str(error).split('. Examples')[0].split())}."
        ) from error
    except ClientError as error:
        if error.code != "Neo.ClientError.Database.DatabaseNotFound":
            raise
        raise Neo4jUnavailableError(
            f"Neo4j at {settings.uri} has no database {settings.database!r} (settings from "
            f"{settings.source}). Set NEO4J_DATABASE to an existing database (Community "
            "edition has one, 'neo4j'), or unset it."
        ) from error
    # A server stopping or starting: refused connections, a broken session, or a database
    # not open yet (after the driver's retries gave up).
    except (ServiceUnavailable, SessionExpired, DatabaseUnavailable, OSError) as error:
        raise Neo4jUnavailableError(
            f"Cannot reach Neo4j at {settings.uri} (settings from {settings.source}). "
            "Is the server running? Start the local one with `circuit-atlas server start`, "
            "or with Docker run `docker compose up -d` and set NEO4J_URI/NEO4J_PASSWORD."
        ) from error


def connect(settings: Neo4jSettings) -> Driver:
    """The shared driver, checked to answer with these credentials."""
    driver = get_driver(settings)
    with explained_errors(settings):
        driver.verify_connectivity()
    return driver
