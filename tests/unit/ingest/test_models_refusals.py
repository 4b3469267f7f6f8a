"""Models whose scores the bilinear split cannot hold are refused in one line, before booting."""

from __future__ import annotations

from typing import Any

import pytest
import transformers

from ingest.models.loading import UnsupportedModelError, boot_model, check_decomposable

SMALL = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=16,
)

# (config class, model class, extra settings, words the refusal must contain)
CASES: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {}, "normalizes queries/keys"),
    "olmo2": ("Olmo2Config", "Olmo2ForCausalLM", {}, "normalizes queries/keys"),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", {}, "normalizes queries/keys"),
    "bloom": (
        "BloomConfig",
        "BloomForCausalLM",
        {"n_layer": 1, "n_head": 2, "hidden_size": 32, "vocab_size": 64},
        "ALiBi",
    ),
    "jetmoe": (
        "JetMoeConfig",
        "JetMoeForCausalLM",
        {"kv_channels": 16, "num_local_experts": 2, "num_experts_per_tok": 1},
        "mixture of experts",
    ),
    "llama3-rope": (
        "LlamaConfig",
        "LlamaForCausalLM",
        {
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 500000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            }
        },
        "rescales frequencies",
    ),
}


def build(name: str) -> Any:
    config_name, model_name, extra, _ = CASES[name]
    if not hasattr(transformers, config_name):
        pytest.skip(f"transformers {transformers.__version__} has no {config_name}")
    settings = {**SMALL, **extra} if name != "bloom" else extra
    if name == "jetmoe":
        settings = {k: v for k, v in settings.items() if k != "head_dim"}
    config = getattr(transformers, config_name)(**settings)
    return getattr(transformers, model_name)(config)


@pytest.mark.parametrize("name", list(CASES))
def test_refused_in_one_line(name: str) -> None:
    model = build(name)
    with pytest.raises(UnsupportedModelError) as caught:
        check_decomposable(model, name)
    message = str(caught.value)
    assert "\n" not in message
    assert CASES[name][3] in message


def test_boot_refuses_before_the_bridge() -> None:
    """boot_model runs the check first: no TransformerLens adapter is needed to refuse."""
    with pytest.raises(UnsupportedModelError, match="normalizes queries/keys"):
        boot_model(build("qwen3"), tokenizer=None, model_id="tiny-qwen3")


def test_plain_llama_and_gpt2_pass() -> None:
    config = transformers.LlamaConfig(**SMALL)
    check_decomposable(transformers.LlamaForCausalLM(config), "llama")
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2))
    check_decomposable(gpt2, "gpt2")
