"""The component graph a patching method scores, and its scores as one table.

Writers put something into the residual stream: the embedding (``embed``; token plus position,
one writer), every head (``"l.h"``) and every MLP (``"mlp<l>"``). Readers take the residual
stream in: a head's query, key or value input (reader ``"l.h"``, side ``q``/``k``/``v``), an
MLP's input (``"mlp<l>"``, side ``in``) and the unembedding (``"logit_direction"``, side ``in``). An
edge writer → reader exists when the writer comes before the reader: a head of layer l reads
the embedding and the heads and MLPs of layers < l; an MLP of layer l also reads layer l's
heads; the unembedding reads every writer. Ids are those of the atlas's ``Component`` nodes.

A score is a change of the metric (the IO−S logit difference at END, averaged over prompts)
when the edge carries its clean value instead of its corrupted one, summed over positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Method = Literal["eap", "eap-ig", "path"]
METHODS: tuple[Method, ...] = ("eap", "eap-ig", "path")
METRICS = ("logit-diff",)
READER_SIDES = ("q", "k", "v", "in")
LOGIT = "logit_direction"
EMBED = "embed"


def head_id(layer: int, head: int) -> str:
    return f"{layer}.{head}"


def mlp_id(layer: int) -> str:
    return f"mlp{layer}"


@dataclass(frozen=True)
class Writer:
    id: str
    kind: Literal["embed", "head", "mlp"]
    layer: int | None = None
    head: int | None = None


@dataclass(frozen=True)
class Reader:
    id: str
    side: str
    kind: Literal["head", "mlp", "logit_direction"]
    layer: int | None = None
    head: int | None = None


def writers(n_layers: int, n_heads: int) -> list[Writer]:
    found = [Writer(EMBED, "embed")]
    for layer in range(n_layers):
        found += [Writer(head_id(layer, h), "head", layer, h) for h in range(n_heads)]
        found.append(Writer(mlp_id(layer), "mlp", layer))
    return found


def readers(n_layers: int, n_heads: int) -> list[Reader]:
    found = []
    for layer in range(n_layers):
        for side in ("q", "k", "v"):
            found += [Reader(head_id(layer, h), side, "head", layer, h) for h in range(n_heads)]
        found.append(Reader(mlp_id(layer), "in", "mlp", layer))
    found.append(Reader(LOGIT, "in", "logit_direction"))
    return found


def reads(writer: Writer, reader: Reader) -> bool:
    """Whether ``reader`` sees ``writer``'s output (the edge exists)."""
    if writer.kind == "embed" or reader.kind == "logit_direction":
        return True
    assert writer.layer is not None and reader.layer is not None
    if reader.kind == "head":
        return writer.layer < reader.layer
    return writer.layer < reader.layer or (writer.kind == "head" and writer.layer == reader.layer)


def edge_mask(n_layers: int, n_heads: int) -> Tensor:
    """``mask[w, r]``: True where writer w feeds reader r (orders of :func:`writers`/`readers`)."""
    ws, rs = writers(n_layers, n_heads), readers(n_layers, n_heads)
    return torch.tensor([[reads(w, r) for r in rs] for w in ws])


@dataclass(frozen=True)
class EdgeScores:
    """Scores of every existing edge of one model's graph, writer × reader (NaN: no edge)."""

    n_layers: int
    n_heads: int
    scores: Tensor  # float64 [writer, reader]
    n_prompts: int

    def edges(self) -> list[tuple[str, str, str, float]]:
        """``(writer, reader, side, score)`` of every existing edge, strongest |score| first."""
        ws, rs = writers(self.n_layers, self.n_heads), readers(self.n_layers, self.n_heads)
        mask = edge_mask(self.n_layers, self.n_heads) & ~torch.isnan(self.scores)
        rows = [
            (ws[w].id, rs[r].id, rs[r].side, float(self.scores[w, r]))
            for w, r in mask.nonzero().tolist()
        ]
        rows.sort(key=lambda row: (-abs(row[3]), row[0], row[1], row[2]))
        return rows

    def score(self, writer: str, reader: str, side: str) -> float:
        ws, rs = writers(self.n_layers, self.n_heads), readers(self.n_layers, self.n_heads)
        w = next(i for i, x in enumerate(ws) if x.id == writer)
        r = next(i for i, x in enumerate(rs) if (x.id, x.side) == (reader, side))
        return float(self.scores[w, r])


def empty_scores(n_layers: int, n_heads: int) -> Tensor:
    """All edges 0, the missing ones NaN."""
    mask = edge_mask(n_layers, n_heads)
    scores = torch.zeros(mask.shape, dtype=torch.float64)
    scores[~mask] = float("nan")
    return scores


def ranked(rows: Sequence[tuple[str, str, str, float]]) -> list[tuple[str, str, str, float, int]]:
    """Rows with their rank (1 = largest |score|), in that order."""
    order = sorted(rows, key=lambda row: (-abs(row[3]), row[0], row[1], row[2]))
    return [(*row, rank) for rank, row in enumerate(order, start=1)]
