"""``circuit-atlas report``: the paper's figures for one run, as PNGs and an ``index.md``.

Reads the run through the templates ``sparse_set_sizes``, ``firing_counts``, ``circuit``,
``validations`` and ``patch_edges`` and the authors' published GPT-2 interventions (read in
place from :func:`atlas.settings.reference_dir`, never copied), draws them with
:mod:`atlas.check.figures` (the P/R/F1 curve against a patching circuit with
:func:`atlas.check.compare.curve_figure`) and writes one PNG per figure plus an index that
links and explains them, and says which figures were left out and how to get them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from atlas.ask.circuits import LOGIT_ROOT, fetch_circuit
from atlas.check import figures
from atlas.check.compare import Against, compare_circuits, curve_figure
from atlas.check.validation import stored_validations, unknown_run
from atlas.errors import AtlasError
from atlas.settings import reference_dir
from atlas.store.store import AtlasStore
from ingest.patching.graph import METHODS

PUBLISHED_INTERVENTIONS = Path("sad-gpt2-ioi") / "interventions_multi-edge.parquet"


def published_interventions(path: Path | None = None) -> pd.DataFrame:
    """The authors' GPT-2 intervention table, read in place from :func:`reference_dir`."""
    path = path or reference_dir() / PUBLISHED_INTERVENTIONS
    if not path.is_file():
        raise AtlasError(
            f"The published interventions are not at {path}; set CIRCUIT_ATLAS_REFERENCE to the "
            "folder that holds sad-gpt2-ioi/ (or pass --no-published)."
        )
    return pd.read_parquet(path)


@dataclass(frozen=True)
class ReportFigure:
    """One written PNG, with the title and the caption the index shows."""

    file: str
    title: str
    caption: str


@dataclass(frozen=True)
class Report:
    """The figures written, and a line for each figure left out saying how to get it."""

    figures: list[ReportFigure]
    skipped: list[str]


def default_root(counts: pd.DataFrame) -> str:
    """The head firing END→IO in the most prompts (the run's main name mover)."""
    name_movers = counts[(counts["dest_role"] == "END") & (counts["src_role"] == "IO")]
    if name_movers.empty:
        raise AtlasError("No head fires END→IO in this run; choose roots with --root.")
    best = name_movers.sort_values(["prompts", "layer"], ascending=False).iloc[0]
    return f"{best['layer']}.{best['head']}"


PUBLISHED_MODEL = "openai-community/gpt2"  # the authors' published interventions are GPT-2's


