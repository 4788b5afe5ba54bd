"""The HTML report of a compile: built from a real (scripted-model) run directory or an artifact."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from films import data, program

import honed
from honed.optimizers import ReflectiveRefine, read_ledger
from honed.report import build_report, write_report
from honed.testing import ScriptedLM, block_model_requests

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")
CAUSE = 'says positive for bad films <script>alert("owned")</script> & <b>bold</b>'
FINAL_INSTRUCTION = "Be careful with negative words & 'bad' films."


def _answer(messages, schema):
    """Target: 'positive' unless told to be careful, then right except on film 105 (val score 7/8).
    Optimizer: always blames negative words, with markup in its cause."""
    if "new_instruction" in schema["properties"]:
        return {"cause": CAUSE, "explains": [1, 2], "new_instruction": FINAL_INSTRUCTION, "show_examples": False}
    system, last = messages[0]["content"], messages[-1]["content"]
    if "careful" in system and "number 105" not in last:
        return {"sentiment": "negative" if "bad" in last else "positive"}
    return {"sentiment": "positive"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One real ReflectiveRefine compile, scripted models only; shared (read-only) by the tests below."""
    root = tmp_path_factory.mktemp("report")
    with block_model_requests():
        honed.configure(model=ScriptedLM(_answer), cache_dir=root / "cache", num_threads=1)
        optimizer = ReflectiveRefine(honed.ExactMatch("sentiment"), budget=300, minibatch=8, max_rounds=3, seed=0,
                                     progress=False)
        optimizer.compile(program(), trainset=data(16), valset=data(8, offset=100), run_dir=root / "run")
    return root / "run"


@pytest.fixture(scope="module")
def page(run_dir) -> str:
    return build_report(run_dir)


def _records(run_dir: Path) -> list[dict]:
    return read_ledger(run_dir / "ledger.jsonl")


def _pngs(page: str) -> list[bytes]:
    return [base64.b64decode(b64, validate=True)
            for b64 in re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_the_report_is_one_self_contained_html_page_with_a_png_plot(page):
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<html") == 1 and page.count("</html>") == 1 and page.count("<body") == 1
    pngs = _pngs(page)
    assert pngs and all(png.startswith(PNG_MAGIC) for png in pngs)
    # nothing fetched from anywhere: no links, no remote sources, no scripts at all
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page, re.IGNORECASE)
    assert "<link" not in page.lower() and "<script" not in page.lower()


def test_every_validation_score_in_the_ledger_is_on_the_page_as_written(run_dir, page):
    records = _records(run_dir)
    validations = [r for r in records if r["kind"] == "validate"]
    assert len(validations) >= 2 and {r["step"] for r in validations} >= {"seed/val"}
    assert any(r["score"] not in (0.0, 0.5, 1.0) for r in validations)  # a non-round score, e.g. 0.875
    rows = re.findall(r"<tr>.*?</tr>", page, re.DOTALL)
    for record in validations:
        row = next(r for r in rows if f"<code>{html.escape(record['step'])}</code>" in r and "<b>" in r)
        assert f"<b>{record['score']!r}</b>" in row
        assert f"<td>{record['n']}</td>" in row and f"<td>{record['budget_used']}</td>" in row
    final = next(r for r in records if r["kind"] == "final")
    assert f"{final['baseline_val_score']!r} → {final['val_score']!r}" in page
    assert f">{final['budget_used']}<" in page and f">{final['paid_calls']}<" in page
    assert f">{final['elapsed_s']!r} s<" in page


def test_model_text_in_a_claim_is_escaped(run_dir, page):
    claims = [r for r in _records(run_dir) if r["kind"] == "claim"]
    assert claims and claims[0]["cause"] == CAUSE
    assert html.escape(CAUSE) in page
    assert "<script" not in page and "<b>bold</b>" not in page


