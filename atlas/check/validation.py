"""Causal validation of a circuit's edges (``circuit-atlas validate``), stored in the atlas.

Data flow: the circuit's edges (``circuit.cypher``, aggregated) → the top N by prompt support
→ per edge its downstream firings with their sparse sets (``edge_firings.cypher``) → the run's
prompts, regenerated from its stored dataset parameters and checked against the stored texts →
:func:`ingest.interventions.edits.measure_edges` (the maths) → one ``(:Validation)`` node per edge.

Graph model: ``(:Run)-[:HAS_VALIDATION]->(v:Validation)-[:OF_WRITER]->(:Component)`` and
``(v)-[:OF_HEAD]->(:Head)``; ``v`` is unique on (run_id, writer, head, side, role, dest_role,
src_role, mode, factor), the COMMUNICATES key plus the downstream roles and the intervention,
so an edge's global and local removal and its boost live side by side. Writing MERGEs on that
key, so re-running is idempotent; edges already validated with the same prompts, controls and
seed are skipped (``rewrite=True`` recomputes them), which makes an interrupted run resumable.

ACC runs (``method`` ``acc`` on the node) go through :mod:`ingest.interventions.edits_acc`
instead: an edge is (writer component → one side of the reader's firings), a head writer
keeping the source tokens it read in each prompt; the writer's output where the side reads it
is scaled by the factor, against random components of the same kind, and the change of the
firing's relative attention is stored beside its linear prediction (the edge's weight).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
from tqdm import tqdm

from atlas.ask.circuits import circuit_edges, fetch_circuit, parse_head
from atlas.errors import AtlasError, ParameterError, UnknownRunError
from atlas.store.connection import explained_errors
from atlas.store.schema import SCHEMA_VERSION
from atlas.store.store import AtlasStore
from ingest.decomposition.acc import DEST_SIDE, SOURCE_SIDE
from ingest.decomposition.activations import model_qk_svd
from ingest.decomposition.sad import QKSVD
from ingest.interventions.edits import MODES, FiringTargets, Mode, measure_edges, summarize
from ingest.interventions.edits_acc import (
    AccEdgeTargets,
    AccWriter,
    measure_acc_edges,
    summarize_acc,
)
from ingest.models.loading import LoadedModel
from ingest.prompts.ioi import IOIPrompt, generate_prompts
from ingest.records.types import Side
from ingest.tracing.components import ATTN_BIAS, EMBED, HEAD, MLP

WRITE_VALIDATION = """
MATCH (r:Run {id: $row.run_id})
MATCH (w:Component {model_id: r.model_id, id: $row.writer})
MATCH (h:Component {model_id: r.model_id, id: $row.head})
MERGE (v:Validation {run_id: $row.run_id, writer: $row.writer, head: $row.head, side: $row.side,
                     role: $row.role, dest_role: $row.dest_role, src_role: $row.src_role,
                     mode: $row.mode, factor: $row.factor})
