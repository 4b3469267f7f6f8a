"""The local server's pid file handling (no jars, no Java)."""

from __future__ import annotations

import socket
from pathlib import Path

from atlas.server.local import LocalServer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
