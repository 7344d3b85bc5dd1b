"""`farm`'s entry point: parse, run the chosen command, turn expected failures into one line."""

from __future__ import annotations

import importlib
import os
import sys

from farm.cli.parser import build_parser
from farm.config import ConfigError


def run(args) -> int:
    """Import the command's module (only that one) and call its handler."""
    module, func = args.handler.split(":")
    return getattr(importlib.import_module(module), func)(args)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per step, not per file
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow's INFO chatter (store creation, validation)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = run(args)
        sys.stdout.flush()  # a reader that went away (`| head`) surfaces here, inside the handler
        return code
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's exit flush must not fail again
        return 0
    except KeyboardInterrupt:
        print("farm: interrupted", file=sys.stderr)
        return 130
    except (ConfigError, ValueError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        return fail(msg)
    except OSError as e:  # a read-only or full destination, a folder where a file was expected, ...
        where = e.filename or ""
        return fail(f"{str(where) + ': ' if where else ''}{e.strerror or e}")
    except Exception as e:
        from farm.engine import TrainingDiverged

        if isinstance(e, TrainingDiverged):
            return fail(str(e), code=1)
        if type(e).__module__.split(".")[0] not in ("mlflow", "ray", "optuna"):
            raise  # a bug of the farm's own: keep the traceback
        return fail(f"{type(e).__name__}: {getattr(e, 'message', None) or e}")


def fail(msg: str, code: int = 2) -> int:
    """One line on stderr, however the message was built."""
    print(f"farm: error: {' '.join(str(msg).split())}", file=sys.stderr)
    return code
