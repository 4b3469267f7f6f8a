"""Acceptance tier: end-to-end runs of the CLI on the toy model into the real Neo4j test
server, interrupted, killed and resumed (`make test-acceptance`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.tiers import mark_tier


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_tier(items, Path(__file__).parent, "acceptance")
