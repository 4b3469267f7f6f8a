"""A run's writer process: alive, gone, reused id, another host (real processes, no mocks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from atlas.store.liveness import writer_identity, writer_is_gone
from atlas.store.runs import shown_status


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_this_process_is_alive() -> None:
    identity = writer_identity()
    assert identity.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    assert not writer_is_gone(identity)


def test_a_killed_writer_is_gone(child: subprocess.Popen[bytes]) -> None:
    identity = writer_identity(child.pid)
    assert not writer_is_gone(identity)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert writer_is_gone(identity)
    assert shown_status("running", identity) == "interrupted"


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc (Linux)")
def test_a_reused_process_id_is_not_the_writer() -> None:
    """Same host and id, another start time: the id now belongs to a later process."""
    host, pid, start = writer_identity().rsplit(":", 2)
    assert writer_is_gone(f"{host}:{pid}:{int(start) - 1}")


def test_writers_that_cannot_be_checked_count_as_alive() -> None:
    assert not writer_is_gone(None)
    assert not writer_is_gone("")
    assert not writer_is_gone(f"another-host.example:{os.getpid() + 10**6}:1")
    assert shown_status("running", None) == "running"


def test_only_running_runs_are_shown_interrupted(child: subprocess.Popen[bytes]) -> None:
    identity = writer_identity(child.pid)
    child.kill()
    child.wait()
    assert [shown_status(s, identity) for s in ("complete", "failed", "running")] == [
        "complete",
        "failed",
        "interrupted",
    ]
