"""`circuit-atlas decompose`: the SAD decomposition of a model's firings, without a database."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from atlas.cli.options import (
    acc_rule_or_exit,
    batch_size_for,
    bos_option,
    check_model_choice,
    firing_rule_or_exit,
    format_option,
    load_model_quietly,
    method_option,
    model_options,
    prompts_or_exit,
)


@click.command()
@model_options
@bos_option
@method_option
@format_option(
    help="table: heads that fire, human-readable; csv/json: every head, machine-readable."
)
def decompose(
    model_name: str,
    model_dir: Path | None,
    revision: str | None,
    device: str,
    n_prompts: int,
    prompt_type: str,
    seed: int,
    batch_size: int | None,
    min_attention: float,
    min_layer: int,
    sparse_fraction: float,
    prepend_bos: bool | None,
    method: str,
    output_format: str,
) -> None:
    """Decompose every strong attention decision of every head on IOI prompts (no database).

    A (dest, src) pair of a head fires when its attention is at least --min-attention, its
    score is non-negative and src is not the first token. Each firing's score is split exactly
    into the d_head terms of the head's query-key SVD; its sparse set |S| is the smallest set of
    largest terms that exceeds the score. Prints, per head: firings, firing rate (share of
    destination tokens at which the head fires), mean and median |S|, and for each destination
    role the most frequent source role (e.g. END→IO for a name mover).

    With --method acc, a pair fires when attended above uniform (A ≥ 1/(i+1)); each firing's
    relative attention is split per side (destination, source) into the terms of that side's
    own SVD, and |S| is the source side's (the mean destination-side |S| is its own column);
    the answer's seeds are counted per head.

    Example: circuit-atlas decompose --model toy-ioi --n-prompts 256 --seed 0
    """
    check_model_choice(model_name, model_dir, device)  # before torch loads
    if method == "acc":
        _decompose_acc(
            model_name, model_dir, revision, device, n_prompts, prompt_type, seed, batch_size,
            sparse_fraction, prepend_bos, output_format,
        )  # fmt: skip
        return
    import torch
    from tqdm import tqdm

    from ingest.decomposition.activations import model_qk_svd
    from ingest.decomposition.sad import Firings
    from ingest.decomposition.summary import head_summary
    from ingest.pipeline import chunks, ioi_behaviour, process_batch

    rule = firing_rule_or_exit(min_attention, min_layer, sparse_fraction)
    prompts_or_exit(n_prompts, prompt_type, seed)  # bad settings fail before loading
    model = load_model_quietly(model_name, model_dir, revision, device, seed)
    if prepend_bos is not None:
        model.prepend_bos = prepend_bos
    prompts = prompts_or_exit(n_prompts, prompt_type, seed, model.tokenizer)  # batch by batch
    batch_size = batch_size_for(model, batch_size)
    svd = model_qk_svd(model.bridge, dtype=model.bridge.cfg.dtype)
    parts: list[Firings] = []
    role_labels: list[list[str]] = []
    n_destinations = 0
    logit_diffs = []
    offset = 0
    with tqdm(total=n_prompts, desc="decompose", unit="prompt", file=sys.stderr) as bar:
        for chunk in chunks(prompts, batch_size):
            result = process_batch(model, svd, chunk, rule)
            firings = result.firings.to("cpu")
            parts.append(replace(firings, prompt=firings.prompt + offset))
            role_labels += result.role_labels
            n_destinations += int(result.batch.mask[:, rule.min_src :].sum())
            logit_diffs.append(result.logit_diff)
            offset += len(chunk)
            bar.update(len(chunk))
    all_firings = Firings.concat(parts)
    summary = head_summary(all_firings, role_labels, n_destinations, model.n_layers, model.n_heads)
    behaviour = ioi_behaviour(torch.cat(logit_diffs))
    _echo_head_summary(
        summary,
        output_format,
        f"{model.provenance.model_id}: {offset} {prompt_type} prompts (seed {seed}, "
        f"{'with' if model.prepend_bos else 'no'} BOS), {len(all_firings)} firings, mean "
        f"IO−S logit difference {behaviour['logit_diff_mean']:.3f} (min "
        f"{behaviour['logit_diff_min']:.3f}), IOI accuracy {behaviour['ioi_accuracy']:.3f}",
    )


def _decompose_acc(
    model_name: str,
    model_dir: Path | None,
    revision: str | None,
    device: str,
    n_prompts: int,
    prompt_type: str,
    seed: int,
    batch_size: int | None,
    sparse_fraction: float,
    prepend_bos: bool | None,
    output_format: str,
) -> None:
    """``decompose --method acc``: every above-uniform firing and the seeds, per head."""
    from types import SimpleNamespace

    import torch
    from tqdm import tqdm

    from ingest.decomposition.acc import DEST_SIDE, SOURCE_SIDE, AccFirings
    from ingest.decomposition.summary import head_summary
    from ingest.pipeline import chunks, process_acc_batch
    from ingest.tracing.acc_circuit import model_acc_svd

    rule = acc_rule_or_exit(sparse_fraction)
    prompts_or_exit(n_prompts, prompt_type, seed)  # bad settings fail before loading
    model = load_model_quietly(model_name, model_dir, revision, device, seed)
    if prepend_bos is not None:
        model.prepend_bos = prepend_bos
    prompts = prompts_or_exit(n_prompts, prompt_type, seed, model.tokenizer)  # batch by batch
    batch_size = batch_size_for(model, batch_size)
    svd = model_acc_svd(model.bridge, dtype=model.bridge.cfg.dtype)
    parts: list[AccFirings] = []
    seeds: list[torch.Tensor] = []
    role_labels: list[list[str]] = []
    n_destinations, offset = 0, 0
    logit_diffs = []
    answer_parts = []
    with tqdm(total=n_prompts, desc="decompose", unit="prompt", file=sys.stderr) as bar:
        for chunk in chunks(prompts, batch_size):
            result = process_acc_batch(model, svd, chunk, rule)
            answer_parts.append(result.trace.answer_by_kind.cpu())
            firings = result.trace.firings.to("cpu")
            parts.append(replace(firings, prompt=firings.prompt + offset))
            trace_seeds = result.trace.seeds
            seeds.append(trace_seeds.layer.cpu() * model.n_heads + trace_seeds.head.cpu())
            role_labels += result.role_labels
            n_destinations += int(result.batch.mask[:, 1:].sum())
            logit_diffs.append(result.logit_diff)
            offset += len(chunk)
            bar.update(len(chunk))
    f = AccFirings.concat(parts)
    as_sad = SimpleNamespace(
        prompt=f.prompt, layer=f.layer, head=f.head, dest=f.dest, src=f.src,
        attention=f.attention, n_svs=f.n_svs[:, SOURCE_SIDE],
    )  # fmt: skip
    summary = head_summary(as_sad, role_labels, n_destinations, model.n_layers, model.n_heads)  # type: ignore[arg-type]
    flat_head = (f.layer * model.n_heads + f.head).tolist()
    dest_svs = f.n_svs[:, DEST_SIDE].double().tolist()
    sums = [0.0] * (model.n_layers * model.n_heads)
    for flat, value in zip(flat_head, dest_svs, strict=True):
        sums[flat] += value
    counts = torch.bincount(torch.tensor(flat_head, dtype=torch.long), minlength=len(sums))
    seed_counts = torch.bincount(torch.cat(seeds), minlength=len(sums)).tolist()
    summary = summary.assign(
        mean_svs_dest=[s / max(int(c), 1) for s, c in zip(sums, counts.tolist(), strict=True)],
        seeds=seed_counts,
    )
    mean_diff = float(torch.cat(logit_diffs).mean())
    by_kind = torch.cat(answer_parts).double().sum(0)
    kinds = ("embedding", "attention biases", "MLPs", "heads")
    shares = ", ".join(
        f"{name} {100 * float(part / by_kind.sum()):.1f} %"
        for name, part in zip(kinds, by_kind, strict=True)
    )
    _echo_head_summary(
        summary,
        output_format,
        f"{model.provenance.model_id} (ACC): {offset} {prompt_type} prompts (seed "
        f"{seed}), {len(f)} firings above uniform, {sum(seed_counts)} seeds, mean IO−S "
        f"logit difference {mean_diff:.3f}, carried by {shares}",
    )


def _echo_head_summary(summary: Any, output_format: str, headline: str) -> None:
    """The per-head summary as CSV, JSON, or a headline and the heads that fire."""
    from ingest.decomposition.summary import format_top_roles

    if output_format == "csv":
        flat = summary.assign(top_source_roles=summary["top_source_roles"].map(json.dumps))
        click.echo(flat.to_csv(index=False), nl=False)
        return
    if output_format == "json":
        click.echo(summary.to_json(orient="records", indent=2))
        return
    click.echo(headline)
    firing_heads = summary[summary["firings"] > 0]
    formats = {"firing_rate": "{:.3f}", "mean_svs": "{:.2f}", "mean_svs_dest": "{:.2f}"}
    formats["median_svs"] = "{:.1f}"
    shown = {c: firing_heads[c].map(f.format) for c, f in formats.items() if c in firing_heads}
    table = firing_heads.assign(
        **shown, top_source_roles=firing_heads["top_source_roles"].map(format_top_roles)
    ).drop(columns=["layer", "head_index"])
    click.echo(table.to_string(index=False))
