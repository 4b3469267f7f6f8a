"""Circuits: the SAD recursion from a root head (``queries/circuit.cypher``), as a tree.

The root is a head's firings at a role pair, or, on an ACC run, :data:`LOGIT_ROOT`: the run's
seed firings (the head firings that carry the IO−S logit difference), so that circuit is the
union of the circuits traced from every seed.

The template returns one row per communication edge the traversal reaches. :func:`build_circuit`
turns those rows into a :class:`Circuit` (pure: rows in, structure out), either firing by firing
(one prompt) or aggregated over prompts into a DAG of (head, dest role → src role) classes.
Over all prompts the server aggregates instead (``queries/circuit_summary.cypher``, one row per
edge group), and :func:`summary_circuit` builds the same :class:`Circuit` from its rows.
:func:`render_tree` prints it as an indented tree, :func:`circuit_edges` flattens it for JSON/CSV,
and :func:`fetch_circuit` runs the templates through the store with clear errors.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from statistics import fmean
from typing import TYPE_CHECKING, Any

from atlas.errors import AtlasError, ParameterError, UnknownRunError

if TYPE_CHECKING:
    from atlas.store.store import AtlasStore

Row = Mapping[str, Any]

NO_ROLE = "other"  # how positions without an IOI role are named (as on WRITES edges)
LOGIT_ROOT = "logit"  # an ACC run's IO−S logit direction as a circuit's root (its seeds)
LOGIT_DIRECTION = "logit_direction"  # the component the seeds write (COMMUNICATES target)

_HEAD = re.compile(r"(\d+)\.(\d+)")


def parse_head(text: str) -> tuple[int, int]:
    """``"9.9"`` → ``(9, 9)``; anything else is a :class:`ValueError`."""
    match = _HEAD.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not a head: write layer.head, e.g. 9.9 or 10.0.")
    return int(match[1]), int(match[2])


@dataclass(frozen=True, order=True)
class Node:
    """A firing of one prompt (``prompt``, ``dest``, ``src`` set) or, aggregated, a class of
    firings: one head attending from ``dest_role`` to ``src_role`` in any prompt."""

    layer: int
    head: int
    dest_role: str
    src_role: str
    prompt: int | None = None
    dest: int | None = None
    src: int | None = None

    @property
    def head_id(self) -> str:
        return f"{self.layer}.{self.head}"

    @property
    def label(self) -> str:
        """``9.9 END→IO``, with positions for a single firing: ``9.9 END→IO [14→2]``."""
        text = f"{self.head_id} {self.dest_role}→{self.src_role}"
        return text if self.dest is None else f"{text} [{self.dest}→{self.src}]"


@dataclass(frozen=True)
class Edge:
    """What ``writer`` wrote on one ``side`` of ``target`` at the position ``role``/``pos``.

    ``n_prompts`` counts distinct prompts, ``mean_weight`` averages the per-prompt weights (one
    prompt: n = 1 and the weight itself). ``sources`` are the writer's own firings at that
    position, where the traversal continues; empty: the branch ends here.
    """

    target: Node
    side: str
    writer: str
    role: str
    pos: int | None
    n_prompts: int
    mean_weight: float
    sources: tuple[Node, ...]


@dataclass(frozen=True)
class Circuit:
    """Roots and, per node, the edges into it (query side first, most prompts/weight first).

    ``prompts``: per node, the prompts in which the traversal reached it; ``root_prompts``:
    per root, the prompts in which it is a root (a seed, for :data:`LOGIT_ROOT`).
    """

    roots: tuple[Node, ...]
    edges: Mapping[Node, tuple[Edge, ...]]
    prompts: Mapping[Node, int]
    aggregated: bool
    root_prompts: Mapping[Node, int]

    def edges_into(self, node: Node, min_prompts: int = 1) -> list[Edge]:
        return [edge for edge in self.edges.get(node, ()) if edge.n_prompts >= min_prompts]

    def roots_in(self, min_prompts: int = 1) -> list[Node]:
        """The roots that are roots in at least ``min_prompts`` prompts."""
        return [root for root in self.roots if self.root_prompts[root] >= min_prompts]


# ----- rows → circuit ------------------------------------------------------------------------

FiringKey = tuple[int, int, int, int, int]  # prompt, layer, head, dest, src


@dataclass
class _EdgeGroup:
    weights: list[float] = field(default_factory=list)
    prompts: set[int] = field(default_factory=set)
    sources: set[Node] = field(default_factory=set)


def build_circuit(rows: Iterable[Row], aggregate: bool) -> Circuit:
    """The circuit from ``circuit.cypher`` rows: per firing, or aggregated over prompts.

    Aggregated edges are grouped by (downstream head and roles, side, writer, role written);
    their weight is averaged over the per-prompt edges and their prompts are counted distinct.
    A node's edges cover all of its firings the traversal reached, whichever edge reached them,
    so a child may show more prompts than the edge above it.
    """
    rows = list(rows)
    roles: dict[FiringKey, tuple[str, str]] = {}
    for row in rows:
        roles[_target_key(row)] = (_role(row["dest_role"]), _role(row["src_role"]))
    for row in rows:
        source = _source_key(row)
        if source is not None:
            roles.setdefault(source, (_role(row["role"]), _role(row["writer_src_role"])))

    def node(key: FiringKey) -> Node:
        prompt, layer, head, dest, src = key
        dest_role, src_role = roles[key]
        if aggregate:
            return Node(layer, head, dest_role, src_role)
        return Node(layer, head, dest_role, src_role, prompt, dest, src)

    weights: dict[tuple[FiringKey, str, str], float] = {}  # one per WRITES edge
    groups: dict[tuple[Node, str, str, str, int | None], _EdgeGroup] = defaultdict(_EdgeGroup)
    node_prompts: dict[Node, set[int]] = defaultdict(set)
    root_prompts: dict[Node, set[int]] = defaultdict(set)
    for row in rows:
        target_key = _target_key(row)
        target = node(target_key)
        node_prompts[target].add(row["prompt"])
        if row["depth"] == 0:
            root_prompts[target].add(row["prompt"])
        group = groups[
            (
                target,
                row["side"],
                row["writer"],
                _role(row["role"]),
                None if aggregate else row["pos"],
            )
        ]
        source = _source_key(row)
        if source is not None:
            group.sources.add(node(source))
            node_prompts[node(source)].add(row["prompt"])
        edge_key = (target_key, row["side"], row["writer"])
        if edge_key not in weights:  # several sources repeat an edge's row
            weights[edge_key] = row["weight"]
            group.weights.append(row["weight"])
            group.prompts.add(row["prompt"])

    edges = [
        Edge(
            target,
            side,
            writer,
            role,
            pos,
            len(group.prompts),
            fmean(group.weights),
            tuple(sorted(group.sources)),
        )
        for (target, side, writer, role, pos), group in groups.items()
    ]
    return _circuit(
        edges,
        prompts={key: len(prompts) for key, prompts in node_prompts.items()},
        root_prompts={root: len(prompts) for root, prompts in root_prompts.items()},
        aggregated=aggregate,
    )


def summary_circuit(rows: Iterable[Row]) -> Circuit:
    """The circuit over all prompts from ``circuit_summary.cypher`` rows, aggregated on the
    server as :func:`build_circuit` aggregates ``circuit.cypher``'s rows: one row per edge
    group into a class (its edges' weights, and the writer's firing classes as four parallel
    lists), and one with no edge for a class reached only as a writer's firing; every row
    carries its class's prompt counts."""
    edges: list[Edge] = []
    prompts: dict[Node, int] = {}
    root_prompts: dict[Node, int] = {}
    for row in rows:
        target = Node(row["layer"], row["head"], row["dest_role"], row["src_role"])
        prompts[target] = row["prompts"]
        if row["root_prompts"]:
            root_prompts[target] = row["root_prompts"]
        if row["side"] is None:
            continue
        sources = zip(
            row["source_layers"],
            row["source_heads"],
            row["source_dest_roles"],
            row["source_src_roles"],
            strict=True,
        )
        edges.append(
            Edge(
                target,
                row["side"],
                row["writer"],
                row["role"],
                None,
                row["n_prompts"],
                fmean(row["weights"]),  # as build_circuit averages, to the last digit
                tuple(sorted(Node(*source) for source in sources)),
            )
        )
    return _circuit(edges, prompts, root_prompts, aggregated=True)