def write_report(
    store: AtlasStore,
    run_id: str,
    out_dir: Path,
    roots: Sequence[str] = (),
    min_prompts: int | None = None,
    published: pd.DataFrame | None = None,
) -> Report:
    """Write the figures of ``run_id`` into ``out_dir`` and an ``index.md`` linking them.

    ``roots`` (``"9.9"`` for END→IO, ``"8.6:END:S2"``, or ``"logit"`` on an ACC run) are drawn
    as circuits (default: :func:`default_root`), without edges seen in fewer than
    ``min_prompts`` prompts (default: 10 % of the run's prompts); their P/R/F1 curves against
    the run's patching circuits compare the circuits with the edges seen in at least
    ``min_prompts`` prompts (default: all edges). ``published`` is
    the authors' intervention table for the side-by-side figure (None: left out; also left out
    for a run of another model than GPT-2 small, which it would leave half empty).
    """
    summary = store.show_run(run_id)
    if summary is None:
        raise unknown_run(run_id)
    n_prompts = int(summary["prompts"])
    counts = pd.DataFrame(store.read_template("firing_counts", run_id=run_id))
    if counts.empty:
        raise AtlasError(f"Run '{run_id}' has no firings to draw (an imported or empty run).")
    sizes = pd.DataFrame(store.read_template("sparse_set_sizes", run_id=run_id))
    circuits = []  # every root checked (and fetched) before anything is written
    for spec in roots or [default_root(counts)]:
        root, dest_role, src_role = [*spec.split(":"), "END", "IO"][:3]
        circuits.append(
            (root, dest_role, src_role, fetch_circuit(store, run_id, root, dest_role, src_role))
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / ".write-check").touch()
        (out_dir / ".write-check").unlink()
    except OSError as error:
        raise AtlasError(
            f"Cannot write the report into {str(out_dir)[:80]}: {error.strerror or error}. "
            "Choose a folder you can write to with --out."
        ) from error
    written: list[ReportFigure] = []

    def save(figure: Figure, file: str, title: str, caption: str) -> None:
        figure.savefig(out_dir / file, dpi=110)
        plt.close(figure)
        written.append(ReportFigure(file, title, caption))

    model = store.run_model(run_id) or {}
    save(
        figures.sparse_set_figure(sizes),
        "sparse_set_sizes.png",
        "Signal dimensionality |S| per head",
        "How many singular vectors each head's firings need to explain their score, heads "
        f"ordered by layer ({model.get('model_id')}, {n_prompts} prompts).",
    )
    save(
        figures.firing_heatmap(counts, n_prompts),
        "firing_counts.png",
        "Firings per head and role pair",
        "In how many prompts each head fires from a destination role to a source role.",
    )
    threshold = min_prompts if min_prompts is not None else max(1, n_prompts // 10)
    for root, dest_role, src_role, circuit in circuits:
        name = _root_name(root, dest_role, src_role)
        suffix = _root_suffix(dest_role, src_role)
        save(
            figures.circuit_figure(
                circuit, f"Circuit of {name} (edges in ≥ {threshold} prompts)", threshold
            ),
            f"circuit_{root.replace('.', '_')}{suffix}.png",
            f"Circuit of {name}",
            "Writers below readers, one row per layer; edge width ∝ prompts with the edge, "
            "blue = query side, orange = key side. A node is a head at a role pair; a writer "
            "drawn with @role does not fire where it writes (its branch ends).",
        )
    validations = stored_validations(store, run_id)
    for (mode, factor), group in validations.groupby(["mode", "factor"], sort=True):
        action = "removed" if factor == 0 else f"×{factor:g}"
        save(
            figures.intervention_figure(group, f"Run {run_id}: edge signals {action}, {mode}"),
            f"interventions_{mode}_{'remove' if factor == 0 else 'boost'}.png",
            f"Interventions ({mode}, signal {action})",
            "Per validated edge, the mean change of the downstream firing's attention and of "
            "the IO−S logit difference when the edge's signal is changed (red) vs a random set "
            "of as many other singular vectors (grey), ±1 std; ratios mean|signal|/mean|control|.",
        )
    if published is not None and model.get("model_id") == PUBLISHED_MODEL:
        removals = validations[validations["factor"] == 0] if not validations.empty else None
        save(
            figures.published_figure(published, removals, f"This atlas: run {run_id}"),
            "published_vs_atlas.png",
            "Published GPT-2 interventions beside this run's",
            "Left: the authors' multi-edge interventions on GPT-2 small (mean ΔIO−S logit "
            "difference over the prompts where the downstream firing exists; global = their "
            "type A, local = type B). Right: this run's validated edges, signal vs control.",
        )
    skipped: list[str] = []
    methods = [
        m for m in METHODS if store.read_template("patch_edges", run_id=run_id, method=m, top_k=1)
    ]
    for method in methods:
        for root, dest_role, src_role, _ in circuits:
            comparison = compare_circuits(
                store, run_id, root, Against("patch", method), top_k=1, dest_role=dest_role,
                src_role=src_role, min_prompts=min_prompts or 1,
            )  # fmt: skip
            kept = f" (its edges in ≥ {min_prompts} prompts)" if min_prompts else ""
            suffix = _root_suffix(dest_role, src_role)
            save(
                curve_figure(comparison),
                f"patching_{root.replace('.', '_')}{suffix}_{method}.png",
                f"Circuit of {_root_name(root, dest_role, src_role)} vs patch:{method}",
                "Head precision (dotted), recall (dashed) and F1 (solid) of the atlas circuit"
                f"{kept} (and of its causally pruned circuit, where `validate` ran) against the "
                f"run's {method} patching circuit of each size: the heads among the writers and "
                "readers of its top k edges by |score|.",
            )
    if not methods:
        skipped.append(
            f"No patching circuit for run '{run_id}': its P/R/F1 curve is left out; run "
            f"`circuit-atlas patch --run {run_id}` (then report again) to draw it."
        )
    _write_index(out_dir, run_id, written, skipped)
    return Report(written, skipped)


def _root_name(root: str, dest_role: str, src_role: str) -> str:
    return "the IO−S logit (every seed)" if root == LOGIT_ROOT else f"{root} {dest_role}→{src_role}"


def _root_suffix(dest_role: str, src_role: str) -> str:
    return "" if (dest_role, src_role) == ("END", "IO") else f"_{dest_role}_{src_role}"


def _write_index(
    out_dir: Path, run_id: str, written: Sequence[ReportFigure], skipped: Sequence[str]
) -> None:
    lines = [f"# Circuit Atlas report: run `{run_id}`", ""]
    lines += [f"- [{figure.title}](#{_anchor(figure.title)})" for figure in written]
    if skipped:
        lines += ["", *skipped]
    for figure in written:
        lines += [
            "",
            f"## {figure.title}",
            "",
            figure.caption,
            "",
            f"![{figure.title}]({figure.file})",
        ]
    (out_dir / "index.md").write_text("\n".join(lines) + "\n")


def _anchor(title: str) -> str:
    kept = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -")
    return kept.replace(" ", "-")
