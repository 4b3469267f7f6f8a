// name: shared_signals
// purpose: The singular vectors a head uses in at least a share of its firings at a role pair, and who writes each of them (from WRITES.parts).
// methods: sad
// param: run_id string — the run
// param: layer int[0..] — the head's layer
// param: head int[0..] — the head's index in its layer
// param: dest_role string = "END" — the firings' query (destination) role
// param: src_role string = "IO" — the firings' key (source) role
// param: min_share float[0..1] = 0.5 — keep vectors in the sparse set of at least this share of the firings
// param: writers int[1..] = 5 — per vector and side, the strongest writers listed
// returns: index int, sigma float, firings int, share float, mean_rank float, side string,
//   writers list<string>, writer_firings list<int>, mean_parts list<float>
// example: {"run_id": "gpt2-sad-256", "layer": 9, "head": 9, "dest_role": "END", "src_role": "IO", "min_share": 0.5, "writers": 5}
// example-toy: {"run_id": "toy-ioi-run", "layer": 3, "head": 1, "dest_role": "END", "src_role": "IO", "min_share": 0.5, "writers": 5}
//
// The head's *signal* at a role pair is the sparse set of singular-vector terms that explains
// its attention score (SAD). A vector in most firings' sparse sets is a recurring feature of
// that decision. `share` = firings using it / the head's firings at the role pair, `mean_rank`
// its mean rank in the sorted terms (0 = the largest term). Per side (`q`: u_k read at the
// destination, `k`: v_k at the source), `writers` are the upstream heads whose WRITES edge
// credits them with that vector (`parts[rank]`, the writer's contribution through u_k or v_k),
// ranked by the summed part; `writer_firings` counts the firings, `mean_parts` averages the
// part there. A side nobody writes through the vector has no row. Runs ingested before schema version 2 have no parts and list no writers.
//
// How it runs: seek of `Firing(run_id, layer, head, dest_role, src_role)` (exactly the head's
// firings at the role pair; both roles are required, so firings without a role, which that index
// leaves out, could never match), expansion to USES (the sparse sets) and WRITES of the same
// firings; aggregation in memory, bounded by the head's firings; writer ids are read once per
// (vector, side, writer), not per write. Measured with the example-toy parameters on a 1,024-prompt
// toy-ioi run (PROFILE): 122,733 db hits (146,711 with the `Firing(run_id, layer, head)` seek, which
// read 12k index entries to keep 1k firings); p50 71 ms, p95 84 ms over 20 warm runs (before, same
// session: 85 / 123 ms) (load ≈ 2–3, 2 shared cores). What remains is the 4k USES and 18k WRITES
// with parts.
MATCH (f:Firing {run_id: $run_id, layer: $layer, head: $head, dest_role: $dest_role,
                 src_role: $src_role})
USING INDEX f:Firing(run_id, layer, head, dest_role, src_role)
WITH collect(f) AS firings
UNWIND firings AS f
MATCH (f)-[u:USES]->(sv:SingularVector)
WITH size(firings) AS n, sv, collect({firing: f, rank: u.rank}) AS uses
WHERE size(uses) >= $min_share * n
WITH n, sv, uses, reduce(s = 0.0, x IN uses | s + x.rank) / size(uses) AS mean_rank
UNWIND uses AS use
WITH n, sv, size(uses) AS using, mean_rank, use.firing AS f, use.rank AS rank
MATCH (w:Component)-[e:WRITES]->(f)
WHERE e.parts IS NOT NULL
WITH n, sv, using, mean_rank, e.side AS side, w, count(*) AS written,
     sum(e.parts[rank]) AS total, avg(e.parts[rank]) AS mean_part
ORDER BY total DESC
WITH n, sv, using, mean_rank, side, // w.id read once per writer, not per write
     collect({writer: w.id, written: written, mean: mean_part})[..$writers] AS top
RETURN sv.index AS index, sv.sigma AS sigma, using AS firings, toFloat(using) / n AS share,
       mean_rank, side, [x IN top | x.writer] AS writers, [x IN top | x.written] AS writer_firings,
       [x IN top | x.mean] AS mean_parts
ORDER BY share DESC, index, side DESC