def _circuit(
    edges: Iterable[Edge],
    prompts: Mapping[Node, int],
    root_prompts: Mapping[Node, int],
    aggregated: bool,
) -> Circuit:
    """The circuit of these edges, each node's edges in :func:`_edge_order`."""
    into: dict[Node, list[Edge]] = defaultdict(list)
    for edge in edges:
        into[edge.target].append(edge)
    return Circuit(
        roots=tuple(sorted(root_prompts)),
        edges={target: tuple(sorted(found, key=_edge_order)) for target, found in into.items()},
        prompts=dict(prompts),
        aggregated=aggregated,
        root_prompts=dict(root_prompts),
    )


def _role(role: str | None) -> str:
    return role or NO_ROLE


def _target_key(row: Row) -> FiringKey:
    return row["prompt"], row["layer"], row["head"], row["dest"], row["src"]


def _source_key(row: Row) -> FiringKey | None:
    if row["writer_src"] is None:
        return None
    return row["prompt"], row["writer_layer"], row["writer_head"], row["pos"], row["writer_src"]


def _edge_order(edge: Edge) -> tuple[bool, int, float, str]:
    return edge.side != "q", -edge.n_prompts, -abs(edge.mean_weight), edge.writer


# ----- rendering -------------------------------------------------------------------------------


