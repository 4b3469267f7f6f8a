"""Exact interventions: one edge patched by brute force, and the faithfulness of a head set.

Both run the model forward only. They are the references the gradient methods are checked
against (:mod:`tests.unit.ingest.test_patching_methods`), and what ``compare-circuits`` uses for
faithfulness.

**Edge patch.** Writer w's clean-minus-corrupted output ``Δ_w`` (at every position) is added,
times ``scale``, to reader r's own input only (a head's query, key or value fork, an MLP's
input, or the final residual the unembedding reads) of the corrupted run; every other reader
still sees w's corrupted output. With ``scale = 1`` this is the exact direct path patch of Wang
et al.; its derivative in ``scale`` at 0 is the EAP score of the edge.

**Faithfulness** of a set of heads H: the clean run with every head outside H given its
corrupted output (``hook_z``), embeddings and MLPs untouched; the share of the clean−corrupted
gap of the mean logit difference this run keeps, ``(LD_H − LD_corrupt) / (LD_clean −
LD_corrupt)``. It equals TransformerLens's ``faithfulness`` with every edge out of a head outside
H removed (one pair at a time there; batched here).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ingest.patching.graph import Reader, Writer
from ingest.prompts.ioi import PromptBatch

Hook = tuple[str, Callable[..., Any]]


@contextmanager
def reader_hooks_enabled(bridge: Any) -> Iterator[None]:
    """Turn on the per-head Q/K/V input forks and ``hook_mlp_in``; restore the flags after."""
    cfg = bridge.cfg
    saved = (cfg.use_split_qkv_input, cfg.use_hook_mlp_in, bool(getattr(cfg, "use_attn_in", 0)))
    try:
        if saved[2]:
            bridge.set_use_attn_in(False)
        bridge.set_use_split_qkv_input(True)
        bridge.set_use_hook_mlp_in(True)
        yield
    finally:
        bridge.set_use_split_qkv_input(saved[0])
        bridge.set_use_hook_mlp_in(saved[1])
        if saved[2]:
            bridge.set_use_attn_in(True)


def writer_hook(writer: Writer) -> str:
    if writer.kind == "embed":
        return "hook_embed"
    if writer.kind == "head":
        return f"blocks.{writer.layer}.attn.hook_result"
    return f"blocks.{writer.layer}.hook_mlp_out"


def reader_hook(reader: Reader, n_layers: int) -> str:
    if reader.kind == "head":
        return f"blocks.{reader.layer}.attn.hook_{reader.side}_input"
    if reader.kind == "mlp":
        return f"blocks.{reader.layer}.hook_mlp_in"
    return f"blocks.{n_layers - 1}.hook_resid_post"


def writer_output_names(n_layers: int) -> list[str]:
    names = ["hook_embed"]
    for layer in range(n_layers):
        names += [f"blocks.{layer}.attn.hook_result", f"blocks.{layer}.hook_mlp_out"]
    return names


def capture(
    bridge: Any, tokens: Tensor, names: Collection[str], hooks: Collection[Hook] = ()
) -> tuple[Tensor, dict[str, Tensor]]:
    """Logits and the named activations (keyed by the names asked for, not their aliases)."""
    captured: dict[str, Tensor] = {}

    def keeper(name: str) -> Callable[..., None]:
        def keep(tensor: Tensor, hook: Any) -> None:
            captured[name] = tensor.detach()

        return keep

    with torch.no_grad():
        logits = bridge.run_with_hooks(
            tokens.to(bridge.cfg.device),
            return_type="logits",
            fwd_hooks=[*hooks, *((name, keeper(name)) for name in names)],
        )
    return logits.detach(), captured


def batch_logit_diff(logits: Tensor, batch: PromptBatch) -> Tensor:
    """IO−S logit difference at END per prompt (the clean answers, also for a corrupted batch)."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    at_end = logits[rows, batch.roles["END"].to(logits.device)]
    io, s = batch.io_token.to(logits.device), batch.s_token.to(logits.device)
    return at_end[rows, io] - at_end[rows, s]


@dataclass(frozen=True)
class PairRun:
    """The clean and corrupted runs of a batch: logit differences and every writer's output."""

    clean: PromptBatch
    corrupt: PromptBatch
    clean_ld: Tensor
    corrupt_ld: Tensor
    clean_out: dict[str, Tensor]
    corrupt_out: dict[str, Tensor]


