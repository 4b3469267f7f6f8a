"""The patching circuit of a run (``circuit-atlas patch``), stored in the atlas.

Data flow: the run's prompts (regenerated from its dataset parameters, as ``validate`` does)
and their ABC counterparts → batches through :func:`ingest.patching.methods.batch_scores` (the
maths) → running sums on a ``(:Patching)`` node after every batch → at the end one
``PATCH_EDGE`` relationship per edge of the component graph.

Graph model: ``(:Run)-[:HAS_PATCHING]->(p:Patching {run_id, method, metric})`` holds the
settings (``n_prompts``, ``ig_steps``, ``batch_size``), ``done`` (prompts scored so far),
``sums`` (score sums, graph order) and ``status`` (``running`` or ``complete``);
``(w:Component)-[:PATCH_EDGE {run_id, method, metric, writer, reader, side}]->(r:Component)``
carries ``score`` (mean over prompts, summed over positions), ``abs_score``, ``rank`` (1 = the
largest |score|) and ``n_prompts``. Both are unique on those keys and MERGEd, so re-running is
idempotent; a run with the same settings is read back (``rewrite`` recomputes), and an
interrupted one resumes at the first batch not saved.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from atlas.check.validation import model_run_prompts
from atlas.errors import AtlasError, ParameterError
from atlas.store.connection import explained_errors
from atlas.store.statements import (
    DELETE_PATCH_EDGES,
    PATCHING_STATE,
    SAVE_PATCHING,
    WRITE_PATCH_EDGES,
)
from atlas.store.store import AtlasStore
from ingest.models.loading import LoadedModel
from ingest.patching.graph import (
    EMBED,
    LOGIT,
    METHODS,
    METRICS,
    EdgeScores,
    Method,
    empty_scores,
    ranked,
)
from ingest.patching.methods import batch_scores
from ingest.prompts.ioi import tokenize_prompts
from ingest.records.build import ioi_class_of
from ingest.records.types import ComponentRecord

EDGE_CHUNK = 5000


@dataclass(frozen=True)
class PatchConfig:
    method: Method = "eap"
    metric: str = "logit-diff"
    n_prompts: int = 64
    ig_steps: int = 5
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ParameterError(f"--method must be one of {', '.join(METHODS)}.")
        if self.metric not in METRICS:
            raise ParameterError(f"--metric must be one of {', '.join(METRICS)}.")
        if self.n_prompts < 1 or self.batch_size < 1 or self.ig_steps < 1:
            raise ParameterError("--prompts, --batch-size and --ig-steps must be at least 1.")

    @property
    def settings(self) -> dict[str, Any]:
        steps = self.ig_steps if self.method == "eap-ig" else 1
        return {"n_prompts": self.n_prompts, "ig_steps": steps}


@dataclass(frozen=True)
class PatchSummary:
    run_id: str
    method: str
    metric: str
    n_prompts: int
    edges: int
    seconds: float
    status: str  # computed | resumed | stored
    top: list[tuple[str, str, str, float, int]]


def _query(store: AtlasStore, query: str, **parameters: Any) -> list[Any]:
    with explained_errors(store.settings):
        return store.driver.execute_query(
            query, parameters_=parameters, database_=store.database
        ).records


def patch_run(
    store: AtlasStore,
    model: LoadedModel,
    run_id: str,
    config: PatchConfig,
    *,
    rewrite: bool = False,
    show_progress: bool = True,
) -> PatchSummary:
    """Compute (or resume, or read back) the run's patching circuit and store it."""
    prompts = model_run_prompts(store, run_id, model)
    if config.n_prompts > len(prompts):
        raise ParameterError(
            f"Run '{run_id}' has {len(prompts)} prompts; ask for at most that many (--prompts)."
        )
    prompts = prompts[: config.n_prompts]
    store.init_schema()  # the Patching and PATCH_EDGE constraints, idempotently
    key = {"run_id": run_id, "method": config.method, "metric": config.metric}
    bridge = model.bridge
    n_layers, n_heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    state = _state(store, key)
    same = state is not None and all(state.get(k) == v for k, v in config.settings.items())
    if same and not rewrite and state is not None and state.get("status") == "complete":
        rows = _stored_top(store, key)
        return PatchSummary(
            run_id, config.method, config.metric, config.n_prompts, state["edges"], 0.0,
            "stored", rows,
        )  # fmt: skip
    sums = empty_scores(n_layers, n_heads)
    done = 0
    if same and not rewrite and state is not None:
        sums = torch.tensor(state["sums"], dtype=torch.float64).view(sums.shape)
        done = int(state["done"])
    status = "resumed" if done else "computed"
    started = time.perf_counter()
    bar = tqdm(
        total=len(prompts), initial=done, unit="prompt", desc=f"patch {config.method}",
        file=sys.stderr, disable=not show_progress,
    )  # fmt: skip
    try:
        for start in range(done, len(prompts), config.batch_size):
            chunk = prompts[start : start + config.batch_size]
            clean = tokenize_prompts(chunk, model.tokenizer, model.prepend_bos)
            corrupt = tokenize_prompts(chunk, model.tokenizer, model.prepend_bos, corrupted=True)
            sums = sums + batch_scores(bridge, clean, corrupt, config.method, config.ig_steps)
            done = start + len(chunk)
            _save(store, key, {**config.settings, "batch_size": config.batch_size,
                               "done": done, "sums": sums.flatten().tolist(),
                               "status": "running"})  # fmt: skip
            bar.update(len(chunk))
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    scores = EdgeScores(n_layers, n_heads, sums / len(prompts), len(prompts))
    rows = ranked(scores.edges())
    _write_edges(store, model, key, rows, len(prompts))
    _save(store, key, {"status": "complete", "edges": len(rows), "seconds": seconds})
    return PatchSummary(
        run_id, config.method, config.metric, len(prompts), len(rows), seconds, status, rows[:20]
    )


