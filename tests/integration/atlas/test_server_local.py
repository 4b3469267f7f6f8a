"""Local server and connection errors: each must read as one clear paragraph."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from atlas.errors import AtlasError
from atlas.server.local import LocalServer
from atlas.settings import Neo4jSettings, read_credentials
from atlas.store.store import AtlasStore
from tests.fixtures.neo4j import free_port


def scratch_server(tmp_path: Path, bolt_port: int) -> LocalServer:
    return LocalServer(
        instance=tmp_path / "instance",
        bolt_port=bolt_port,
        http_port=free_port(),
        credentials_file=tmp_path / "credentials.json",
    )


def test_wrong_password_is_a_clear_error(neo4j_settings: Neo4jSettings) -> None:
    wrong = replace(neo4j_settings, password="not-the-password")
    with pytest.raises(AtlasError, match="wrong user or password") as raised:
        AtlasStore.connect(wrong)
    assert "not-the-password" not in str(raised.value)


def test_server_down_names_the_start_command(neo4j_settings: Neo4jSettings) -> None:
    down = replace(neo4j_settings, uri=f"bolt://127.0.0.1:{free_port()}")
    with pytest.raises(AtlasError, match="`circuit-atlas server start`"):
        AtlasStore.connect(down)


def test_credentials_file_is_private(neo4j_settings: Neo4jSettings) -> None:
    path = Path(neo4j_settings.source)
    if not path.is_file():
        pytest.skip("settings come from NEO4J_URI, not from a local credentials file")
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_credentials(path) == neo4j_settings


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = scratch_server(tmp_path, squatter.getsockname()[1])
        server.pid_file.parent.mkdir(parents=True)
        server.pid_file.write_text("999999\n")
        with pytest.raises(AtlasError, match="already in use") as raised:
            server.start()
    message = str(raised.value)
    assert "stale pid file (pid 999999" in message
    assert server.running_pid() is None


def test_a_server_that_exits_at_start_up_is_reported_at_once(tmp_path: Path) -> None:
    """A JVM that cannot start (here: an invalid heap size) ends the wait for Bolt with one
    line naming the logs (not the timeout's "did not open Bolt in time")."""
    server = replace(scratch_server(tmp_path, free_port()), heap="a-lot")
    with pytest.raises(AtlasError, match=r"Neo4j exited during start-up; see .*console\.log"):
        server.start(timeout=120)
    assert "heap" in (server.logs / "console.log").read_text().lower()


@pytest.mark.skipif(bool(os.environ.get("NEO4J_URI")), reason="checks the local server's config")
def test_local_server_keeps_transaction_logs_small(atlas_store: AtlasStore) -> None:
    """Neo4j's default keeps two days of logs: 28 GiB after a day of benchmarking here."""
    records = atlas_store.driver.execute_query(
        "SHOW SETTINGS YIELD name, value WHERE name = 'db.tx_log.rotation.retention_policy' "
        "RETURN value"
    ).records
    assert [record["value"] for record in records] == ["1G size"]
