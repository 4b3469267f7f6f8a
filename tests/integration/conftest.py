"""Integration tier: the real Neo4j test server (see ``tests/conftest.py``), or a model or
training run too slow for the unit tier (`make test-integration`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.tiers import mark_tier


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_tier(items, Path(__file__).parent, "integration")
