"""The `farm` command: `parser` builds the argument tree; `data`, `train`, `sweep` and `evaluate` run the
commands by calling into the rooms below (farm/data, farm/engine.py, farm/sweep, farm/evaluate, farm/tracking);
`main` dispatches and reports errors. No logic a test would want to import lives here."""

from farm.cli.main import main
from farm.cli.parser import build_parser

__all__ = ["build_parser", "main"]