def render_tree(circuit: Circuit, max_depth: int | None = None, min_prompts: int = 1) -> str:
    """The circuit as an indented tree, one line per edge: side, writer, role written, weight.

    ``q  8.6 @END→S2`` reads "8.6 wrote the query side at END, and itself fires END→S2 there"
    (the tree goes on into that firing); without an arrow the writer does not fire there. A
    node reached again is marked ``(repeat)`` instead of being expanded twice, and ``…`` marks
    what ``max_depth`` cuts.
    """
    tree = _TreeText(circuit, max_depth, min_prompts)
    for root in circuit.roots:
        tree.lines.append(f"{root.label}  {_prompts_text(circuit, root)}")
        if circuit.edges.get(root) and not circuit.edges_into(root, min_prompts):
            tree.lines.append(f"└─ (no edge in {min_prompts}+ prompts: lower --min-prompts)")
        tree.add_edges(root, "", 0)
    return "\n".join(tree.lines)


@dataclass
class _TreeText:
    """The lines of :func:`render_tree` as they are built, with the nodes already expanded."""

    circuit: Circuit
    max_depth: int | None
    min_prompts: int
    expanded: set[Node] = field(default_factory=set)
    lines: list[str] = field(default_factory=list)

    def add_edges(self, node: Node, prefix: str, depth: int) -> None:
        """One line per edge into ``node``; a multi-source edge lists its sources under it."""
        edges = self.circuit.edges_into(node, self.min_prompts)
        for index, edge in enumerate(edges):
            branch, inner = ("└─ ", "   ") if index == len(edges) - 1 else ("├─ ", "│  ")
            if len(edge.sources) == 1:
                source = edge.sources[0]
                line = prefix + branch + _edge_text(edge, source)
                self.add_source(source, line, prefix + inner, depth + 1)
                continue
            self.lines.append(prefix + branch + _edge_text(edge, None))
            # the writer's own firings there, each seen in enough prompts (--min-prompts)
            sources = [
                source
                for source in edge.sources
                if source.prompt is not None
                or self.circuit.prompts.get(source, 0) >= self.min_prompts
            ]
            hidden = len(edge.sources) - len(sources)
            for position, source in enumerate(sources):
                last = position == len(sources) - 1 and not hidden
                sub_branch, sub_inner = ("└─ ", "   ") if last else ("├─ ", "│  ")
                label = f"{source.label}  {_prompts_text(self.circuit, source)}"
                line = prefix + inner + sub_branch + label
                self.add_source(source, line, prefix + inner + sub_inner, depth + 1)
            if hidden:
                self.lines.append(
                    f"{prefix}{inner}└─ ({hidden} more in < {self.min_prompts} prompts)"
                )

    def add_source(self, source: Node, line: str, prefix: str, depth: int) -> None:
        """The writer's line, then its own firing's edges once (``(repeat)`` or ``…`` otherwise)."""
        has_edges = bool(self.circuit.edges_into(source, self.min_prompts))
        cut = _cut(depth, self.max_depth)
        if has_edges and cut:
            line += "  …"
        elif has_edges and source in self.expanded:
            line += "  (repeat)"
        self.lines.append(line)
        if not has_edges or cut or source in self.expanded:
            return
        self.expanded.add(source)
        self.add_edges(source, prefix, depth)


