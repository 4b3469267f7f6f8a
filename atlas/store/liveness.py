"""Who writes a run, and whether that process still exists.

A run being ingested is ``running``. When its writer dies without a word (SIGKILL, a power
cut, the out-of-memory killer) nothing sets another status, so the writer records itself on the
run when it starts (:func:`writer_identity`: host name, process id and the process's start
time) and readers ask :func:`writer_is_gone`. A run still ``running`` whose writer is gone is
shown as ``interrupted``. The start time tells a reused process id from the writer itself
(Linux, from ``/proc``; elsewhere only the id is checked). A writer on another host cannot be
checked from here: its run stays ``running``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def writer_identity(pid: int | None = None) -> str:
    """``host:pid:start`` of a process (by default this one); ``start`` is empty when the
    platform does not tell it."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or ''}"


def writer_is_gone(identity: str | None) -> bool:
    """True when ``identity`` (from :func:`writer_identity`) names a process of this host that
    no longer exists, or whose id now belongs to a process started later; False when it is
    alive, on another host, or unknown (no identity recorded)."""
    if not identity:
        return False
    host, pid_text, start = _split(identity)
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        pass
    return bool(start) and _start_ticks(pid) != start


def _split(identity: str) -> tuple[str, str, str]:
    """(host, pid, start) of an identity; a host name may itself hold colons."""
    host_and_pid, _, start = identity.rpartition(":")
    host, _, pid = host_and_pid.rpartition(":")
    return host, pid, start


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of ``/proc/PID/stat``);
    None where there is no ``/proc`` or no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces and ')'
    return stat.rpartition(")")[2].split()[19]
