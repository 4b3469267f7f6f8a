"""The model part's ALIGNED pairs screened by forked worker processes."""

from __future__ import annotations

import pytest

from atlas.scale.trace import aligned_pairs_on_workers
from ingest.decomposition.alignment import read_directions
from ingest.pipeline import IngestConfig
from ingest.runtime import torch_threads
from tests.fixtures.alignment import numpy_pairs, pairs_by_key, planted_svd


@pytest.mark.parametrize("chunk", [5, 64])  # 10 block rows in 3 shares; one block row
def test_forked_workers_find_the_pairs_of_the_direct_loop(chunk: int) -> None:
    svd = planted_svd(seed=3)
    directions = read_directions(svd)
    config = IngestConfig(align_threshold=0.05, align_top_k=2)
    with torch_threads(1):  # forked children of a process whose OpenMP pool ran would hang
        pairs = aligned_pairs_on_workers(3, chunk=chunk)(directions, config)
    expected = numpy_pairs(svd, 0.05, 2)
    found = pairs_by_key(directions, pairs)
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(found[key] - value) <= 1e-12
