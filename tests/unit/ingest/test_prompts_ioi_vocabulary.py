"""IOI words filtered to the model's single tokens; BOS follows the tokenizer."""

from __future__ import annotations

import pytest

from ingest.models.gpt2_tokenizer import load_gpt2_tokenizer
from ingest.prompts.ioi import (
    NAMES,
    OBJECTS,
    PLACES,
    default_prepend_bos,
    generate_prompts,
    ioi_vocabulary,
)


class SplitTokenizer:
    """A stand-in tokenizer: words in ``single`` are one token, others two."""

    bos_token_id = 1
    bos_token = "<s>"
    eos_token = "</s>"
    unk_token_id = 0

    def __init__(self, single: set[str], adds_bos: bool = False) -> None:
        self.single, self.adds_bos = single, adds_bos

    def __call__(self, texts, add_special_tokens: bool = True):
        def encode(text: str) -> list[int]:
            ids = [] if not (add_special_tokens and self.adds_bos) else [1]
            return ids + ([7] if text.strip() in self.single else [8, 9])

        if isinstance(texts, str):
            return {"input_ids": encode(texts)}
        return {"input_ids": [encode(t) for t in texts]}


def test_gpt2_keeps_every_name() -> None:
    tokenizer = load_gpt2_tokenizer()
    names, places, objects = ioi_vocabulary(tokenizer)
    assert names == list(NAMES)
    assert set(PLACES) - set(places) == {"laundromat"}  # " laund" + "romat"
    assert set(OBJECTS) - set(objects) == {"kite"}
    assert default_prepend_bos(tokenizer)  # BOS = <|endoftext|>: GPT-2's convention


def test_toy_ioi_prompts_are_unchanged() -> None:
    """The toy model's word-level tokenizer has every word: same prompts as without it."""
    from transformers import AutoTokenizer

    from ingest.models.loading import TOY_IOI_DIR

    tokenizer = AutoTokenizer.from_pretrained(TOY_IOI_DIR)
    assert generate_prompts(20, seed=3, tokenizer=tokenizer) == generate_prompts(20, seed=3)


def test_multi_token_words_are_dropped() -> None:
    keep = {"Mary", "John", "Alice", "Peter", "Laura", "David", "store", "book"}
    tokenizer = SplitTokenizer(keep)
    names, places, objects = ioi_vocabulary(tokenizer)
    assert names == ["Mary", "John", "Alice", "Peter", "Laura", "David"]
    assert (places, objects) == (["store"], ["book"])
    for prompt in generate_prompts(10, seed=0, tokenizer=tokenizer):
        assert {prompt.io, prompt.s, *prompt.corrupted_names} <= keep
        assert (prompt.place, prompt.obj) == ("store", "book")


def test_too_few_survivors_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"3 of \d+ names \(need 5\)"):
        ioi_vocabulary(SplitTokenizer({"Mary", "John", "Alice", "store", "book"}))


def test_bos_follows_the_tokenizer() -> None:
    assert not default_prepend_bos(SplitTokenizer(set()))
    assert default_prepend_bos(SplitTokenizer(set(), adds_bos=True))
