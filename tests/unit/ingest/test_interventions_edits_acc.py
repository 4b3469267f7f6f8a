"""ACC interventions on toy-ioi (LayerNorm, absolute positions) and the tiny random Llama
(RMSNorm, RoPE, grouped-query, no biases): the edge's weight (traced by ACC) is the linear
prediction of scaling its writer where the side reads it, and the model's own hooks reproduce
it exactly in local mode, for every writer kind and both sides; controls and global mode
behave."""

from __future__ import annotations

import math

import pytest
import torch

from ingest.decomposition.acc import DEST_SIDE, SOURCE_SIDE, AccFiringRule
from ingest.decomposition.activations import model_rotary
from ingest.decomposition.rotary import Rotary
from ingest.interventions.edits_acc import (
    AccEdgeTargets,
    AccWriter,
    control_writers,
    measure_acc_edges,
    summarize_acc,
)
from ingest.models.loading import LoadedModel, UnsupportedModelError
from ingest.pipeline import AccBatchResult, process_acc_batch
from ingest.prompts.ioi import generate_prompts
from ingest.tracing.acc_circuit import model_acc_svd, refuse_rotated_qk_biases
from ingest.tracing.components import ATTN_BIAS, EMBED, HEAD, MLP

EdgeKey = tuple[int, int, int, int, int]  # firing, side, kind, layer, head


@pytest.fixture(scope="module", params=["toy_model", "tiny_llama"])
def model(request: pytest.FixtureRequest) -> LoadedModel:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def traced(model: LoadedModel) -> AccBatchResult:
    svd = model_acc_svd(model.bridge, dtype=model.bridge.cfg.dtype)
    prompts = generate_prompts(8, "mixed", seed=0)
    return process_acc_batch(model, svd, prompts, AccFiringRule())


def grouped_edges(result: AccBatchResult) -> dict[EdgeKey, tuple[float, list[int]]]:
    """ACC's edges per (firing, side, writer component): weight summed over a head writer's
    source tokens, and those tokens."""
    e = result.trace.edges
    groups: dict[EdgeKey, tuple[float, list[int]]] = {}
    for k in range(len(e)):
        kind = int(e.kind[k])
        key = (int(e.firing[k]), int(e.side[k]), kind, int(e.layer[k]), int(e.head[k]))
        weight, tokens = groups.get(key, (0.0, []))
        token = [int(e.src_pos[k])] if kind == HEAD else []
        groups[key] = (weight + float(e.weight[k]), tokens + token)
    return groups


def targets_of(result: AccBatchResult, key: EdgeKey, weight: float, tokens: list[int]):
    f = result.trace.firings
    row, side = key[0], key[1]
    return AccEdgeTargets(
        layer=int(f.layer[row]),
        head=int(f.head[row]),
        side=side,
        prompts=[result.prompts[int(f.prompt[row])]],
        dest=[int(f.dest[row])],
        src=[int(f.src[row])],
        writer_src=[tokens],
        weight=[weight],
    )


def one_edge_per_kind_and_side(result: AccBatchResult) -> list[tuple[EdgeKey, float, list[int]]]:
    chosen: dict[tuple[int, int], tuple[EdgeKey, float, list[int]]] = {}
    for key, (weight, tokens) in grouped_edges(result).items():
        chosen.setdefault((key[1], key[2]), (key, weight, tokens))
    return list(chosen.values())


def one_edge_per_kind_side_and_reader_head(
    result: AccBatchResult,
) -> list[tuple[EdgeKey, float, list[int]]]:
    """As :func:`one_edge_per_kind_and_side`, once per reading head: with grouped-query
    attention, every key/value group's key edit is exercised."""
    heads = result.trace.firings.head
    chosen: dict[tuple[int, int, int], tuple[EdgeKey, float, list[int]]] = {}
    for key, (weight, tokens) in grouped_edges(result).items():
        chosen.setdefault((key[1], key[2], int(heads[key[0]])), (key, weight, tokens))
    return list(chosen.values())