SET v += $row.values, v.validated_at = datetime()
MERGE (r)-[:HAS_VALIDATION]->(v)
MERGE (v)-[:OF_WRITER]->(w)
MERGE (v)-[:OF_HEAD]->(h)
RETURN count(v) AS written
"""

# Checked first: reading properties no node has ever had makes Neo4j print warnings.
HAS_VALIDATIONS = "MATCH (v:Validation {run_id: $run_id}) RETURN count(v) > 0 AS found"


def unknown_run(run_id: str) -> UnknownRunError:
    return UnknownRunError(
        f"Run '{run_id}' is not in the atlas. `circuit-atlas runs list` shows them."
    )


@dataclass(frozen=True)
class ValidationConfig:
    """What ``validate`` does: which edges, which intervention, how many prompts and controls.

    ``factor`` 0 removes the signal, 2 doubles it; ``max_prompts`` caps the prompts per edge
    (the first ones by prompt index); ``n_controls`` random draws per prompt, seeded by ``seed``.
    """

    top: int = 10
    mode: Mode = "global"
    factor: float = 0.0
    max_prompts: int = 64
    n_controls: int = 5
    seed: int = 0
    batch_size: int = 16
    dest_role: str = "END"
    src_role: str = "IO"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ParameterError(f"--mode must be one of {', '.join(MODES)}, not '{self.mode}'.")
        if self.top < 1 or self.max_prompts < 1 or self.n_controls < 1:
            raise ParameterError("--top, --prompts and --controls must be at least 1.")


@dataclass(frozen=True)
class CircuitEdge:
    """An aggregated circuit edge: ``writer`` → head (layer, head) firing dest→src roles."""

    writer: str
    layer: int
    head: int
    side: Side
    role: str
    dest_role: str
    src_role: str
    support: int
    depth: int

    @property
    def head_id(self) -> str:
        return f"{self.layer}.{self.head}"

    @property
    def label(self) -> str:
        target = f"{self.head_id} {self.dest_role}→{self.src_role}"
        return f"{self.writer} →{self.side}@{self.role} {target}"


def top_edges(
    store: AtlasStore,
    run_id: str,
    root: str,
    top: int,
    dest_role: str = "END",
    src_role: str = "IO",
    heads_only: bool = True,
) -> list[CircuitEdge]:
    """The ``top`` edges of the root's circuit by prompt support (then depth, then |weight|);
    only head writers unless ``heads_only`` is False (SAD's interventions act on attention-head
    outputs; ACC's on any component)."""
    circuit = fetch_circuit(store, run_id, root, dest_role, src_role)
    records = [r for r in circuit_edges(circuit) if not heads_only or _is_head(r["writer"])]
    records.sort(key=lambda r: (-r["n_prompts"], r["depth"], -abs(r["mean_weight"])))
    edges = []
    for record in records[:top]:
        layer, head = parse_head(record["head"])
        edges.append(
            CircuitEdge(
                writer=record["writer"],
                layer=layer,
                head=head,
                side=record["side"],
                role=record["role"],
                dest_role=record["dest_role"],
                src_role=record["src_role"],
                support=record["n_prompts"],
                depth=record["depth"],
            )
        )
    return edges


def _is_head(component: str) -> bool:
    try:
        parse_head(component)
    except ValueError:
        return False
    return True


def _stored_dataset(store: AtlasStore, run_id: str) -> dict[str, Any]:
    summary = store.show_run(run_id)
    if summary is None:
        raise unknown_run(run_id)
    run = summary["run"]
    if run.get("read_only") or not run.get("dataset") or run.get("method") not in ("sad", "acc"):
        raise AtlasError(
            f"Run '{run_id}' has no prompts to re-run (an imported run, method "
            f"{run.get('method')}); validate, patch and faithfulness need a run made by "
            "`circuit-atlas ingest`."
        )
    return dict(json.loads(run["dataset"]))


def run_prompts(store: AtlasStore, run_id: str, tokenizer: Any = None) -> list[IOIPrompt]:
    """The run's prompts, regenerated from its stored dataset parameters (index = prompt idx).

    ``tokenizer``: the run's model's, whose single-token words the run's prompts were drawn
    from (the same prompts as without it when every word is one token, as for GPT-2).
    """
    dataset = _stored_dataset(store, run_id)
    return generate_prompts(
        dataset["n_prompts"], dataset["prompt_type"], seed=dataset["seed"], tokenizer=tokenizer
    )


def model_run_prompts(store: AtlasStore, run_id: str, model: LoadedModel) -> list[IOIPrompt]:
    """The run's prompts for its own model, to re-run them (``validate``, ``patch``,
    faithfulness): drawn from the model's tokenizer's words, and ``model.prepend_bos`` set as
    the run tokenized them (with or without BOS)."""
    prepend_bos = _stored_dataset(store, run_id).get("prepend_bos")
    if prepend_bos is not None:
        model.prepend_bos = bool(prepend_bos)
    return run_prompts(store, run_id, model.tokenizer)


def edge_targets(
    store: AtlasStore,
    run_id: str,
    edge: CircuitEdge,
    prompts: Sequence[IOIPrompt],
    max_prompts: int,
) -> tuple[FiringTargets, list[int]]:
    """The first ``max_prompts`` downstream firings of ``edge`` with their sparse sets, and
    the indices of their prompts."""
    rows = _edge_firing_rows(store, run_id, edge, prompts)
    seen: set[int] = set()
    chosen: list[dict[str, Any]] = []
    for row in rows:  # one firing per prompt (a head may fire twice at the same roles)
        if row["prompt"] not in seen and len(chosen) < max_prompts:
            seen.add(row["prompt"])
            chosen.append(row)
    targets = FiringTargets(
        layer=edge.layer,
        head=edge.head,
        prompts=[prompts[row["prompt"]] for row in chosen],
        dest=[row["dest"] for row in chosen],
        src=[row["src"] for row in chosen],
        sparse_sets=[row["sparse_set"] for row in chosen],
    )
    return targets, [row["prompt"] for row in chosen]


def acc_edge_targets(
    store: AtlasStore,
    run_id: str,
    edge: CircuitEdge,
    prompts: Sequence[IOIPrompt],
    max_prompts: int,
) -> tuple[AccEdgeTargets, list[int]]:
    """The first ``max_prompts`` downstream firings of an ACC ``edge`` (one per prompt), each
    with the source tokens a head writer read there and the edge's weight summed over them;
    and the indices of their prompts."""
    rows = _edge_firing_rows(store, run_id, edge, prompts)
    chosen: dict[int, list[dict[str, Any]]] = {}
    for row in rows:  # one firing per prompt (a head may fire twice at the same roles)
        same = chosen.get(row["prompt"])
        if same is None and len(chosen) < max_prompts:
            chosen[row["prompt"]] = [row]
        elif same is not None and (same[0]["dest"], same[0]["src"]) == (row["dest"], row["src"]):
            same.append(row)
    firings = list(chosen.values())
    targets = AccEdgeTargets(
        layer=edge.layer,
        head=edge.head,
        side=DEST_SIDE if edge.side == "q" else SOURCE_SIDE,
        prompts=[prompts[group[0]["prompt"]] for group in firings],
        dest=[group[0]["dest"] for group in firings],
        src=[group[0]["src"] for group in firings],
        writer_src=[
            [r["writer_pos"] for r in group if r["writer_pos"] is not None] for group in firings
        ],
        weight=[sum(r["weight"] for r in group) for group in firings],
    )
    return targets, list(chosen)


def acc_writer(component: str) -> AccWriter:
    """The :class:`AccWriter` of a component id (``"2.3"``, ``"mlp0"``, ``"attn_bias1"``,
    ``"embed"``)."""
    if _is_head(component):
        return AccWriter(HEAD, *parse_head(component))
    if component == "embed":
        return AccWriter(EMBED)
    for prefix, kind in (("attn_bias", ATTN_BIAS), ("mlp", MLP)):
        if component.startswith(prefix) and component[len(prefix) :].isdigit():
            return AccWriter(kind, int(component[len(prefix) :]))
    raise AtlasError(f"Component '{component}' is not a writer ACC can intervene on.")


def _edge_firing_rows(
    store: AtlasStore, run_id: str, edge: CircuitEdge, prompts: Sequence[IOIPrompt]
) -> list[dict[str, Any]]:
    """``edge_firings`` rows of the edge, their prompts checked against the regenerated ones."""
    rows = store.read_template(
        "edge_firings",
        run_id=run_id,
        writer=edge.writer,
        layer=edge.layer,
        head=edge.head,
        side=edge.side,
        role=edge.role,
        dest_role=edge.dest_role,
        src_role=edge.src_role,
    )
    for row in rows:
        if prompts[row["prompt"]].text != row["text"]:
            raise AtlasError(
                f"Prompt {row['prompt']} of run '{run_id}' differs from the one its dataset "
                "parameters generate now (the prompt generator changed); re-ingest the run."
            )
    return rows


def stored_validations(store: AtlasStore, run_id: str, mode: str | None = None) -> pd.DataFrame:
    """The ``validations`` template as a DataFrame (empty with its columns when none)."""
    from queries.templates import load_template

    rows = _validation_rows(store, run_id, mode)
    columns = [column.name for column in load_template("validations").returns]
    return pd.DataFrame(rows, columns=columns)


def validate_circuit(
    store: AtlasStore,
    model: LoadedModel,
    run_id: str,
    root: str,
    config: ValidationConfig,
    *,
    rewrite: bool = False,
    show_progress: bool = True,
) -> pd.DataFrame:
    """Validate the root's top edges and store each result; returns one row per edge.

    Edges already stored with the same prompts, controls and seed are read back instead of
    recomputed unless ``rewrite``. Columns: the edge, its support, the prompts used, the mean
    Δattention and ΔIO−S logit difference of the signal and the control, their ratios,
    ``seconds`` spent and ``status`` (``computed`` or ``stored``).
    """
    prompts = model_run_prompts(store, run_id, model)
    acc = (store.show_run(run_id) or {}).get("run", {}).get("method") == "acc"
    if store.schema_version() != SCHEMA_VERSION:  # the Validation constraint
        store.init_schema()
    edges = top_edges(
        store, run_id, root, config.top, config.dest_role, config.src_role, heads_only=not acc
    )
    stored = _stored_by_key(store, run_id, config)
    targets_of = acc_edge_targets if acc else edge_targets
    work = [
        (edge, *targets_of(store, run_id, edge, prompts, config.max_prompts))  # type: ignore[operator]
        for edge in edges
    ]
    todo = sum(
        len(t) for e, t, _ in work if rewrite or not _reusable(stored.get(_key(e)), t, config)
    )
    bar = tqdm(
        total=todo, unit="prompt", desc="validate", file=sys.stderr, disable=not show_progress
    )
    svd = None if acc else model_qk_svd(model.bridge)
    table = []
    try:
        for edge, targets, prompt_ids in work:
            previous = stored.get(_key(edge))
            if not rewrite and _reusable(previous, targets, config):
                assert previous is not None
                table.append(_table_row(edge, previous, "stored", 0.0))
                continue
            if len(targets) == 0:
                continue
            started = time.perf_counter()
            if acc:
                values = _measure_acc(model, edge, targets, config, bar.update)
            else:
                assert svd is not None
                values = _measure_sad(model, svd, edge, targets, config, bar.update)
            seconds = time.perf_counter() - started
            values |= {
                "support": edge.support,
                "seed": config.seed,
                "max_prompts": config.max_prompts,
                "batch_size": config.batch_size,
                "seconds": seconds,
                "prompts": prompt_ids,
            }
            _write(store, run_id, edge, config, values)
            table.append(_table_row(edge, values, "computed", seconds))
    finally:
        bar.close()
    return pd.DataFrame(table)


def _measure_sad(
    model: LoadedModel,
    svd: QKSVD,
    edge: CircuitEdge,
    targets: FiringTargets,
    config: ValidationConfig,
    progress: Callable[[int], None],
) -> dict[str, Any]:
    """Remove (or boost) a SAD edge's signal; the values a Validation node stores."""
    effects = measure_edges(
        model,
        svd,
        targets,
        [parse_head(edge.writer)],
        edge.side,
        mode=config.mode,
        factor=config.factor,
        n_controls=config.n_controls,
        seed=config.seed,
        batch_size=config.batch_size,
        progress=progress,
    )
    return _stored_values(asdict(summarize(effects)), "sad", effects)


def _measure_acc(
    model: LoadedModel,
    edge: CircuitEdge,
    targets: AccEdgeTargets,
    config: ValidationConfig,
    progress: Callable[[int], None],
) -> dict[str, Any]:
    """Scale an ACC edge's writer where the side reads it; the values a Validation node stores
    (the SAD ones, and the relative attention's with the linear prediction)."""
    effects = measure_acc_edges(
        model,
        targets,
        acc_writer(edge.writer),
        mode=config.mode,
        factor=config.factor,
        n_controls=config.n_controls,
        seed=config.seed,
        batch_size=config.batch_size,
        progress=progress,
    )
    return {
        **_stored_values(asdict(summarize_acc(effects)), "acc", effects),
        "predicted_relative": effects.predicted_relative.tolist(),
        "signal_relative": effects.signal_relative.tolist(),
        "control_relative": effects.control_relative.mean(1).tolist(),
    }


def _stored_values(summary: dict[str, Any], method: str, effects: Any) -> dict[str, Any]:
    """What a Validation node stores of any method: the summary, per-prompt signal effects
    and per-prompt control effects averaged over the controls."""
    return {
        **summary,
        "method": method,
        "signal_attention": effects.signal_attention.tolist(),
        "signal_logit": effects.signal_logit.tolist(),
        "control_attention": effects.control_attention.mean(1).tolist(),
        "control_logit": effects.control_logit.mean(1).tolist(),
    }


EdgeKey = tuple[str, str, str, str, str, str]


def _key(edge: CircuitEdge | dict[str, Any]) -> EdgeKey:
    if isinstance(edge, CircuitEdge):
        return (edge.writer, edge.head_id, edge.side, edge.role, edge.dest_role, edge.src_role)
    return tuple(edge[k] for k in ("writer", "head", "side", "role", "dest_role", "src_role"))  # type: ignore[return-value]


def _stored_by_key(
    store: AtlasStore, run_id: str, config: ValidationConfig
) -> dict[EdgeKey, dict[str, Any]]:
    rows = _validation_rows(store, run_id, config.mode)
    return {_key(row): row for row in rows if row["factor"] == config.factor}


def _validation_rows(store: AtlasStore, run_id: str, mode: str | None) -> list[dict[str, Any]]:
    with explained_errors(store.settings):
        found = store.driver.execute_query(
            HAS_VALIDATIONS, run_id=run_id, database_=store.database, routing_="r"
        ).records[0]["found"]
    return store.read_template("validations", run_id=run_id, mode=mode) if found else []


def _reusable(
    previous: dict[str, Any] | None,
    targets: FiringTargets | AccEdgeTargets,
    config: ValidationConfig,
) -> bool:
    if previous is None:
        return False
    # an ACC writer without a component of its kind to draw (the embedding) has no control
    # whatever the number asked for
    no_control = previous["method"] == "acc" and previous["n_controls"] == 0
    return (
        previous["n_prompts"] == len(targets)
        and (previous["n_controls"] == config.n_controls or no_control)
        and previous.get("seed", config.seed) == config.seed
    )


def _write(
    store: AtlasStore, run_id: str, edge: CircuitEdge, config: ValidationConfig, values: dict
) -> None:
    row = {
        "run_id": run_id,
        "writer": edge.writer,
        "head": edge.head_id,
        "side": edge.side,
        "role": edge.role,
        "dest_role": edge.dest_role,
        "src_role": edge.src_role,
        "mode": config.mode,
        "factor": float(config.factor),
        "values": values,
    }
    with explained_errors(store.settings):
        records = store.driver.execute_query(
            WRITE_VALIDATION, row=row, database_=store.database
        ).records
    if not records or records[0]["written"] != 1:
        raise AtlasError(f"Could not store the validation of {edge.label} in run '{run_id}'.")


def _table_row(edge: CircuitEdge, values: dict[str, Any], status: str, seconds: float) -> dict:
    return {
        "edge": edge.label,
        "support": edge.support,
        "prompts": values["n_prompts"],
        "dA_signal": values["signal_attention_mean"],
        "dA_control": values["control_attention_mean"],
        "A_ratio": values["attention_ratio"],
        "dLD_signal": values["signal_logit_mean"],
        "dLD_control": values["control_logit_mean"],
        "LD_ratio": values["logit_ratio"],
        **(
            {
                "dRA_predicted": values["predicted_relative_mean"],
                "dRA_signal": values["signal_relative_mean"],
                "dRA_control": values["control_relative_mean"],
                "RA_ratio": values["relative_ratio"],
            }
            if values.get("method") == "acc"
            else {}
        ),
        "seconds": seconds,
        "status": status,
    }


def format_table(table: pd.DataFrame) -> str:
    """The validation table as aligned text (Δ means with 3 decimals, ratios with 1)."""
    if table.empty:
        return "No edges to validate."
    formats = {
        "dA_signal": "{:+.3f}".format,
        "dA_control": "{:+.4f}".format,
        "A_ratio": "{:.1f}×".format,
        "dLD_signal": "{:+.3f}".format,
        "dLD_control": "{:+.4f}".format,
        "LD_ratio": "{:.1f}×".format,
        "dRA_predicted": "{:+.3f}".format,
        "dRA_signal": "{:+.3f}".format,
        "dRA_control": "{:+.4f}".format,
        "RA_ratio": "{:.1f}×".format,
        "seconds": "{:.1f}".format,
    }
    return table.to_string(index=False, formatters=formats)  # type: ignore[arg-type]


def run_model_id(store: AtlasStore, run_id: str) -> tuple[str, int]:
    """The run's model id and the seed random models were built with (its dataset seed)."""
    summary = store.show_run(run_id)
    if summary is None:
        raise unknown_run(run_id)
    dataset = json.loads(summary["run"].get("dataset") or "{}")
    return summary["run"]["model_id"], int(dataset.get("seed", 0))
