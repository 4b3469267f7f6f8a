"""The base of the exceptions ``ingest`` raises on purpose (a model that cannot be loaded or
decomposed, a device that is not there, training that did not converge).

Each is also a built-in error (``RuntimeError`` or ``ValueError``) for callers that catch those;
a front end catches :class:`IngestError` to report the message as one line.
"""

from __future__ import annotations

__all__ = ["IngestError"]


class IngestError(Exception):
    """A problem the user can fix; the message says how."""
