"""Where the atlas lives: one settings source for a local server and for docker compose.

``NEO4J_URI`` (with ``NEO4J_USER``, ``NEO4J_PASSWORD``, ``NEO4J_DATABASE``) wins when set.
Otherwise the credentials file that ``circuit-atlas server start`` writes is used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import click

DEFAULT_DATABASE = "neo4j"
DEFAULT_USER = "neo4j"


class AtlasError(click.ClickException):
    """A problem the user can fix, reported as one paragraph without a traceback."""


@dataclass(frozen=True)
class Neo4jSettings:
    """How to reach Neo4j; ``source`` says where the values came from (never the password)."""

    uri: str
    user: str
    password: str = field(repr=False)
    database: str = DEFAULT_DATABASE
    source: str = "environment"


def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def var_dir() -> Path:
    """Git-ignored folder for jars, server data and logs (``CIRCUIT_ATLAS_VAR`` overrides)."""
    return Path(os.environ.get("CIRCUIT_ATLAS_VAR") or repo_root() / "var")


def reference_dir() -> Path:
    """The folder that holds the method authors' published data (``sad-gpt2-ioi/``: their GPT-2
    graph and interventions), read in place and never copied into the project:
    ``CIRCUIT_ATLAS_REFERENCE``, else a ``shared/reference`` folder beside the checkout."""
    return Path(
        os.environ.get("CIRCUIT_ATLAS_REFERENCE") or repo_root().parent / "shared" / "reference"
    )


def config_dir() -> Path:
    """Per-user config folder: ``$XDG_CONFIG_HOME/circuit-atlas`` or ``~/.config/circuit-atlas``."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "circuit-atlas"


def default_credentials_file() -> Path:
    return config_dir() / "neo4j-local.json"


def write_credentials(path: Path, settings: Neo4jSettings) -> None:
    """Store settings in a file only the user can read (mode 0600, created that way)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    payload = {
        "uri": settings.uri,
        "user": settings.user,
        "password": settings.password,
        "database": settings.database,
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2)
    os.chmod(path, 0o600)


def read_credentials(path: Path) -> Neo4jSettings | None:
    if not path.exists():
        return None
    payload = json.loads(path.read_text())
    return Neo4jSettings(
        uri=payload["uri"],
        user=payload.get("user", DEFAULT_USER),
        password=payload["password"],
        database=payload.get("database", DEFAULT_DATABASE),
        source=str(path),
    )


def load_settings(credentials_file: Path | None = None) -> Neo4jSettings:
    """Settings from the environment, else from the local server's credentials file."""
    uri = os.environ.get("NEO4J_URI")
    database = os.environ.get("NEO4J_DATABASE") or DEFAULT_DATABASE
    if uri:
        return Neo4jSettings(
            uri=uri,
            user=os.environ.get("NEO4J_USER") or DEFAULT_USER,
            password=os.environ.get("NEO4J_PASSWORD", ""),
            database=database,
        )
    path = credentials_file or default_credentials_file()
    stored = read_credentials(path)
    if stored is None:
        raise AtlasError(
            "No Neo4j is configured: NEO4J_URI is not set and there is no local server "
            f"credentials file at {path}. Start the local server with `circuit-atlas server "
            "start`, or set NEO4J_URI, NEO4J_USER and NEO4J_PASSWORD (e.g. for docker compose)."
        )
    if os.environ.get("NEO4J_DATABASE"):
        return Neo4jSettings(stored.uri, stored.user, stored.password, database, stored.source)
    return stored
