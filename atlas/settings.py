"""Where the atlas lives: one settings source for a local server and for docker compose.

``NEO4J_URI`` (with ``NEO4J_USER``, ``NEO4J_PASSWORD``, ``NEO4J_DATABASE``) wins when set.
Otherwise the credentials file that ``circuit-atlas server start`` writes is used. The local
server (jars, data, logs) and that file live in the per-user data directory
(:func:`ingest.runtime.data_dir`: ``$CIRCUIT_ATLAS_HOME``, else ``$XDG_DATA_HOME/circuit-atlas``,
else ``~/.local/share/circuit-atlas``), never inside the installed package.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from atlas.errors import Neo4jUnavailableError
from ingest.runtime import DATA_DIR_VARIABLE, data_dir

__all__ = [
    "DATA_DIR_VARIABLE",
    "DEFAULT_DATABASE",
    "DEFAULT_USER",
    "Neo4jSettings",
    "data_dir",
    "default_credentials_file",
    "load_settings",
    "read_credentials",
    "reference_dir",
    "server_dir",
    "write_credentials",
]

DEFAULT_DATABASE = "neo4j"
DEFAULT_USER = "neo4j"


@dataclass(frozen=True)
class Neo4jSettings:
    """How to reach Neo4j; ``source`` says where the values came from (never the password)."""

    uri: str
    user: str
    password: str = field(repr=False)
    database: str = DEFAULT_DATABASE
    source: str = "environment"


def server_dir() -> Path:
    """The local Neo4j server: jars, Browser bundle, conf, data and logs (``<data dir>/neo4j``)."""
    return data_dir() / "neo4j"


def default_credentials_file() -> Path:
    """The local server's URI, user and generated password (mode 0600), beside its data."""
    return server_dir() / "credentials.json"


def reference_dir() -> Path:
    """The folder that holds the method authors' published data (``sad-gpt2-ioi/``: their GPT-2
    graph and interventions), read in place and never copied into the project:
    ``CIRCUIT_ATLAS_REFERENCE``, else a ``shared/reference`` folder beside the checkout."""
    checkout = Path(__file__).resolve().parents[1]
    return Path(
        os.environ.get("CIRCUIT_ATLAS_REFERENCE") or checkout.parent / "shared" / "reference"
    )


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


URI_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")


def check_uri(uri: str) -> None:
    """A ``NEO4J_URI`` the driver can use: a known scheme, a host, a numeric port if any."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    problem = ""
    if parts.scheme not in URI_SCHEMES:
        problem = f"the scheme {parts.scheme!r} is not one of {', '.join(URI_SCHEMES)}"
    else:
        try:
            parts.port  # noqa: B018 (raises for a port that is not a number in 0-65535)
        except ValueError:
            problem = "the port is not a number in 0-65535"
        if not problem and not parts.hostname:
            problem = "it names no host"
    if problem:
        raise Neo4jUnavailableError(
            f"NEO4J_URI {uri[:80]!r} cannot work: {problem}. Use e.g. bolt://localhost:7687 "
            "(or neo4j+s://host:7687 for TLS to a remote server)."
        )


def load_settings(credentials_file: Path | None = None) -> Neo4jSettings:
    """Settings from the environment, else from the local server's credentials file."""
    uri = os.environ.get("NEO4J_URI")
    database = os.environ.get("NEO4J_DATABASE") or DEFAULT_DATABASE
    if uri:
        check_uri(uri)
        return Neo4jSettings(
            uri=uri,
            user=os.environ.get("NEO4J_USER") or DEFAULT_USER,
            password=os.environ.get("NEO4J_PASSWORD", ""),
            database=database,
        )
    stray = [name for name in ("NEO4J_USER", "NEO4J_PASSWORD") if os.environ.get(name)]
    if stray:
        raise Neo4jUnavailableError(
            f"{' and '.join(stray)} {'is' if len(stray) == 1 else 'are'} set but NEO4J_URI is "
            f"not, so {'it' if len(stray) == 1 else 'they'} would be ignored in favour of the "
            "local server's credentials file. Set "
            f"NEO4J_URI too (e.g. bolt://localhost:7687), or unset {' and '.join(stray)}."
        )
    path = credentials_file or default_credentials_file()
    stored = read_credentials(path)
    if stored is None:
        raise Neo4jUnavailableError(
            "No Neo4j is configured: NEO4J_URI is not set and there is no local server "
            f"credentials file at {path}. Start the local server with `circuit-atlas server "
            "start` (data directory: --data-dir or $CIRCUIT_ATLAS_HOME), or set NEO4J_URI, "
            "NEO4J_USER and NEO4J_PASSWORD (e.g. for docker compose)."
        )
    if os.environ.get("NEO4J_DATABASE"):
        return Neo4jSettings(stored.uri, stored.user, stored.password, database, stored.source)
    return stored
