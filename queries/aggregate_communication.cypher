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
MATCH (f:Firing {run_id: $run_id})-[:OF_HEAD]->(h:Head)
OPTIONAL MATCH (f)-[:IN_PROMPT]->(p:Prompt)
MATCH (w:Component)-[e:WRITES]->(f)
WITH w, h, e.side AS side, e.role AS role,
     count(DISTINCT f.prompt) AS n_prompts, avg(e.weight) AS mean_weight,
     count(DISTINCT CASE p.order WHEN 'ABBA' THEN f.prompt END) AS n_prompts_abba,
     count(DISTINCT CASE p.order WHEN 'BABA' THEN f.prompt END) AS n_prompts_baba
MERGE (w)-[c:COMMUNICATES {run_id: $run_id, writer: w.id, head: h.id, side: side, role: role}]->(h)
SET c.n_prompts = n_prompts, c.mean_weight = mean_weight, c.n_prompts_abba = n_prompts_abba,
    c.n_prompts_baba = n_prompts_baba
RETURN count(c) AS communicates