def test_the_traced_edges_cover_both_sides_and_leaves(traced: AccBatchResult) -> None:
    found = {(side, kind) for (_, side, kind, _, _), _ in grouped_edges(traced).items()}
    assert {(DEST_SIDE, HEAD), (SOURCE_SIDE, HEAD)} <= found
    assert {kind for _, kind in found} >= {HEAD, MLP, EMBED}


@pytest.mark.parametrize("factor", [0.0, 2.0])
def test_local_intervention_equals_the_edge_weight_exactly(
    model: LoadedModel, traced: AccBatchResult, factor: float
) -> None:
    for key, weight, tokens in one_edge_per_kind_side_and_reader_head(traced):
        targets = targets_of(traced, key, weight, tokens)
        writer = AccWriter(key[2], key[3], key[4])
        effects = measure_acc_edges(
            model, targets, writer, mode="local", factor=factor, n_controls=2
        )
        # the clean RA read from hook_attn_scores is the firing's RA the trace computed
        clean = float(traced.trace.firings.relative[key[0]])
        assert float(effects.relative[0]) == pytest.approx(clean, rel=1e-5)
        measured = float(effects.signal_relative[0])
        assert float(effects.predicted_relative[0]) == pytest.approx((factor - 1.0) * weight)
        assert measured == pytest.approx((factor - 1.0) * weight, rel=1e-4, abs=1e-5), key


def test_global_mode_changes_nothing_at_factor_one_and_something_at_zero(
    model: LoadedModel, traced: AccBatchResult
) -> None:
    key, weight, tokens = next(
        item for item in one_edge_per_kind_and_side(traced) if item[0][2] == HEAD
    )
    targets = targets_of(traced, key, weight, tokens)
    writer = AccWriter(HEAD, key[3], key[4])
    same = measure_acc_edges(model, targets, writer, mode="global", factor=1.0, n_controls=1)
    assert float(same.signal_relative[0]) == pytest.approx(0.0, abs=1e-3)
    removed = measure_acc_edges(model, targets, writer, mode="global", n_controls=1)
    assert abs(float(removed.signal_relative[0])) > 0.1 * abs(weight)


def test_controls_are_other_components_of_the_same_kind() -> None:
    generator = torch.Generator().manual_seed(0)
    heads = control_writers(AccWriter(HEAD, 1, 2), 3, 4, 20, generator)
    assert all(c.kind == HEAD and c.layer < 3 and (c.layer, c.head) != (1, 2) for c in heads)
    mlps = control_writers(AccWriter(MLP, 1), 3, 4, 10, generator)
    assert {c.layer for c in mlps} <= {0, 2} and all(c.kind == MLP for c in mlps)
    assert control_writers(AccWriter(ATTN_BIAS, 0), 1, 4, 5, generator) == []  # the only one
    assert control_writers(AccWriter(EMBED), 3, 4, 5, generator) == []


def test_an_embedding_edge_has_no_control(model: LoadedModel, traced: AccBatchResult) -> None:
    key, weight, tokens = next(
        item for item in one_edge_per_kind_and_side(traced) if item[0][2] == EMBED
    )
    effects = measure_acc_edges(
        model, targets_of(traced, key, weight, tokens), AccWriter(EMBED), n_controls=3
    )
    summary = summarize_acc(effects)
    assert summary.n_controls == 0 and math.isnan(summary.control_relative_mean)
    assert math.isnan(summary.relative_ratio) and summary.signal_relative_mean != 0


def test_only_rotary_models_with_query_key_biases_are_refused(
    toy_model: LoadedModel, tiny_llama: LoadedModel
) -> None:
    # toy-ioi has query/key biases: read with a rotary frame, a rotated bias does not cancel
    assert bool(toy_model.bridge.b_Q.any())
    with pytest.raises(UnsupportedModelError, match="rotary positions and query/key biases"):
        refuse_rotated_qk_biases(toy_model.bridge, Rotary(10_000.0, toy_model.bridge.cfg.d_head))
    refuse_rotated_qk_biases(toy_model.bridge, None)  # its own absolute positions
    refuse_rotated_qk_biases(tiny_llama.bridge, model_rotary(tiny_llama.bridge.cfg))  # no biases
