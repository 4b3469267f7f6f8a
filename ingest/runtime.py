"""The process the job runs in: torch's CPU threads, the per-user data directory, the code's
version."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DATA_DIR_VARIABLE = "CIRCUIT_ATLAS_HOME"


def data_dir() -> Path:
    """Per-user folder for what the atlas installs and keeps outside the package: the local
    Neo4j server (jars, data, logs, password), converted model checkpoints, caches.

    ``$CIRCUIT_ATLAS_HOME`` when set, else ``$XDG_DATA_HOME/circuit-atlas``, else
    ``~/.local/share/circuit-atlas`` (the XDG base-directory default). Never inside the
    installed package, so a regular ``pip install`` works as well as an editable one.
    """
    override = os.environ.get(DATA_DIR_VARIABLE)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "circuit-atlas"


def git_commit() -> str | None:
    """The commit of the checkout this package runs from, when it is a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, then restore the previous count.

    Uses here: batched factorisations of many small matrices gain nothing from threads and, on a
    busy CPU, their OpenMP barriers stall (seen: 0.5 s on one thread, up to 68 s on two); and
    floating-point reductions depend on the thread count, so bit-reproducible training pins it.
    """
    import torch  # here, so the data directory is known without loading torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
