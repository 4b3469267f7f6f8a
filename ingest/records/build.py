"""Turn tensors into atlas records: the model's heads and singular vectors, a batch's prompts,
firings and per-prompt communication edges. Pure: no database, no printing."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ingest.decomposition.acc import DEST_SIDE, SOURCE_SIDE
from ingest.decomposition.alignment import AlignedPairs, ReadDirections
from ingest.decomposition.sad import QKSVD
from ingest.models.loading import DEFAULT_MODEL, ModelProvenance
from ingest.records.types import (
    AlignedRecord,
    ComponentKind,
    ComponentRecord,
    FiringRecord,
    ModelRecord,
    PromptRecord,
    RecordBatch,
    Side,
    SingularVectorRecord,
    SparseTerm,
    WriteEdgeRecord,
)
from ingest.sides import SIDE_NAMES
from ingest.tracing.components import COMPONENT_KINDS

if TYPE_CHECKING:  # the pipeline builds records from its batches: no import at run time
    from ingest.pipeline import AccBatchResult, BatchResult

# Wang et al. (2022), "Interpretability in the Wild": IOI circuit classes of GPT-2 small heads.
GPT2_IOI_CLASSES: dict[str, tuple[str, ...]] = {
    "duplicate token": ("0.1", "0.10", "3.0"),
    "previous token": ("2.2", "4.11"),
    "induction": ("5.5", "5.8", "5.9", "6.9"),
    "S-inhibition": ("7.3", "7.9", "8.6", "8.10"),
    "name mover": ("9.9", "9.6", "10.0"),
    "backup name mover": ("10.10", "10.6", "10.2", "10.1", "11.2", "9.7", "9.0", "11.9"),
    "negative name mover": ("10.7", "11.10"),
}


def ioi_class_of(model_id: str, head_id: str) -> str | None:
    """The head's IOI circuit class when the model is GPT-2 small and the head is known."""
    if model_id != DEFAULT_MODEL:
        return None
    for ioi_class, heads in GPT2_IOI_CLASSES.items():
        if head_id in heads:
            return ioi_class
    return None


def model_record(provenance: ModelProvenance) -> ModelRecord:
    return ModelRecord(
        id=provenance.model_id,
        n_layers=provenance.n_layers,
        n_heads=provenance.n_heads,
        d_model=provenance.d_model,
        d_head=provenance.d_head,
    )


def model_component_records(provenance: ModelProvenance, svd: QKSVD) -> RecordBatch:
    """Every head (with its IOI class when known) and every head's singular values σ_k."""
    model_id = provenance.model_id
    heads = [
        ComponentRecord(
            model_id, "head", layer, head, ioi_class=ioi_class_of(model_id, f"{layer}.{head}")
        )
        for layer in range(provenance.n_layers)
        for head in range(provenance.n_heads)
    ]
    sigma = svd.sigma.tolist()
    vectors = [
        SingularVectorRecord(model_id, layer, head, index, value)
        for layer, per_layer in enumerate(sigma)
        for head, per_head in enumerate(per_layer)
        for index, value in enumerate(per_head)
    ]
    return RecordBatch(components=heads, singular_vectors=vectors)


def aligned_records(
    model_id: str, directions: ReadDirections, pairs: AlignedPairs
) -> list[AlignedRecord]:
    """One record per aligned pair, ``a`` being the earlier head (pairs come ordered so)."""

    def end(i: int) -> tuple[tuple[int, int, int], Side]:
        key = (int(directions.layer[i]), int(directions.head[i]), int(directions.index[i]))
        return key, SIDE_NAMES[int(directions.side[i])]

    records = []
    for a, b, cos in zip(pairs.a.tolist(), pairs.b.tolist(), pairs.cos.tolist(), strict=True):
        (key_a, side_a), (key_b, side_b) = end(a), end(b)
        records.append(AlignedRecord(model_id, key_a, side_a, key_b, side_b, cos))
    return records


def prompt_records(
    run_id: str, result: BatchResult | AccBatchResult, prompt_offset: int, tokenizer: Any
) -> list[PromptRecord]:
    """The batch's prompts with their roles and tokens; ids are global."""
    batch = result.batch
    roles = {name: positions.tolist() for name, positions in batch.roles.items()}
    prompts = []
    for b, prompt in enumerate(result.prompts):
        ids = batch.tokens[b, : int(batch.lengths[b])].tolist()
        prompts.append(
            PromptRecord(
                run_id=run_id,
                idx=prompt_offset + b,
                text=prompt.text,
                template=prompt.template,
                order=prompt.order,
                io=prompt.io,
                s=prompt.s,
                roles={name: positions[b] for name, positions in roles.items()},
                tokens=[tokenizer.decode([token]) for token in ids],
                logit_diff=float(result.logit_diff[b]),
            )
        )
    return prompts


