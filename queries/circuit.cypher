// name: circuit
// purpose: The circuit of a root head, or of an ACC run's logit direction, one row per
//   communication edge.
// param: run_id string — the run
// param: layer int[0..]? = null — the root head's layer; null (with head): the run's seed
//   firings are the roots (ACC: the circuit of the IO−S logit direction)
// param: head int[0..]? = null — the root head's index in its layer, or null (with layer)
// param: dest_role string = "END" — the root head's firings' query (destination) role
// param: src_role string = "IO" — the root head's firings' key (source) role
// param: prompt int[0..]? = null — one prompt's firings, or null for all prompts
// returns: prompt int, depth int, layer int, head int, dest int, src int, dest_role string,
//   src_role string, writer string, writer_layer int, writer_head int, side string, pos int,
//   role string, weight float, writer_src int?, writer_src_role string?
// example: {"run_id": "gpt2-sad-256", "layer": 9, "head": 9, "dest_role": "END", "src_role": "IO", "prompt": null}
// example-toy: {"run_id": "toy-ioi-run", "layer": 3, "head": 1, "dest_role": "END", "src_role": "IO", "prompt": null}
//
// Start at the root head's firings `$dest_role → $src_role` (with `layer` and `head` null: at
// the run's seed firings, `seed_weight` set, whatever their roles: on an ACC run the head
// firings that carry the IO−S logit difference at END, so the circuit is the union of the
// circuits traced from every seed; a SAD run has none); for every WRITES edge into a
// reached firing, continue into the writer head's firing(s) of the same run and prompt whose
// `dest` is the position the edge wrote to (`e.pos`); a branch ends where the writer does not
// fire there (layer 0 never does). Rows: the downstream firing (`depth` 0 is the root, else
// the smallest depth at which it is reached), the writer, the side (`q` or `k`), the position
// and role written, the weight, and the writer's own firing at `pos` (`writer_src`,
// `writer_src_role`; null where the branch ends). An edge whose writer fires twice at `pos`
// gives two rows. `circuit-atlas circuit` prints the result as a tree. On an ACC run the writers
// include MLPs, attention biases and the embedding (leaves: `writer_layer`/`writer_head` null
// or no head), and a head writer continues only into its firing at the source token it read
// (`WRITES.writer_pos`). Over all prompts `circuit-atlas circuit` reads `circuit_summary`
// instead, the same traversal aggregated on the server (one row per edge group); these rows
// are for one prompt's tree and for exports of every edge.
//
// How it runs: the root firings by `Firing(run_id, layer, head, dest_role, src_role)` (both roles
// are required, so firings without a role, which that index leaves out, could never be roots),
// or the seeds by `Firing(run_id)` and a filter on `seed_weight` (the other branch of the
// `UNION` is not run: its only row source is an `UNWIND` that is empty unless `layer` is null),
// then level by level for all root firings together: `reduce` over `range(1, top)`, `top`
// the roots' highest layer (a writer is always in an earlier layer, so there are at most
// `top` levels), appends one `COLLECT {}` of the next level's firings, each found by a seek of
// the unique firing index `(run_id, prompt, layer, head, dest, src)` on its prefix (`src IS NOT
// NULL` lets the planner use it). An ACC run stores only the firings its seeds reach (unless
// ingested with `--all-firings`), so its logit circuit is its whole traced graph: on the
// 64-prompt toy-ioi ACC run (535 firings) 1,333 rows, median 148 ms over 6 warm runs, against
// 530 rows and 178 ms for root 3.1 (load 6–8 on the 2 shared cores); for a head root PROFILE
// shows the seed branch's `Firing(run_id)` seek under an `Apply` of the empty `UNWIND`: 0 rows,
// 0 db hits. Each firing is listed once (smallest depth), so paths that reconverge cost
// nothing, and a firing reached from several roots is expanded once per level. Measured with the
// example-toy parameters on a 1,024-prompt toy-ioi run (PROFILE): 1,004 root firings, 2,644
// reached, 11,218 rows, 296,265 db hits (320,243 with the `Firing(run_id, layer, head)` root seek);
// p50 714 ms, p95 816 ms over 20 warm runs (load ≈ 2–3, 2 shared cores; 534 / 619 ms were measured
// before at load ≈ 4: the machine is shared and this template is dominated by moving rows).
// Above the 100 ms target because of the answer's size: the server needs ~240 ms, and moving 11k
// rows of 17 columns into the Python driver ~210 ms (a constant query of the same shape). One
// prompt (`prompt` 0): 11 rows, 26,282 db hits, p50 12 ms, p95 15 ms. A quantified path pattern was
// measured and rejected: `ANY SHORTEST (root) ((a)<-[e:WRITES]-(:Head)<-[:OF_HEAD]-(b) WHERE b.dest
// = e.pos …)*` cannot inline a predicate comparing two elements (`b.dest = e.pos`) into Neo4j
// 5.26's shortest-path automaton and did not finish in 2.5 minutes on 4.5k firings; the same QPP
// without `ANY SHORTEST` is correct but took 1.2 s and 5.5M db hits on a 64-prompt run.
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
WITH root WHERE $prompt IS NULL OR root.prompt = $prompt
WITH collect(root) AS roots, max(root.layer) AS top
WITH reduce(levels = [roots], step IN range(1, coalesce(top, 0)) |
  levels + [COLLECT {
    UNWIND last(levels) AS down
    MATCH (w:Head)-[e:WRITES]->(down)
    MATCH (up:Firing {run_id: down.run_id, prompt: down.prompt, layer: w.layer, head: w.head,
                      dest: e.pos})
    WHERE up.src IS NOT NULL // lets the planner seek the unique firing index by its prefix
      AND (e.writer_pos IS NULL OR up.src = e.writer_pos) // ACC: the source token it read
    RETURN DISTINCT up
  }]) AS levels
UNWIND range(0, size(levels) - 1) AS depth
UNWIND levels[depth] AS f
WITH f, min(depth) AS depth
MATCH (w:Component)-[e:WRITES]->(f)
OPTIONAL MATCH (up:Firing {run_id: f.run_id, prompt: f.prompt, layer: w.layer, head: w.head,
                           dest: e.pos})
WHERE up.src IS NOT NULL AND (e.writer_pos IS NULL OR up.src = e.writer_pos)
RETURN f.prompt AS prompt, depth, f.layer AS layer, f.head AS head, f.dest AS dest,
       f.src AS src, f.dest_role AS dest_role, f.src_role AS src_role,
       w.id AS writer, w.layer AS writer_layer, w.head AS writer_head,
       e.side AS side, e.pos AS pos, e.role AS role, e.weight AS weight,
       up.src AS writer_src, up.src_role AS writer_src_role
ORDER BY prompt, depth, layer DESC, head, dest, src, side DESC, weight DESC