def _cut(depth: int, max_depth: int | None) -> bool:
    return max_depth is not None and depth >= max_depth


def _edge_text(edge: Edge, source: Node | None) -> str:
    position = "" if edge.pos is None else f"[{edge.pos}]"
    text = f"{edge.side}  {edge.writer} @{edge.role}{position}"
    if source is not None:
        text += f"→{source.src_role}" + ("" if source.src is None else f"[{source.src}]")
    if edge.pos is None:
        return f"{text}  n={edge.n_prompts}  mean={edge.mean_weight:+.3f}"
    return f"{text}  w={edge.mean_weight:+.3f}"


def _prompts_text(circuit: Circuit, node: Node) -> str:
    if node.prompt is not None:
        return f"prompt {node.prompt}"
    count = circuit.prompts.get(node, 0)
    return f"({count} prompt{'s' if count != 1 else ''})"


def circuit_edges(
    circuit: Circuit, max_depth: int | None = None, min_prompts: int = 1
) -> list[dict[str, Any]]:
    """Every edge shown by :func:`render_tree` once, breadth first, as flat records: the
    edges seen in at least ``min_prompts`` prompts, reached through such edges from the roots
    that are roots in at least ``min_prompts`` prompts."""
    records: list[dict[str, Any]] = []
    frontier = circuit.roots_in(min_prompts)
    visited = set(frontier)
    depth = 0
    while frontier and not _cut(depth, max_depth):
        depth += 1
        following: list[Node] = []
        for node in frontier:
            for edge in circuit.edges_into(node, min_prompts):
                records.append(_edge_record(edge, depth))
                fresh = [source for source in edge.sources if source not in visited]
                visited.update(fresh)
                following += fresh
        frontier = following
    return records


def _edge_record(edge: Edge, depth: int) -> dict[str, Any]:
    target = edge.target
    return {
        "depth": depth,
        "head": target.head_id,
        "dest_role": target.dest_role,
        "src_role": target.src_role,
        "prompt": target.prompt,
        "dest": target.dest,
        "src": target.src,
        "side": edge.side,
        "writer": edge.writer,
        "role": edge.role,
        "pos": edge.pos,
        "n_prompts": edge.n_prompts,
        "mean_weight": edge.mean_weight,
        "writer_firings": [source.label for source in edge.sources],
    }


# ----- the store -----------------------------------------------------------------------------


def fetch_circuit(
    store: AtlasStore,
    run_id: str,
    root: str,
    dest_role: str = "END",
    src_role: str = "IO",
    prompt: int | None = None,
) -> Circuit:
    """The circuit of ``root`` (e.g. ``"9.9"``, or :data:`LOGIT_ROOT` on an ACC run, whose
    roots are then the seed firings whatever their roles): one prompt's firings from
    ``circuit.cypher``, or, without ``prompt``, aggregated over prompts on the server by
    ``circuit_summary.cypher``. Problems the user can fix raise :class:`AtlasError`.
    """
    layer, head = root_head(store, run_id, root)
    parameters: dict[str, Any] = {"run_id": run_id, "layer": layer, "head": head}
    roles = {"dest_role": dest_role, "src_role": src_role}
    if prompt is None:
        rows = store.read_template("circuit_summary", **roles, **parameters)
    else:
        rows = store.read_template("circuit", **roles, **parameters, prompt=prompt)
    if not rows:
        raise AtlasError(
            _no_circuit_message(store, root, dest_role, src_role, {**parameters, "prompt": prompt})
        )
    return build_circuit(rows, aggregate=False) if prompt is not None else summary_circuit(rows)


