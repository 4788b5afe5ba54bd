"""Presentation only: the HTML kit and its stylesheet (`html`), the report's plot (`plots`), the page of a
run directory (`run_page`, with the behavior optimizer's section in `behavior`), of an artifact
(`artifact_page`) and of a `honed diagnose` result (`diagnosis_page`).

Pages read `honed.runs` and the results of `honed.diagnose`; nothing below them imports a page (only
`honed.report` and the command line do). Nothing here writes a run or decides what a record means."""
