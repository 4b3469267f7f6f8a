"""Run ids are names: they key every node of a run, appear in file names (``export``) and in
Browser links, so they are checked before any work starts.

A run id is 1 to 64 characters, letters (ASCII), digits, ``-``, ``_`` and ``.``, and does not
start with ``.`` (:data:`RUN_ID_PATTERN`). The default id, derived from the model and every
setting (:meth:`ingest.pipeline.IngestConfig.default_run_id`), always fits.
"""

from __future__ import annotations

import re

from ingest.errors import IngestError

__all__ = ["MAX_RUN_ID_LENGTH", "RUN_ID_PATTERN", "InvalidRunIdError", "check_run_id"]

MAX_RUN_ID_LENGTH = 64
RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
RULE = "1-64 characters: letters, digits, '-', '_' and '.', not starting with '.'"
SHOWN = 40  # characters of a rejected id echoed back


class InvalidRunIdError(IngestError, ValueError):
    """A run id that is not a name (see :data:`RUN_ID_PATTERN`)."""


def check_run_id(run_id: str) -> str:
    """``run_id`` itself when it is a valid name, else :class:`InvalidRunIdError`, whose message
    shows at most the first 40 characters of what was given."""
    if RUN_ID_PATTERN.fullmatch(run_id):
        return run_id
    shown = repr(run_id[:SHOWN])
    if len(run_id) > SHOWN:
        shown = f"{shown[:-1]}…{shown[-1]} ({len(run_id):,} characters)"
    raise InvalidRunIdError(f"Invalid run id {shown}: a run id is {RULE}.")


def slug(text: str) -> str:
    """``text`` as run-id characters (others become ``-``), for deriving default ids."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip(".-") or "run"
