"""Interventions: causal checks of communication edges, and the paper's GPT-2 setting re-run.

:mod:`~ingest.interventions.edits` removes (or boosts) an edge's signal, the writer's output
projected on the edge's singular vectors, globally or only in the reader's query/key input,
and measures the change of attention and of the IO−S logit difference against a random control
of the same size; :mod:`~ingest.interventions.edits_acc` does the same for ACC's edges (a
writer component scaled where the reader's side reads it; the change of relative attention
against the edge's weight). :mod:`~ingest.interventions.replication` re-runs the SAD paper's
GPT-2 numbers in memory. Pure tensor maths: the atlas stores what they return.
"""

from ingest.interventions.edits import (
    MODES,
    EdgeEffects,
    EffectSummary,
    FiringTargets,
    firing_targets,
    measure_edges,
    summarize,
)
from ingest.interventions.replication import PAPER, PaperValue, replicate

__all__ = [
    "MODES",
    "PAPER",
    "EdgeEffects",
    "EffectSummary",
    "FiringTargets",
    "PaperValue",
    "firing_targets",
    "measure_edges",
    "replicate",
    "summarize",
]
