// name: aggregate_communication
// purpose: Aggregate one run's per-prompt WRITES edges into (:Component)-[:COMMUNICATES]->(:Head).
// mode: write
// param: run_id string — the run to aggregate
// returns: communicates int
// example: {"run_id": "toy-ioi-mixed-n256-seed0-0123abcd"}
//
// One relationship per (writer, downstream head, side, role); `n_prompts` counts **distinct**
// prompts, `n_prompts_abba` / `n_prompts_baba` those of each name order (what `compare` reads
// for groups by order), `mean_weight` averages the per-prompt WRITES weights. Idempotent (MERGE
// on the constrained key, then SET): re-running updates in place.
// `RunLifecycle.aggregate_run` runs it.
//
// How it runs: prompt by prompt, each prompt's edges grouped (a CALL per Prompt node), then the
// groups summed over prompts: a group is in a prompt at most once, so counting its rows counts
// distinct prompts. The query's memory is the groups' (writer, head, side, role), not the
// groups' sets of prompts as `count(DISTINCT f.prompt)` over the whole run held (toy-ioi 1,024
// prompts: 16.6 MB; SmolLM2-135M 64 prompts 60.7 MB, growing with the prompts: ~10 GB for 10k).
MATCH (p:Prompt {run_id: $run_id})
CALL (p) {
  MATCH (p)<-[:IN_PROMPT]-(f:Firing)-[:OF_HEAD]->(h:Head)
  MATCH (w:Component)-[e:WRITES]->(f)
  RETURN w, h, e.side AS side, e.role AS role, sum(e.weight) AS weight, count(*) AS edges
}
WITH w, h, side, role, count(*) AS n_prompts, sum(weight) AS weight, sum(edges) AS edges,
     sum(CASE p.order WHEN 'ABBA' THEN 1 ELSE 0 END) AS n_prompts_abba,
     sum(CASE p.order WHEN 'BABA' THEN 1 ELSE 0 END) AS n_prompts_baba
MERGE (w)-[c:COMMUNICATES {run_id: $run_id, writer: w.id, head: h.id, side: side, role: role}]->(h)
SET c.n_prompts = n_prompts, c.mean_weight = weight / edges, c.n_prompts_abba = n_prompts_abba,
    c.n_prompts_baba = n_prompts_baba
RETURN count(c) AS communicates
