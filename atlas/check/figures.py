"""The report's figures: pure functions from DataFrames (or a circuit) to matplotlib figures.

Each figure function takes the rows a template returns (or the published interventions) and
returns a :class:`matplotlib.figure.Figure`; :mod:`atlas.check.report` fetches the data and writes
the PNGs. The numbers drawn come from the ``*_table`` functions next to the figures, so tests
can check them without reading pixels.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import networkx as nx
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from atlas.ask.circuits import Circuit, Node

SIDE_COLORS = {"q": "#1f77b4", "k": "#ff7f0e"}
SIGNAL_COLOR, CONTROL_COLOR = "#d62728", "#7f7f7f"


def _head_order(frame: pd.DataFrame) -> list[str]:
    heads = frame[["layer", "head"]].drop_duplicates().sort_values(["layer", "head"])
    return [f"{layer}.{head}" for layer, head in heads.itertuples(index=False)]


# ----- |S| per head -------------------------------------------------------------------------


def sparse_set_figure(sizes: pd.DataFrame, d_head: int | None = None) -> Figure:
    """One box per head (ordered by layer) of the sparse-set sizes |S| of its firings, from the
    ``sparse_set_sizes`` histogram rows (layer, head, n_svs, firings); ◆ marks the mean."""
    order = _head_order(sizes)
    samples = []
    for label in order:
        layer, head = (int(part) for part in label.split("."))
        rows = sizes[(sizes["layer"] == layer) & (sizes["head"] == head)]
        samples.append(np.repeat(rows["n_svs"].to_numpy(), rows["firings"].to_numpy()))
    figure, axis = plt.subplots(figsize=(max(6.0, 0.32 * len(order) + 2), 4.2))
    axis.boxplot(samples, showfliers=False, whis=(5, 95))
    axis.scatter(
        range(1, len(order) + 1), [s.mean() for s in samples], marker="D", s=14, color="black"
    )
    layers = [int(label.split(".")[0]) for label in order]
    for position in range(1, len(order)):
        if layers[position] != layers[position - 1]:
            axis.axvline(position + 0.5, color="#dddddd", linewidth=0.8)
    axis.set_xticks(range(1, len(order) + 1), order, rotation=90, fontsize=7)
    axis.set_xlabel("head (layer.head, ordered by layer)")
    axis.set_ylabel("|S|: singular vectors in the sparse set")
    limit = f" of {d_head}" if d_head else ""
    axis.set_title(f"Signal dimensionality per head (box 25–75 %, whiskers 5–95 %{limit})")
    figure.tight_layout()
    return figure


# ----- firing counts per head and role pair ---------------------------------------------------


def firing_count_table(counts: pd.DataFrame, max_pairs: int = 12) -> pd.DataFrame:
    """Heads × role pairs, cell = distinct prompts in which the head fires at that pair; the
    ``max_pairs`` pairs with the most prompts over all heads (the rest summed as ``other``)."""
    frame = counts.assign(
        head_id=[f"{r.layer}.{r.head}" for r in counts.itertuples()],
        pair=[f"{r.dest_role}→{r.src_role}" for r in counts.itertuples()],
    )
    table = frame.pivot_table(index="head_id", columns="pair", values="prompts", aggfunc="sum")
    table = table.fillna(0).astype(int).reindex(_head_order(counts))
    top = table.sum().sort_values(ascending=False).index[:max_pairs]
    rest = table.drop(columns=top).sum(axis=1)
    table = table[top]
    if rest.any():
        table = table.assign(**{"(other pairs)": rest})
    return table


def firing_heatmap(counts: pd.DataFrame, n_prompts: int, max_pairs: int = 12) -> Figure:
    """Heatmap of :func:`firing_count_table` (colour: share of the run's prompts)."""
    table = firing_count_table(counts, max_pairs)
    figure, axis = plt.subplots(
        figsize=(0.55 * table.shape[1] + 3, max(4.0, 0.25 * table.shape[0] + 2.0))
    )
    image = axis.imshow(
        table.to_numpy() / max(n_prompts, 1), cmap="viridis", vmin=0, vmax=1, aspect="auto"
    )
    axis.set_xticks(range(table.shape[1]), table.columns, rotation=60, ha="right", fontsize=8)
    axis.set_yticks(range(table.shape[0]), table.index, fontsize=7)
    if table.size <= 400:
        for (row, column), value in np.ndenumerate(table.to_numpy()):
            if value:
                share = value / max(n_prompts, 1)
                axis.text(column, row, str(value), ha="center", va="center", fontsize=5.5,
                          color="black" if share > 0.6 else "white")  # fmt: skip
    axis.set_xlabel("dest role → src role")
    axis.set_ylabel("head")
    axis.set_title(f"Prompts in which each head fires, per role pair ({n_prompts} prompts)")
    figure.colorbar(image, ax=axis, label="share of prompts", shrink=0.8)
    figure.tight_layout()
    return figure


# ----- the circuit as a layered graph ---------------------------------------------------------


def circuit_graph(circuit: Circuit, min_prompts: int = 1) -> nx.DiGraph:
    """Writer → reader graph of an aggregated circuit: a node per firing class (head at a
    role pair) and per writer that does not fire where it writes (the branch ends there);
    edge attributes ``side``, ``n_prompts``, ``role``."""
    graph = nx.DiGraph()
    for target, edges in circuit.edges.items():
        target_label = f"{target.head_id}\n{target.dest_role}→{target.src_role}"
        for edge in edges:
            if edge.n_prompts < min_prompts:
                continue
            sources: Sequence[Node | None] = edge.sources or (None,)
            for source in sources:
                if source is None:
                    key = f"{edge.writer} @{edge.role}"
                    layer = int(edge.writer.split(".")[0]) if "." in edge.writer else -1
                    label = f"{edge.writer}\n@{edge.role}"
                else:
                    key, layer = source.label, source.layer
                    label = f"{source.head_id}\n{source.dest_role}→{source.src_role}"
                graph.add_node(key, layer=layer, label=label)
                graph.add_node(target.label, layer=target.layer, label=target_label)
                previous = graph.get_edge_data(key, target.label)
                if previous is None or previous["n_prompts"] < edge.n_prompts:
                    graph.add_edge(key, target.label, side=edge.side, n_prompts=edge.n_prompts,
                                   role=edge.role)  # fmt: skip
    roots = [root.label for root in circuit.roots if root.label in graph]
    reached = set(roots).union(*(nx.ancestors(graph, root) for root in roots))
    return graph.subgraph(reached).copy()


def circuit_figure(circuit: Circuit, title: str, min_prompts: int = 1) -> Figure:
    """The circuit drawn bottom-up (writers below readers, one row per layer); edge width ∝
    prompts, colour by side (query blue, key orange)."""
    graph = circuit_graph(circuit, min_prompts)
    figure, axis = plt.subplots(figsize=(12, 7.5))
    if graph.number_of_nodes() == 0:
        axis.text(0.5, 0.5, "no edges above the prompt threshold", ha="center")
        axis.set_axis_off()
        return figure
    positions = nx.multipartite_layout(graph, subset_key="layer", align="horizontal")
    widest = max(data["n_prompts"] for *_, data in graph.edges(data=True))
    for side, color in SIDE_COLORS.items():
        edges = [(u, v) for u, v, data in graph.edges(data=True) if data["side"] == side]
        widths = [0.4 + 5.0 * graph.edges[e]["n_prompts"] / widest for e in edges]
        nx.draw_networkx_edges(graph, positions, edgelist=edges, width=widths, edge_color=color,
                               alpha=0.65, arrows=True, arrowsize=9, ax=axis,
                               connectionstyle="arc3,rad=0.08", node_size=900)  # fmt: skip
    layers = nx.get_node_attributes(graph, "layer")
    roots = {root.label for root in circuit.roots}
    colors = ["#ffd27f" if n in roots else "#e8eef7" if "→" in n else "#f4f4f4" for n in graph]
    nx.draw_networkx_nodes(graph, positions, node_size=900, node_color=colors, ax=axis,
                           edgecolors="black", linewidths=0.6)  # fmt: skip
    nx.draw_networkx_labels(graph, positions, nx.get_node_attributes(graph, "label"), font_size=6.5,
                            ax=axis)  # fmt: skip
    for layer in sorted(set(layers.values())):
        y = next(positions[n][1] for n in graph if layers[n] == layer)
        axis.annotate(f"layer {layer}", (0, y), xycoords=("axes fraction", "data"), fontsize=8,
                      color="#555555", va="center")  # fmt: skip
    legend = [Line2D([0], [0], color=c, lw=3, label=f"{s} side") for s, c in SIDE_COLORS.items()]
    axis.legend(
        handles=legend, loc="upper right", fontsize=8, title=f"width ∝ prompts (max {widest})"
    )
    axis.set_title(title)
    axis.set_axis_off()
    figure.tight_layout()
    return figure


# ----- interventions -------------------------------------------------------------------------


def intervention_figure(validations: pd.DataFrame, title: str) -> Figure:
    """Per validated edge: mean Δattention of the downstream firing and mean ΔIO−S logit
    difference, signal (red) vs random control (grey), ±1 std over prompts."""
    frame = validations.reset_index(drop=True)
    labels = [
        f"{r.writer} →{r.side}@{r.role}  {r.head} {r.dest_role}→{r.src_role}  (n={r.n_prompts})"
        for r in frame.itertuples()
    ]
    figure, axes = plt.subplots(1, 2, figsize=(12, 0.42 * len(frame) + 1.8), sharey=True)
    rows = np.arange(len(frame))
    for axis, metric, name in (
        (axes[0], "attention", "Δ attention of the downstream firing"),
        (axes[1], "logit", "Δ logit difference IO − S"),
    ):
        for offset, kind, color in (
            (-0.2, "signal", SIGNAL_COLOR),
            (0.2, "control", CONTROL_COLOR),
        ):
            axis.barh(rows + offset, frame[f"{kind}_{metric}_mean"], height=0.38, color=color,
                      xerr=frame[f"{kind}_{metric}_std"], error_kw={"lw": 0.7, "alpha": 0.6},
                      label=kind)  # fmt: skip
        axis.axvline(0, color="black", linewidth=0.6)
        axis.set_xlabel(name)
        ratios = frame[f"{metric}_ratio"]
        for row, ratio in zip(rows, ratios, strict=True):
            text = "∞" if math.isinf(ratio) else f"{ratio:.0f}×"
            axis.annotate(text, (1.0, row), xycoords=("axes fraction", "data"), fontsize=7,
                          ha="left", va="center")  # fmt: skip
    axes[0].set_yticks(rows, labels, fontsize=7)
    axes[0].invert_yaxis()
    axes[0].legend(fontsize=8, loc="lower left")
    figure.suptitle(title + "   (right of each panel: mean|signal| / mean|control|)", fontsize=10)
    figure.tight_layout()
    return figure


def _edge_set_label(edges: str) -> str:
    """``[('(8, 6)', "(9, 9, 'end')")]`` → ``8.6→9.9@end``; free text stays as it is."""
    try:
        pairs = ast.literal_eval(edges)
        parts = []
        for writer, target in pairs:
            w, t = ast.literal_eval(writer), ast.literal_eval(target)
            parts.append(f"{w[0]}.{w[1]}→{t[0]}.{t[1]}@{t[2]}")
        return " + ".join(parts)
    except (ValueError, SyntaxError, TypeError, IndexError):
        return edges.replace("All incoming edges to ", "all into ").replace(
            "All outgoing edges from ", "all out of "
        )


def published_table(interventions: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count of the published ΔIO−S logit difference (``logit_diff_interv −
    logit_diff``) per experiment, edge set and intervention type (A = global, B = local),
    over the prompts where the downstream firing existed (``is_ablated``); removals only."""
    rows = interventions[interventions["is_ablated"] & ~interventions["is_boosting"]]
    frame = rows.assign(
        delta=rows["logit_diff_interv"].astype("float64") - rows["logit_diff"].astype("float64"),
        mode=rows["intervention_type"].map({"A": "global", "B": "local"}),
        is_random=rows["is_random"],
    )
    table = (
        frame.groupby(["experiment", "edges", "mode", "is_random"], sort=True)["delta"]
        .agg(["mean", "std", "count"])
        .reset_index()
    )
    table["label"] = [
        f"{e}: {_edge_set_label(s)}" for e, s in zip(table.experiment, table.edges, strict=True)
    ]
    return table


def published_figure(
    interventions: pd.DataFrame, atlas: pd.DataFrame | None, atlas_title: str
) -> Figure:
    """Left: the authors' GPT-2 interventions (mean ΔIO−S logit difference per edge set,
    global vs local; random controls where the file has them). Right: the atlas's own
    validated edges (signal vs control, same metric), for a side-by-side look."""
    table = published_table(interventions)
    signal = table[~table["is_random"]]
    labels = list(dict.fromkeys(signal["label"]))
    figure, axes = plt.subplots(
        1, 2, figsize=(15, 0.28 * len(labels) + 2.2), gridspec_kw={"width_ratios": [1.3, 1]}
    )
    rows = np.arange(len(labels))
    for offset, mode, color in ((-0.2, "global", "#9467bd"), (0.2, "local", "#2ca02c")):
        part = signal[signal["mode"] == mode].set_index("label").reindex(labels)
        axes[0].barh(
            rows + offset, part["mean"], height=0.38, color=color, label=f"{mode} (signal)"
        )
    random = table[table["is_random"]]
    for row, label in enumerate(labels):
        controls = random[random["label"] == label]
        if not controls.empty:
            axes[0].scatter(
                controls["mean"], [row] * len(controls), color=CONTROL_COLOR, marker="|"
            )
    axes[0].set_yticks(rows, labels, fontsize=6.5)
    axes[0].invert_yaxis()
    axes[0].axvline(0, color="black", linewidth=0.6)
    axes[0].set_xlabel("mean Δ logit difference IO − S (prompts where the firing exists)")
    note = "" if not random.empty else "\n(the published file has no random-control rows)"
    axes[0].set_title(f"Published SAD interventions, GPT-2 small, 256 prompts{note}", fontsize=9)
    axes[0].legend(fontsize=7, loc="lower left")
    if atlas is None or atlas.empty:
        axes[1].text(0.5, 0.5, "no validations in this run:\nrun `circuit-atlas validate`",
                     ha="center", va="center")  # fmt: skip
        axes[1].set_axis_off()
    else:
        frame = atlas.reset_index(drop=True)
        own = np.arange(len(frame))
        labels_own = [
            f"{r.writer}→{r.head}@{r.role} ({r.side}, {r.mode})" for r in frame.itertuples()
        ]
        axes[1].barh(
            own - 0.2, frame["signal_logit_mean"], height=0.38, color=SIGNAL_COLOR, label="signal"
        )
        axes[1].barh(own + 0.2, frame["control_logit_mean"], height=0.38, color=CONTROL_COLOR,
                     label="random control")  # fmt: skip
        axes[1].set_yticks(own, labels_own, fontsize=7)
        axes[1].invert_yaxis()
        axes[1].axvline(0, color="black", linewidth=0.6)
        axes[1].set_xlabel("mean Δ logit difference IO − S")
        axes[1].set_title(atlas_title, fontsize=9)
        axes[1].legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    return figure
