// name: compare
// purpose: Two prompt groups of a run (or two runs) side by side: each communication edge's prompt support in both, largest difference first.
// param: run_id string — the run of group A (and of group B unless other_run_id is given)
// param: other_run_id string? = null — the run of group B (null: the same run)
// param: order_a string[ABBA|BABA]? = null — group A's prompts with this name order (ABBA or BABA); null and no templates: the whole run
// param: order_b string[ABBA|BABA]? = null — group B's name order
// param: templates_a list<string>? = null — group A's prompts of these templates
// param: templates_b list<string>? = null — group B's prompts of these templates
// param: layer int[0..]? = null — only edges into heads of this layer
// param: head int[0..]? = null — only edges into heads with this index (with layer: one head)
// param: min_prompts int[1..] = 1 — edges seen in at least this many prompts of either group
// param: heads_only bool = false — only head → head edges (leaves out MLP, attention-bias and embedding writers and the logit direction, which only ACC runs have)
// param: limit int[1..] = 50 — at most this many rows
// returns: writer string, reader string, side string, role string, prompts_a int, prompts_b int,
//   share_a float?, share_b float?, difference float?, group_a int, group_b int,
//   found_in string
// example: {"run_id": "gpt2-sad-256", "other_run_id": null, "order_a": "ABBA", "order_b": "BABA", "templates_a": null, "templates_b": null, "layer": 9, "head": 9, "min_prompts": 5, "heads_only": false, "limit": 50}
// example-toy: {"run_id": "toy-ioi-run", "other_run_id": null, "order_a": "ABBA", "order_b": "BABA", "templates_a": null, "templates_b": null, "layer": 3, "head": 1, "min_prompts": 1, "heads_only": false, "limit": 50}
//
// An edge is (writer, reader head, side, role written). `prompts_a` / `prompts_b` count the
// distinct prompts of each group in which the SAD edge rule kept it; `share_*` divide by the
// group's size (`group_a` / `group_b` prompts) so groups of different sizes compare, and
// `difference = share_a − share_b` (positive: more typical of A). A group without order and
// templates is its whole run and is read from the aggregated COMMUNICATES (so two imported
// runs, which have no prompts, compare by counts: shares and difference are then null).
// Example questions: ABBA vs BABA (does the circuit depend on name order?), one template
// family vs the rest, or the same prompts in two runs with other thresholds or models.
// `found_in` says which group has the edge: `both`, `a only` or `b only`.
//
// SAD against ACC (a SAD run and an ACC run of the same prompts, `other_run_id`, with
// `heads_only`): both key an edge by (writer, reader head, side, role written). An ACC head
// writer's source token is dropped (its COMMUNICATES already sums over it), ACC's destination
// side is `q` and its source side `k`, and the role is that of the position the reader reads
// on that side in both methods, so the head → head edges line up; ACC's other writers (MLPs,
// attention biases, the embedding) and its logit-direction reader have no SAD counterpart.
// The support differs in kind: a SAD run traces every firing (A ≥ 0.5), an ACC run only the
// firings reached from the answer (unless ingested with `--all-firings`), each firing above
// uniform attention; `prompts_a − prompts_b` is the support difference.
//
// How it runs: per group, the prompts by the unique `Prompt(run_id, idx)` index; a whole run reads
// its COMMUNICATES by the relationship index `COMMUNICATES(run_id)`, and so does a group by name
// order alone (the per-order counts `n_prompts_abba` / `n_prompts_baba` that the run's
// aggregation stores: the example-toy parameters on a 1,024-prompt toy-ioi run, before 326,702
// db hits and p95 152 ms, now p50 14 ms on a quiet machine); a prompt group of templates with one head
// seeks that head's firings prompt by prompt with the unique firing index prefix `(run_id, prompt,
// layer, head)` and reads their WRITES. Without a head, a prompt group reads every firing of the
// run (index `Firing(run_id)`): seconds on large runs. A branch that does not apply to a group
// unwinds an empty list, so it seeks nothing (a `WHERE` there was planned below the seek, and every
// group read the whole run's firings). Measured with the example-toy parameters on a 1,024-prompt
// toy-ioi run (PROFILE), per-prompt branches (now: groups of templates): 326,702 db hits (623,412
// before); p50 116 ms, p95 151 ms over 20 warm runs
// (before: 316 / 526 ms) (load ≈ 4, 2 shared cores). Groups of templates stay above the 100 ms
// target: the two groups together read all 12k firings of the head and their 57k WRITES to count
// distinct prompts per group (only name orders are aggregated). Without a head, a group of
// templates reads all the run's WRITES (~1M relationships here): seconds.
UNWIND [{grp: 'a', run: $run_id, order: $order_a, templates: $templates_a},
        {grp: 'b', run: coalesce($other_run_id, $run_id), order: $order_b,
         templates: $templates_b}] AS g
