"""ACC's per-component contributions through the rotary frame, against an explicit reference.

On the tiny random Llama (RoPE θ = 50,000, 4 query heads on 2 key/value heads, RMSNorm, no
biases), every component's contribution to each side of a few firings is recomputed by
:func:`~ingest.decomposition.reference_acc.reference_component_contributions` (plain loops)
with the read direction of each position built from dense matrices: ``M_pᵀ w = F R_pᵀ F⁺ w``
with ``R_p`` a dense rotation checked against the model's own ``hook_q``/``hook_rot_q`` and
``F⁺`` a pseudo-inverse. Nothing of the engine's frame code (frame coefficients, ``rotate``)
is used by the reference.
"""

from __future__ import annotations

import torch

from ingest.decomposition.acc import (
    DEST_SIDE,
    SOURCE_SIDE,
    AccFiringRule,
    decompose_layer_acc,
    side_directions,
)
from ingest.decomposition.reference_acc import reference_component_contributions
from ingest.models.loading import LoadedModel
from ingest.prompts.ioi import generate_prompts, tokenize_prompts
from ingest.tracing.acc_circuit import model_acc_svd, output_biases, reads_centred
from ingest.tracing.components import reading_weights, side_contributions, upstream_from_cache

TOLERANCE = 1e-7  # relative to the largest component; float64 maths, two routes to F⁺


def dense_rotation(position: int, theta: float, dim: int) -> torch.Tensor:
    """``R_p`` (dim × dim): coordinate m turns with m + dim/2 by ``p · θ^(−2m/dim)``."""
    half = dim // 2
    rotation = torch.zeros(dim, dim, dtype=torch.float64)
    for m in range(half):
        angle = position * theta ** (-2.0 * m / dim)
        cos, sin = torch.cos(torch.tensor(angle)), torch.sin(torch.tensor(angle))
        rotation[m, m], rotation[m, m + half] = cos, -sin
        rotation[m + half, m], rotation[m + half, m + half] = sin, cos
    return rotation


@torch.inference_mode()
def test_rotary_components_match_the_per_component_loop(tiny_llama: LoadedModel) -> None:
    bridge = tiny_llama.bridge
    cfg = bridge.cfg
    batch = tokenize_prompts(generate_prompts(2, "mixed", seed=3), tiny_llama.tokenizer)
    _, cache32 = bridge.run_with_cache(batch.tokens)
    cache = {name: tensor.double() for name, tensor in cache32.items()}
    n_layers, n_heads, n_kv = cfg.n_layers, cfg.n_heads, cfg.n_key_value_heads
    n_pos = batch.tokens.shape[1]
    theta, dim = float(cfg.rotary_base), int(cfg.rotary_dim)
    rotations = [dense_rotation(p, theta, dim) for p in range(n_pos)]
    # the dense rotation is the model's own: R_p q_p = hook_rot_q at p
    q, rot_q = cache["blocks.1.attn.hook_q"], cache["blocks.1.attn.hook_rot_q"]
    for p in range(n_pos):
        assert torch.allclose(q[:, p] @ rotations[p].T, rot_q[:, p], atol=1e-5)

    svd = model_acc_svd(bridge)
    W_Q, W_K = bridge.W_Q.double(), bridge.W_K.double()
    W_O, b_O = bridge.W_O.double(), output_biases(bridge).double()
    centred = reads_centred(cfg)
    assert not centred  # RMSNorm
    upstream = upstream_from_cache(cache, W_O, b_O, n_layers, centred=centred)
    layer = n_layers - 1
    x = cache[f"blocks.{layer}.ln1.hook_normalized"]
    pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
    firings = decompose_layer_acc(x, x, pattern, batch.mask, svd, layer, AccFiringRule())
    chosen = firings.select(torch.tensor([0, len(firings) // 3, len(firings) - 1]))
    scale = cache[f"blocks.{layer}.ln1.hook_scale"]
    n_checked = 0
    for side in (DEST_SIDE, SOURCE_SIDE):
        engine = side_contributions(chosen, svd, side, upstream, scale, layer)
        directions = side_directions(chosen, svd, side)  # unrotated frame
        reading = reading_weights(side, chosen.dest, chosen.src, n_pos, torch.float64)
        for f in range(len(chosen)):
            b, h = int(chosen.prompt[f]), int(chosen.head[f])
            factor = W_Q[layer, h] if side == DEST_SIDE else W_K[layer, h * n_kv // n_heads]
            back = (
                factor
                @ torch.stack(
                    [
                        rotations[p].T @ (torch.linalg.pinv(factor) @ directions[f])
                        for p in range(n_pos)
                    ]
                ).T
            )
            reference = reference_component_contributions(
                back.T,
                {p: float(reading[f, p]) for p in range(n_pos) if reading[f, p] != 0},
                scale[b],
                cache["hook_embed"][b],
                [cache[f"blocks.{m}.attn.hook_pattern"][b] for m in range(n_layers)],
                [cache[f"blocks.{m}.attn.hook_v"][b] for m in range(n_layers)],
                W_O,
                b_O,
                [cache[f"blocks.{m}.hook_mlp_out"][b] for m in range(n_layers)],
                layer,
                centred=False,
            )
            size = max(abs(v) for v in reference.values())
            assert abs(float(engine.embed[f]) - reference[(0,)]) <= TOLERANCE * size
            for m in range(layer):
                assert abs(float(engine.attn_bias[f, m]) - reference[(1, m)]) <= TOLERANCE * size
                assert abs(float(engine.mlp[f, m]) - reference[(2, m)]) <= TOLERANCE * size
                for head in range(n_heads):
                    for t in range(n_pos):
                        found = float(engine.heads[f, m, head, t])
                        expected = reference.get((3, m, head, t), 0.0)
                        assert abs(found - expected) <= TOLERANCE * size
                        n_checked += 1
            # and the reference's components add up to the side total too
            assert abs(sum(reference.values()) - float(chosen.total[f, side])) <= 1e-6 * size
    assert n_checked > 0
