"""`compare-circuits --root logit` and `--min-prompts` on the shared 64-prompt toy-ioi runs.

The atlas circuit of the IO−S logit direction (one traversal from every seed firing) is checked
against an independent route through the same data: the seeds read by their own query, and
one single-prompt circuit per seed computed from its head and roles (`circuit --root HEAD
--prompt P`). `--min-prompts` is checked against the flat edge records of the whole circuit,
filtered and followed by hand.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest
from click.testing import CliRunner

from atlas.ask.circuits import LOGIT_ROOT, circuit_edges, fetch_circuit
from atlas.check.compare import Against, compare_circuits
from atlas.check.comparison import atlas_circuit
from atlas.cli import main
from atlas.errors import AtlasError, ParameterError
from atlas.store.store import AtlasStore

SEEDS = """
MATCH (f:Firing {run_id: $run_id}) WHERE f.seed_weight IS NOT NULL
RETURN f.prompt AS prompt, f.layer AS layer, f.head AS head, f.dest_role AS dest_role,
       f.src_role AS src_role
"""
REFERENCE = Against.parse("reference:wang2022-ioi")  # needs no patching run and no model


def seeds(store: AtlasStore, run_id: str) -> list[dict[str, Any]]:
    records = store.driver.execute_query(SEEDS, run_id=run_id, database_=store.database).records
    return [record.data() for record in records]


def logit_heads(store: AtlasStore, run_id: str, min_prompts: int = 1) -> frozenset[str]:
    comparison = compare_circuits(store, run_id, LOGIT_ROOT, REFERENCE, min_prompts=min_prompts)
    return comparison.rows[0].circuit.heads


def test_logit_root_is_the_union_of_every_seeds_circuit(
    atlas_store: AtlasStore, toy_ioi_acc_run: str
) -> None:
    found = seeds(atlas_store, toy_ioi_acc_run)
    assert len({(s["layer"], s["head"]) for s in found}) >= 2  # a union of several heads
    assert all(s["dest_role"] == "END" and s["src_role"] is not None for s in found)
    union: set[str] = set()
    edgeless = 0
    for seed in found:
        head = f"{seed['layer']}.{seed['head']}"
        try:
            one = fetch_circuit(
                atlas_store, toy_ioi_acc_run, head, seed["dest_role"], seed["src_role"],
                prompt=seed["prompt"],
            )  # fmt: skip
        except AtlasError as error:  # a seed whose sides were not traced: its head alone
            assert "no writer edges lead into it" in str(error)
            union.add(head)
            edgeless += 1
            continue
        union |= atlas_circuit("seed", {head}, circuit_edges(one)).heads
    assert edgeless < len(found)
    heads = logit_heads(atlas_store, toy_ioi_acc_run)
    assert heads == union
    root_31 = compare_circuits(atlas_store, toy_ioi_acc_run, "3.1", REFERENCE).rows[0].circuit
    assert root_31.heads < heads  # the name mover's circuit is one part of it


def test_min_prompts_drops_the_heads_reached_only_through_rarer_edges(
    atlas_store: AtlasStore, toy_ioi_acc_run: str
) -> None:
    records = circuit_edges(fetch_circuit(atlas_store, toy_ioi_acc_run, LOGIT_ROOT))
    seed_prompts: dict[str, set[int]] = defaultdict(set)  # per seed head and roles
    head_prompts: dict[str, set[int]] = defaultdict(set)  # per seed head
    for seed in seeds(atlas_store, toy_ioi_acc_run):
        head = f"{seed['layer']}.{seed['head']}"
        seed_prompts[f"{head} {seed['dest_role']}→{seed['src_role']}"].add(seed["prompt"])
        head_prompts[head].add(seed["prompt"])
    into: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        into[f"{record['head']} {record['dest_role']}→{record['src_role']}"].append(record)

    def by_hand(min_prompts: int) -> set[str]:
        """Seed heads in ≥ min_prompts prompts; from the seed firings (head and roles) in as
        many, their edges in ≥ min_prompts prompts, up."""
        frontier = [label for label, ps in seed_prompts.items() if len(ps) >= min_prompts]
        reached = set(frontier)
        heads = {head for head, ps in head_prompts.items() if len(ps) >= min_prompts}
        while frontier:
            label = frontier.pop()
            for record in into[label]:
                if record["n_prompts"] < min_prompts:
                    continue
                heads.add(record["head"])
                if record["writer"][0].isdigit():
                    heads.add(record["writer"])
                fresh = set(record["writer_firings"]) - reached
                reached |= fresh
                frontier += sorted(fresh)
        return heads

    every = logit_heads(atlas_store, toy_ioi_acc_run)
    assert every == by_hand(1)
    for min_prompts in (8, 32):
        kept = logit_heads(atlas_store, toy_ioi_acc_run, min_prompts)
        assert kept == by_hand(min_prompts)
        assert kept < every  # some heads are reached only through rarer edges


def test_logit_root_of_a_sad_run_is_refused_in_one_line(
    atlas_store: AtlasStore, toy_ioi_run: str, runner: CliRunner
) -> None:
    with pytest.raises(ParameterError, match="SAD run"):
        compare_circuits(atlas_store, toy_ioi_run, LOGIT_ROOT, REFERENCE)
    result = runner.invoke(
        main, ["compare-circuits", "--run", toy_ioi_run, "--root", "logit", "--top-k", "20"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        f"Error: Run '{toy_ioi_run}' is a SAD run, which traces attention decisions, not the "
        "logits: it has no circuit of the IO−S logit direction. Give a root head (its name "
        "mover, e.g. --root 3.1 on toy-ioi, 9.9 on GPT-2), or ingest the prompts with --method "
        "acc for --root logit."
    ]


def test_cli_compare_circuits_of_the_logit_direction(
    runner: CliRunner, toy_ioi_acc_run: str
) -> None:
    base = ["compare-circuits", "--run", toy_ioi_acc_run, "--root", "logit", "--against",
            "reference:wang2022-ioi", "--no-faithfulness", "--format", "json"]  # fmt: skip
    every = runner.invoke(main, base)
    assert every.exit_code == 0, every.output
    fewer = runner.invoke(main, [*base, "--min-prompts", "32"])
    assert fewer.exit_code == 0, fewer.output
    [all_edges], [common] = json.loads(every.output), json.loads(fewer.output)
    assert all_edges["circuit"] == "atlas logit"
    assert common["circuit"] == "atlas logit (edges in ≥ 32 prompts)"
    assert 0 < common["heads"] < all_edges["heads"]
