"""Plain records that ingestion produces and :mod:`atlas.store` writes to Neo4j.

One frozen dataclass per node and relationship type of the graph model. Pure data: no I/O.
Model-scoped records (components, singular vectors) are shared by every run of a model;
run-scoped records (prompts, firings, edges, aggregates) carry ``run_id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ingest.sides import Side

ComponentKind = Literal["head", "mlp", "embed", "attn_bias", "logit_direction"]
RunStatus = Literal["running", "complete", "failed"]


def component_id(kind: ComponentKind, layer: int | None = None, head: int | None = None) -> str:
    """The id of a component within its model: ``"9.9"`` for a head, ``"mlp3"``, ``"attn_bias3"``,
    ``"embed"``, ``"logit_direction"`` (the IO − S direction ACC traces from)."""
    if kind == "head":
        return f"{layer}.{head}"
    return kind if layer is None else f"{kind}{layer}"


@dataclass(frozen=True)
class ModelRecord:
    """A transformer the atlas describes."""

    id: str
    n_layers: int
    n_heads: int
    d_model: int
    d_head: int


@dataclass(frozen=True)
class RunRecord:
    """One ingestion run with its provenance; ``params``/``dataset``/``versions`` are JSON-able."""

    id: str
    model_id: str
    model_revision: str | None
    method: str
    params: Mapping[str, object]
    dataset: Mapping[str, object]
    versions: Mapping[str, str]
    git_commit: str | None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    status: RunStatus = "running"


@dataclass(frozen=True)
class ComponentRecord:
    """An upstream writer or attention head; heads get the extra label ``:Head``."""

    model_id: str
    kind: ComponentKind
    layer: int | None = None
    head: int | None = None
    ioi_class: str | None = None

    @property
    def id(self) -> str:
        return component_id(self.kind, self.layer, self.head)


@dataclass(frozen=True)
class SingularVectorRecord:
    """Singular direction ``index`` of head (layer, head)'s augmented Ω, with its σ."""

    model_id: str
    layer: int
    head: int
    index: int
    sigma: float


@dataclass(frozen=True)
class AlignedRecord:
    """Two singular vectors of different heads that read the same residual direction.

    ``a`` is (layer, head, index) of the earlier head, ``b`` of the later one; ``side_a`` /
    ``side_b`` say which of each pair's vectors is meant (``q``: u_k, ``k``: v_k) and ``cos`` is
    their |cosine| on the residual coordinates (see :mod:`ingest.decomposition.alignment`).
    """

    model_id: str
    a: tuple[int, int, int]
    side_a: Side
    b: tuple[int, int, int]
    side_b: Side
    cos: float


@dataclass(frozen=True)
class PromptRecord:
    """An IOI prompt of a run; ``roles`` maps a role name (IO, S1, S2, END, ...) to a position.

    ``logit_diff``: the model's ``logit(IO) − logit(S)`` at END on this prompt (> 0: solved).
    """

    run_id: str
    idx: int
    text: str
    template: str
    order: str
    io: str
    s: str
    roles: Mapping[str, int]
    tokens: Sequence[str]
    logit_diff: float


@dataclass(frozen=True)
class SparseTerm:
    """One singular vector in a firing's sparse set: its rank in the sorted terms, value, sign."""

    index: int
    rank: int
    term: float
    sign: int


@dataclass(frozen=True)
class FiringRecord:
    """A strong attention decision dest→src of head (layer, head) in one prompt.

    SAD firings (``method`` None: SAD runs are stored as before) have ``score`` the raw
    score, ``n_svs`` and ``sparse_set`` of their Ω. ACC firings (``method = "acc"``, see
    :mod:`ingest.decomposition.acc`) have ``score`` = relative attention RA (the source side's
    total), ``n_svs`` = |S| of the source side, and per side the sparse set's singular-vector
    indices of that side's own Ω (``sparse_dest`` of Ω_d, ``sparse_source`` of Ω_s; no ``USES``
    links, which point at SAD's Ω), ``dest_total`` = D (``dest_total + query_bias = score``),
    ``n_svs_dest`` (0: D < 0, the side is not traced) and, for a seed, ``seed_weight``: its
    head component's share of the IO − S logit difference.
    """

    run_id: str
    prompt: int
    layer: int
    head: int
    dest: int
    src: int
    dest_role: str | None
    src_role: str | None
    attn: float
    score: float
    n_svs: int
    sparse_set: Sequence[SparseTerm] = ()
    method: str | None = None
    query_bias: float | None = None
    dest_total: float | None = None
    n_svs_dest: int | None = None
    sparse_dest: Sequence[int] | None = None
    sparse_source: Sequence[int] | None = None
    seed_weight: float | None = None

    @property
    def key(self) -> FiringKey:
        return FiringKey(self.run_id, self.prompt, self.layer, self.head, self.dest, self.src)


