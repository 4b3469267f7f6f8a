// name: head_roles
// purpose: Where a head fires in a run: its (dest_role → src_role) pairs, most frequent first.
// param: run_id string — the run
// param: layer int[0..] — the head's layer
// param: head int[0..] — the head's index in its layer
// param: prompt int[0..]? = null — one prompt, or null for all prompts
// returns: dest_role string, src_role string, firings int, prompts int
// example: {"run_id": "gpt2-sad-256", "layer": 9, "head": 9, "prompt": null}
// example-toy: {"run_id": "toy-ioi-run", "layer": 3, "head": 1, "prompt": null}
//
// Use it to pick a circuit root's roles; positions without an IOI role show as `'other'`.
// `prompts` counts distinct prompts. `circuit-atlas circuit` uses it to explain a root that
// has no firings at the roles asked for.
//
// How it runs: seek of `Firing(run_id, layer, head)`, then counting in memory. Measured with the
// example-toy parameters on a 1,024-prompt toy-ioi run (PROFILE): 47,941 db hits (12k firings:
// their roles and prompt); p50 34 ms, p95 39 ms over 20 warm runs (load ≈ 4, 2 shared cores).
MATCH (f:Firing {run_id: $run_id, layer: $layer, head: $head})
WHERE $prompt IS NULL OR f.prompt = $prompt
RETURN coalesce(f.dest_role, 'other') AS dest_role, coalesce(f.src_role, 'other') AS src_role,
       count(*) AS firings, count(DISTINCT f.prompt) AS prompts
ORDER BY prompts DESC, firings DESC, dest_role, src_role
