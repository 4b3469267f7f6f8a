"""Unit tier: no Neo4j, no Maven, no Java; seconds each (`make test-unit`, under a minute).

Small random models built in-process and the shipped toy-ioi fixture are fine. The Neo4j
fixtures of ``tests/conftest.py`` are overridden here so a unit test that asks for one fails
at once (move it to ``tests/integration``) instead of starting a server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.tiers import mark_tier


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_tier(items, Path(__file__).parent, "unit")


@pytest.fixture(scope="session")
def neo4j_settings() -> None:
    pytest.fail("unit tests do not use Neo4j: move this test to tests/integration")