CALL (g) {
  OPTIONAL MATCH (p:Prompt {run_id: g.run})
  WHERE (g.order IS NULL OR p.order = g.order)
    AND (g.templates IS NULL OR p.template IN g.templates)
  RETURN collect(p.idx) AS idx
}
WITH collect({g: g, idx: idx}) AS groups
UNWIND groups AS group
WITH groups, group.g AS g, group.idx AS idx,
     group.g.order IS NULL AND group.g.templates IS NULL AS whole
CALL (g, idx, whole) {
  UNWIND CASE WHEN whole THEN [g.run] ELSE [] END AS run // no rows, no seek, otherwise
  MATCH (w:Component)-[c:COMMUNICATES]->(h:Component)
  USING INDEX c:COMMUNICATES(run_id)
  WHERE c.run_id = run AND ($layer IS NULL OR h.layer = $layer)
    AND ($head IS NULL OR h.head = $head) AND (NOT $heads_only OR (w:Head AND h:Head))
  RETURN w.id AS writer, h.id AS reader, c.side AS side, c.role AS role, c.n_prompts AS prompts
  UNION ALL
  // A group by name order alone: the per-order prompt counts stored on COMMUNICATES. Edges into
  // heads only (firings are heads'), as the per-prompt branches below find them.
  UNWIND CASE WHEN NOT whole AND g.templates IS NULL THEN [g.run] ELSE [] END AS run
  MATCH (w:Component)-[c:COMMUNICATES]->(h:Head)
  USING INDEX c:COMMUNICATES(run_id)
  WHERE c.run_id = run AND ($layer IS NULL OR h.layer = $layer)
    AND ($head IS NULL OR h.head = $head) AND (NOT $heads_only OR w:Head)
  WITH w, h, c,
       CASE g.order WHEN 'ABBA' THEN c.n_prompts_abba ELSE c.n_prompts_baba END AS prompts
  WHERE prompts > 0
  RETURN w.id AS writer, h.id AS reader, c.side AS side, c.role AS role, prompts
  UNION ALL
  WITH g, idx, whole
  WHERE NOT whole AND g.templates IS NOT NULL AND $layer IS NOT NULL AND $head IS NOT NULL
  UNWIND idx AS i
  MATCH (f:Firing {run_id: g.run, prompt: i, layer: $layer, head: $head})
  USING INDEX f:Firing(run_id, prompt, layer, head, dest, src)
  WHERE f.dest IS NOT NULL AND f.src IS NOT NULL // the unique firing index, by its prefix
  MATCH (w:Component)-[e:WRITES]->(f)
  WHERE NOT $heads_only OR w:Head
  WITH w, e.side AS side, e.role AS role, count(DISTINCT i) AS prompts // w.id once per group
  RETURN w.id AS writer, toString($layer) + '.' + toString($head) AS reader, side, role, prompts
  UNION ALL
  UNWIND CASE WHEN NOT whole AND g.templates IS NOT NULL AND ($layer IS NULL OR $head IS NULL)
              THEN [g.run] ELSE [] END AS run
  MATCH (f:Firing {run_id: run})
  WHERE f.prompt IN idx AND ($layer IS NULL OR f.layer = $layer)
    AND ($head IS NULL OR f.head = $head)
  MATCH (w:Component)-[e:WRITES]->(f)
  WHERE NOT $heads_only OR w:Head
  RETURN w.id AS writer, toString(f.layer) + '.' + toString(f.head) AS reader, e.side AS side,
         e.role AS role, count(DISTINCT f.prompt) AS prompts
}
WITH writer, reader, side, role, size(groups[0].idx) AS group_a, size(groups[1].idx) AS group_b,
     sum(CASE g.grp WHEN 'a' THEN prompts ELSE 0 END) AS prompts_a,
     sum(CASE g.grp WHEN 'b' THEN prompts ELSE 0 END) AS prompts_b
WHERE prompts_a >= $min_prompts OR prompts_b >= $min_prompts
WITH *, CASE group_a WHEN 0 THEN null ELSE toFloat(prompts_a) / group_a END AS share_a,
     CASE group_b WHEN 0 THEN null ELSE toFloat(prompts_b) / group_b END AS share_b
RETURN writer, reader, side, role, prompts_a, prompts_b, share_a, share_b,
       share_a - share_b AS difference, group_a, group_b,
       CASE WHEN prompts_a > 0 AND prompts_b > 0 THEN 'both'
            WHEN prompts_a > 0 THEN 'a only' ELSE 'b only' END AS found_in
ORDER BY abs(coalesce(difference, toFloat(prompts_a - prompts_b))) DESC, writer, reader, side,
         role
LIMIT $limit
