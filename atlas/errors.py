"""The library's exceptions: problems a user can fix, each explained in its message.

Every error the ``atlas`` library raises on purpose is an :class:`AtlasError` (plain
``Exception`` subclasses, no command-line dependency); the command line turns them into one
line, ``Error: <message>``, in one place (:mod:`atlas.cli`). The subclasses let callers tell
the kinds apart; the message alone must say what to do.
"""

from __future__ import annotations

__all__ = [
    "AtlasError",
    "Neo4jUnavailableError",
    "NotApplicableError",
    "ParameterError",
    "ServerError",
    "UnknownRunError",
]


class AtlasError(Exception):
    """A problem the user can fix, reported as one line without a traceback."""


class Neo4jUnavailableError(AtlasError):
    """No Neo4j is configured, it does not answer, or it rejects the credentials."""


class UnknownRunError(AtlasError):
    """The run id names no run in the atlas."""


class ParameterError(AtlasError):
    """A value given to the library (a query parameter, a setting, a file) is not valid."""


class ServerError(AtlasError):
    """The local Neo4j server cannot be installed, started or reached during start-up."""


class NotApplicableError(AtlasError):
    """The question does not apply to this kind of run (e.g. a template reading SAD's
    singular-vector links asked about an ACC run)."""