def test_the_final_instruction_is_shown_beside_the_seed(run_dir, page):
    final = next(r for r in _records(run_dir) if r["kind"] == "final")
    assert final["candidate"]["predictors"]["predict"]["instructions"] == FINAL_INSTRUCTION
    section = page[page.index('id="predictors"'):page.index('id="claims"')]
    assert html.escape(FINAL_INSTRUCTION) in section and "Classify." in section
    assert final["candidate"]["id"] in section
    assert f"<pre>{html.escape(final['stop_reason'])}</pre>" in page[page.index('id="stop"'):]
    assert final["claims"] >= 1 and final["claims_held"] >= 1  # the claim table says which candidates held
    assert 'class="badge ok">held<' in page[page.index('id="claims"'):]
    gain = final["gain_over_seed"]  # 3 won, 0 lost on validation: p = 1/8
    assert (gain["wins"], gain["losses"], gain["holds"]) == (3, 0, True)
    cost = page[page.index('id="cost"'):page.index("</section>", page.index('id="cost"'))]
    assert "best candidate vs seed" in cost and "+3 / −0" in cost and "p=0.125" in cost


def test_the_page_says_whether_the_refinements_changed_what_the_target_does(run_dir, page):
    from honed.diagnose import diagnose_following

    totals = diagnose_following(run_dir)["totals"]["accepted"]
    assert totals["refinements"] >= 1 and totals["targeted"] >= 1
    section = page[page.index('id="totals"'):]
    section = section[:section.index("</section>")]
    assert "Changed as intended" in section
    row = re.search(r"<tr><td>accepted \(held\)</td>(.*?)</tr>", section).group(1)
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert cells[:3] == [str(totals["refinements"]), str(totals["targeted"]), str(totals["fixed"])]


@pytest.mark.parametrize("make", ["missing", "empty_dir", "not_json", "not_artifact"])
def test_a_bad_source_is_a_config_error_naming_it(tmp_path, make):
    source = tmp_path / f"source-{make}"
    if make == "empty_dir":
        source.mkdir()
    elif make == "not_json":
        source.write_text("this is not json", encoding="utf-8")
    elif make == "not_artifact":
        source.write_text(json.dumps({"hello": 1}), encoding="utf-8")
    with pytest.raises(honed.ConfigError, match=re.escape(str(source))):
        build_report(source)


def _artifact(run_dir: Path | str | None) -> dict:
    provenance = {"honed": "0.1.0", "created_at": "2025-01-01T00:00:00Z"}
    if run_dir is not None:
        provenance["run_dir"] = str(run_dir)
    return {"schema_version": 1,
            "program": {"class": "honed.programs.classify:Classify", "init_args": {"labels": ["positive", "negative"]}},
            "predictors": {"predict": {
                "signature": {"instructions": "Saved <instruction>.", "fields": [
                    {"name": "sentence", "role": "input", "type": "str", "desc": "the text"},
                    {"name": "sentiment", "role": "output", "type": {"literal": ["positive", "negative"]},
                     "desc": "label"}]},
                "demos": [{"sentence": "bad film <i>", "sentiment": "negative"}], "procedure": None}},
            "models": {"task": {"model": "scripted/fake"}},
            "provenance": provenance, "content_hash": "sha256:00"}


def test_an_artifact_reports_on_its_run_dir_or_alone(tmp_path, run_dir):
    linked = tmp_path / "linked.json"
    linked.write_text(json.dumps(_artifact(run_dir)), encoding="utf-8")
    page = build_report(linked)
    assert 'id="progress"' in page and _pngs(page) and "Saved &lt;instruction&gt;." in page
    alone = tmp_path / "alone.json"
    alone.write_text(json.dumps(_artifact(tmp_path / "gone")), encoding="utf-8")
    page = build_report(alone)
    assert 'id="progress"' not in page and "not available here" in page
    assert "Saved &lt;instruction&gt;." in page and "bad film &lt;i&gt;" in page and "2025-01-01T00:00:00Z" in page
    assert "honed.programs.classify:Classify" in page and "<i>" not in page


