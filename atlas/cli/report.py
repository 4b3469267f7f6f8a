"""`circuit-atlas report`: the paper's figures for a run, as PNGs and an index.md."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--run", "run_id", required=True, help="Run id (see `circuit-atlas runs list`).")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the PNGs and index.md into (created if needed).",
)
@click.option(
    "--root",
    "roots",
    multiple=True,
    help="Circuit root(s) to draw: layer.head for its END→IO firings, layer.head:DEST:SRC "
    "(e.g. 8.6:END:S2), or logit (an ACC run's IO−S logit direction); repeatable. Default: the "
    "head firing END→IO in the most prompts.",
)
@click.option(
    "--min-prompts",
    type=click.IntRange(min=1),
    help="Leave out circuit edges seen in fewer prompts (default: 10 % of the run's prompts); "
    "given, the P/R/F1 curves compare those circuits too (default: all their edges).",
)
@click.option(
    "--published/--no-published",
    default=True,
    show_default=True,
    help="Draw the authors' published GPT-2 interventions beside this run's validations.",
)
def report(
    run_id: str, out_dir: Path, roots: tuple[str, ...], min_prompts: int | None, published: bool
) -> None:
    """Draw a run's figures: what SAD found, and whether interventions confirm it.

    Writes into OUT: the distribution of the signal dimensionality |S| per head (heads by
    layer); a heatmap of firing counts per head and role pair; each root's circuit as a
    layered graph (writers below readers, width = prompts, colour = side); the intervention
    effects of `circuit-atlas validate` (signal vs random control), where it ran; and the
    authors' published GPT-2 interventions beside this run's; where `circuit-atlas patch`
    ran, the atlas circuit's head precision, recall and F1 against the patching circuit over
    its sizes. index.md links them all.

    Example: circuit-atlas report --run toy-ioi-mixed-n256-seed0-0123abcd --out report/
    """
    from atlas.check.report import published_interventions, write_report
    from atlas.store.store import AtlasStore

    table = published_interventions() if published else None
    written = write_report(AtlasStore.connect(), run_id, out_dir, roots, min_prompts, table)
    for figure in written.figures:
        click.echo(f"{out_dir / figure.file}  {figure.title}")
    click.echo(f"{out_dir / 'index.md'}  links them all")
    for line in written.skipped:
        click.echo(line, err=True)
