// The SAD circuit of a root head: the recursion of DESIGN §2, one row per communication edge.
// Start at the root head's firings at ($dest_role → $src_role) in run $run_id (one prompt, or
// all when $prompt is null). For every WRITES edge into a reached firing, the writer head's
// firing(s) in the same run and prompt whose destination is the position it wrote to (e.pos)
// are reached too; a branch ends where the writer has no such firing (layer 0 never fires).
// Expansion is level by level (a writer is always in an earlier layer, so at most root.layer
// levels), each level by unique-index seeks; every reached firing is listed once, at its
// smallest depth, so reconverging paths cost nothing extra.
// Parameters: $run_id, $layer, $head, $dest_role, $src_role, $prompt (integer or null)
// Example:    {run_id: 'gpt2-sad-256', layer: 9, head: 9, dest_role: 'END', src_role: 'IO',
//              prompt: null}
// Returns:    the downstream firing (prompt, depth: 0 = root, layer, head, dest, src, roles),
//             the writer (id, layer, head), side ('q' | 'k'), pos and role written, weight,
//             and the writer's own firing at pos (writer_src, writer_src_role; null = the
//             branch ends there). An edge whose writer fires twice at pos gives two rows.
MATCH (root:Firing {run_id: $run_id, layer: $layer, head: $head})
WHERE root.dest_role = $dest_role AND root.src_role = $src_role
  AND ($prompt IS NULL OR root.prompt = $prompt)
WITH root, reduce(levels = [[root]], step IN range(1, root.layer) |
  levels + [COLLECT {
    UNWIND last(levels) AS down
    MATCH (w:Head)-[e:WRITES]->(down)
    MATCH (up:Firing {run_id: down.run_id, prompt: down.prompt, layer: w.layer, head: w.head,
                      dest: e.pos})
    WHERE up.src IS NOT NULL // lets the planner seek the unique firing index by its prefix
    RETURN DISTINCT up
  }]) AS levels
UNWIND range(0, size(levels) - 1) AS depth
UNWIND levels[depth] AS f
WITH f, min(depth) AS depth
MATCH (w:Component)-[e:WRITES]->(f)
OPTIONAL MATCH (up:Firing {run_id: f.run_id, prompt: f.prompt, layer: w.layer, head: w.head,
                           dest: e.pos})
WHERE up.src IS NOT NULL
RETURN f.prompt AS prompt, depth, f.layer AS layer, f.head AS head, f.dest AS dest,
       f.src AS src, f.dest_role AS dest_role, f.src_role AS src_role,
       w.id AS writer, w.layer AS writer_layer, w.head AS writer_head,
       e.side AS side, e.pos AS pos, e.role AS role, e.weight AS weight,
       up.src AS writer_src, up.src_role AS writer_src_role
ORDER BY prompt, depth, layer DESC, head, dest, src, side DESC, weight DESC