def _section(page: str, name: str) -> str:
    start = page.index(f'id="{name}"')
    return page[start:page.index("</section>", start)]


def test_unknown_kinds_and_following_rates_render(tmp_path, run_dir):
    """Records of another optimizer's kinds get that optimizer's section (hand-made, odd fields included);
    only a kind this honed does not know is listed as written, escaped."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    extra = [{"step": "b1/procedure", "kind": "procedure", "procedure": {"steps": ["<read>", "answer"]},
              "budget_used": 41, "paid_calls": 41, "elapsed_s": 0.7},
             {"step": "b1/following", "kind": "step_edit", "candidate": "abc123", "following": {"s1": 0.75, "s2": 0.1},
              "budget_used": 42, "paid_calls": 42, "elapsed_s": 0.8},
             {"step": "b1/probe", "kind": "probe", "note": "<probe> & more", "budget_used": 43, "paid_calls": 43,
              "elapsed_s": 0.9}]
    with (run / "ledger.jsonl").open("a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in extra)
    page = build_report(run / "ledger.jsonl")  # the ledger file itself names its run dir
    following = page[page.index('id="following"'):]
    assert "<th>s1</th>" in following and ">0.75<" in following and ">0.1<" in following
    behavior = _section(page, "behavior")
    assert "procedure" in behavior.lower() and "&lt;read&gt;" in behavior and "<read>" not in page
    assert "<code>b1/following</code>" in behavior  # the step edit is listed with the other edits
    other = _section(page, "other")
    assert "probe" in other and "&lt;probe&gt; &amp; more" in other and "<probe>" not in page
    assert "step_edit" not in other and "b1/procedure" not in other  # known kinds are never dumped raw
    assert "Reflections" in page and 'id="claims"' in page  # the run's own claims still show


def test_an_interrupted_resumed_run_still_renders(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    records = [
        {"step": "seed/val", "kind": "validate", "candidate": "s", "n": 4, "score": 0.25, "budget_used": 4,
         "paid_calls": 4, "elapsed_s": 1.5},
        {"step": "r1/claim0", "kind": "claim", "predictor": "p", "shown": ["e1"], "error": "ParseError: <junk>",
         "response": "<html>nope</html>", "budget_used": 5, "paid_calls": 5, "elapsed_s": 2.0},
        # resumed in a new process: paid calls and elapsed time restart
        {"step": "r1/claim1", "kind": "claim", "predictor": "p", "shown": ["e2"], "cause": "c", "explains": [1],
         "new_instruction": "Do better.", "show_examples": True, "budget_used": 6, "paid_calls": 1,
         "elapsed_s": 0.25},
    ]
    (run / "ledger.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    page = build_report(run)
    assert "not finished" in page and "&lt;junk&gt;" in page and "<junk>" not in page
    assert "2 sessions: 5 + 1" in page and "2.0 s + 0.25 s" in page
    assert "<b>0.25</b>" in page and _pngs(page)


def test_write_report_writes_the_page(tmp_path, run_dir, page):
    out = write_report(run_dir, tmp_path / "out" / "report.html")
    assert out == tmp_path / "out" / "report.html" and out.read_text(encoding="utf-8") == page
    assert write_report(run_dir, tmp_path / "out") == out  # a directory gets report.html


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_chromium_renders_the_report(tmp_path, run_dir):
    from PIL import Image

    report = write_report(run_dir, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
                    report.resolve().as_uri()],
                   check=True, capture_output=True, timeout=60)
    assert shot.read_bytes().startswith(PNG_MAGIC)
    with Image.open(shot) as image:
        assert image.size == (1200, 2000)
        low, high = zip(*image.convert("RGB").getextrema(), strict=True)
        colors = image.convert("RGB").getcolors(maxcolors=1_000_000)
    assert max(high) - min(low) > 100  # not one flat color
    assert colors is None or len(colors) > 50  # text, tables and the plot, not a blank page
