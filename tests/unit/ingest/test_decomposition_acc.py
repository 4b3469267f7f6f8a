"""ACC maths on synthetic tensors and a tiny random GPT-2 (3 layers, 4 heads, d_model 64).

Exactness checks run in float64 on float32 hooks; tolerances are relative to the magnitude
of the checked quantity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from ingest.decomposition.acc import (
    DEST_SIDE,
    SOURCE_SIDE,
    AccFiringRule,
    AccSVD,
    acc_firing_mask,
    acc_svd,
    decompose_layer_acc,
    decompose_pairs,
    reaching_sparse_sets,
    relative_attention,
    side_directions,
)
from ingest.decomposition.reference_acc import (
    reference_acc_firings,
    reference_component_contributions,
    reference_reaching_set,
)
from ingest.decomposition.sad import augmented_factors
from ingest.models.loading import LoadedModel
from ingest.prompts.ioi import PromptBatch, generate_prompts, tokenize_prompts
from ingest.tracing.components import (
    HEAD,
    UpstreamOutputs,
    answer_contributions,
    answer_seeds,
    reading_weights,
    seed_mask,
    side_contributions,
    trace_acc_firings,
    upstream_from_cache,
)

TOLERANCE = 1e-5  # relative, float64 maths on float32 activations


def close(actual: torch.Tensor, expected: torch.Tensor, scale: float | None = None) -> float:
    """max |actual − expected| / scale (scale: max |expected| unless given)."""
    reference = scale if scale is not None else float(expected.abs().max().clamp(min=1e-12))
    return float((actual - expected).abs().max()) / reference


# ----- synthetic tensors (biases non-zero) ---------------------------------------------------


def synthetic(seed: int = 0, d: int = 12, r: int = 5, n_heads: int = 2, n_pos: int = 7):
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    W_Q, W_K = randn(1, n_heads, d, r), randn(1, n_heads, d, r)
    b_Q, b_K = randn(1, n_heads, r), randn(1, n_heads, r)
    x = randn(2, n_pos, d)
    return W_Q, b_Q, W_K, b_K, x


def test_relative_attention_matches_a_loop() -> None:
    scores = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    ra = relative_attention(scores)
    for b, h, i, j in torch.cartesian_prod(*(torch.arange(n) for n in ra.shape)).tolist():
        if j > i or i == 0:
            assert ra[b, h, i, j] == 0
            continue
        rivals = [float(scores[b, h, i, jp]) for jp in range(i + 1) if jp != j]
        assert abs(float(ra[b, h, i, j]) - (float(scores[b, h, i, j]) - sum(rivals) / i)) < 1e-12


def test_acc_svds_reconstruct_both_bias_augmented_matrices() -> None:
    W_Q, b_Q, W_K, b_K, _ = synthetic()
    svd = acc_svd(W_Q, b_Q, W_K, b_K)
    omega_d = W_Q @ augmented_factors(W_K, b_K).transpose(-1, -2)
    omega_s = augmented_factors(W_Q, b_Q) @ W_K.transpose(-1, -2)
    for part, omega in ((svd.dest, omega_d), (svd.source, omega_s)):
        rebuilt = torch.einsum("lhdr,lhr,lher->lhde", part.U, part.sigma, part.V)
        assert close(rebuilt, omega) < 1e-12
        assert (part.sigma[..., :-1] >= part.sigma[..., 1:]).all()


def test_sides_sum_to_relative_attention_and_its_query_bias_split() -> None:
    """S = RA exactly; D = RA − β with β = b_Qᵀ W_Kᵀ Δ_j; b_K enters neither total."""
    W_Q, b_Q, W_K, b_K, x = synthetic()
    svd = acc_svd(W_Q, b_Q, W_K, b_K)
    q = torch.einsum("bpd,hdr->bhpr", x, W_Q[0]) + b_Q[0][None, :, None]
    k = torch.einsum("bpd,hdr->bhpr", x, W_K[0]) + b_K[0][None, :, None]
    ra = relative_attention(q @ k.transpose(-1, -2))
    n_batch, n_heads, n_pos = ra.shape[:3]
    pairs = [
        (b, h, i, j)
        for b in range(n_batch)
        for h in range(n_heads)
        for i in range(1, n_pos)
        for j in range(i + 1)
    ]
    prompt, head, dest, src = (torch.tensor(column) for column in zip(*pairs, strict=True))
    pattern = torch.zeros(n_batch, n_heads, n_pos, n_pos, dtype=torch.float64)
    firings = decompose_pairs(x, x, pattern, svd, 0, prompt, head, dest, src)
    expected = ra[prompt, head, dest, src]
    assert close(firings.relative, expected) < 1e-12
    assert close(firings.total[:, SOURCE_SIDE], expected) < 1e-12
    beta = []
    for b, h, i, j in pairs:
        delta = x[b, j] - (x[b, : i + 1].sum(0) - x[b, j]) / i
        beta.append(float(b_Q[0, h] @ (W_K[0, h].T @ delta)))
    assert close(firings.query_bias, torch.tensor(beta, dtype=torch.float64)) < 1e-12
    assert close(firings.total[:, DEST_SIDE] + firings.query_bias, expected) < 1e-12
    shifted = decompose_pairs(x, x, pattern, acc_svd(W_Q, b_Q, W_K, 7 * b_K), 0, *pairs_t(pairs))
    assert close(shifted.total, firings.total) < 1e-11


def pairs_t(pairs: list[tuple[int, int, int, int]]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.tensor(column) for column in zip(*pairs, strict=True))


@pytest.mark.parametrize(
    ("terms", "fraction"),
    [
        ([3.0, 1.0, -0.5, 0.2], 1.0),  # prefix reaches the total before the negative term
        ([1.0, 1.0, 1.0], 1.0),  # ties: lower index first; needs all
        ([2.0, 2.0, 0.0, 0.0], 1.0),  # reached exactly (SAD's "exceeds" would not)
        ([0.5, -2.0, 1.0], 1.0),  # negative total: not traced, empty set
        ([4.0, 3.0, 2.0, 1.0], 0.5),
    ],
)
def test_reaching_sparse_sets_match_reference(terms: list[float], fraction: float) -> None:
    sets = reaching_sparse_sets(torch.tensor([terms], dtype=torch.float64), fraction)
    chosen = tuple(sets.order[0, : sets.size[0]].tolist())
    assert chosen == reference_reaching_set(terms, fraction)


def test_fire_rule_is_above_uniform_from_the_second_position() -> None:
    pattern = torch.tensor([[[[1.0, 0, 0], [0.5, 0.5, 0], [0.2, 0.34, 0.46]]]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    fires = acc_firing_mask(pattern, valid, 0, AccFiringRule())[0, 0]
    assert fires.tolist() == [[False, False, False], [True, True, False], [False, True, True]]
    no_first = acc_firing_mask(pattern, valid, 0, AccFiringRule(min_src=1))[0, 0]
    assert no_first.tolist() == [[False, False, False], [False, True, False], [False, True, True]]
    assert not acc_firing_mask(pattern, valid, 0, AccFiringRule(min_layer=1)).any()
    padded = acc_firing_mask(pattern, torch.tensor([[True, True, False]]), 0, AccFiringRule())
    assert not padded[0, 0, 2].any()
    with pytest.raises(ValueError):
        AccFiringRule(sparse_fraction=0.0)


@pytest.mark.parametrize(
    ("contributions", "logit_diff", "kept"),
    [
        ([3.0, 1.0, 2.0, -1.0], 8.0, {0, 2}),  # 3 < 0.5·8, 3 + 2 ≥ 4
        ([3.0, 1.0, 2.0, -1.0], 4.0, {0}),  # 3 ≥ 2
        ([0.5, 0.2, -1.0], 4.0, {0, 1}),  # never reaches 2: all positive ones (a cap)
        ([3.0, 1.0], -1.0, set()),  # wrong answer: no seeds
    ],
)
def test_seed_mask(contributions: list[float], logit_diff: float, kept: set[int]) -> None:
    mask = seed_mask(torch.tensor([contributions]), torch.tensor([logit_diff]), 0.5)
    assert set(mask[0].nonzero().flatten().tolist()) == kept


# ----- the tiny model, against its own hooks -------------------------------------------------


@dataclass
class TinyRun:
    model: LoadedModel
    batch: PromptBatch
    cache: dict[str, torch.Tensor]
    logits: torch.Tensor
    svd: AccSVD
    upstream: UpstreamOutputs

    def x(self, layer: int) -> torch.Tensor:
        return self.cache[f"blocks.{layer}.ln1.hook_normalized"]

    def pattern(self, layer: int) -> torch.Tensor:
        return self.cache[f"blocks.{layer}.attn.hook_pattern"]

    def scale(self, layer: int) -> torch.Tensor:
        return self.cache[f"blocks.{layer}.ln1.hook_scale"]

    def firings(self, layer: int, rule: AccFiringRule | None = None):
        x = self.x(layer)
        rule = rule or AccFiringRule()
        return decompose_layer_acc(
            x, x, self.pattern(layer), self.batch.mask, self.svd, layer, rule
        )


@pytest.fixture(scope="module")
def tiny(tiny_model: LoadedModel) -> TinyRun:
    batch = tokenize_prompts(generate_prompts(3, "mixed", seed=4), tiny_model.tokenizer)
    bridge = tiny_model.bridge
    with torch.inference_mode():
        logits, cache = bridge.run_with_cache(batch.tokens)
        weights = [w.detach().double() for w in (bridge.W_Q, bridge.b_Q, bridge.W_K, bridge.b_K)]
        W_O, b_O = bridge.W_O.detach().double(), bridge.b_O.detach().double()
    cache64 = {name: tensor.double() for name, tensor in cache.items()}
    upstream = upstream_from_cache(cache64, W_O, b_O, tiny_model.n_layers, centred=True)
    return TinyRun(tiny_model, batch, cache64, logits.double(), acc_svd(*weights), upstream)


def test_terms_sum_to_relative_attention_of_hook_scores(tiny: TinyRun) -> None:
    root_r = math.sqrt(tiny.model.provenance.d_head)
    for layer in range(tiny.model.n_layers):
        firings = tiny.firings(layer)
        assert len(firings) > 0
        scores = root_r * tiny.cache[f"blocks.{layer}.attn.hook_attn_scores"]
        expected = relative_attention(scores)[
            firings.prompt, firings.head, firings.dest, firings.src
        ]
        rms = float(expected.pow(2).mean().sqrt())
        assert close(firings.total[:, SOURCE_SIDE], expected, rms) < TOLERANCE
        assert close(firings.total[:, DEST_SIDE] + firings.query_bias, expected, rms) < TOLERANCE
        # above-uniform attention implies RA ≥ 0 (Jensen): every source side is traced
        assert (expected > -TOLERANCE * rms).all()


def test_engine_matches_per_pair_reference(tiny: TinyRun) -> None:
    layer = 1
    firings = tiny.firings(layer)
    svd = tiny.svd
    reference = reference_acc_firings(
        tiny.x(layer),
        tiny.x(layer),
        tiny.pattern(layer),
        tiny.batch.mask,
        (svd.dest.U[layer], svd.dest.sigma[layer], svd.dest.V[layer]),
        (svd.source.U[layer], svd.source.sigma[layer], svd.source.V[layer]),
    )
    engine_rows = sorted(
        (
            int(firings.prompt[f]),
            int(firings.head[f]),
            int(firings.dest[f]),
            int(firings.src[f]),
            tuple(firings.sv_order[f, DEST_SIDE, : firings.n_svs[f, DEST_SIDE]].tolist()),
            tuple(firings.sv_order[f, SOURCE_SIDE, : firings.n_svs[f, SOURCE_SIDE]].tolist()),
        )
        for f in range(len(firings))
    )
    reference_rows = sorted(
        (r.prompt, r.head, r.dest, r.src, r.dest_set, r.source_set) for r in reference
    )
    assert engine_rows == reference_rows
    by_pair = {(r.prompt, r.head, r.dest, r.src): r for r in reference}
    for f in range(len(firings)):
        key = (
            int(firings.prompt[f]),
            int(firings.head[f]),
            int(firings.dest[f]),
            int(firings.src[f]),
        )
        ref = by_pair[key]
        assert abs(float(firings.total[f, DEST_SIDE]) - ref.dest_total) < 1e-10
        assert abs(float(firings.total[f, SOURCE_SIDE]) - ref.source_total) < 1e-10
        assert abs(float(firings.query_bias[f]) - ref.query_bias) < 1e-10


def test_heads_split_by_source_token_rebuild_hook_result(tiny: TinyRun) -> None:
    up = tiny.upstream
    for m in range(tiny.model.n_layers):
        rebuilt = torch.einsum("bhpt,bthd->bphd", up.patterns[:, m], up.head_values[:, :, m])
        expected = tiny.cache[f"blocks.{m}.attn.hook_result"]
        assert close(rebuilt, expected) < TOLERANCE


@pytest.mark.parametrize("sparse", [False, True])
def test_components_sum_to_each_side_total(tiny: TinyRun, sparse: bool) -> None:
    for layer in range(tiny.model.n_layers):
        firings = tiny.firings(layer)
        for side in (DEST_SIDE, SOURCE_SIDE):
            contributions = side_contributions(
                firings, tiny.svd, side, tiny.upstream, tiny.scale(layer), layer, sparse=sparse
            )
            if sparse:
                rank = firings.sorted_terms.shape[-1]
                in_set = torch.arange(rank)[None, :] < firings.n_svs[:, side, None]
                expected = (firings.sorted_terms[:, side] * in_set).sum(-1)
            else:
                expected = firings.total[:, side]
            assert close(contributions.total(), expected) < TOLERANCE


def test_components_match_the_per_component_loop(tiny: TinyRun) -> None:
    layer = 2
    firings = tiny.firings(layer)
    rows = torch.tensor([0, len(firings) // 2, len(firings) - 1])
    chosen = firings.select(rows)
    n_layers = tiny.model.n_layers
    bridge = tiny.model.bridge
    W_O, b_O = bridge.W_O.detach().double(), bridge.b_O.detach().double()
    for side in (DEST_SIDE, SOURCE_SIDE):
        engine = side_contributions(chosen, tiny.svd, side, tiny.upstream, tiny.scale(layer), layer)
        directions = side_directions(chosen, tiny.svd, side)
        n_pos = tiny.batch.tokens.shape[1]
        reading = reading_weights(side, chosen.dest, chosen.src, n_pos, torch.float64)
        for f in range(len(chosen)):
            b = int(chosen.prompt[f])
            reference = reference_component_contributions(
                directions[f],
                {p: float(reading[f, p]) for p in range(n_pos) if reading[f, p] != 0},
                tiny.scale(layer)[b],
                tiny.cache["hook_embed"][b] + tiny.cache["hook_pos_embed"][b],
                [tiny.cache[f"blocks.{m}.attn.hook_pattern"][b] for m in range(n_layers)],
                [tiny.cache[f"blocks.{m}.attn.hook_v"][b] for m in range(n_layers)],
                W_O,
                b_O,
                [tiny.cache[f"blocks.{m}.hook_mlp_out"][b] for m in range(n_layers)],
                layer,
            )
            assert abs(float(engine.embed[f]) - reference[(0,)]) < 1e-10
            for m in range(layer):
                assert abs(float(engine.attn_bias[f, m]) - reference[(1, m)]) < 1e-10
                assert abs(float(engine.mlp[f, m]) - reference[(2, m)]) < 1e-10
                for h in range(W_O.shape[1]):
                    for t in range(n_pos):
                        expected = reference.get((3, m, h, t), 0.0)
                        assert abs(float(engine.heads[f, m, h, t]) - expected) < 1e-10


def test_negative_side_is_not_traced(tiny: TinyRun) -> None:
    """Pairs attended below uniform have RA < 0: no sparse set, no edges."""
    layer = 1
    pattern = tiny.pattern(layer)
    n_pos = pattern.shape[-1]
    positions = torch.arange(n_pos)
    below = (pattern < 1 / (positions[:, None] + 1)) & (positions[:, None] >= 1)
    below &= positions[:, None] >= positions[None, :]
    below &= tiny.batch.mask[:, None, :, None] & tiny.batch.mask[:, None, None, :]
    prompt, head, dest, src = below.nonzero(as_tuple=True)
    x = tiny.x(layer)
    pairs = decompose_pairs(x, x, pattern, tiny.svd, layer, prompt, head, dest, src)
    negative = pairs.total < 0
    assert negative[:, SOURCE_SIDE].any()
    assert (pairs.traced == ~negative).all()
    assert (pairs.n_svs[negative] == 0).all()
    untraced = pairs.select(~pairs.traced.any(-1))
    assert len(untraced) > 0
    scales = [tiny.scale(m) for m in range(tiny.model.n_layers)]
    assert len(trace_acc_firings(untraced, tiny.svd, tiny.upstream, scales)) == 0


def test_edges_carry_their_component_and_weight(tiny: TinyRun) -> None:
    layer = 2
    firings = tiny.firings(layer)
    scales = [tiny.scale(m) for m in range(tiny.model.n_layers)]
    edges = trace_acc_firings(firings, tiny.svd, tiny.upstream, scales, edge_fraction=0.7)
    assert len(edges) > 0
    for side in (DEST_SIDE, SOURCE_SIDE):
        contributions = side_contributions(
            firings, tiny.svd, side, tiny.upstream, tiny.scale(layer), layer
        )
        on_side = edges.side == side
        rows = edges.firing[on_side]
        expected_pos = firings.dest[rows] if side == DEST_SIDE else firings.src[rows]
        assert (edges.pos[on_side] == expected_pos).all()
        heads = on_side & (edges.kind == HEAD)
        weights = contributions.heads[
            edges.firing[heads], edges.layer[heads], edges.head[heads], edges.src_pos[heads]
        ]
        assert torch.equal(weights, edges.weight[heads])
        for f in torch.unique(rows).tolist():
            kept = edges.weight[on_side][rows == f].sum()
            assert kept > 0.7 * contributions.total()[f]


def test_answer_components_sum_to_logit_difference(tiny: TinyRun) -> None:
    batch = tiny.batch
    end = batch.roles["END"]
    W_U = tiny.model.bridge.W_U.detach().double()
    b_U = tiny.model.bridge.b_U.detach().double()
    contributions = answer_contributions(
        W_U, batch.io_token, batch.s_token, end, tiny.cache["ln_final.hook_scale"], tiny.upstream
    )
    rows = torch.arange(len(batch))
    at_end = tiny.logits[rows, end]
    logit_diff = at_end[rows, batch.io_token] - at_end[rows, batch.s_token]
    rebuilt = contributions.total() + b_U[batch.io_token] - b_U[batch.s_token]
    assert close(rebuilt, logit_diff) < TOLERANCE
    seeds = answer_seeds(contributions, logit_diff, end)
    assert (seeds.logit_diff > 0).all() and (seeds.contribution > 0).all()
    assert (seeds.dest == end[seeds.prompt]).all() and (seeds.src <= seeds.dest).all()
    for layer in torch.unique(seeds.layer).tolist():  # seeds are ACC pairs like any firing
        rows = seeds.layer == layer
        x = tiny.x(layer)
        pairs = decompose_pairs(
            x,
            x,
            tiny.pattern(layer),
            tiny.svd,
            layer,
            seeds.prompt[rows],
            seeds.head[rows],
            seeds.dest[rows],
            seeds.src[rows],
        )
        assert len(pairs) == int(rows.sum())
