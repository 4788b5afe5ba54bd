"""The `honed` command line: `main` is the console entry point (`honed = "honed.cli:main"`).

`main.py` holds the top-level parser and the dispatch, `options.py` the options commands share, and each
other module one command, which registers its own subparser and handler.
"""

from honed.cli.main import main

__all__ = ["main"]
