"""Diagnostics for any optimizer: the two questions of Ma et al. (2024), "Are Large Language Models Good
Prompt Optimizers?"

1. Does the optimizer's reflection find the true cause of the errors, or repeat its own prior about the
   task? `diagnose_reflection(task, optimizer)` plants a known cause (`plants`), compiles, and scores
   the reflections against it.
2. Does an accepted refinement change what the target model does? `diagnose_following(run_dir)` reads
   the verification outcomes of every refinement from a compile's ledger.

Results are plain JSON; this package reads run directories (`honed.runs`) and never renders a page:
`honed diagnose` writes each result with its HTML page beside it (`honed.pages.diagnosis_page`).

JSON schemas (every result also carries `schema` and `diagnosis`):

`honed.diagnose.reflection/1` (`diagnosis: "reflection"`)::

    task, optimizer, seed, budget, train_size, val_size, task_model, optimizer_model, judge_model
    repeats, min_reflections, interval: {method: "wilson", confidence: 0.9}
    plants: [                                   # one per plant kind, in the order asked
      repeats                                   # compiles pooled (seeds seed .. seed+repeats-1)
      per_repeat: [{repeat, seed, run_dir, reflection_count, naming, rate, baseline_val_score, val_score,
                    stop_reason, calls}]
      plant: {kind, task, planted_task, seed, description, keywords, decoy_keywords,
              affected: [example id], changed: [example id], train_size, details: {...}}
      scored_against: "cause" | "decoy"         # decoy: the distractor, which has no cause
      keywords: [str]                           # what the reflections were searched for
      source: "ledger" | "optimizer_model"      # honed's optimizers: ledger fields; DSPy's: captured outputs
      reflections: [{kind, step, repeat, text (truncated), chars, keyword_hits, named, judge}]
      reflection_count, naming                  # naming: reflections whose keyword verdict is true
      identification_rate, identified           # null for the distractor
      identification_interval: [low, high] | null     # Wilson, pooled over repeats
      false_identification_rate, falsely_identified   # distractor only, else null
      false_identification_interval: [low, high] | null
      judge: {model, verdicts, naming, rate, any, calls, interval} | null
      optimizer_outputs: {calls, failed_calls, task_answers, reflections, naming, rate}  # uniform capture
      compile: {baseline_val_score, val_score, verification_rate, stop_reason, run_dir, ...}
      calls: {lm_calls, budget_used, budget, cache_hits, optimizer_calls, judge_calls}
    ]
    summary: {identified: {kind: bool}, identification_rate: {kind: float|null},
              false_identification_rate: float|null, lm_calls}

`honed.diagnose.following/1` (`diagnosis: "following"`)::

    run_dir, optimizer, settings: {optimizer, budget, seed, task_model, optimizer_model}, finished
    supported: bool, note: str | null          # DSPy optimizers: supported false, note says why
    refinements: [{step, kind: "claim"|"step_edit"|"demonstration"|"edit", candidate, parent, origin,
                   accepted, in_final, targeted, fixed, still_wrong, checked_passing, still_right, broken,
                   intended_rate, about: {...}}]   # about: the claim's cause/instruction, or the step edit
                                                   # with following_before/following_after of its step
    totals: {accepted: T, all: T}   # T: {refinements, targeted, fixed, still_wrong, checked_passing,
                                    #     still_right, broken, fixed_any, in_final, intended_rate}
    following: [{step, candidate, rates: {step id: float}, departures, failures, n}]   # behavior only
    final_following: {step id: float}                                                   # behavior only
"""

from honed.diagnose.following import diagnose_following
from honed.diagnose.plants import PLANT_KINDS, Plant, PlantError, plant
from honed.diagnose.reflection import diagnose_reflection

__all__ = ["PLANT_KINDS", "Plant", "PlantError", "diagnose_following", "diagnose_reflection", "plant"]
