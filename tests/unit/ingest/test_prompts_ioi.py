"""IOI prompt generation and tokenization, with GPT-2's BPE and a word-level tokenizer."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ingest.models.gpt2_tokenizer import load_gpt2_tokenizer
from ingest.models.toy import build_tokenizer
from ingest.prompts.ioi import (
    NAMES,
    OBJECTS,
    PLACES,
    ROLE_PRIORITY,
    ROLES,
    TEMPLATES,
    IOIPrompt,
    baba_to_abba,
    generate_prompts,
    position_roles,
    tokenize_prompts,
)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_gpt2_tokenizer(tmp_path_factory.mktemp("gpt2-tokenizer"))


@pytest.fixture(scope="module", params=["gpt2", "word-level"])
def tokenizer(request: pytest.FixtureRequest, gpt2: Any) -> Any:
    return gpt2 if request.param == "gpt2" else build_tokenizer()


def name_occurrences(text: str, name: str) -> list[int]:
    return [match.start() for match in re.finditer(rf"\b{name}\b", text)]


def decode(tokenizer: Any, token: int) -> str:
    return str(tokenizer.decode([token])).strip()


# --- word lists and templates -------------------------------------------------------------


def test_word_lists_are_large_enough_and_distinct() -> None:
    assert len(TEMPLATES) >= 15
    assert len(set(TEMPLATES.values())) == len(TEMPLATES)
    assert len(NAMES) >= 80 and len(set(NAMES)) == len(NAMES)
    assert len(set(PLACES)) == len(PLACES) >= 10
    assert len(set(OBJECTS)) == len(OBJECTS) >= 10


@pytest.mark.parametrize("template_id", sorted(TEMPLATES))
def test_templates_are_baba_and_swap_to_abba(template_id: str) -> None:
    baba = TEMPLATES[template_id]
    slots = re.findall(r"\{(\w+)\}", baba)
    assert [slot for slot in slots if slot in ("S", "IO")] == ["S", "IO", "S"]
    assert not baba.startswith("{") and not baba.endswith("}")
    abba = baba_to_abba(baba)
    assert [slot for slot in re.findall(r"\{(\w+)\}", abba) if slot in ("S", "IO")] == [
        "IO",
        "S",
        "S",
    ]
    assert abba.replace("{IO}", "{X}").replace("{S}", "{X}") == baba.replace("{IO}", "{X}").replace(
        "{S}", "{X}"
    )


def test_baba_to_abba_rejects_other_orders() -> None:
    with pytest.raises(ValueError, match="BABA"):
        baba_to_abba("Then {IO} and {S} left, {S} gave it to")


# --- generation ---------------------------------------------------------------------------


def test_same_seed_same_prompts_other_seed_other_prompts() -> None:
    assert generate_prompts(50, seed=3) == generate_prompts(50, seed=3)
    assert generate_prompts(50, seed=3) != generate_prompts(50, seed=4)
    assert generate_prompts(20, seed=3) == generate_prompts(50, seed=3)[:20]


def test_unknown_prompt_type_is_rejected_with_the_valid_choices() -> None:
    with pytest.raises(ValueError, match=r"'ACBA'.*ABBA, BABA, mixed"):
        generate_prompts(3, prompt_type="ACBA")


@pytest.mark.parametrize("prompt_type", ["ABBA", "BABA"])
def test_order_of_names_in_text(prompt_type: str) -> None:
    for prompt in generate_prompts(200, prompt_type=prompt_type, seed=1):
        io_at, s_at = (
            name_occurrences(prompt.text, prompt.io),
            name_occurrences(prompt.text, prompt.s),
        )
        assert len(io_at) == 1 and len(s_at) == 2 and prompt.io != prompt.s
        expected = ["IO", "S", "S"] if prompt_type == "ABBA" else ["S", "IO", "S"]
        by_position = sorted([(io_at[0], "IO"), (s_at[0], "S"), (s_at[1], "S")])
        assert [label for _, label in by_position] == expected
        assert prompt.order == prompt_type
        assert prompt.text.endswith(" to")


def test_mixed_draws_both_orders_and_all_templates() -> None:
    prompts = generate_prompts(400, seed=0)
    orders = [p.order for p in prompts]
    assert 120 < orders.count("ABBA") < 280
    assert {p.template for p in prompts} == set(TEMPLATES)


def test_text_is_the_template_filled_in() -> None:
    for prompt in generate_prompts(100, seed=2):
        baba = TEMPLATES[prompt.template]
        template = baba if prompt.order == "BABA" else baba_to_abba(baba)
        filled = (
            template.replace("{PLACE}", prompt.place)
            .replace("{OBJECT}", prompt.obj)
            .replace("{S}", prompt.s)
            .replace("{IO}", prompt.io)
        )
        assert prompt.text == filled


def test_abc_counterpart_has_three_fresh_distinct_names_in_the_same_template() -> None:
    for prompt in generate_prompts(200, seed=5):
        abc = prompt.corrupted_names
        assert len(set(abc)) == 3 and not set(abc) & {prompt.io, prompt.s}
        clean_words = prompt.text.split()
        corrupt_words = prompt.corrupted_text.split()
        assert len(clean_words) == len(corrupt_words)
        differing = [(c, k) for c, k in zip(clean_words, corrupt_words, strict=True) if c != k]
        assert len(differing) == 3
        for (start, stop), name in zip(prompt.corrupted_spans, abc, strict=True):
            assert prompt.corrupted_text[start:stop] == name


def test_pair_filter_restricts_name_pairs() -> None:
    allowed = set(NAMES[:10])
    prompts = generate_prompts(100, seed=0, pair_filter=lambda io, s: io in allowed)
    assert {p.io for p in prompts} <= allowed
    with pytest.raises(ValueError, match="pair_filter"):
        generate_prompts(1, pair_filter=lambda io, s: False)


# --- tokenization and roles ---------------------------------------------------------------


def test_roles_point_at_the_right_tokens(tokenizer: Any) -> None:
    prompts = generate_prompts(64, seed=7)
    batch = tokenize_prompts(prompts, tokenizer)
    assert set(batch.roles) == set(ROLES)
    for b, prompt in enumerate(prompts):
        row = batch.tokens[b].tolist()
        at = {role: int(batch.roles[role][b]) for role in ROLES}
        assert decode(tokenizer, row[at["IO"]]) == prompt.io
        assert decode(tokenizer, row[at["S1"]]) == prompt.s
        assert decode(tokenizer, row[at["S2"]]) == prompt.s
        assert decode(tokenizer, row[at["END"]]) == "to"
        assert at["END"] == int(batch.lengths[b]) - 1
        assert row[0] == tokenizer.bos_token_id
        for slot in ("IO", "S1", "S2", "END"):
            assert at[f"{slot}-1"] == at[slot] - 1
            if slot != "END":
                assert at[f"{slot}+1"] == at[slot] + 1
        if prompt.order == "ABBA":
            assert at["IO"] < at["S1"] < at["S2"]
        else:
            assert at["S1"] < at["IO"] < at["S2"]
        assert decode(tokenizer, int(batch.io_token[b])) == prompt.io
        assert decode(tokenizer, int(batch.s_token[b])) == prompt.s


def test_corrupted_batch_points_at_abc_names_and_keeps_clean_answers(tokenizer: Any) -> None:
    prompts = generate_prompts(32, seed=8)
    clean = tokenize_prompts(prompts, tokenizer)
    corrupted = tokenize_prompts(prompts, tokenizer, corrupted=True)
    assert corrupted.corrupted and not clean.corrupted
    for b, prompt in enumerate(prompts):
        row = corrupted.tokens[b].tolist()
        for slot, name in zip(("IO", "S1", "S2"), prompt.corrupted_names, strict=True):
            assert decode(tokenizer, row[int(corrupted.roles[slot][b])]) == name
    assert corrupted.io_token.equal(clean.io_token) and corrupted.s_token.equal(clean.s_token)
    for role in ROLES:  # single-token names: the ABC prompt is aligned with the clean one
        assert corrupted.roles[role].equal(clean.roles[role])


def test_padding_mask_and_positions_with_mixed_lengths(tokenizer: Any) -> None:
    prompts = generate_prompts(40, seed=9)
    batch = tokenize_prompts(prompts, tokenizer)
    assert len(set(batch.lengths.tolist())) > 1, "test needs prompts of different lengths"
    assert batch.tokens.shape == (40, int(batch.lengths.max()))
    assert batch.mask.sum(dim=1).equal(batch.lengths)
    for b, prompt in enumerate(prompts):
        n = int(batch.lengths[b])
        assert batch.mask[b, :n].all() and not batch.mask[b, n:].any()
        alone = tokenize_prompts([prompt], tokenizer)
        assert alone.tokens.shape[1] == n
        assert batch.tokens[b, :n].equal(alone.tokens[0])
        for role in ROLES:
            assert int(batch.roles[role][b]) == int(alone.roles[role][0])


def test_without_bos_positions_shift_by_one(tokenizer: Any) -> None:
    prompts = generate_prompts(8, seed=10)
    with_bos = tokenize_prompts(prompts, tokenizer)
    without = tokenize_prompts(prompts, tokenizer, prepend_bos=False)
    assert without.tokens.shape[1] == with_bos.tokens.shape[1] - 1
    for role in ROLES:
        assert without.roles[role].equal(with_bos.roles[role] - 1)


def test_position_roles_labels_and_priority(gpt2: Any) -> None:
    prompts = generate_prompts(40, seed=11, prompt_type="ABBA")
    batch = tokenize_prompts(prompts, gpt2)
    labels = position_roles(batch)
    shared = 0
    for b in range(len(prompts)):
        n = int(batch.lengths[b])
        assert labels[b][0] == "BOS"
        assert all(label == "PAD" for label in labels[b][n:])
        claims: dict[int, list[str]] = {}
        for role in ROLES:
            claims.setdefault(int(batch.roles[role][b]), []).append(role)
        for position in range(1, n):
            roles_here = claims.get(position, [])
            expected = min(roles_here, key=ROLE_PRIORITY.index) if roles_here else "other"
            assert labels[b][position] == expected
        shared += sum(len(roles) > 1 for roles in claims.values())
    assert shared > 0, "ABBA prompts 'A and B' should put IO+1 and S1-1 on one token"


# --- single tokens and rejection ----------------------------------------------------------


def test_every_name_is_one_gpt2_token(gpt2: Any) -> None:
    multi = [name for name in NAMES if len(gpt2(" " + name)["input_ids"]) != 1]
    assert multi == []


def test_every_name_in_every_template_tokenizes_to_one_gpt2_token(gpt2: Any) -> None:
    prompts = []
    for k, name in enumerate(NAMES):
        window = [NAMES[(k + i) % len(NAMES)] for i in range(5)]
        for template_id, template in TEMPLATES.items():
            for slot in (0, 1):  # the name as IO, then as S
                prompts += generate_prompts(
                    1,
                    seed=k,
                    templates={template_id: template},
                    names=window,
                    pair_filter=lambda io, s, slot=slot, name=name: (io, s)[slot] == name,
                )
    batch = tokenize_prompts(prompts, gpt2)
    assert {p.io for p in prompts} == {p.s for p in prompts} == set(NAMES)
    assert len(batch) == 2 * len(NAMES) * len(TEMPLATES)


def test_multi_token_name_is_rejected_by_word_level_tokenizer() -> None:
    names = ("Mary-Ann", *NAMES[:6])
    prompts = generate_prompts(30, seed=0, names=names)
    with pytest.raises(ValueError, match="Mary-Ann"):
        tokenize_prompts(prompts, build_tokenizer())


def test_unknown_name_is_rejected_by_word_level_tokenizer() -> None:
    prompts = generate_prompts(30, seed=0, names=("Zebediah", *NAMES[:6]))
    with pytest.raises(ValueError, match=r"Zebediah.*unknown"):
        tokenize_prompts(prompts, build_tokenizer())


def test_multi_token_name_is_rejected_by_gpt2(gpt2: Any) -> None:
    name = "Bartholomew"
    assert len(gpt2(" " + name)["input_ids"]) > 1  # premise of the test
    prompts = generate_prompts(30, seed=0, names=(name, *NAMES[:6]))
    with pytest.raises(ValueError, match=name):
        tokenize_prompts(prompts, gpt2)


def test_template_that_glues_a_name_to_punctuation_is_rejected(gpt2: Any) -> None:
    glued = {"X01": "Once {S} and {IO} met at the {PLACE},{S} gave the {OBJECT} to"}
    prompts = generate_prompts(5, seed=0, templates=glued)
    with pytest.raises(ValueError, match="X01"):
        tokenize_prompts(prompts, gpt2)


def test_prompts_are_frozen() -> None:
    prompt = generate_prompts(1)[0]
    assert isinstance(prompt, IOIPrompt)
    with pytest.raises(AttributeError):
        prompt.io = "Nobody"  # type: ignore[misc]
