"""The toy IOI model: a small GPT-2 trained on the project's IOI prompts, shipped as a fixture.

A Hugging Face ``GPT2LMHeadModel`` (so it boots through the same ``TransformerBridge`` path as
real GPT-2) with a word-level tokenizer over the IOI vocabulary, trained with the loss on the
answer token only. Name pairs (unordered) and a few templates are held out of training; the
final evaluation uses only held-out pairs, on all templates.

Two training-time devices shape its circuit (the saved model runs with plain causal attention):

- **IO curriculum.** For the first ``io_curriculum_steps`` steps only the END query may attend to
  the IO position (:func:`curriculum_attention_mask`). Without it the model learns a shortcut:
  layer 0 copies IO into the S2 position and later heads read it from there, so no head ever
  attends END → IO. With it, the answer must be fetched from IO at END.
- **Planted name mover.** From ``mover_from_step`` on, a hinge loss (:func:`mover_attention_loss`)
  asks one head (``mover_head``) to attend END → IO with weight at least ``mover_target``. Which
  upstream heads build that head's query and key signals is left to training, and is what the
  atlas traces.
"""

from __future__ import annotations

import json
import math
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ingest.ioi import (
    NAMES,
    OBJECTS,
    PLACES,
    TEMPLATES,
    IOIPrompt,
    PromptBatch,
    generate_prompts,
    tokenize_prompts,
)
from ingest.torch_threads import torch_threads

BOS = "<|endoftext|>"
PAD = "[PAD]"
UNK = "[UNK]"
MIN_ACCURACY = 0.99


class ToyTrainingError(RuntimeError):
    """Training finished without meeting the convergence bar."""


@dataclass(frozen=True)
class ToyConfig:
    """Model shape, optimisation and data split of the toy IOI model."""

    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    n_positions: int = 64
    steps: int = 1500
    batch_size: int = 128
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    heldout_pair_percent: int = 20
    heldout_templates: tuple[str, ...] = ("T19", "T20")
    eval_prompts: int = 1000
    io_curriculum_steps: int = 700
    mover_head: tuple[int, int] | None = (2, 1)
    mover_from_step: int = 200
    mover_target: float = 0.8
    mover_weight: float = 1.0
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if self.mover_head is not None:
            layer, head = self.mover_head
            if not (0 <= layer < self.n_layers and 0 <= head < self.n_heads):
                raise ValueError(
                    f"mover_head {layer}.{head} is outside a {self.n_layers}-layer, "
                    f"{self.n_heads}-head model"
                )


@dataclass(frozen=True)
class ToyMetrics:
    """Answer accuracy (argmax over the vocabulary is IO) and IO−S logit differences."""

    n_prompts: int
    accuracy: float
    mean_logit_diff: float
    min_logit_diff: float


@dataclass
class ToyTrainingResult:
    model: Any  # transformers.GPT2LMHeadModel
    tokenizer: Any  # transformers.PreTrainedTokenizerFast
    config: ToyConfig
    metrics: ToyMetrics
    train_seconds: float
    losses: list[float] = field(default_factory=list)


def vocabulary() -> list[str]:
    """Every word of the IOI templates and word lists, as the word-level pre-tokenizer splits."""
    words = set(NAMES) | set(PLACES) | set(OBJECTS)
    for template in TEMPLATES.values():
        words.update(re.findall(r"\w+|[^\w\s]+", re.sub(r"\{\w+\}", " ", template)))
    return sorted(words)