def _state(store: AtlasStore, key: dict[str, str]) -> dict[str, Any] | None:
    records = _query(store, PATCHING_STATE, **key)
    return dict(records[0]["state"]) if records else None


def _save(store: AtlasStore, key: dict[str, str], values: dict[str, Any]) -> None:
    records = _query(store, SAVE_PATCHING, values=values, **key)
    if not records or records[0]["written"] != 1:
        raise AtlasError(f"Could not save the patching progress of run '{key['run_id']}'.")


def _write_edges(
    store: AtlasStore,
    model: LoadedModel,
    key: dict[str, str],
    rows: Sequence[tuple[str, str, str, float, int]],
    n_prompts: int,
) -> None:
    model_id = store.run_model(key["run_id"])["model_id"]  # type: ignore[index]
    store.write_components(_components(model_id, model.n_layers, model.n_heads))
    _query(store, DELETE_PATCH_EDGES, **key)
    for start in range(0, len(rows), EDGE_CHUNK):
        chunk = [
            {"writer": w, "reader": r, "side": side, "score": score, "rank": rank}
            for w, r, side, score, rank in rows[start : start + EDGE_CHUNK]
        ]
        written = _query(
            store, WRITE_PATCH_EDGES, rows=chunk, model_id=model_id, n_prompts=n_prompts, **key
        )[0]["written"]
        if written != len(chunk):
            raise AtlasError(f"Only {written} of {len(chunk)} patching edges could be written.")


def _components(model_id: str, n_layers: int, n_heads: int) -> list[ComponentRecord]:
    found = [ComponentRecord(model_id, "embed"), ComponentRecord(model_id, "logit_direction")]
    for layer in range(n_layers):
        found += [
            ComponentRecord(model_id, "head", layer, h, ioi_class_of(model_id, f"{layer}.{h}"))
            for h in range(n_heads)
        ]
        found.append(ComponentRecord(model_id, "mlp", layer))
    assert found[0].id == EMBED and found[1].id == LOGIT
    return found


def _stored_top(store: AtlasStore, key: dict[str, str]) -> list[tuple[str, str, str, float, int]]:
    rows = store.read_template("patch_edges", top_k=20, threshold=None, **key)
    return [(r["writer"], r["reader"], r["side"], r["score"], r["rank"]) for r in rows]
