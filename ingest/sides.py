"""The two sides of a bilinear attention score, named once for every stage (no torch here, so
the graph records and the store can name them without loading the model stack).

The query (destination) side reads through U, the key (source) side through V:
``score(i, j) = x̃_i^T U Σ V^T x̃_j``.
"""

from __future__ import annotations

from typing import Literal

Side = Literal["q", "k"]
QUERY_SIDE = 0
KEY_SIDE = 1
SIDE_NAMES: dict[int, Side] = {QUERY_SIDE: "q", KEY_SIDE: "k"}

__all__ = ["KEY_SIDE", "QUERY_SIDE", "SIDE_NAMES", "Side"]