def seed_heads(store: AtlasStore, run_id: str) -> dict[str, int]:
    """The heads of an ACC run's seed firings and the prompts each is a seed in (its
    COMMUNICATES edges into the logit direction, ``run_communication``): the heads that write
    the IO−S logit difference, a seed with no writer edge of its own included. Empty for a SAD
    run and for a run not complete yet (the edges are aggregated when it completes)."""
    seeds: dict[str, int] = {}
    for row in store.read_template("run_communication", run_id=run_id):
        if row["target"] == LOGIT_DIRECTION:
            seeds[row["writer"]] = max(seeds.get(row["writer"], 0), row["n_prompts"])
    return seeds


def root_head(store: AtlasStore, run_id: str, root: str) -> tuple[int | None, int | None]:
    """The (layer, head) of a circuit's root in the run, ``(None, None)`` for
    :data:`LOGIT_ROOT`; an unknown run or head, or the logit root of a SAD run, raise
    :class:`AtlasError`."""
    model = store.run_model(run_id)
    if model is None:
        raise UnknownRunError(
            f"Run '{run_id}' is not in the atlas. `circuit-atlas runs list` shows the runs."
        )
    if root == LOGIT_ROOT:
        if model["method"] != "acc":
            raise ParameterError(
                f"Run '{run_id}' is a SAD run, which traces attention decisions, not the "
                "logits: it has no circuit of the IO−S logit direction. Give a root head (its "
                "name mover, e.g. --root 3.1 on toy-ioi, 9.9 on GPT-2), or ingest the prompts "
                "with --method acc for --root logit."
            )
        return None, None
    try:
        layer, head = parse_head(root)
    except ValueError as error:
        raise ParameterError(f"{error} Or --root {LOGIT_ROOT} on an ACC run.") from error
    n_layers, n_heads = model["n_layers"], model["n_heads"]
    if n_layers is not None and not (layer < n_layers and head < n_heads):
        raise ParameterError(
            f"Head {root} does not exist in {model['model_id']} (run '{run_id}'): it has "
            f"layers 0–{n_layers - 1} and heads 0–{n_heads - 1}."
        )
    return layer, head


def _no_circuit_message(
    store: AtlasStore, root: str, dest_role: str, src_role: str, parameters: Mapping[str, Any]
) -> str:
    where = f"run '{parameters['run_id']}'"
    if parameters["prompt"] is not None:
        where += f", prompt {parameters['prompt']}"
    if root == LOGIT_ROOT:
        return (
            f"No seed firing (a head firing that carries the IO−S logit difference) in {where}: "
            "an imported run keeps no firings, and a prompt the model gets wrong has no seeds."
        )
    fired = store.read_template("head_roles", **parameters)
    if any((row["dest_role"], row["src_role"]) == (dest_role, src_role) for row in fired):
        return f"{root} fires {dest_role}→{src_role} in {where}, but no writer edges lead into it."
    found = "; ".join(
        f"{row['dest_role']}→{row['src_role']} ({row['prompts']} prompts)" for row in fired[:5]
    )
    hint = f"It fires at {found}." if found else f"{root} does not fire at all there."
    return (
        f"Head {root} has no {dest_role}→{src_role} firing in {where}. {hint} Pick other roles "
        f"(`circuit --dest-role/--src-role`, `report --root {root}:DEST:SRC`) or another root "
        "(GPT-2's name movers: 9.9, 9.6, 10.0)."
    )
