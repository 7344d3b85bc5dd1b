"""Ray Job specs (`jobs/*.yaml`): read and check them before anything is submitted. Pure Python.

A spec is the keyword arguments of Ray's `JobSubmissionClient.submit_job` as YAML:

    entrypoint: farm sweep --space amf_bp4d --address auto --data $FARM_SHARED/data/bp4d ...
    runtime_env: {env_vars: {FARM_SHARED: /shared, MLFLOW_TRACKING_URI: http://127.0.0.1:5000}}
    metadata: {experiment: amf-bp4d-vd}
    entrypoint_num_cpus / entrypoint_num_gpus / entrypoint_resources: optional

The entrypoint runs in a shell on the head node with `runtime_env.env_vars` set, so `$VARS`
expand there; `farm submit --env KEY=VALUE` overrides them. `check_job` expands them the same
way, parses the entrypoint with the `farm` CLI's own parser and loads its search space, so a
typo fails on the laptop, not an hour later on the cluster.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farm.config import YamlError, load_yaml

KEYS = ("entrypoint", "runtime_env", "metadata", "entrypoint_num_cpus", "entrypoint_num_gpus",
        "entrypoint_memory", "entrypoint_resources", "submission_id")  # fmt: skip


class JobSpecError(ValueError):
    """A job spec is unreadable or wrong; the message names the file and the key."""


@dataclass(frozen=True)
class JobSpec:
    path: str
    entrypoint: str
    runtime_env: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    """The other submit_job keyword arguments (entrypoint_num_gpus, ...)."""

    @property
    def env_vars(self) -> dict[str, str]:
        return dict(self.runtime_env.get("env_vars") or {})

    def with_env(self, overrides: dict[str, str]) -> JobSpec:
        env = {**self.env_vars, **overrides}
        return JobSpec(self.path, self.entrypoint, {**self.runtime_env, "env_vars": env}, self.metadata, self.options)

    def submit_kwargs(self) -> dict[str, Any]:
        return {"entrypoint": self.entrypoint, "runtime_env": self.runtime_env or None,
                "metadata": {**self.metadata, "job_file": Path(self.path).name}, **self.options}  # fmt: skip


def load_job(path: str | Path) -> JobSpec:
    p = Path(path)
    try:
        doc = load_yaml(p)  # safe_load that refuses a repeated key
    except OSError as e:
        raise JobSpecError(f"{p}: cannot read the job file ({e.strerror})") from None
    except YamlError as e:
        raise JobSpecError(str(e)) from None
    if not isinstance(doc, dict):
        raise JobSpecError(f"{p}: expected a mapping with entrypoint, runtime_env, metadata")
    unknown = sorted(set(doc) - set(KEYS))
    if unknown:
        raise JobSpecError(f"{p}: unknown key(s) {unknown}; known: {', '.join(KEYS)}")
    entry = doc.get("entrypoint")
    if not isinstance(entry, str) or not entry.strip():
        raise JobSpecError(f"{p}: entrypoint must be a non-empty command string")
    runtime_env = doc.get("runtime_env") or {}
    if not isinstance(runtime_env, dict):
        raise JobSpecError(f"{p}: runtime_env must be a mapping")
    env = runtime_env.get("env_vars") or {}
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise JobSpecError(f"{p}: runtime_env.env_vars must map names to strings (quote numbers)")
    metadata = doc.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise JobSpecError(f"{p}: metadata must be a mapping of strings")
    options = {k: v for k, v in doc.items() if k not in ("entrypoint", "runtime_env", "metadata")}
    return JobSpec(str(p), entry.strip(), runtime_env, {str(k): str(v) for k, v in metadata.items()}, options)


_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def expand(text: str, env: dict[str, str], where: str) -> str:
    """$VAR / ${VAR} from `env`; an undefined variable is an error (the shell would expand it to nothing)."""

    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name not in env:
            raise JobSpecError(f"{where}: entrypoint uses ${name}, which runtime_env.env_vars does not define")
        return env[name]

    return _VAR.sub(sub, text)


def check_job(spec: JobSpec) -> list[str]:
    """Parse the entrypoint as the head will run it; returns its argv. Raises JobSpecError."""
    argv = shlex.split(expand(spec.entrypoint, spec.env_vars, spec.path))
    if not argv or argv[0] != "farm":
        raise JobSpecError(f"{spec.path}: the entrypoint must run `farm ...`, got {argv[:1]}")
    from farm.cli.parser import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(argv[1:])
    except SystemExit:  # argparse reports a bad command line by printing and exiting
        msg = err.getvalue().strip().splitlines()[-1:] or ["invalid arguments"]
        raise JobSpecError(f"{spec.path}: `{' '.join(argv)}` is not a valid farm command: {msg[0]}") from None
    if getattr(args, "handler", None) is None:  # pragma: no cover - subcommands are required
        raise JobSpecError(f"{spec.path}: no farm subcommand")
    if args.handler.endswith(":cmd_sweep"):
        from farm.sweep.space import SpaceError, load_space

        try:
            load_space(args.space)
        except SpaceError as e:
            raise JobSpecError(f"{spec.path}: {e}") from None
    return argv
