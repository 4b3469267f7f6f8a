"""The toy IOI model: a small GPT-2 trained on the project's IOI prompts, shipped as a fixture.

A Hugging Face ``GPT2LMHeadModel`` (so it boots through the same ``TransformerBridge`` path as
real GPT-2) with a word-level tokenizer over the IOI vocabulary, trained with the loss on the
answer token only. Name pairs (unordered) and a few templates are held out of training; the
final evaluation uses only held-out pairs, on all templates.

One training-time device shapes its circuit (the saved model runs with plain causal attention):
an **IO curriculum**. For the first ``io_curriculum_steps`` steps no position may attend to the IO
position except END, and END only from layer ``io_curriculum_min_layer`` up
(:func:`curriculum_attention_mask`, :func:`io_curriculum`). Without it the model takes a shortcut:
layer 0 copies IO into the S2 position and later heads read it from there, so no head attends
END → IO. If END may read IO in layer 0 too, layer-0 heads average IO and S1 at END and later heads
subtract S, again with no head attending END → IO. With END reading IO only from layer 1 up, a
name mover forms (head 3.1 of the shipped model).
"""

from __future__ import annotations

import json
import math
import re
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ingest.errors import IngestError
from ingest.prompts.ioi import (
    NAMES,
    OBJECTS,
    PLACES,
    TEMPLATES,
    IOIPrompt,
    PromptBatch,
    generate_prompts,
    tokenize_prompts,
)
from ingest.runtime import torch_threads

BOS = "<|endoftext|>"
PAD = "[PAD]"
UNK = "[UNK]"
MIN_ACCURACY = 0.99


class ToyTrainingError(IngestError, RuntimeError):
    """Training finished without meeting the convergence bar."""


@dataclass(frozen=True)
class ToyConfig:
    """Model shape, optimisation and data split of the toy IOI model."""

    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    n_positions: int = 64
    steps: int = 2500
    batch_size: int = 128
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    heldout_pair_percent: int = 20
    heldout_templates: tuple[str, ...] = ("T19", "T20")
    eval_prompts: int = 1000
    io_curriculum_steps: int = 700
    io_curriculum_min_layer: int = 1
    torch_threads: int = 2


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

    Eager attention: the reference implementation, and the one the shipped fixture was trained
    with (another kernel would sum in another order and train different weights).
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


def curriculum_attention_mask(
    batch: PromptBatch, end_reads_io: bool
) -> Float[Tensor, "batch 1 query key"]:
    """Additive attention mask: causal, no padding keys, and IO hidden from every other query.

    ``M[b, 0, q, k] = 0`` where ``k ≤ q``, ``k`` is a real token and (``k ≠ IO_b`` or ``q = IO_b``
    or, with ``end_reads_io``, ``q = END_b``); the most negative float elsewhere.
    """
    positions = torch.arange(batch.tokens.shape[1])
    query, key = positions[None, :, None], positions[None, None, :]
    io = batch.roles["IO"][:, None, None]
    io_readable = (key != io) | (query == io)
    if end_reads_io:
        io_readable = io_readable | (query == batch.roles["END"][:, None, None])
    allowed = (query >= key) & batch.mask[:, None, :] & io_readable
    blocked = torch.tensor(torch.finfo(torch.float32).min)
    return torch.where(allowed, torch.tensor(0.0), blocked)[:, None]


@contextmanager
def io_curriculum(model: Any, batch: PromptBatch, min_layer: int) -> Iterator[None]:
    """Within the block, every layer ``l`` of ``model`` attends under the curriculum mask.

    Forward pre-hooks on each block's attention replace its ``attention_mask`` with
    :func:`curriculum_attention_mask`, END reading IO only where ``l ≥ min_layer``.
    """
    masks = {reads: curriculum_attention_mask(batch, reads) for reads in (False, True)}

    def use_mask(end_reads_io: bool) -> Callable[..., Any]:
        def replace_mask(module: Any, args: Any, kwargs: dict[str, Any]) -> Any:
            return args, {**kwargs, "attention_mask": masks[end_reads_io]}

        return replace_mask

    handles = [
        block.attn.register_forward_pre_hook(use_mask(layer >= min_layer), with_kwargs=True)
        for layer, block in enumerate(model.transformer.h)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def answer_logits(model: Any, batch: PromptBatch) -> Float[Tensor, "batch vocab"]:
    """Logits at each prompt's END position, the one that predicts the answer."""
    logits = model(input_ids=batch.tokens, attention_mask=batch.mask.long()).logits
    return logits[torch.arange(len(batch)), batch.roles["END"]]


def training_loss(model: Any, batch: PromptBatch, config: ToyConfig, step: int) -> Tensor:
    """Cross-entropy of the answer at END, under the IO curriculum for its first steps."""
    in_curriculum = step < config.io_curriculum_steps
    with (
        io_curriculum(model, batch, config.io_curriculum_min_layer)
        if in_curriculum
        else nullcontext()
    ):
        logits = answer_logits(model, batch)
    return torch.nn.functional.cross_entropy(logits, batch.io_token)


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
