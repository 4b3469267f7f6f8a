// name: validations
// purpose: The intervention results `circuit-atlas validate` stored for a run, one row per edge.
// param: run_id string — the run
// param: mode string[global|local]? = null — "global" or "local", or null for both
// returns: writer string, head string, side string, role string, dest_role string,
//   src_role string, mode string, factor float, n_prompts int, n_controls int, support int,
//   attention float, logit_diff float, signal_attention_mean float, signal_attention_std float,
//   control_attention_mean float, control_attention_std float, signal_logit_mean float,
//   signal_logit_std float, control_logit_mean float, control_logit_std float,
//   attention_ratio float, logit_ratio float, prompts list<int>, signal_attention list<float>,
//   control_attention list<float>, signal_logit list<float>, control_logit list<float>
// example: {"run_id": "gpt2-sad-256", "mode": null}
// example-toy: {"run_id": "toy-ioi-run", "mode": null}
//
// A `(:Validation)` node per (run, writer, head, side, role, dest_role, src_role, mode,
// factor): factor 0 removes the edge's signal, 2 doubles it. Δ values are intervened − clean,
// `*_mean`/`*_std` over prompts (control: over prompts × random draws); `*_ratio` is
// mean |Δ signal| / mean |Δ control|. The lists are per prompt (control: mean over draws).
// `support` is the edge's COMMUNICATES `n_prompts` when it was validated.
MATCH (v:Validation {run_id: $run_id})
WHERE $mode IS NULL OR v.mode = $mode
RETURN v.writer AS writer, v.head AS head, v.side AS side, v.role AS role,
       v.dest_role AS dest_role, v.src_role AS src_role, v.mode AS mode, v.factor AS factor,
       v.n_prompts AS n_prompts, v.n_controls AS n_controls, v.support AS support,
       v.attention AS attention, v.logit_diff AS logit_diff,
       v.signal_attention_mean AS signal_attention_mean,
       v.signal_attention_std AS signal_attention_std,
       v.control_attention_mean AS control_attention_mean,
       v.control_attention_std AS control_attention_std,
       v.signal_logit_mean AS signal_logit_mean, v.signal_logit_std AS signal_logit_std,
       v.control_logit_mean AS control_logit_mean, v.control_logit_std AS control_logit_std,
       v.attention_ratio AS attention_ratio, v.logit_ratio AS logit_ratio,
       v.prompts AS prompts, v.signal_attention AS signal_attention,
       v.control_attention AS control_attention, v.signal_logit AS signal_logit,
       v.control_logit AS control_logit
ORDER BY v.head DESC, v.mode, v.factor, v.support DESC, v.writer
