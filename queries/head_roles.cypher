// Where a head fires in a run: its (dest_role → src_role) pairs, most frequent first.
// Use it to pick a circuit root's roles (positions without an IOI role show as 'other').
// Parameters: $run_id, $layer, $head, $prompt (integer or null = all prompts)
// Example:    {run_id: 'gpt2-sad-256', layer: 9, head: 9, prompt: null}
// Returns:    dest_role, src_role, firings, prompts (distinct prompts with such a firing)
MATCH (f:Firing {run_id: $run_id, layer: $layer, head: $head})
WHERE $prompt IS NULL OR f.prompt = $prompt
RETURN coalesce(f.dest_role, 'other') AS dest_role, coalesce(f.src_role, 'other') AS src_role,
       count(*) AS firings, count(DISTINCT f.prompt) AS prompts
ORDER BY prompts DESC, firings DESC, dest_role, src_role
