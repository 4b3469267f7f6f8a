"""``circuit-atlas compare-circuits``: an atlas circuit against a patching or reference circuit.

Reads the atlas circuit of a root (``circuit.cypher``), the run's stored validations (for the
causally pruned circuit), and the circuit it is compared against: a patching circuit
(``patch_edges.cypher``, stored by ``circuit-atlas patch``) or a published reference circuit
(``reference_circuit.cypher``, seeded here for GPT-2 small). The maths is in
:mod:`atlas.check.comparison`; faithfulness, when a model is given, in
:mod:`ingest.patching.exact`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from atlas.ask.circuits import (
    LOGIT_ROOT,
    circuit_edges,
    fetch_circuit,
    parse_head,
    seed_heads,
)
from atlas.check.comparison import (
    Circuit,
    CurvePoint,
    atlas_circuit,
    curve,
    default_sizes,
    patching_circuit,
    pruned_circuit,
    reference_circuit,
)
from atlas.check.validation import model_run_prompts, stored_validations
from atlas.errors import AtlasError, ParameterError
from atlas.store.connection import explained_errors
from atlas.store.statements import SEED_REFERENCE_CIRCUIT
from atlas.store.store import AtlasStore
from ingest.models.loading import DEFAULT_MODEL
from ingest.patching.graph import METHODS
from ingest.records.build import GPT2_IOI_CLASSES
from ingest.tracing.circuits import Scores, score_sets

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ingest.models.loading import LoadedModel

REFERENCES = {
    "wang2022-ioi": (
        DEFAULT_MODEL,
        GPT2_IOI_CLASSES,
        "Wang et al. (2022), Interpretability in the Wild: the IOI circuit of GPT-2 small",
    )
}


@dataclass(frozen=True)
class Against:
    kind: str  # patch | reference
    name: str

    @staticmethod
    def parse(text: str) -> Against:
        kind, _, name = text.partition(":")
        if kind == "patch" and name in METHODS:
            return Against(kind, name)
        if kind == "reference" and name in REFERENCES:
            return Against(kind, name)
        raise ParameterError(
            f"--against must be patch:METHOD ({', '.join(METHODS)}) or reference:NAME "
            f"({', '.join(REFERENCES)}), not '{text}'."
        )


@dataclass(frozen=True)
class Row:
    circuit: Circuit
    heads: Scores
    edges: Scores | None
    faithfulness: float | None = None


@dataclass(frozen=True)
class Comparison:
    run_id: str
    root: str
    reference: Circuit
    rows: list[Row]
    curves: dict[str, list[CurvePoint]] = field(default_factory=dict)
    reference_faithfulness: float | None = None


def seed_reference(store: AtlasStore, name: str) -> Circuit:
    """Write the reference circuit into the atlas (idempotent) and read it back."""
    model_id, classes, source = REFERENCES[name]
    heads = []
    for ioi_class, members in classes.items():
        for head in members:
            layer, index = parse_head(head)
            heads.append({"id": head, "layer": layer, "head": index, "class": ioi_class})
    with explained_errors(store.settings):
        store.driver.execute_query(
            SEED_REFERENCE_CIRCUIT, id=name, model_id=model_id, source=source, task="ioi",
            heads=heads, database_=store.database,
        )  # fmt: skip
    rows = store.read_template("reference_circuit", model_id=model_id, id=name)
    return reference_circuit(name, {"all": [row["head"] for row in rows]})


def compare_circuits(
    store: AtlasStore,
    run_id: str,
    root: str,
    against: Against,
    *,
    top_k: int | None = None,
    threshold: float | None = None,
    ratio: float = 2.0,
    dest_role: str = "END",
    src_role: str = "IO",
    model: LoadedModel | None = None,
    n_prompts: int = 64,
    min_prompts: int = 1,
) -> Comparison:
    """P/R/F1 of the run's atlas circuit of ``root`` and its causally pruned circuit against
    ``against``; with ``model``, the faithfulness of every circuit on the first prompts.

    ``root`` is a head (``"3.1"``, its firings ``dest_role → src_role``) or, on an ACC run,
    :data:`LOGIT_ROOT`: the circuit of the IO−S logit direction, every seed firing a root (the
    roles do not apply), its heads every seed head and the heads of the seeds' circuits, and
    its pruned circuit without a root head. The atlas circuit keeps the edges seen in at least
    ``min_prompts`` prompts, traversed from the roots in that many prompts (and, for the logit
    direction, the seed heads that are seeds in that many prompts). The pruned circuit is
    built from every global removal ``validate`` stored for the run.
    """
    if top_k is None and threshold is None and against.kind == "patch":
        raise ParameterError("Give the patching circuit's size: --top-k N or --threshold X.")
    circuit = fetch_circuit(store, run_id, root, dest_role, src_role)
    logit = root == LOGIT_ROOT
    roots = {root}
    if logit:
        seeds = seed_heads(store, run_id)
        roots = {head for head, prompts in seeds.items() if prompts >= min_prompts}
    records = circuit_edges(circuit, min_prompts=min_prompts)
    atlas = atlas_circuit(_atlas_name(root, min_prompts), roots, records)
    validations = stored_validations(store, run_id, mode="global")
    removals = validations[validations["factor"] == 0].to_dict("records")
    pruned = pruned_circuit(f"pruned ×{ratio:g}", set() if logit else {root}, removals, ratio)
    predicted = [atlas, pruned] if removals else [atlas]
    curves: dict[str, list[CurvePoint]] = {}
    if against.kind == "patch":
        rows = _patch_rows(store, run_id, against.name)
        reference = patching_circuit(f"patch:{against.name}", rows, top_k, threshold)
        sizes = default_sizes(len(rows))
        curves = {c.name: curve(c, rows, sizes) for c in predicted}
    else:
        reference = seed_reference(store, against.name)
    table = [
        Row(
            c,
            score_sets(c.heads, reference.heads),
            score_sets(c.edges, reference.edges) if reference.edges else None,
        )
        for c in predicted
    ]
    reference_faithfulness = None
    if model is not None:
        runs = _pair_runs(store, model, run_id, n_prompts)
        table = [
            Row(r.circuit, r.heads, r.edges, _faithfulness(model, runs, r.circuit)) for r in table
        ]
        reference_faithfulness = _faithfulness(model, runs, reference)
    return Comparison(run_id, root, reference, table, curves, reference_faithfulness)


def _atlas_name(root: str, min_prompts: int) -> str:
    name = f"atlas {root}"
    return name if min_prompts == 1 else f"{name} (edges in ≥ {min_prompts} prompts)"


def _patch_rows(store: AtlasStore, run_id: str, method: str) -> list[dict[str, Any]]:
    rows = store.read_template("patch_edges", run_id=run_id, method=method)
    if not rows:
        raise AtlasError(
            f"Run '{run_id}' has no {method} patching circuit yet: run `circuit-atlas patch "
            f"--run {run_id} --method {method}` first."
        )
    return rows


def _pair_runs(store: AtlasStore, model: LoadedModel, run_id: str, n_prompts: int) -> list[Any]:
    from ingest.patching.exact import pair_run
    from ingest.prompts.ioi import tokenize_prompts

    prompts = model_run_prompts(store, run_id, model)[:n_prompts]
    runs = []
    for start in range(0, len(prompts), 16):
        chunk = prompts[start : start + 16]
        runs.append(
            pair_run(
                model.bridge,
                tokenize_prompts(chunk, model.tokenizer, model.prepend_bos),
                tokenize_prompts(chunk, model.tokenizer, model.prepend_bos, corrupted=True),
            )
        )
    return runs


def _faithfulness(model: LoadedModel, runs: Sequence[Any], circuit: Circuit) -> float:
    from ingest.patching.exact import faithfulness

    return faithfulness(model.bridge, runs, circuit.heads).recovered


def comparison_table(comparison: Comparison) -> list[dict[str, Any]]:
    """One row per compared circuit (and the reference's own faithfulness last)."""
    rows = []
    for row in comparison.rows:
        record: dict[str, Any] = {
            "circuit": row.circuit.name,
            "heads": len(row.circuit.heads),
            "precision": row.heads.precision,
            "recall": row.heads.recall,
            "f1": row.heads.f1,
        }
        if row.edges is not None:
            record |= {
                "edge_precision": row.edges.precision,
                "edge_recall": row.edges.recall,
                "edge_f1": row.edges.f1,
            }
        if row.faithfulness is not None:
            record["faithfulness"] = row.faithfulness
        rows.append(record)
    if comparison.reference_faithfulness is not None:
        rows.append(
            {
                "circuit": comparison.reference.name,
                "heads": len(comparison.reference.heads),
                "faithfulness": comparison.reference_faithfulness,
            }
        )
    return rows


def curve_figure(comparison: Comparison) -> Figure:
    """Head precision, recall and F1 of each compared circuit over patching-circuit sizes."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    styles = {"precision": ":", "recall": "--", "f1": "-"}
    for index, (name, points) in enumerate(comparison.curves.items()):
        color = f"C{index}"
        sizes = [p.size for p in points]
        for metric, style in styles.items():
            values = [getattr(p, metric) for p in points]
            axis.plot(sizes, values, style, color=color, marker="o", ms=3, label=f"{name} {metric}")
    axis.set_xscale("log")
    axis.set_ylim(0, 1.05)
    axis.set_xlabel(f"patching circuit size (top k edges of {comparison.reference.name})")
    axis.set_ylabel("heads: precision / recall / F1")
    root = "the IO−S logit" if comparison.root == LOGIT_ROOT else comparison.root
    axis.set_title(f"Run {comparison.run_id}: atlas circuit of {root} vs patching")
    axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    return figure
