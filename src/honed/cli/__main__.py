"""`python -m honed.cli`, as `honed` itself (it was `honed/cli.py`'s `__main__` block)."""

import sys

from honed.cli import main

sys.exit(main())
