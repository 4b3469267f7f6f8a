"""Temporarily set the number of CPU threads torch uses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, then restore the previous count.

    Uses here: batched factorisations of many small matrices gain nothing from threads and, on a
    busy CPU, their OpenMP barriers stall (seen: 0.5 s on one thread, up to 68 s on two); and
    floating-point reductions depend on the thread count, so bit-reproducible training pins it.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
