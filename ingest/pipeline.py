"""One batch of IOI prompts through the model, the decomposition and (optionally) tracing."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from ingest.decomposition.activations import decompose_activations, run_activations
from ingest.decomposition.sad import QKSVD, FiringRule, Firings
from ingest.models.loading import LoadedModel
from ingest.prompts.ioi import IOIPrompt, PromptBatch, position_roles, tokenize_prompts
from ingest.tracing.upstream import Edges, trace_firings


@dataclass(frozen=True)
class BatchResult:
    """Everything one batch yields: its prompts, role labels, firings and (if traced) edges.

    ``logit_diff[b] = logit(IO) − logit(S)`` at END, the IOI behaviour metric. ``seconds``:
    wall time of each stage (``forward``, ``decompose``, ``trace``), for benchmarks.
    """

    prompts: Sequence[IOIPrompt]
    batch: PromptBatch
    role_labels: list[list[str]]
    firings: Firings
    edges: Edges | None
    logit_diff: Float[Tensor, " batch"]
    seconds: Mapping[str, float] = field(default_factory=dict)


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
    clock = _StageClock(model.bridge.cfg.device)
    batch = tokenize_prompts(list(prompts), model.tokenizer, prepend_bos=model.prepend_bos)
    activations = run_activations(
        model.bridge, batch.tokens, batch.mask, with_results=trace, logits_at=batch.roles["END"]
    )
    clock.lap("forward")
    firings = decompose_activations(activations, svd, rule)
    clock.lap("decompose")
    edges = None
    if trace:
        assert activations.results is not None and activations.scales is not None
        edges = trace_firings(firings, svd, activations.results, activations.scales, edge_fraction)
        clock.lap("trace")
    end_logits = activations.end_logits
    assert end_logits is not None
    rows = torch.arange(len(prompts), device=end_logits.device)
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
        seconds=clock.seconds,
    )


class _StageClock:
    """Wall time per stage; on a GPU it waits for queued kernels so each stage owns its time."""

    def __init__(self, device: torch.device | str) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        self.seconds[stage] = now - self._last
        self._last = now
