"""Edge scores of one batch of prompt pairs, by method. Sums over the batch's prompts.

* ``eap``: TransformerLens 4.3's ``attribution_patch`` at edge granularity (one prompt pair at
  a time, each pair at its own length), its per-position edges summed over positions.
  ``score = Σ_p (a_clean − a_corrupt)_w(p) · ∂LD/∂(input of r)(p)`` on the corrupted run.
* ``eap-ig``: TransformerLens refuses ``ig_steps > 1`` (``NotImplementedError``), so
  :func:`gradient_scores` computes it here: the gradient is averaged over ``steps`` runs whose
  token embeddings are ``e_corrupt + α (e_clean − e_corrupt)``, ``α = k / steps``,
  ``k = 0 … steps − 1`` (left Riemann sum; ``steps = 1`` is EAP exactly).
* ``path``: exact direct path patching, ``transformer_lens.patching``'s
  ``get_act_patch_direct_path_all_sources`` for head → head query/key/value edges, and
  :func:`ingest.patching.exact.patch_edge` for head → logit edges (TransformerLens has none);
  ``score = LD(corrupted run with the edge clean) − LD(corrupted run)``. One forward per edge:
  small models only. Edges it does not give (embedding, MLPs) stay NaN.

Grouped-query attention: TransformerLens refuses edge attribution when a layer has fewer key/
value heads than query heads. Then ``eap`` also runs :func:`gradient_scores` (with one step),
where a writer's edge into a shared key or value input is given to every query head of its
group (each head reads that same input).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ingest.patching.exact import (
    batch_logit_diff,
    capture,
    pair_run,
    patch_edge,
    reader_hook,
    reader_hooks_enabled,
    writer_delta,
)
from ingest.patching.graph import LOGIT, Method, Reader, empty_scores, readers, writers
from ingest.prompts.ioi import PromptBatch


def uses_gqa(bridge: Any) -> bool:
    """Fewer key/value heads than query heads (what TransformerLens's edge tools refuse)."""
    cfg = bridge.cfg
    return getattr(cfg, "n_key_value_heads", None) not in (None, cfg.n_heads)


def batch_scores(
    bridge: Any, clean: PromptBatch, corrupt: PromptBatch, method: Method, ig_steps: int = 5
) -> Tensor:
    """Scores [writer, reader] summed over the batch's prompts (NaN where no edge)."""
    if method == "eap":
        if uses_gqa(bridge):
            return gradient_scores(bridge, clean, corrupt, steps=1)
        return tl_eap_scores(bridge, clean, corrupt)
    if method == "eap-ig":
        return gradient_scores(bridge, clean, corrupt, steps=ig_steps)
    if method == "path":
        return path_scores(bridge, clean, corrupt)
    raise ValueError(f"unknown method {method!r}")


# ----- EAP through TransformerLens ---------------------------------------------------------------


def tl_eap_scores(bridge: Any, clean: PromptBatch, corrupt: PromptBatch) -> Tensor:
    from transformer_lens.tools.analysis.attribution_patching import (
        EdgeAttributionConfig,
        attribution_patch,
    )

    cfg = bridge.cfg
    n_layers, n_heads = cfg.n_layers, cfg.n_heads
    w_index = {w.id: i for i, w in enumerate(writers(n_layers, n_heads))}
    r_index = {(r.id, r.side): i for i, r in enumerate(readers(n_layers, n_heads))}
    scores = empty_scores(n_layers, n_heads)
    config = EdgeAttributionConfig(granularity="edge")
    device = cfg.device
    for b in range(len(clean)):
        length = int(clean.lengths[b])
        end, io, s = (int(clean.roles["END"][b]), int(clean.io_token[b]), int(clean.s_token[b]))

        def metric(logits: Tensor, end: int = end, io: int = io, s: int = s) -> Tensor:
            return logits[0, end, io] - logits[0, end, s]

        result = attribution_patch(
            bridge,
            clean.tokens[b : b + 1, :length].to(device),
            corrupt.tokens[b : b + 1, :length].to(device),
            metric,
            config,
        )
        for (writer, reader), value in result.edge_scores.items():
            w = w_index[_tl_writer_id(writer)]
            r = r_index[_tl_reader_key(reader)]
            scores[w, r] += value
    return scores


def _tl_writer_id(node: Any) -> str:
    if node.kind == "embed":
        return "embed"
    if node.kind == "attn_head_out":
        return f"{node.layer}.{node.head}"
    return f"mlp{node.layer}"


def _tl_reader_key(node: Any) -> tuple[str, str]:
    if node.kind in ("q_input", "k_input", "v_input"):
        return f"{node.layer}.{node.head}", node.kind[0]
    if node.kind == "mlp_in":
        return f"mlp{node.layer}", "in"
    return LOGIT, "in"


# ----- EAP and EAP-IG by gradients (what TransformerLens refuses) --------------------------------


def gradient_scores(bridge: Any, clean: PromptBatch, corrupt: PromptBatch, steps: int) -> Tensor:
    """``Σ_b Σ_p Δ_w(b, p) · ḡ_r(b, p)``, ``ḡ`` the reader-input gradient of ``Σ_b LD_b``
    averaged over ``steps`` interpolated embeddings (see the module docstring)."""
    if steps < 1:
        raise ValueError("steps must be at least 1")
    cfg = bridge.cfg
    n_layers, n_heads = cfg.n_layers, cfg.n_heads
    run = pair_run(bridge, clean, corrupt)
    all_readers = readers(n_layers, n_heads)
    names = sorted({reader_hook(r, n_layers) for r in all_readers})
    grads = {name: torch.zeros(()) for name in names}
    e_clean, e_corrupt = run.clean_out["hook_embed"], run.corrupt_out["hook_embed"]
    with reader_hooks_enabled(bridge):
        for k in range(steps):
            alpha = k / steps
            for name, grad in _reader_gradients(bridge, corrupt, e_corrupt, e_clean, alpha, names):
                grads[name] = grads[name] + grad / steps
    all_writers = writers(n_layers, n_heads)
    deltas = torch.stack([writer_delta(run, w).double().cpu() for w in all_writers]).flatten(1)
    reader_grads = torch.stack([_reader_grad(bridge, grads, r) for r in all_readers]).flatten(1)
    scores = empty_scores(n_layers, n_heads)
    exists = ~torch.isnan(scores)
    scores[exists] = (deltas @ reader_grads.T)[exists]
    return scores


def _reader_gradients(
    bridge: Any,
    corrupt: PromptBatch,
    e_corrupt: Tensor,
    e_clean: Tensor,
    alpha: float,
    names: list[str],
) -> list[tuple[str, Tensor]]:
    kept: dict[str, Tensor] = {}

    def embed(tensor: Tensor, hook: Any) -> Tensor:
        mixed = (e_corrupt + alpha * (e_clean - e_corrupt)).to(tensor)
        return mixed.requires_grad_(True)

    def keeper(name: str) -> Callable[..., Tensor]:
        # A copy: the hook's input may also feed the residual stream (``hook_mlp_in`` is the
        # MLP's LayerNorm input and the residual at once); only the copy's uses are the reader.
        def keep(tensor: Tensor, hook: Any) -> Tensor:
            kept[name] = tensor.clone()
            return kept[name]

        return keep

    with torch.enable_grad():
        logits = bridge.run_with_hooks(
            corrupt.tokens.to(bridge.cfg.device),
            return_type="logits",
            fwd_hooks=[("hook_embed", embed), *((name, keeper(name)) for name in names)],
        )
        metric = batch_logit_diff(logits, corrupt).sum()
        found = [name for name in names if name in kept]
        grads = torch.autograd.grad(metric, [kept[name] for name in found], allow_unused=True)
    return [
        (name, torch.zeros_like(kept[name]) if g is None else g.detach().double().cpu())
        for name, g in zip(found, grads, strict=True)
    ]


def _reader_grad(bridge: Any, grads: dict[str, Tensor], reader: Reader) -> Tensor:
    grad = grads[reader_hook(reader, bridge.cfg.n_layers)]
    if reader.kind != "head":
        return grad
    assert reader.head is not None
    heads = grad.shape[2]
    group = (
        reader.head if heads == bridge.cfg.n_heads else reader.head // (bridge.cfg.n_heads // heads)
    )
    return grad[:, :, group]


# ----- exact direct path patching ----------------------------------------------------------------


def path_scores(bridge: Any, clean: PromptBatch, corrupt: PromptBatch) -> Tensor:
    from transformer_lens.patching import get_act_patch_direct_path_all_sources

    cfg = bridge.cfg
    n_layers, n_heads = cfg.n_layers, cfg.n_heads
    device = cfg.device
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(n_layers)]
    _, clean_z = capture(bridge, clean.tokens, names)
    corrupt_logits, corrupt_z = capture(bridge, corrupt.tokens, names)
    corrupt_metric = batch_logit_diff(corrupt_logits, corrupt).double().mean()

    def metric(logits: Tensor) -> Tensor:
        return batch_logit_diff(logits, corrupt).double().mean()

    all_writers = writers(n_layers, n_heads)
    all_readers = readers(n_layers, n_heads)
    w_index = {w.id: i for i, w in enumerate(all_writers)}
    r_index = {(r.id, r.side): i for i, r in enumerate(all_readers)}
    scores = torch.full((len(all_writers), len(all_readers)), float("nan"), dtype=torch.float64)
    n = len(clean)
    for side in ("q", "k", "v"):
        if side != "q" and uses_gqa(bridge):
            continue  # TransformerLens refuses K/V direct paths under GQA
        # The caches are only indexed by hook name: plain dicts do.
        values = get_act_patch_direct_path_all_sources(
            bridge, corrupt.tokens.to(device), clean_z, corrupt_z, metric, side,  # type: ignore[arg-type]
            verbose=False,
        ).double().cpu()  # fmt: skip
        for sl in range(n_layers):
            for sh in range(n_heads):
                for dl in range(sl + 1, n_layers):
                    for dh in range(n_heads):
                        w, r = w_index[f"{sl}.{sh}"], r_index[(f"{dl}.{dh}", side)]
                        scores[w, r] = n * (values[sl, sh, dl, dh] - corrupt_metric)
    run = pair_run(bridge, clean, corrupt)
    logit_reader = all_readers[r_index[(LOGIT, "in")]]
    for writer in all_writers:
        if writer.kind == "head":
            changed = patch_edge(bridge, run, writer, logit_reader).double()
            scores[w_index[writer.id], r_index[(LOGIT, "in")]] = (changed - run.corrupt_ld).sum()
    return scores
