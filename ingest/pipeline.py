"""One batch of IOI prompts through the model, the decomposition and (optionally) tracing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from ingest.activations import decompose_activations, run_activations
from ingest.decomposition import QKSVD, FiringRule, Firings
from ingest.ioi import IOIPrompt, PromptBatch, position_roles, tokenize_prompts
from ingest.models import LoadedModel
from ingest.tracing import Edges, trace_firings


@dataclass(frozen=True)
class BatchResult:
    """Everything one batch yields: its prompts, role labels, firings and (if traced) edges.

    ``logit_diff[b] = logit(IO) − logit(S)`` at END, the IOI behaviour metric.
    """

    prompts: Sequence[IOIPrompt]
    batch: PromptBatch
    role_labels: list[list[str]]
    firings: Firings
    edges: Edges | None
    logit_diff: Float[Tensor, " batch"]


def chunks(items: Sequence[IOIPrompt], size: int) -> Iterator[Sequence[IOIPrompt]]:
    """Consecutive slices of ``size`` items (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def process_batch(
    model: LoadedModel,
    svd: QKSVD,
    prompts: Sequence[IOIPrompt],
    rule: FiringRule,
    *,
    trace: bool = False,
    edge_fraction: float = 0.7,
) -> BatchResult:
    """Run the model on ``prompts``, decompose every head's firings, trace them if asked."""
    batch = tokenize_prompts(list(prompts), model.tokenizer)
    activations = run_activations(model.bridge, batch.tokens, batch.mask, with_results=trace)
    firings = decompose_activations(activations, svd, rule)
    edges = None
    if trace:
        assert activations.results is not None and activations.scales is not None
        edges = trace_firings(firings, svd, activations.results, activations.scales, edge_fraction)
    assert activations.logits is not None
    rows = torch.arange(len(prompts))
    end_logits = activations.logits[rows, batch.roles["END"].to(activations.logits.device)]
    logit_diff = (
        end_logits[rows, batch.io_token.to(end_logits.device)]
        - end_logits[rows, batch.s_token.to(end_logits.device)]
    )
    return BatchResult(
        prompts=prompts,
        batch=batch,
        role_labels=position_roles(batch),
        firings=firings,
        edges=edges,
        logit_diff=logit_diff.cpu(),
    )
