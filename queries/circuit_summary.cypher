// name: circuit_summary
// purpose: The circuit of a root head, or of an ACC run's logit direction, over all prompts,
//   aggregated into (head, dest role → src role) classes: one row per edge group.
// param: run_id string — the run
// param: layer int[0..]? = null — the root head's layer; null (with head): the run's seed
//   firings are the roots (ACC: the circuit of the IO−S logit direction)
// param: head int[0..]? = null — the root head's index in its layer, or null (with layer)
// param: dest_role string = "END" — the root head's firings' query (destination) role
// param: src_role string = "IO" — the root head's firings' key (source) role
// returns: layer int, head int, dest_role string, src_role string, prompts int,
//   root_prompts int, side string?, writer string?, role string?, n_prompts int?,
//   mean_weight float?, weights list<float>, source_layers list<int>, source_heads list<int>,
//   source_dest_roles list<string>, source_src_roles list<string>
// example: {"run_id": "gpt2-sad-256", "layer": 9, "head": 9, "dest_role": "END", "src_role": "IO"}
// example-toy: {"run_id": "toy-ioi-run", "layer": 3, "head": 1, "dest_role": "END", "src_role": "IO"}
//
// The same traversal as `circuit` (read its notes: the roots, the seeds of an ACC run, the
// writer's firing at the position written, `writer_pos`), over all prompts, aggregated on the
// server exactly as `circuit-atlas circuit` aggregates `circuit`'s rows without `--prompt`. A
// class is a head firing from `dest_role` to `src_role` (a position without a role: `other`) in
// any prompt. One row per edge group into a class: the class, `side` (`q`/`k`), `writer`, the
// `role` written; `n_prompts`, the distinct prompts of the group's WRITES edges; `mean_weight`,
// the mean over its distinct (firing, side, writer) edges (an ACC head writing through several
// source tokens counts once, with its largest weight, as the per-edge rows are read), and
// `weights`, those edges' weights (the CLI averages them itself, with Python's correctly
// rounded `fmean`, so that its figures equal those built from `circuit`'s rows to the last
// digit; the server's sum rounds in another order); the writer's own firing classes at the
// position written, where the traversal goes on, as four parallel lists (`source_layers`,
// `source_heads`, `source_dest_roles`, `source_src_roles`; empty: the branch ends). Every row
// also carries its class's `prompts`, the distinct prompts in which a firing of the class was
// reached with edges of its own or as a writer's firing, and `root_prompts`, those in which such
// a firing is a root (0: not a root). A class reached only as a writer's firing, without edges
// of its own, has one row with `side` and the edge columns null.
//
// How it runs: the roots as in `circuit`, grouped by prompt, and each prompt's circuit on its
// own (a WRITES edge joins firings of one prompt, so the circuit over all prompts is the union
// of the prompts' circuits): the query holds one prompt's firings and edges at a time and then
// flat per-group sums and lists, so its memory follows the answer, not every edge map of the
// run (SmolLM2-135M 1,024 prompts, root 24.4: 89 MB; held as lists per prompt 483 MB; as one
// traversal of all prompts it failed at the server's 1.34 GiB transaction memory limit).
// Within a prompt the reached firings go layer by layer instead of depth by depth: a writer is
// always in an earlier layer, so when the sweep comes to a layer every firing of it that the
// circuit reaches has been found, and each is expanded once (by depth, as `circuit` goes, a
// firing reached over paths of several lengths is expanded once per length: 25,475 expansions
// for 7,540 firings on SmolLM2 256). Each step is one `COLLECT {}` over the firings found so far
// that are in its layer, a seek of the unique firing index per WRITES edge from a head. Then
// once per reached firing (a root, and whether a writer's edge reaches it) its class, its WRITES
// edges and the writer's firing at `pos`, grouped per (firing, side, writer, role written), then
// per edge group of the prompt (its weights, its distinct source classes) and per class (present
// in the prompt, a root there); a row per weight and per source class leaves the prompt, and the
// groups sum them over the prompts. Measured with the example-toy parameters on the 1,024-prompt
// toy-ioi run (PROFILE): 2,644 reached firings, 158 rows, 281,219 db hits, 4.0 MB (one traversal
// of all prompts: 279,211 db hits, 64.2 MB); p50 274–306 ms, p95 282–322 ms over 20 warm runs,
// as before (`circuit` with `prompt` null: 11,218 rows, 310,141 db hits, 357 / 571 ms). As
// `circuit-atlas circuit` builds it (query and Python, 15 runs, before this change): 238 / 243 ms
// against 429 / 677 ms from `circuit`'s rows; SmolLM2-135M 64 prompts, root 24.4: 624 / 888
// against 1,033 / 1,215 ms. SmolLM2-135M 256 prompts (root 24.4 END→IO): 7,540 firings, 10,850
// rows, ~1.67M db hits, p95 2.0–2.5 s; 1,024 prompts: 17,952 rows holding 231,613 weights,
// 6,458,779 db hits, 7.1 / 7.2 s (`circuit`: 231,613 rows, 12.8 / 13.0 s).
// Still over the 100 ms target: the traversal itself is most of it (on SmolLM2, the levels
// alone ~0.8 s and the firings' edges with their grouping ~0.6 s of ~1.6 s on the server at
// load ≈ 3; producing the 10,850 rows the rest), and its size is the answer's: every reached
// firing's every edge is read. One prompt stays the fast path (`circuit` with `prompt`).
CALL () {
  MATCH (root:Firing {run_id: $run_id, layer: $layer, head: $head, dest_role: $dest_role,
                      src_role: $src_role})
  USING INDEX root:Firing(run_id, layer, head, dest_role, src_role)
  RETURN root
  UNION
  UNWIND CASE WHEN $layer IS NULL AND $head IS NULL THEN [true] ELSE [] END AS seeds
  MATCH (root:Firing {run_id: $run_id})
  WHERE root.seed_weight IS NOT NULL
  RETURN root
}
WITH root.prompt AS prompt, collect(root) AS roots
// prompt by prompt (a WRITES edge joins firings of one prompt): its circuit, per edge group
CALL (roots) {
  WITH roots, reduce(top = 0, r IN roots | CASE WHEN r.layer > top THEN r.layer ELSE top END)
    AS top
  // levels[0]: the roots; then per layer, top down, the writers' firings of that layer's firings
  WITH reduce(levels = [roots], sweep IN range(top, 1, -1) |
    levels + [COLLECT {
      UNWIND levels AS found
      UNWIND found AS down
      WITH down WHERE down.layer = sweep
      WITH DISTINCT down
      MATCH (w:Head)-[e:WRITES]->(down)
      MATCH (up:Firing {run_id: down.run_id, prompt: down.prompt, layer: w.layer, head: w.head,
                        dest: e.pos})
      WHERE up.src IS NOT NULL // lets the planner seek the unique firing index by its prefix
        AND (e.writer_pos IS NULL OR up.src = e.writer_pos) // ACC: the source token it read
      RETURN DISTINCT up
    }]) AS levels
  UNWIND range(0, size(levels) - 1) AS step
  UNWIND levels[step] AS f
  // each reached firing once: a root, and whether a writer's edge reaches it
  WITH f, min(step) = 0 AS root, max(step) > 0 AS written_to
  WITH f, root, written_to, f.layer AS layer, f.head AS head,
       coalesce(f.dest_role, 'other') AS dest_role, coalesce(f.src_role, 'other') AS src_role
  OPTIONAL MATCH (w:Component)-[e:WRITES]->(f)
  OPTIONAL MATCH (up:Firing {run_id: $run_id, prompt: f.prompt, layer: w.layer, head: w.head,
                             dest: e.pos})
  WHERE up.src IS NOT NULL AND (e.writer_pos IS NULL OR up.src = e.writer_pos)
  // one edge per (firing, side, writer, role written), with the writer's firings there
  WITH root, written_to, layer, head, dest_role, src_role, e.side AS side, w.id AS writer,
       coalesce(e.role, 'other') AS role, max(e.weight) AS weight, collect(up) AS ups, f
  // per edge group of a class in this prompt: its weights and the writer's firing classes
  WITH layer, head, dest_role, src_role, side, writer, role,
       max(CASE WHEN written_to OR side IS NOT NULL THEN 1 ELSE 0 END) AS present,
       max(CASE WHEN root AND side IS NOT NULL THEN 1 ELSE 0 END) AS rooted,
       collect(weight) AS weights, collect(ups) AS up_lists
  WITH layer, head, dest_role, src_role, side, writer, role, present, rooted, weights,
       COLLECT {
         UNWIND up_lists AS ups
         UNWIND ups AS up
         RETURN DISTINCT [up.layer, up.head, coalesce(up.dest_role, 'other'),
                          coalesce(up.src_role, 'other')] AS up_class
       } AS up_classes
  // the class's presence in this prompt on one of its rows; then a row per weight and per
  // source class, so that the prompts' rows add into flat lists
  WITH layer, head, dest_role, src_role, max(present) AS present, max(rooted) AS rooted,
       collect({side: side, writer: writer, role: role, weights: weights,
                up_classes: up_classes}) AS groups
  UNWIND range(0, size(groups) - 1) AS i
  WITH layer, head, dest_role, src_role, groups[i] AS group,
       CASE i WHEN 0 THEN present ELSE 0 END AS present,
       CASE i WHEN 0 THEN rooted ELSE 0 END AS rooted
  UNWIND [{first: true}] + [w IN group.weights | {weight: w}]
         + [c IN group.up_classes | {up_class: c}] AS item
  RETURN layer, head, dest_role, src_role, group.side AS side, group.writer AS writer,
         group.role AS role, item.weight AS weight, item.up_class AS up_class,
         CASE WHEN item.first THEN present ELSE 0 END AS present,
         CASE WHEN item.first THEN rooted ELSE 0 END AS rooted,
         CASE WHEN item.first AND group.side IS NOT NULL THEN 1 ELSE 0 END AS in_prompt
}
// over the prompts: per edge group, the prompts it is in, its weights and source classes
WITH layer, head, dest_role, src_role, side, writer, role, sum(present) AS present,
     sum(rooted) AS rooted, sum(in_prompt) AS n_prompts, collect(weight) AS weights,
     collect(DISTINCT up_class) AS up_classes
