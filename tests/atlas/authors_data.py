"""The method authors' graphs for tests: the published SAD GPT-2 file, read in place, and a
hand-made graph in their follow-up (ACC) format with a known answer."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import networkx as nx
import pytest

from atlas.settings import reference_dir

SAD_GPT2 = Path("sad-gpt2-ioi") / "nms-p256-f1.0-folded-expandedO-scaled.graphml"


@pytest.fixture(scope="session")
def sad_gpt2_file() -> Path:
    """The authors' aggregated GPT-2 IOI graph (never copied into the project)."""
    path = reference_dir() / SAD_GPT2
    if not path.is_file():
        message = f"The authors' GPT-2 graph is not at {path} (set CIRCUIT_ATLAS_REFERENCE)."
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(message)
        pytest.skip(message)
    return path


def sad_communication(path: Path) -> dict[tuple[str, str, str, str], dict]:
    """The file's communication edges straight from networkx, keyed like the atlas's edges
    (writer "l.h", head "l.h", side, role as the file spells it), display links left out."""
    graph = nx.read_graphml(path)
    edges = {}
    for u, v, data in graph.edges(data=True):
        up, down = ast.literal_eval(u), ast.literal_eval(v)
        if len(up) == 2:
            side = {"d": "q", "s": "k"}[data["type"]]
            edges[(f"{up[0]}.{up[1]}", f"{down[0]}.{down[1]}", side, down[2])] = data
    return edges


# ACC format: 3 traced prompts (the root appears in all three), prompts 0, 1, 2.
ACC_NODES = {
    "('IO-S direction', 'end')": 3,
    "(9, 9, 'end', 'IO')": 3,
    "(8, 6, 'end', 'S2')": 2,
    "(8, 6, 'end', 'IO')": 1,
    "(5, 5, 'S2', 'S1+1')": 2,
    "(0, 'MLP', 'end', 'end')": 3,
    "(0, 'Embedding', 'S2', 'S2')": 2,
    "(3, 'AH bias', 'S2', 'S2')": 1,
}
# (upstream, downstream, type, weight = sum over prompts / 3, prompts)
ACC_EDGES = [
    ("(9, 9, 'end', 'IO')", "('IO-S direction', 'end')", "d", 3.0, [0, 1, 2]),
    ("(8, 6, 'end', 'S2')", "(9, 9, 'end', 'IO')", "d", 2.0, [0, 1]),
    ("(8, 6, 'end', 'IO')", "(9, 9, 'end', 'IO')", "d", 1.0, [2]),
    ("(0, 'MLP', 'end', 'end')", "(8, 6, 'end', 'S2')", "d", 0.5, [0, 1]),
    ("(5, 5, 'S2', 'S1+1')", "(8, 6, 'end', 'S2')", "s", 1.5, [0, 1]),
    ("(0, 'Embedding', 'S2', 'S2')", "(8, 6, 'end', 'S2')", "s", 0.25, [1]),
    ("(3, 'AH bias', 'S2', 'S2')", "(8, 6, 'end', 'S2')", "s", 0.1, [0]),
    ("(0, 'MLP', 'end', 'end')", "(8, 6, 'end', 'IO')", "d", 0.2, [2]),
]
# The atlas edges it must give: (writer, target, side, role) -> (n_prompts, mean_weight).
# 8.6's two firings merge into one q/END edge into 9.9: prompts {0, 1, 2},
# mean = (2.0·3 + 1.0·3) / (2 + 1) = 3.0; mlp0 → 8.6 likewise: (0.5·3 + 0.2·3) / 3 = 0.7.
ACC_EXPECTED = {
    ("9.9", "logit", "q", "END"): (3, 3.0),
    ("8.6", "9.9", "q", "END"): (3, 3.0),
    ("mlp0", "8.6", "q", "END"): (3, 0.7),
    ("5.5", "8.6", "k", "S2"): (2, 2.25),
    ("embed", "8.6", "k", "S2"): (1, 0.75),
    ("bias3", "8.6", "k", "S2"): (1, 0.3),
}


def write_acc_graph(path: Path) -> Path:
    graph = nx.MultiDiGraph()
    for node, appearances in ACC_NODES.items():
        graph.add_node(node, n_appearences=appearances)
    for up, down, kind, weight, prompts in ACC_EDGES:
        graph.add_edge(up, down, type=kind, weight=weight, prompts_appeared=str(prompts))
    nx.write_graphml(graph, path)
    return path