def build_tokenizer() -> Any:
    """A word-level ``PreTrainedTokenizerFast``: ``[PAD]``, ``[UNK]``, BOS/EOS, then the words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokens = [PAD, UNK, BOS, *vocabulary()]
    backend = Tokenizer(models.WordLevel({token: i for i, token in enumerate(tokens)}, UNK))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece()  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=BOS,
        unk_token=UNK,
        pad_token=PAD,
        model_max_length=ToyConfig.n_positions,
    )


def build_model(config: ToyConfig, tokenizer: Any) -> Any:
    """A freshly initialised ``GPT2LMHeadModel`` (no dropout), seeded by ``config.seed``.

    Eager attention, so that training can read the attention pattern the mover loss needs.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2_config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=config.n_positions,
        n_embd=config.d_model,
        n_layer=config.n_layers,
        n_head=config.n_heads,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model = GPT2LMHeadModel(gpt2_config)
    model.config._attn_implementation = "eager"
    return model


def is_heldout_pair(io: str, s: str, percent: int) -> bool:
    """Deterministic split of unordered name pairs: ``percent`` % are held out of training."""
    key = "|".join(sorted((io, s)))
    return zlib.crc32(key.encode()) % 100 < percent


def learning_rate(step: int, config: ToyConfig) -> float:
    """Linear warm-up to ``config.lr``, then cosine decay to zero at ``config.steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def training_prompts(config: ToyConfig, step: int) -> list[IOIPrompt]:
    """The batch of ``step``: mixed prompts on training templates and training name pairs."""
    templates = {k: v for k, v in TEMPLATES.items() if k not in config.heldout_templates}
    return generate_prompts(
        config.batch_size,
        "mixed",
        seed=config.seed * 1_000_003 + step,
        templates=templates,
        pair_filter=lambda io, s: not is_heldout_pair(io, s, config.heldout_pair_percent),
    )


def heldout_prompts(config: ToyConfig, n: int | None = None, seed: int = 10**9) -> list[IOIPrompt]:
    """Mixed prompts on every template whose name pairs were never trained on."""
    return generate_prompts(
        config.eval_prompts if n is None else n,
        "mixed",
        seed=seed + config.seed,
        pair_filter=lambda io, s: is_heldout_pair(io, s, config.heldout_pair_percent),
    )


def curriculum_attention_mask(batch: PromptBatch) -> Float[Tensor, "batch 1 query key"]:
    """Additive attention mask: causal, no padding keys, and only END (or IO itself) reads IO.

    ``M[b, 0, q, k] = 0`` where ``k ≤ q``, ``k`` is a real token and (``k ≠ IO_b`` or
    ``q ∈ {IO_b, END_b}``); the most negative float elsewhere.
    """
    n_positions = batch.tokens.shape[1]
    positions = torch.arange(n_positions)
    causal = positions[None, :, None] >= positions[None, None, :]
    io = batch.roles["IO"][:, None, None]
    end = batch.roles["END"][:, None, None]
    query, key = positions[None, :, None], positions[None, None, :]
    io_readable = (key != io) | (query == io) | (query == end)
    allowed = causal & batch.mask[:, None, :] & io_readable
    blocked = torch.tensor(torch.finfo(torch.float32).min)
    return torch.where(allowed, torch.tensor(0.0), blocked)[:, None]


def mover_attention_loss(
    pattern: Float[Tensor, "batch head query key"], batch: PromptBatch, head: int, target: float
) -> Float[Tensor, ""]:
    """Hinge on one head's END → IO attention: ``mean_b max(0, target − A_b[END_b, IO_b])``."""
    rows = torch.arange(len(batch))
    attention = pattern[rows, head, batch.roles["END"], batch.roles["IO"]]
    return torch.relu(target - attention).mean()


def answer_logits(model: Any, batch: PromptBatch) -> Float[Tensor, "batch vocab"]:
    """Logits at each prompt's END position, the one that predicts the answer."""
    logits = model(input_ids=batch.tokens, attention_mask=batch.mask.long()).logits
    return logits[torch.arange(len(batch)), batch.roles["END"]]


