"""Decomposition: every strong attention decision split into singular-vector terms (SAD).

For head (l, h), ``Ω = [W_Q; b_Q][W_K; b_K]ᵀ = Σ_k σ_k u_k v_kᵀ`` and each score is the exact
sum ``Σ_k σ_k (x̃_i·u_k)(v_k·x̃_j)``; a firing's sparse set is the smallest prefix of its largest
terms that exceeds the score. :mod:`~ingest.decomposition.sad` holds that maths (pure);
:mod:`~ingest.decomposition.activations` runs the forward pass that feeds it;
:mod:`~ingest.decomposition.alignment` pairs singular vectors of different heads that read the
same residual direction; :mod:`~ingest.decomposition.reference` is a slow per-pair loop that
tests check the fast path against; :mod:`~ingest.decomposition.summary` tabulates per head.
:mod:`~ingest.decomposition.rotary` maps a rotary (Llama-family) head's inputs into one
unrotated frame, so one SVD per head stays exact; :mod:`~ingest.decomposition.acc` is ACC's
relative-attention decomposition, two SVDs per head (:mod:`~ingest.decomposition.reference_acc`
its per-pair loop).
"""

from ingest.decomposition.activations import (
    Activations,
    decompose_activations,
    model_qk_svd,
    run_activations,
)
from ingest.decomposition.alignment import AlignedPairs, aligned_pairs, read_directions
from ingest.decomposition.sad import QKSVD, FiringRule, Firings, decompose_layer, qk_svd

__all__ = [
    "QKSVD",
    "Activations",
    "AlignedPairs",
    "FiringRule",
    "Firings",
    "aligned_pairs",
    "decompose_activations",
    "decompose_layer",
    "model_qk_svd",
    "qk_svd",
    "read_directions",
    "run_activations",
]
