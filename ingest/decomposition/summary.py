"""Per-head statistics of a decomposition: how often each head fires, how sparse its signals are."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TypedDict

import pandas as pd

from ingest.decomposition.sad import Firings

SUMMARY_COLUMNS = [
    "head",
    "layer",
    "head_index",
    "firings",
    "firing_rate",
    "mean_svs",
    "median_svs",
    "top_source_roles",
]


class TopSource(TypedDict):
    """The most frequent source role of one destination role."""

    source: str
    count: int
    share: float


def firing_table(firings: Firings, role_labels: Sequence[Sequence[str]]) -> pd.DataFrame:
    """One row per firing with role names of its positions (``role_labels[prompt][pos]``)."""
    prompt = firings.prompt.tolist()
    dest = firings.dest.tolist()
    src = firings.src.tolist()
    return pd.DataFrame(
        {
            "prompt": prompt,
            "layer": firings.layer.tolist(),
            "head_index": firings.head.tolist(),
            "dest": dest,
            "src": src,
            "dest_role": [role_labels[p][i] for p, i in zip(prompt, dest, strict=True)],
            "src_role": [role_labels[p][j] for p, j in zip(prompt, src, strict=True)],
            "attention": firings.attention.tolist(),
            "n_svs": firings.n_svs.tolist(),
        }
    )


def top_source_roles(table: pd.DataFrame) -> dict[str, TopSource]:
    """For each destination role: the most frequent source role, its count and share."""
    top: dict[str, TopSource] = {}
    by_dest = Counter(table["dest_role"])
    for dest_role, n_dest in by_dest.most_common():
        sources = Counter(table.loc[table["dest_role"] == dest_role, "src_role"])
        src_role, count = sources.most_common(1)[0]
        top[dest_role] = TopSource(source=src_role, count=count, share=count / n_dest)
    return top


def head_summary(
    firings: Firings,
    role_labels: Sequence[Sequence[str]],
    n_destinations: int,
    n_layers: int,
    n_heads: int,
) -> pd.DataFrame:
    """Per head: firings, firing rate, mean/median ``|S|``, top source role per dest role.

    ``firing_rate = firings / n_destinations`` where ``n_destinations`` counts the real
    destination positions that could fire (each position fires on at most one source when
    ``min_attention > 0.5``, so the rate is the share of positions the head decides sharply).
    """
    table = firing_table(firings, role_labels)
    rows = []
    for layer in range(n_layers):
        for head in range(n_heads):
            mine = table[(table["layer"] == layer) & (table["head_index"] == head)]
            count = len(mine)
            rows.append(
                {
                    "head": f"{layer}.{head}",
                    "layer": layer,
                    "head_index": head,
                    "firings": count,
                    "firing_rate": count / n_destinations if n_destinations else 0.0,
                    "mean_svs": float(mine["n_svs"].mean()) if count else float("nan"),
                    "median_svs": float(mine["n_svs"].median()) if count else float("nan"),
                    "top_source_roles": top_source_roles(mine) if count else {},
                }
            )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def format_top_roles(top: dict[str, TopSource], limit: int = 3) -> str:
    """``"END→IO 201 (93%), S2→S1 40 (80%)"`` for the ``limit`` busiest destination roles."""
    parts = [
        f"{dest}→{info['source']} {info['count']} ({info['share']:.0%})"
        for dest, info in list(top.items())[:limit]
    ]
    return ", ".join(parts)
