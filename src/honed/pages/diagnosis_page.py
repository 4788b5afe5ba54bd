"""The HTML page of a `honed diagnose` result (reflection or following), in the style of `honed report`,
and `write_diagnosis`: a result written as JSON (the machine-readable result) with its page beside it.

The page reads the result's JSON only (`honed.diagnose` computes it and knows nothing of pages). The
"changed as intended" totals are also a section of `honed report`'s page for honed's own runs.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from honed.errors import ConfigError
from honed.pages.html import badge, esc, facts_row, is_number, kv_table, page, plain_text, pre, short, table, write_page


def build_diagnosis_report(result: Mapping[str, Any]) -> str:
    """The HTML page of a `honed diagnose` result (`diagnosis` is "reflection" or "following")."""
    if not isinstance(result, Mapping):
        raise ConfigError("a diagnosis result must be a JSON object")
    if result.get("diagnosis") == "reflection":
        return page(f"honed diagnosis: reflection of {result.get('optimizer')} on {result.get('task')}",
                     _reflection_body(result))
    if result.get("diagnosis") == "following":
        return page(f"honed diagnosis: following in {result.get('run_dir')}", _following_body(result))
    raise ConfigError(f"unknown diagnosis {result.get('diagnosis')!r}; expected 'reflection' or 'following'")


def write_diagnosis(result: Mapping[str, Any], out_dir: str | Path, stem: str | None = None) -> tuple[Path, Path]:
    """`<out_dir>/<stem>.json` and `<stem>.html` (stem: the diagnosis name); returns both paths."""
    directory = Path(out_dir)
    stem = stem or str(result.get("diagnosis") or "diagnosis")
    json_path, html_path = directory / f"{stem}.json", directory / f"{stem}.html"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the diagnosis to {json_path}: {exc}") from exc
    write_diagnosis_report(result, html_path)
    return json_path, html_path


def write_diagnosis_report(result: Mapping[str, Any] | str | Path, out_html: str | Path) -> Path:
    """Write the page of a diagnosis result (the dict, or the path of its JSON file) to `out_html`."""
    if isinstance(result, str | Path):
        try:
            result = json.loads(Path(result).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{result}: cannot read the diagnosis JSON: {exc}") from None
    text = build_diagnosis_report(result)  # type: ignore[arg-type]
    return write_page(text, Path(out_html), "the diagnosis page")


def _rate_text(value: Any) -> str:
    return f"{value:.0%}" if is_number(value) else esc(None)


def _interval_text(interval: Any) -> str:
    """' [27%, 73%]' under a rate: the rate of a dozen reflections means little without it."""
    if isinstance(interval, list | tuple) and len(interval) == 2 and all(is_number(v) for v in interval):
        return f" [{interval[0]:.0%}, {interval[1]:.0%}]"
    return ""


def _interval_label(result: Mapping[str, Any]) -> str | None:
    interval = result.get("interval") if isinstance(result.get("interval"), Mapping) else None
    if not interval or not is_number(interval.get("confidence")):
        return None
    return f"{interval.get('method')} {interval['confidence']:.0%}"


def _reflection_body(result: Mapping[str, Any]) -> str:
    plants = [p for p in result.get("plants") or [] if isinstance(p, Mapping)]
    header = ("<header><h1>honed diagnosis: does the reflection find the planted cause?</h1>"
              "<div class=\"sub\">Each plant puts a known cause of error into the task; the optimizer compiles the "
              "planted task, and each of its reflections is checked for the words that name the cause, after "
              "verbatim copies of training inputs are cut out (so an echoed example does not count). The distractor "
              "has no cause: naming its decoy word is a false identification.</div>"
              + facts_row([("task", result.get("task")), ("optimizer", result.get("optimizer")),
                        ("seed", result.get("seed")), ("budget per compile", result.get("budget")),
                        *[(k, v) for k, v in (("compiles per plant", _repeats_fact(result)),
                                              ("interval", _interval_label(result))) if v is not None],
                        ("train/val", f"{result.get('train_size')}/{result.get('val_size')}"),
                        ("task model", result.get("task_model")), ("optimizer model", result.get("optimizer_model")),
                        ("judge model", result.get("judge_model"))]) + "</header>")
    rows = []
    for p in plants:
        plant = p.get("plant") if isinstance(p.get("plant"), Mapping) else {}
        decoy = p.get("scored_against") == "decoy"
        judge = p.get("judge") if isinstance(p.get("judge"), Mapping) else None
        compiled = p.get("compile") if isinstance(p.get("compile"), Mapping) else {}
        outputs = p.get("optimizer_outputs") if isinstance(p.get("optimizer_outputs"), Mapping) else {}
        calls = p.get("calls") if isinstance(p.get("calls"), Mapping) else {}
        falsely = p.get("falsely_identified")
        verdict = (badge(None if falsely is None else not falsely, "no false identification",
                            "false identification") if decoy
                   else badge(p.get("identified"), "identified", "not identified"))
        rate = p.get("false_identification_rate") if decoy else p.get("identification_rate")
        interval = p.get("false_identification_interval") if decoy else p.get("identification_interval")
        repeats = p.get("repeats") if is_number(p.get("repeats")) else 1
        rows.append((
            f"<a href=\"#plant-{esc(plant.get('kind'))}\"><code>{esc(plant.get('kind'))}</code></a>",
            esc(plant.get("description")),
            (", ".join(f"<code>{esc(k)}</code>" for k in p.get("keywords") or []) or esc(None))
            + ("<div class=\"muted\">decoy: chosen as a trigger would be, never used</div>" if decoy else ""),
            f"{esc(p.get('naming'))}/{esc(p.get('reflection_count'))} ({_rate_text(rate)}"
            f"{html.escape(_interval_text(interval))})"
            f"<div class=\"muted\">{'false identification' if decoy else 'identification'} rate"
            f"{', pooled over ' + esc(repeats) + ' compiles' if repeats > 1 else ''}; from the "
            f"{esc(p.get('source'))}</div>",
            verdict,
            (f"{esc(judge.get('naming'))}/{esc(judge.get('verdicts'))} ({_rate_text(judge.get('rate'))}"
             f"{html.escape(_interval_text(judge.get('interval')))})" if judge else esc(None)),
            f"{esc(outputs.get('naming'))}/{esc(outputs.get('reflections'))} ({_rate_text(outputs.get('rate'))})",
            f"{esc(compiled.get('baseline_val_score'))} → {esc(compiled.get('val_score'))}"
            + ("<div class=\"muted\">first compile</div>" if repeats > 1 else ""),
            f"{esc(calls.get('lm_calls'))} <span class=\"muted\">(optimizer {esc(calls.get('optimizer_calls'))})"
            "</span>",
        ))
    summary = ("<section id=\"summary\"><h2>Summary</h2>"
               + table(("plant", "planted cause", "keywords", "naming / reflections [interval]", "verdict", "judge",
                         "all optimizer outputs", "validation seed → final", "model calls"), rows)
               + "</section>")
    sections = [header, summary]
    for p in plants:
        plant = p.get("plant") if isinstance(p.get("plant"), Mapping) else {}
        details = plant.get("details") if isinstance(plant.get("details"), Mapping) else {}
        facts = {"planted task": plant.get("planted_task"), "affected training examples":
                 f"{len(plant.get('affected') or [])} of {plant.get('train_size')}",
                 "gold outputs changed": len(plant.get("changed") or []),
                 "decoy keywords": plant.get("decoy_keywords") or None, **details,
                 **(p.get("compile") if isinstance(p.get("compile"), Mapping) else {})}
        reflections = [r for r in p.get("reflections") or [] if isinstance(r, Mapping)]
        per_repeat = [r for r in p.get("per_repeat") or [] if isinstance(r, Mapping)]
        pooled = len(per_repeat) > 1
        r_rows = [(esc(i), *((esc(r.get("repeat")),) if pooled else ()), esc(r.get("kind")),
                   f"<code>{esc(r.get('step'))}</code>",
                   pre(plain_text(r.get("text"))) + (f"<div class=\"muted\">{esc(r.get('chars'))} characters in "
                                                       "full</div>" if (r.get("chars") or 0) > len(
                                                           str(r.get("text") or "")) else ""),
                   ", ".join(f"<code>{esc(k)}</code>" for k in r.get("keyword_hits") or []) or esc(None),
                   badge(r.get("named"), "names it", "does not"), badge(r.get("judge"), "names it", "does not"))
                  for i, r in enumerate(reflections, start=1)]
        listing = (table(("#", *(("compile",) if pooled else ()), "kind", "step", "reflection", "keyword hits",
                           "keyword verdict", "judge"), r_rows)
                   if r_rows else "<p class=\"muted\">The optimizer made no reflection on this task.</p>")
        sections.append(f"<section id=\"plant-{esc(plant.get('kind'))}\"><h2>Plant <code>{esc(plant.get('kind'))}"
                        f"</code></h2><p>{esc(plant.get('description'))}</p>"
                        f"<details><summary>Plant and compile details</summary>{kv_table(facts)}</details>"
                        + (_repeats_table(per_repeat) if pooled else "") +
                        f"<h3>Reflections ({len(reflections)})</h3>{listing}</section>")
    return "\n".join(sections)


def _repeats_fact(result: Mapping[str, Any]) -> Any:
    """'4' or 'up to 8, until 10 reflections'; None (not shown) for a result from before repeats."""
    repeats = result.get("repeats")
    if repeats is None:
        return None
    least = result.get("min_reflections")
    return f"up to {repeats}, until {least} reflections" if least else repeats


def _repeats_table(per_repeat: list[Mapping[str, Any]]) -> str:
    """Each compile of a pooled plant: whether one seed carries the pooled rate, and what each cost."""
    rows = []
    for r in per_repeat:
        calls = r.get("calls") if isinstance(r.get("calls"), Mapping) else {}
        rows.append((esc(r.get("repeat")), esc(r.get("seed")),
                     f"{esc(r.get('naming'))}/{esc(r.get('reflection_count'))} ({_rate_text(r.get('rate'))})",
                     f"{esc(r.get('baseline_val_score'))} → {esc(r.get('val_score'))}", esc(r.get("stop_reason")),
                     esc(calls.get("lm_calls")), f"<code>{esc(r.get('run_dir'))}</code>"))
    return (f"<h3>Compiles ({len(per_repeat)})</h3>"
            + table(("compile", "compile seed", "naming / reflections", "validation: seed program → final", "stopped",
                      "model calls", "run directory"), rows))


def _following_body(result: Mapping[str, Any]) -> str:
    settings = result.get("settings") if isinstance(result.get("settings"), Mapping) else {}
    header = ("<header><h1>honed diagnosis: do accepted refinements change what the target does?</h1>"
              f"<div class=\"sub\">Run directory <code>{esc(result.get('run_dir'))}</code>. Each refinement was "
              "verified on the examples it targets (all wrong under its parent) and on passing examples re-run as a "
              "regression check; the counts are the ledger's.</div>"
              + facts_row([("optimizer", result.get("optimizer")),
                        *[(k, v) for k, v in settings.items() if k != "optimizer"],
                        ("finished", result.get("finished"))]) + "</header>")
    parts = [header]
    if result.get("note"):
        parts.append(f"<p class=\"muted\">{esc(result.get('note'))}</p>")
    if result.get("supported", True):
        parts.append(changed_as_intended_section(result))
    rows = []
    for r in result.get("refinements") or []:
        if not isinstance(r, Mapping):
            continue
        about = r.get("about") if isinstance(r.get("about"), Mapping) else {}
        if r.get("kind") == "claim":
            what = (f"<b>cause:</b> {esc(about.get('cause'))}"
                    f"<div><b>instruction:</b> {esc(about.get('new_instruction'))}</div>")
        else:
            what = ", ".join(f"<b>{esc(k)}:</b> {esc(v)}" for k, v in about.items()
                             if k not in ("following_before", "following_after") and v not in (None, ""))
        following = ""
        if "following_before" in about:
            following = f"{_rate_text(about.get('following_before'))} → {_rate_text(about.get('following_after'))}"
        examples = r.get("examples") if isinstance(r.get("examples"), Mapping) else {}
        rows.append((f"<code>{esc(r.get('step'))}</code>", esc(r.get("kind")), esc(r.get("origin")), what,
                     f"{esc(r.get('fixed'))} fixed, {esc(r.get('still_wrong'))} still wrong of "
                     f"{esc(r.get('targeted'))}{_ids(examples, 'fixed', 'still_wrong')}",
                     f"{esc(r.get('still_right'))} still right, {esc(r.get('broken'))} broken of "
                     f"{esc(r.get('checked_passing'))}{_ids(examples, 'broken')}",
                     _rate_text(r.get("intended_rate")), badge(r.get("accepted"), "accepted", "rejected"),
                     badge(r.get("in_final"), "yes", "no"), following or esc(None)))
    if rows:
        parts.append("<section id=\"refinements\"><h2>Refinements</h2>"
                     + table(("step", "kind", "origin", "what it changed", "targeted examples", "passing examples",
                               "intended rate", "verdict", "in final", "edited step followed (before → after)"), rows)
                     + "</section>")
    following = [f for f in result.get("following") or [] if isinstance(f, Mapping)]
    if following:
        steps = list(dict.fromkeys(k for f in following if isinstance(f.get("rates"), Mapping) for k in f["rates"]))
        f_rows = [[f"<code>{esc(f.get('step'))}</code>", short(f.get("candidate")),
                   *[_rate_text((f.get("rates") or {}).get(s)) for s in steps]] for f in following]
        parts.append("<section id=\"following\"><h2>Per-step following rates</h2><p class=\"muted\">Share of the "
                     "observed runs in which the target's step output matched the reference execution's.</p>"
                     + table(("observed at", "candidate", *[str(s) for s in steps]), f_rows) + "</section>")
    return "\n".join(parts)


def changed_as_intended_section(result: Mapping[str, Any]) -> str:
    """The totals of a following diagnosis: how many targeted examples the refinements fixed, how many
    passing ones they broke. Also a section of `honed report`'s page for honed's own runs."""
    totals = result.get("totals") if isinstance(result.get("totals"), Mapping) else {}
    t_rows = []
    for label, key in (("accepted (held)", "accepted"), ("all verified", "all")):
        t = totals.get(key) if isinstance(totals.get(key), Mapping) else {}
        t_rows.append((html.escape(label), esc(t.get("refinements")), esc(t.get("targeted")), esc(t.get("fixed")),
                       esc(t.get("still_wrong")), esc(t.get("checked_passing")), esc(t.get("still_right")),
                       esc(t.get("broken")), _rate_text(t.get("intended_rate")), esc(t.get("in_final"))))
    return ("<section id=\"totals\"><h2>Changed as intended</h2><p>Did the refinements change what the target "
            "does? Intended rate = targeted examples fixed / targeted examples (<code>honed diagnose following"
            "</code> lists them one by one).</p>"
            + table(("refinements", "count", "targeted", "fixed", "still wrong", "passing re-run",
                      "still right", "broken", "intended rate", "in the final program"), t_rows)
            + "</section>")


def _ids(examples: Mapping[str, Any], *keys: str) -> str:
    """Which examples a refinement fixed, left wrong or broke, by id (ledgers that record them)."""
    parts = [f"{key.replace('_', ' ')}: {', '.join(esc(i) for i in examples[key])}"
             for key in keys if isinstance(examples.get(key), list) and examples[key]]
    return f"<div class=\"muted\">{'; '.join(parts)}</div>" if parts else ""
