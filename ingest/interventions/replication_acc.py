"""The ACC paper's GPT-2 IOI graph re-traced in memory and compared with its numbers: pure.

Franco & Crovella, *Pinpointing Attention-Causal Communication in Language Models* (NeurIPS
2025), aggregated GPT-2 small IOI graph (θ = 0.5) and per-prompt graphs. Our run: ACC on 256
mixed IOI prompts (seed 0) through :func:`ingest.pipeline.process_acc_batch`, nothing written.

How ours is counted (from each batch's :class:`~ingest.tracing.acc_circuit.AccTrace`):

* "root fed by X in N prompts": prompts in which head X's firing (END, IO) is a seed;
* "X's destination (source) side fed by ...": over X's traced firings at the given roles,
  the writers with an edge into that side, ranked by the prompts they appear in; a head writer
  is named ``l.h (pos role, source-token role)``, a leaf ``mlp0 (role)``;
* per-prompt graph size: nodes are the traced firings, the leaf writers (kind, layer,
  position) and the root; edges the distinct (writer, firing, side) edges plus the seeds';
  heads are the distinct heads with a traced firing;
* modes of |S| per head: over the head's traced firings, the source side's |S|.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from ingest.decomposition.acc import DEST_SIDE, SOURCE_SIDE, AccFiringRule
from ingest.models.loading import LoadedModel
from ingest.pipeline import AccBatchResult, chunks, process_acc_batch
from ingest.prompts.ioi import generate_prompts
from ingest.tracing.acc_circuit import model_acc_svd
from ingest.tracing.components import COMPONENT_KINDS, HEAD


@dataclass(frozen=True)
class AccPaperValue:
    quantity: str
    paper: int | float | str


ACC_PAPER = {
    "root_9.9": AccPaperValue("prompts where 9.9 (END, IO) feeds the IO−S root", 221),
    "root_9.6": AccPaperValue("prompts where 9.6 (END, IO) feeds the IO−S root", 146),
    "root_10.0": AccPaperValue("prompts where 10.0 (END, IO) feeds the IO−S root", 127),
    "dest_9.9": AccPaperValue(
        "9.9 (END, IO) destination side fed by", "8.6 (END, S2), 7.9 (END, S2)"
    ),
    "source_9.9": AccPaperValue("9.9 (END, IO) source side fed by", "mlp0 (IO)"),
    "source_8.6": AccPaperValue("8.6 (END, S2) source side fed by", "5.5 (S2, S1+1), 3.0 (S2, S1)"),
    "source_5.5": AccPaperValue("5.5 (S2, S1+1) source side fed by", "4.11 (S1+1, S1), 3.7, 2.2"),
    "nodes": AccPaperValue("mean nodes per prompt graph", 205.0),
    "edges": AccPaperValue("mean edges per prompt graph", 639.0),
    "heads": AccPaperValue("mean distinct heads per prompt graph", 55.0),
    "mode_4.11": AccPaperValue("mode of |S| of 4.11 (of 64)", 3.0),
    "mode_8.6": AccPaperValue("mode of |S| of 8.6 (of 64)", 9.5),
    "mode_9.9": AccPaperValue("mode of |S| of 9.9 (of 64)", 16.0),
    "mode_9.6": AccPaperValue("mode of |S| of 9.6 (of 64)", 26.0),
}
# (key, head, dest role, src role, side, how many writers the paper names)
_FEEDS = [
    ("dest_9.9", (9, 9), "END", "IO", DEST_SIDE, 2),
    ("source_9.9", (9, 9), "END", "IO", SOURCE_SIDE, 1),
    ("source_8.6", (8, 6), "END", "S2", SOURCE_SIDE, 2),
    ("source_5.5", (5, 5), "S2", "S1+1", SOURCE_SIDE, 3),
]
_MODES = {"mode_4.11": (4, 11), "mode_8.6": (8, 6), "mode_9.9": (9, 9), "mode_9.6": (9, 6)}


def replicate_acc(
    model: LoadedModel,
    n_prompts: int = 256,
    seed: int = 0,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """The comparison table: ``quantity``, ``paper``, ``ours``, ``difference`` (ours − paper
    for numbers; for writer lists, how many of the paper's writers are among our top ones)."""
    svd = model_acc_svd(model.bridge, dtype=model.bridge.cfg.dtype)
    prompts = generate_prompts(n_prompts, "mixed", seed=seed)
    roots: Counter[str] = Counter()
    feeds: dict[str, Counter[str]] = {key: Counter() for key, *_ in _FEEDS}
    sizes: dict[tuple[int, int], list[int]] = {head: [] for head in _MODES.values()}
    graph_sizes: list[tuple[int, int, int]] = []
    offset = 0
    for batch in chunks(prompts, batch_size):
        result = process_acc_batch(model, svd, batch, AccFiringRule())
        _count(result, offset, roots, feeds, sizes, graph_sizes)
        offset += len(batch)
        if progress is not None:
            progress(len(batch))
    ours: dict[str, int | float | str] = {
        f"root_{head}": roots[head] for head in ("9.9", "9.6", "10.0")
    }
    for key, *_, n_named in _FEEDS:
        ours[key] = ", ".join(w for w, _ in feeds[key].most_common(n_named))
    for key, column in (("nodes", 0), ("edges", 1), ("heads", 2)):
        ours[key] = _mean([g[column] for g in graph_sizes])
    for key, head in _MODES.items():
        found = Counter(sizes[head]).most_common(1)
        ours[key] = float(found[0][0]) if found else math.nan
    rows = []
    for key, value in ACC_PAPER.items():
        mine = ours.get(key, math.nan)
        rows.append(
            {
                "quantity": value.quantity,
                "paper": value.paper,
                "ours": mine,
                "difference": _difference(value.paper, mine),
            }
        )
    return pd.DataFrame(rows)


def _count(
    result: AccBatchResult,
    offset: int,
    roots: Counter[str],
    feeds: dict[str, Counter[str]],
    sizes: dict[tuple[int, int], list[int]],
    graph_sizes: list[tuple[int, int, int]],
) -> None:
    trace, roles = result.trace, result.role_labels
    f = trace.firings.to("cpu")
    traced = trace.traced.cpu()
    seed = ~torch.isnan(trace.seed_weight.cpu())
    layer, head, prompt = f.layer.tolist(), f.head.tolist(), f.prompt.tolist()
    dest, src, n_svs = f.dest.tolist(), f.src.tolist(), f.n_svs[:, SOURCE_SIDE].tolist()

    def role(row: int, pos: int) -> str:
        return roles[prompt[row]][pos]

    for row in seed.nonzero(as_tuple=True)[0].tolist():
        if role(row, src[row]) == "IO":
            roots[f"{layer[row]}.{head[row]}"] += 1
    for row in traced.nonzero(as_tuple=True)[0].tolist():
        if (layer[row], head[row]) in sizes:
            sizes[(layer[row], head[row])].append(n_svs[row])
    e = trace.edges
    per_prompt: dict[int, tuple[set[object], set[object], set[object]]] = {}
    seen: set[tuple[str, int, str]] = set()
    for firing, side, kind, w_layer, w_head, w_src, pos in zip(
        e.firing.tolist(),
        e.side.tolist(),
        e.kind.tolist(),
        e.layer.tolist(),
        e.head.tolist(),
        e.src_pos.tolist(),
        e.pos.tolist(),
        strict=True,
    ):
        p = prompt[firing]
        nodes, edges, heads = per_prompt.setdefault(p, (set(), set(), set()))
        writer: object = (
            ("firing", w_layer, w_head, pos, w_src) if kind == HEAD else (kind, w_layer, pos)
        )
        nodes.add(("firing", layer[firing], head[firing], dest[firing], src[firing]))
        if kind != HEAD:
            nodes.add(writer)
        edges.add((writer, firing, side))
        heads.add((layer[firing], head[firing]))
        for key, target, dest_role, src_role, want_side, _ in _FEEDS:
            if (
                (layer[firing], head[firing]) == target
                and side == want_side
                and role(firing, dest[firing]) == dest_role
                and role(firing, src[firing]) == src_role
            ):
                at = roles[p][pos]
                if kind == HEAD:
                    name = f"{w_layer}.{w_head} ({at}, {roles[p][w_src]})"
                else:
                    kind_name = COMPONENT_KINDS[kind]
                    name = f"{kind_name}{'' if kind_name == 'embed' else w_layer} ({at})"
                if (key, offset + p, name) not in seen:
                    seen.add((key, offset + p, name))
                    feeds[key][name] += 1
    for row in seed.nonzero(as_tuple=True)[0].tolist():
        nodes, edges, heads = per_prompt.setdefault(prompt[row], (set(), set(), set()))
        nodes.add(("firing", layer[row], head[row], dest[row], src[row]))
        nodes.add("root")
        edges.add((row, "root"))
        heads.add((layer[row], head[row]))
    graph_sizes.extend((len(n), len(ed), len(h)) for n, ed, h in per_prompt.values())


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _difference(paper: int | float | str, ours: int | float | str) -> int | float | str:
    if isinstance(paper, str) or isinstance(ours, str):
        expected, found = _names(str(paper)), _names(str(ours))
        return f"{len(expected & found)} of {len(expected)} shared"
    return ours - paper


def _names(writers: str) -> set[str]:
    """``"8.6 (END, S2), mlp0 (IO)"`` → ``{"8.6", "mlp0"}`` (the roles in brackets dropped)."""
    bare = re.sub(r"\s*\([^)]*\)", "", writers)
    return {name.strip() for name in bare.split(",") if name.strip()}