def batch_records(
    run_id: str, result: BatchResult, prompt_offset: int, tokenizer: Any
) -> RecordBatch:
    """Prompts, firings (with sparse sets) and edges of one batch; prompt ids are global."""
    labels = result.role_labels
    prompts = prompt_records(run_id, result, prompt_offset, tokenizer)
    f = result.firings.to("cpu")
    columns = zip(
        f.prompt.tolist(),
        f.layer.tolist(),
        f.head.tolist(),
        f.dest.tolist(),
        f.src.tolist(),
        f.attention.tolist(),
        f.score.tolist(),
        f.n_svs.tolist(),
        f.sv_order.tolist(),
        f.sorted_terms.tolist(),
        f.signs.tolist(),
        strict=True,
    )
    firings = []
    for prompt, layer, head, dest, src, attn, score, n_svs, order, terms, signs in columns:
        sparse_set = tuple(
            SparseTerm(index=order[m], rank=m, term=terms[m], sign=int(signs[m]))
            for m in range(n_svs)
        )
        firings.append(
            FiringRecord(
                run_id=run_id,
                prompt=prompt_offset + prompt,
                layer=layer,
                head=head,
                dest=dest,
                src=src,
                dest_role=labels[prompt][dest],
                src_role=labels[prompt][src],
                attn=attn,
                score=score,
                n_svs=n_svs,
                sparse_set=sparse_set,
            )
        )
    edges = []
    if result.edges is not None:
        e = result.edges
        for firing, writer_layer, writer_head, side, pos, weight, parts in zip(
            e.firing.tolist(),
            e.writer_layer.tolist(),
            e.writer_head.tolist(),
            e.side.tolist(),
            e.pos.tolist(),
            e.weight.tolist(),
            e.parts.tolist(),
            strict=True,
        ):
            downstream = firings[firing]
            edges.append(
                WriteEdgeRecord(
                    firing=downstream.key,
                    writer_layer=writer_layer,
                    writer_head=writer_head,
                    side=SIDE_NAMES[side],
                    weight=weight,
                    pos=pos,
                    role=labels[downstream.prompt - prompt_offset][pos],
                    parts=tuple(parts[: downstream.n_svs]),
                )
            )
    return RecordBatch(prompts=prompts, firings=firings, edges=edges)


# ACC sides as the atlas names them: the destination (query) side is q, the source (key) side k
ACC_SIDES: dict[int, Side] = {DEST_SIDE: "q", SOURCE_SIDE: "k"}
_ACC_KINDS: dict[str, ComponentKind] = {
    "embed": "embed",
    "attn_bias": "attn_bias",
    "mlp": "mlp",
    "head": "head",
}


def acc_batch_records(
    run_id: str,
    result: AccBatchResult,
    prompt_offset: int,
    tokenizer: Any,
    model_id: str,
    all_firings: bool = False,
) -> RecordBatch:
    """Prompts, ACC firings (method ``acc``) and component edges of one batch.

    Firings stored: those traced from the answer's seeds (all above-uniform firings with
    ``all_firings``; the others then have no edges). An edge's writer is a head, which keeps the
    source token it read (``writer_pos``), or a leaf ``mlp``/``attn_bias`` (per layer) or
    ``embed``; the logit direction is written as a component for the run's answer edges
    (aggregated from the seeds' ``seed_weight`` when the run completes).
    """
    labels = result.role_labels
    prompts = prompt_records(run_id, result, prompt_offset, tokenizer)
    trace = result.trace
    keep = trace.traced if not all_firings else trace.traced | True
    rows = keep.nonzero(as_tuple=True)[0].cpu()
    f = trace.firings.to("cpu")
    stored = {int(r): n for n, r in enumerate(rows.tolist())}
    seed_weight = trace.seed_weight.cpu().tolist()
    columns = zip(
        rows.tolist(),
        f.prompt[rows].tolist(),
        f.layer[rows].tolist(),
        f.head[rows].tolist(),
        f.dest[rows].tolist(),
        f.src[rows].tolist(),
        f.attention[rows].tolist(),
        f.relative[rows].tolist(),
        f.query_bias[rows].tolist(),
        f.total[rows, DEST_SIDE].tolist(),
        f.n_svs[rows].tolist(),
        f.sv_order[rows].tolist(),
        strict=True,
    )
    firings = []
    for row, prompt, layer, head, dest, src, attn, ra, beta, d_total, n_svs, order in columns:
        weight = seed_weight[row]
        firings.append(
            FiringRecord(
                run_id=run_id,
                prompt=prompt_offset + prompt,
                layer=layer,
                head=head,
                dest=dest,
                src=src,
                dest_role=labels[prompt][dest],
                src_role=labels[prompt][src],
                attn=attn,
                score=ra,
                n_svs=n_svs[SOURCE_SIDE],
                method="acc",
                query_bias=beta,
                dest_total=d_total,
                n_svs_dest=n_svs[DEST_SIDE],
                sparse_dest=tuple(order[DEST_SIDE][: n_svs[DEST_SIDE]]),
                sparse_source=tuple(order[SOURCE_SIDE][: n_svs[SOURCE_SIDE]]),
                seed_weight=None if math.isnan(weight) else weight,
            )
        )
    e = trace.edges
    edges = []
    for firing, side, kind, layer, head, src_pos, pos, weight in zip(
        e.firing.tolist(),
        e.side.tolist(),
        e.kind.tolist(),
        e.layer.tolist(),
        e.head.tolist(),
        e.src_pos.tolist(),
        e.pos.tolist(),
        e.weight.tolist(),
        strict=True,
    ):
        downstream = firings[stored[firing]]
        writer_kind = _ACC_KINDS[COMPONENT_KINDS[kind]]
        is_head = writer_kind == "head"
        prompt_labels = labels[downstream.prompt - prompt_offset]
        edges.append(
            WriteEdgeRecord(
                firing=downstream.key,
                writer_layer=None if writer_kind == "embed" else layer,
                writer_head=head if is_head else None,
                side=ACC_SIDES[side],
                weight=weight,
                pos=pos,
                role=prompt_labels[pos],
                writer_kind=writer_kind,
                writer_pos=src_pos if is_head else None,
                writer_role=prompt_labels[src_pos] if is_head else None,
            )
        )
    logit = ComponentRecord(model_id, "logit_direction")
    return RecordBatch(components=[logit], prompts=prompts, firings=firings, edges=edges)
