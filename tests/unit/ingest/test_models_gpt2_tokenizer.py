"""The offline GPT-2 tokenizer: materialized directory, reloadable by path, GPT-2's real ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from ingest.models.gpt2_tokenizer import (
    default_cache_dir,
    load_gpt2_tokenizer,
    materialize_gpt2_tokenizer,
)

FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "NOTICE")


def test_cache_dir_honours_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "circuit-atlas" / "gpt2-tokenizer"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "circuit-atlas" / "gpt2-tokenizer"


def test_materialized_directory_is_complete_and_keeps_openai_notice(tmp_path: Path) -> None:
    directory = materialize_gpt2_tokenizer(tmp_path / "tok")
    assert sorted(path.name for path in directory.iterdir()) == sorted(FILES)
    notice = (directory / "NOTICE").read_text()
    assert "Copyright (c) 2019 OpenAI" in notice
    config = json.loads((directory / "tokenizer_config.json").read_text())
    assert {config[key] for key in ("bos_token", "eos_token", "unk_token")} == {"<|endoftext|>"}
    assert config["model_max_length"] == 1024
    assert (directory / "merges.txt").read_text().startswith("#version")
    assert not list(tmp_path.glob(".tok-*")), "staging directory left behind"


def test_materialize_is_idempotent_and_repairs_a_partial_directory(tmp_path: Path) -> None:
    directory = materialize_gpt2_tokenizer(tmp_path / "tok")
    stamps = {name: (directory / name).stat().st_mtime_ns for name in FILES}
    assert materialize_gpt2_tokenizer(directory) == directory
    assert stamps == {name: (directory / name).stat().st_mtime_ns for name in FILES}
    (directory / "merges.txt").unlink()
    materialize_gpt2_tokenizer(directory)
    assert (directory / "merges.txt").is_file()


def test_real_gpt2_ids_and_special_tokens(tmp_path: Path) -> None:
    tokenizer = load_gpt2_tokenizer(tmp_path / "tok")
    # GPT-2's published ids for this sentence (e.g. the IOI literature's running example).
    ids = tokenizer(" Mary and John went to the store")["input_ids"]
    assert ids == [5335, 290, 1757, 1816, 284, 262, 3650]
    assert tokenizer.bos_token == tokenizer.eos_token == tokenizer.unk_token == "<|endoftext|>"
    assert tokenizer.bos_token_id == 50256
    assert len(tokenizer) == 50257
    assert tokenizer.model_max_length == 1024
    text = "When Alice met Bob, she said: 'hello, world!'"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_reloads_from_name_or_path_as_the_bridge_does(tmp_path: Path) -> None:
    tokenizer = load_gpt2_tokenizer(tmp_path / "tok")
    reloaded = AutoTokenizer.from_pretrained(tokenizer.name_or_path, local_files_only=True)
    sentence = " The quick brown fox jumps over the lazy dog"
    assert reloaded(sentence)["input_ids"] == tokenizer(sentence)["input_ids"]
