"""Model loading: hub cache, model directories, random weights, provenance, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ingest.models.gpt2_tokenizer import load_gpt2_tokenizer
from ingest.models.loading import (
    DEFAULT_MODEL,
    LoadedModel,
    ModelUnavailableError,
    load_model,
    random_gpt2,
)


@pytest.fixture(scope="module")
def saved_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face checkpoint equal to the ``tiny_model`` fixture's, built independently."""
    from transformers import GPT2Config, GPT2LMHeadModel

    directory = tmp_path_factory.mktemp("tiny-gpt2")
    torch.manual_seed(1)
    GPT2LMHeadModel(GPT2Config(n_layer=3, n_head=4, n_embd=64)).save_pretrained(directory)
    load_gpt2_tokenizer().save_pretrained(directory)
    return directory


def fake_hub_cache(root: Path, repo_id: str, revision: str, files_from: Path) -> Path:
    """The layout huggingface_hub uses: models--owner--name/{refs/main, snapshots/<rev>/...}."""
    repo = root / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for file in files_from.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def same_qk_weights(a: LoadedModel, b: LoadedModel) -> bool:
    return all(
        torch.equal(getattr(a.bridge, name), getattr(b.bridge, name))
        for name in ("W_Q", "b_Q", "W_K", "b_K")
    )


def test_model_dir_loads_offline_with_provenance(
    saved_tiny_model: Path, tiny_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = load_model(model_dir=saved_tiny_model)
    assert same_qk_weights(loaded, tiny_model)
    provenance = loaded.provenance
    assert provenance.source == "directory"
    assert provenance.path == str(saved_tiny_model.resolve())
    assert provenance.revision is not None and provenance.revision.startswith("sha256:")
    assert (provenance.n_layers, provenance.n_heads, provenance.d_model) == (3, 4, 64)
    assert provenance.processing["fold_ln"] and provenance.processing["use_attn_result"]
    assert set(provenance.versions) >= {"transformer-lens", "transformers", "torch"}


def test_hub_id_loads_from_the_users_cache(
    saved_tiny_model: Path,
    tiny_model: LoadedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    revision = "0123456789abcdef0123456789abcdef01234567"
    fake_hub_cache(tmp_path, "someone/tiny-gpt2", revision, saved_tiny_model)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    loaded = load_model("someone/tiny-gpt2")
    assert same_qk_weights(loaded, tiny_model)
    assert loaded.provenance.source == "hub-cache"
    assert loaded.provenance.revision == revision
    assert loaded.provenance.model_id == "someone/tiny-gpt2"


def test_missing_weights_give_one_paragraph_of_instructions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as caught:
        load_model(DEFAULT_MODEL)
    message = str(caught.value)
    assert "\n" not in message
    for hint in ("HF_HOME", "--model-dir", "toy-ioi", DEFAULT_MODEL):
        assert hint in message


def test_bad_model_names_and_directories(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="not a model name"):
        load_model("not a valid id!")
    with pytest.raises(ModelUnavailableError, match=r"config\.json is missing"):
        load_model(model_dir=tmp_path)
    with pytest.raises(ValueError, match="device"):
        load_model("toy-ioi", device="tpu")


def test_random_gpt2_is_seeded_and_gpt2_small_shaped(random_gpt2_model: LoadedModel) -> None:
    provenance = random_gpt2_model.provenance
    assert (provenance.n_layers, provenance.n_heads, provenance.d_model) == (12, 12, 768)
    assert provenance.d_head == 64 and provenance.source == "random"
    again = random_gpt2(seed=1, n_layers=3, n_heads=4, d_model=64)
    other = random_gpt2(seed=2, n_layers=3, n_heads=4, d_model=64)
    first = random_gpt2(seed=1, n_layers=3, n_heads=4, d_model=64)
    assert same_qk_weights(first, again)
    assert not same_qk_weights(first, other)
