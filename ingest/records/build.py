"""Turn tensors into atlas records: the model's heads and singular vectors, a batch's prompts,
firings and per-prompt communication edges. Pure: no database, no printing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ingest.decomposition.alignment import AlignedPairs, ReadDirections
from ingest.decomposition.sad import QKSVD, SIDE_NAMES
from ingest.models.loading import DEFAULT_MODEL, ModelProvenance
from ingest.records.types import (
    AlignedRecord,
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

if TYPE_CHECKING:  # the pipeline builds records from its batches: no import at run time
    from ingest.pipeline import BatchResult

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


def batch_records(
    run_id: str, result: BatchResult, prompt_offset: int, tokenizer: Any
) -> RecordBatch:
    """Prompts, firings (with sparse sets) and edges of one batch; prompt ids are global."""
    labels = result.role_labels
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