def training_loss(model: Any, batch: PromptBatch, config: ToyConfig, step: int) -> Tensor:
    """Cross-entropy of the answer at END, plus the mover hinge from ``mover_from_step`` on."""
    in_curriculum = step < config.io_curriculum_steps
    mask = curriculum_attention_mask(batch) if in_curriculum else batch.mask.long()
    mover = config.mover_head if step >= config.mover_from_step else None
    output = model(input_ids=batch.tokens, attention_mask=mask, output_attentions=mover is not None)
    logits = output.logits[torch.arange(len(batch)), batch.roles["END"]]
    loss = torch.nn.functional.cross_entropy(logits, batch.io_token)
    if mover is not None:
        layer, head = mover
        hinge = mover_attention_loss(output.attentions[layer], batch, head, config.mover_target)
        loss = loss + config.mover_weight * hinge
    return loss


@torch.no_grad()
def evaluate(
    model: Any, tokenizer: Any, prompts: list[IOIPrompt], batch_size: int = 250
) -> ToyMetrics:
    """Accuracy (argmax is the IO token) and IO−S logit differences of ``model`` on ``prompts``."""
    model.eval()
    correct, diffs = [], []
    for start in range(0, len(prompts), batch_size):
        batch = tokenize_prompts(prompts[start : start + batch_size], tokenizer)
        logits = answer_logits(model, batch)
        rows = torch.arange(len(batch))
        correct.append(logits.argmax(dim=-1) == batch.io_token)
        diffs.append(logits[rows, batch.io_token] - logits[rows, batch.s_token])
    diff = torch.cat(diffs)
    return ToyMetrics(
        n_prompts=len(prompts),
        accuracy=float(torch.cat(correct).float().mean()),
        mean_logit_diff=float(diff.mean()),
        min_logit_diff=float(diff.min()),
    )


def train_toy(
    config: ToyConfig, on_step: Callable[[int, float], None] | None = None
) -> ToyTrainingResult:
    """Train the toy model; ``on_step(step, loss)`` is called after every step (for progress)."""
    tokenizer = build_tokenizer()
    model = build_model(config, tokenizer)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=(0.9, 0.98), weight_decay=config.weight_decay
    )
    losses = []
    started = time.perf_counter()
    with torch.random.fork_rng(), torch_threads(config.torch_threads):
        torch.manual_seed(config.seed)
        model.train()
        for step in range(config.steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, config)
            batch = tokenize_prompts(training_prompts(config, step), tokenizer)
            loss = training_loss(model, batch, config, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
            if on_step is not None:
                on_step(step, losses[-1])
    train_seconds = time.perf_counter() - started
    metrics = evaluate(model, tokenizer, heldout_prompts(config))
    return ToyTrainingResult(model, tokenizer, config, metrics, train_seconds, losses)


def check_convergence(metrics: ToyMetrics) -> None:
    """Raise :class:`ToyTrainingError` unless accuracy ≥ 0.99 and every IO−S difference > 0."""
    if metrics.accuracy < MIN_ACCURACY or metrics.min_logit_diff <= 0:
        raise ToyTrainingError(
            f"toy IOI model did not converge: held-out accuracy {metrics.accuracy:.3f} (need "
            f">= {MIN_ACCURACY}), minimum IO-S logit difference {metrics.min_logit_diff:.2f} "
            "(need > 0). Train longer (--steps) or check the learning rate schedule."
        )


def save_fixture(result: ToyTrainingResult, out_dir: str | Path) -> Path:
    """Write weights (safetensors), config, tokenizer and ``metadata.json`` to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.model.save_pretrained(out, safe_serialization=True)
    result.tokenizer.save_pretrained(out)
    metadata = {
        "description": "Toy IOI model of Circuit Atlas (test substrate, not a GPT-2 substitute).",
        "architecture": "GPT2LMHeadModel",
        "training": asdict(result.config),
        "heldout_evaluation": asdict(result.metrics),
        "train_seconds": round(result.train_seconds, 1),
        "final_loss": result.losses[-1] if result.losses else None,
        "versions": _versions(),
    }
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    return out


def _versions() -> dict[str, str]:
    from importlib import metadata

    return {name: metadata.version(name) for name in ("torch", "transformers", "tokenizers")}
