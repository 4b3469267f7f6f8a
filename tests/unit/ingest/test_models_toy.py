"""The toy IOI model: training pieces (a tiny config) and the shipped fixture (loads in seconds)."""

from __future__ import annotations

import json
import time
from itertools import combinations, pairwise
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ingest.decomposition.activations import model_qk_svd
from ingest.decomposition.sad import FiringRule
from ingest.models.loading import TOY_IOI_DIR, LoadedModel, load_model
from ingest.models.toy import (
    ToyConfig,
    ToyMetrics,
    ToyTrainingError,
    build_model,
    build_tokenizer,
    check_convergence,
    curriculum_attention_mask,
    heldout_prompts,
    io_curriculum,
    is_heldout_pair,
    learning_rate,
    training_prompts,
)
from ingest.pipeline import process_batch
from ingest.prompts.ioi import (
    NAMES,
    TEMPLATES,
    IOIPrompt,
    PromptBatch,
    generate_prompts,
    tokenize_prompts,
)

# --- training pieces ----------------------------------------------------------------------


def test_learning_rate_warms_up_then_decays_to_zero() -> None:
    config = ToyConfig(steps=200, warmup_steps=20, lr=1e-2)
    rates = [learning_rate(step, config) for step in range(config.steps + 1)]
    warmup, decay = rates[: config.warmup_steps], rates[config.warmup_steps :]
    assert all(a < b for a, b in pairwise(warmup))
    assert max(rates) == pytest.approx(config.lr)
    assert all(a >= b for a, b in pairwise(decay))
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_heldout_pairs_are_symmetric_and_about_the_requested_share() -> None:
    pairs = list(combinations(NAMES, 2))
    held = [pair for pair in pairs if is_heldout_pair(*pair, percent=20)]
    assert all(is_heldout_pair(s, io, percent=20) for io, s in held)
    assert 0.15 < len(held) / len(pairs) < 0.25
    assert not any(is_heldout_pair(*pair, percent=0) for pair in pairs)


def test_training_data_excludes_heldout_pairs_and_templates() -> None:
    config = ToyConfig(batch_size=64)
    train = [p for step in range(20) for p in training_prompts(config, step)]
    assert not any(is_heldout_pair(p.io, p.s, config.heldout_pair_percent) for p in train)
    assert not {p.template for p in train} & set(config.heldout_templates)
    held = heldout_prompts(config, n=300)
    assert all(is_heldout_pair(p.io, p.s, config.heldout_pair_percent) for p in held)
    assert {p.template for p in held} == set(TEMPLATES)
    assert training_prompts(config, 5) != training_prompts(config, 6)


def test_word_level_tokenizer_covers_every_prompt_and_reloads_from_disk(tmp_path: Path) -> None:
    tokenizer = build_tokenizer()
    prompts = generate_prompts(300, seed=1)
    batch = tokenize_prompts(prompts, tokenizer)
    assert not (batch.tokens == tokenizer.unk_token_id).any()
    assert int(batch.lengths[0]) == len(prompts[0].text.replace(",", " ,").split()) + 1
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert tokenize_prompts(prompts, reloaded).tokens.equal(batch.tokens)
    assert reloaded.bos_token == tokenizer.bos_token


@pytest.mark.parametrize("end_reads_io", [False, True])
def test_curriculum_mask_hides_io_from_every_other_query(end_reads_io: bool) -> None:
    batch = tokenize_prompts(generate_prompts(12, seed=3), build_tokenizer())
    mask = curriculum_attention_mask(batch, end_reads_io)
    n_prompts, n_positions = batch.tokens.shape
    assert mask.shape == (n_prompts, 1, n_positions, n_positions)
    for b in range(n_prompts):
        io, end = int(batch.roles["IO"][b]), int(batch.roles["END"][b])
        readers = (io, end) if end_reads_io else (io,)
        for q in range(n_positions):
            for k in range(n_positions):
                expected = k <= q and bool(batch.mask[b, k]) and (k != io or q in readers)
                assert (mask[b, 0, q, k] == 0) == expected, (b, q, k)


def positions_moved_by_the_io_token(
    model: Any, batch: PromptBatch, tokenizer: Any, prompts: list[IOIPrompt], min_layer: int
) -> torch.Tensor:
    """Where the last hidden state changes when every IO name is swapped, under the curriculum."""
    other = batch.tokens.clone()
    rows = torch.arange(len(batch))
    fresh_names = [next(n for n in NAMES if n not in (p.io, p.s)) for p in prompts]
    other[rows, batch.roles["IO"]] = torch.tensor(tokenizer.convert_tokens_to_ids(fresh_names))
    hidden = []
    with torch.inference_mode(), io_curriculum(model, batch, min_layer):
        for tokens in (batch.tokens, other):
            output = model(tokens, attention_mask=batch.mask.long(), output_hidden_states=True)
            hidden.append(output.hidden_states[-1])
    return ((hidden[0] - hidden[1]).abs().amax(dim=-1) > 1e-5)[batch.mask]