WITH layer, head, dest_role, src_role, sum(present) AS prompts, sum(rooted) AS root_prompts,
     collect(CASE WHEN side IS NOT NULL
                  THEN {side: side, writer: writer, role: role, n_prompts: n_prompts,
                        weights: weights, up_classes: up_classes} END) AS groups
WHERE prompts > 0
UNWIND CASE groups WHEN [] THEN [null] ELSE groups END AS edge
WITH layer, head, dest_role, src_role, prompts, root_prompts, edge,
     COLLECT { UNWIND edge.up_classes AS up_class RETURN up_class ORDER BY up_class }
       AS up_classes
RETURN layer, head, dest_role, src_role, prompts, root_prompts, edge.side AS side,
       edge.writer AS writer, edge.role AS role, edge.n_prompts AS n_prompts,
       CASE WHEN edge IS NULL THEN null
            ELSE reduce(total = 0.0, w IN edge.weights | total + w) / size(edge.weights)
       END AS mean_weight,
       coalesce(edge.weights, []) AS weights,
       [c IN up_classes | c[0]] AS source_layers, [c IN up_classes | c[1]] AS source_heads,
       [c IN up_classes | c[2]] AS source_dest_roles, [c IN up_classes | c[3]] AS source_src_roles
ORDER BY layer DESC, head, dest_role, src_role, side DESC, writer, role