@dataclass(frozen=True)
class FiringKey:
    """What identifies a firing: (run_id, prompt, layer, head, dest, src)."""

    run_id: str
    prompt: int
    layer: int
    head: int
    dest: int
    src: int


@dataclass(frozen=True)
class WriteEdgeRecord:
    """Per-prompt communication: a writer component's contribution to one side of a firing.

    ``pos`` is the position written to (dest for ``q``, src for ``k``); ``role`` names it
    (``"other"`` when the position has no IOI role). ``parts[m]`` is the share of ``weight``
    carried by the singular vector the firing USES with rank m (``sum(parts) == weight``);
    empty when unknown. ``writer_pos`` (ACC): the source token the writing head read, its
    output ``A(pos, writer_pos) · v W_O`` being the component (None: the head's whole output,
    SAD, or a writer that is not a head), and ``writer_role`` names that token.
    """

    firing: FiringKey
    writer_layer: int | None
    writer_head: int | None
    side: Side
    weight: float
    pos: int
    role: str
    writer_kind: ComponentKind = "head"
    parts: Sequence[float] = ()
    writer_pos: int | None = None
    writer_role: str | None = None

    @property
    def writer_id(self) -> str:
        return component_id(self.writer_kind, self.writer_layer, self.writer_head)


@dataclass(frozen=True)
class CommunicatesRecord:
    """Aggregate communication writer → head over a run, counted by distinct prompts."""

    run_id: str
    writer_layer: int | None
    writer_head: int | None
    layer: int
    head: int
    side: Side
    role: str
    n_prompts: int
    mean_weight: float
    writer_kind: ComponentKind = "head"

    @property
    def writer_id(self) -> str:
        return component_id(self.writer_kind, self.writer_layer, self.writer_head)


@dataclass(frozen=True)
class ImportedCommunicatesRecord:
    """Aggregate communication writer → target of a run imported from a graph file.

    Unlike :class:`CommunicatesRecord` the target may be any component (the logit direction,
    say), and ``source`` holds the file's own fields, which are kept on the relationship as they
    are (:mod:`atlas.interchange.graphml` parses them; the store writes this record).
    """

    run_id: str
    writer_kind: ComponentKind
    writer_layer: int | None
    writer_head: int | None
    target_kind: ComponentKind
    target_layer: int | None
    target_head: int | None
    side: Side
    role: str
    n_prompts: int
    mean_weight: float
    source: Mapping[str, Any] = field(default_factory=dict)

    @property
    def writer_id(self) -> str:
        return component_id(self.writer_kind, self.writer_layer, self.writer_head)

    @property
    def target_id(self) -> str:
        return component_id(self.target_kind, self.target_layer, self.target_head)


@dataclass(frozen=True)
class BatchDone:
    """Marks batch ``index`` of a run as written, in the same transaction as its records."""

    run_id: str
    index: int


@dataclass(frozen=True)
class RecordBatch:
    """Records written together in one transaction (any field may be empty).

    With ``done`` set, the run remembers the batch as written, so a resumed job skips it.
    """

    components: Sequence[ComponentRecord] = ()
    singular_vectors: Sequence[SingularVectorRecord] = ()
    aligned: Sequence[AlignedRecord] = ()
    prompts: Sequence[PromptRecord] = ()
    firings: Sequence[FiringRecord] = ()
    edges: Sequence[WriteEdgeRecord] = ()
    communicates: Sequence[CommunicatesRecord] = ()
    done: BatchDone | None = None
