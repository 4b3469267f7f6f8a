"""The local server's pid file handling (no jars, no Java)."""

from __future__ import annotations

from pathlib import Path

from atlas.server.local import LocalServer
from tests.fixtures.neo4j import free_port


def scratch_server(tmp_path: Path, bolt_port: int) -> LocalServer:
    return LocalServer(
        instance=tmp_path / "instance",
        bolt_port=bolt_port,
        http_port=free_port(),
        credentials_file=tmp_path / "credentials.json",
    )


def test_stale_pid_file_is_removed(tmp_path: Path) -> None:
    server = scratch_server(tmp_path, free_port())
    server.pid_file.parent.mkdir(parents=True)
    server.pid_file.write_text("999999\n")
    assert server.running_pid() is None
    assert not server.pid_file.exists()
    assert server.stop() is None
