"""Model fixtures shared by the ingest tests: each is loaded once per session."""

from __future__ import annotations

import pytest

from ingest.models import LoadedModel, load_model, random_gpt2


@pytest.fixture(scope="session")
def random_gpt2_model() -> LoadedModel:
    """GPT-2 small's shape and tokenizer, random weights (12 layers × 12 heads, d_model 768)."""
    return random_gpt2(seed=0)


@pytest.fixture(scope="session")
def tiny_model() -> LoadedModel:
    """A 3-layer, 4-head, d_model 64 random GPT-2 with the real tokenizer."""
    return random_gpt2(seed=1, n_layers=3, n_heads=4, d_model=64)


@pytest.fixture(scope="session")
def toy_model() -> LoadedModel:
    """The trained IOI model shipped with the project."""
    return load_model("toy-ioi")


@pytest.fixture(params=["random_gpt2_model", "tiny_model", "toy_model"])
def any_model(request: pytest.FixtureRequest) -> LoadedModel:
    return request.getfixturevalue(request.param)