def pair_run(bridge: Any, clean: PromptBatch, corrupt: PromptBatch) -> PairRun:
    names = writer_output_names(bridge.cfg.n_layers)
    clean_logits, clean_out = capture(bridge, clean.tokens, names)
    corrupt_logits, corrupt_out = capture(bridge, corrupt.tokens, names)
    return PairRun(
        clean,
        corrupt,
        batch_logit_diff(clean_logits, clean).cpu(),
        batch_logit_diff(corrupt_logits, corrupt).cpu(),
        clean_out,
        corrupt_out,
    )


def writer_delta(run: PairRun, writer: Writer) -> Tensor:
    """``Δ_w``: the writer's clean minus corrupted output, [batch, pos, d_model]."""
    name = writer_hook(writer)
    delta = run.clean_out[name] - run.corrupt_out[name]
    return delta[:, :, writer.head] if writer.kind == "head" else delta


def patch_edge(
    bridge: Any, run: PairRun, writer: Writer, reader: Reader, scale: float = 1.0
) -> Tensor:
    """Per-prompt logit difference of the corrupted run with ``scale · Δ_w`` added to the
    input of ``reader`` alone."""
    delta = scale * writer_delta(run, writer)

    def add(tensor: Tensor, hook: Any) -> Tensor:
        changed = tensor.clone()
        if reader.kind == "head":
            heads = changed.shape[2]
            group = reader.head if heads == bridge.cfg.n_heads else _kv_group(bridge, reader)
            changed[:, :, group] += delta.to(changed)
        else:
            changed += delta.to(changed)
        return changed

    with reader_hooks_enabled(bridge):
        name = reader_hook(reader, bridge.cfg.n_layers)
        logits, _ = capture(bridge, run.corrupt.tokens, (), [(name, add)])
    return batch_logit_diff(logits, run.corrupt).cpu()


def _kv_group(bridge: Any, reader: Reader) -> int:
    cfg = bridge.cfg
    assert reader.head is not None
    return reader.head // (cfg.n_heads // cfg.n_key_value_heads)


def ablated_logit_diff(bridge: Any, run: PairRun, kept_heads: Collection[str]) -> Tensor:
    """Per-prompt logit difference of the clean run with every head outside ``kept_heads``
    (ids ``"l.h"``) given its corrupted output."""
    cfg = bridge.cfg
    _, corrupt_z = capture(
        bridge, run.corrupt.tokens, [f"blocks.{layer}.attn.hook_z" for layer in range(cfg.n_layers)]
    )
    hooks: list[Hook] = []
    for layer in range(cfg.n_layers):
        outside = [h for h in range(cfg.n_heads) if f"{layer}.{h}" not in kept_heads]
        if outside:
            name = f"blocks.{layer}.attn.hook_z"
            hooks.append((name, _replace_heads(outside, corrupt_z[name])))
    logits, _ = capture(bridge, run.clean.tokens, (), hooks)
    return batch_logit_diff(logits, run.clean).cpu()


def _replace_heads(heads: list[int], replacement: Tensor) -> Callable[..., Tensor]:
    def replace(tensor: Tensor, hook: Any) -> Tensor:
        changed = tensor.clone()
        changed[:, :, heads] = replacement[:, :, heads].to(changed)
        return changed

    return replace


@dataclass(frozen=True)
class Faithfulness:
    """Means over prompts of the clean, corrupted and circuit-only logit differences."""

    clean: float
    corrupt: float
    circuit: float

    @property
    def recovered(self) -> float:
        gap = self.clean - self.corrupt
        return (self.circuit - self.corrupt) / gap if gap else float("nan")


def faithfulness(
    bridge: Any, runs: Collection[PairRun], kept_heads: Collection[str]
) -> Faithfulness:
    """:class:`Faithfulness` of the head set over all prompts of ``runs``."""
    clean = torch.cat([run.clean_ld for run in runs]).double().mean()
    corrupt = torch.cat([run.corrupt_ld for run in runs]).double().mean()
    circuit = torch.cat([ablated_logit_diff(bridge, run, kept_heads) for run in runs]).double()
    return Faithfulness(float(clean), float(corrupt), float(circuit.mean()))
