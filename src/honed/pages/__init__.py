"""Presentation only: the HTML kit (`html`), the report's plot (`plots`), and page sections that read a
`honed.runs.Run` (`behavior`). Nothing here writes a run or decides what a record means."""