def test_under_the_curriculum_only_end_sees_the_io_token_from_min_layer_up() -> None:
    tokenizer = build_tokenizer()
    model = build_model(ToyConfig(n_layers=2, d_model=32, n_heads=2), tokenizer).eval()
    prompts = generate_prompts(8, seed=4)
    batch = tokenize_prompts(prompts, tokenizer)
    rows = torch.arange(len(batch))
    io_only = torch.zeros_like(batch.mask)
    io_only[rows, batch.roles["IO"]] = True
    io_and_end = io_only.clone()
    io_and_end[rows, batch.roles["END"]] = True
    moved = positions_moved_by_the_io_token(model, batch, tokenizer, prompts, min_layer=1)
    assert moved.equal(io_and_end[batch.mask])
    never = positions_moved_by_the_io_token(model, batch, tokenizer, prompts, min_layer=2)
    assert never.equal(io_only[batch.mask])
    with torch.inference_mode():  # the hooks are gone after the block: IO reaches later tokens
        plain = model(batch.tokens, attention_mask=batch.mask.long()).logits
        with io_curriculum(model, batch, min_layer=1):
            masked = model(batch.tokens, attention_mask=batch.mask.long()).logits
        again = model(batch.tokens, attention_mask=batch.mask.long()).logits
    assert again.equal(plain) and not masked.equal(plain)


@pytest.mark.parametrize(("accuracy", "min_diff"), [(0.98, 1.0), (1.0, 0.0), (1.0, -0.5)])
def test_convergence_check_fails_loudly(accuracy: float, min_diff: float) -> None:
    with pytest.raises(ToyTrainingError, match="did not converge"):
        check_convergence(ToyMetrics(1000, accuracy, 10.0, min_diff))
    check_convergence(ToyMetrics(1000, 0.995, 10.0, 0.1))


# --- the shipped fixture --------------------------------------------------------------------


def fresh_batch(model: LoadedModel, n: int, seed: int):
    """Held-out-pair prompts with a seed unlike training's or the fixture's evaluation."""
    return tokenize_prompts(heldout_prompts(ToyConfig(), n=n, seed=seed), model.tokenizer)


def test_fixture_is_small_and_records_its_training() -> None:
    files = {path.name: path.stat().st_size for path in TOY_IOI_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "metadata.json"} <= set(files)
    assert sum(files.values()) < 5 * 2**20
    metadata = json.loads((TOY_IOI_DIR / "metadata.json").read_text())
    assert metadata["training"]["n_layers"] >= 4
    check_convergence(ToyMetrics(**metadata["heldout_evaluation"]))


def test_fixture_loads_offline_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    model = load_model("toy-ioi")
    assert time.perf_counter() - started < 10.0
    assert model.provenance.source == "fixture" and model.n_layers >= 4


def test_bridge_solves_ioi_on_fresh_prompts(toy_model: LoadedModel) -> None:
    batch = fresh_batch(toy_model, n=500, seed=2024)
    with torch.inference_mode():
        logits = toy_model.bridge(batch.tokens)
    end = logits[torch.arange(len(batch)), batch.roles["END"]]
    rows = torch.arange(len(batch))
    diff = end[rows, batch.io_token] - end[rows, batch.s_token]
    accuracy = (end.argmax(dim=-1) == batch.io_token).float().mean()
    assert accuracy >= 0.99
    assert diff.min() > 0
    hf_model = AutoModelForCausalLM.from_pretrained(TOY_IOI_DIR, local_files_only=True)
    with torch.inference_mode():
        hf_logits = hf_model(batch.tokens, attention_mask=batch.mask.long()).logits
    hf_end = hf_logits[rows, batch.roles["END"]]
    torch.testing.assert_close(diff, hf_end[rows, batch.io_token] - hf_end[rows, batch.s_token],
                               rtol=1e-3, atol=1e-3)  # fmt: skip


def share_of_prompts_attending(
    pattern: torch.Tensor, dest: torch.Tensor, src: torch.Tensor, threshold: float = 0.5
) -> torch.Tensor:
    """Per head, the share of prompts whose attention dest→src is at least ``threshold``."""
    rows = torch.arange(pattern.shape[0])
    return (pattern[rows, :, dest, src] >= threshold).float().mean(dim=0)


def attention_shares(model: LoadedModel, n: int, seed: int, dest: str, src: str) -> torch.Tensor:
    """Per layer × head, the share of fresh prompts whose attention dest → src is at least 0.5."""
    batch = fresh_batch(model, n=n, seed=seed)
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.n_layers)]
    with torch.inference_mode():
        _, cache = model.bridge.run_with_cache(batch.tokens, names_filter=names.__contains__)
    return torch.stack(
        [share_of_prompts_attending(cache[n], batch.roles[dest], batch.roles[src]) for n in names]
    )


def test_a_later_head_attends_end_to_io_and_others_end_to_s2(toy_model: LoadedModel) -> None:
    """The toy circuit (README): name mover 3.1 reads IO from END; 2.3 and 3.2 read S2."""
    end_to_io = attention_shares(toy_model, n=200, seed=7, dest="END", src="IO")
    end_to_s2 = attention_shares(toy_model, n=200, seed=7, dest="END", src="S2")
    assert end_to_io[1:].max() > 0.9, f"END→IO share per layer × head:\n{end_to_io}"
    assert end_to_s2[1:].max() > 0.9, f"END→S2 share per layer × head:\n{end_to_s2}"


def test_decomposition_finds_end_to_io_and_end_to_s2_firings(toy_model: LoadedModel) -> None:
    prompts = heldout_prompts(ToyConfig(), n=64, seed=99)
    result = process_batch(toy_model, model_qk_svd(toy_model.bridge), prompts, FiringRule())
    firings, roles = result.firings, result.batch.roles
    at_end = (firings.dest == roles["END"][firings.prompt]) & (firings.layer >= 1)
    for src, share in (("IO", 0.9), ("S2", 0.9)):
        selected = at_end & (firings.src == roles[src][firings.prompt])
        n_prompts = len(firings.prompt[selected].unique())
        assert n_prompts > share * len(prompts), f"END→{src} firings in {n_prompts} prompts"
        assert (firings.n_svs[selected] >= 1).all()
