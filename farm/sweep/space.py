"""Search spaces: YAML files in `search_spaces/`, validated against the config tree at load time.

```yaml
description: what this sweep is for
config: cpu                    # preset or YAML config file every trial starts from (optional)
fixed:                         # flat config keys set for every trial
  model.fusion: amf
  train.epochs: 2
space:                         # flat config keys searched by Optuna (TPE)
  amf.lambda_fused: {float: [1.0, 3.0]}
  amf.num_samples:  {int: [8, 128], log: true}
  train.lr:         {float: [1.0e-5, 1.0e-3], log: true}
  augment.cut_switch_block: {choice: [0, 25, 50, 75]}
sweep:                         # defaults of `farm sweep` options (the command line wins)
  trials: 20
  max_concurrent: 1
  folds: [P1, P2, P3]
  grace_period: 2              # ASHA: epochs before a trial may be stopped
  reduction_factor: 3
  objective: cv/val_f1_mean    # or any cv/val_* metric, or a list: multi-objective (Pareto front)
  seeds: 1                     # training seeds per fold (train.seed + 0..seeds-1); objectives average them
  partitions: 1                # subject partitions: 0 = the standard folds, 1..N-1 sex-balanced redraws (seed r)
  protocol: joint              # joint: one search over all folds; nested: one search per outer fold
```

Every key must name a config field (once: a repeated key is an error, not an override); ranges
must be ordered and of the field's type; each bound and choice must make a valid config with the
fixed values. An empty file is an error. Errors name the file and the key.
This module imports no Ray or Optuna.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farm.config import Config, ConfigError, YamlError, _field_types, coerce, load_config, load_yaml, unflatten

SPACE_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
KINDS = ("float", "int", "choice")
SWEEP_KEYS = {"trials": int, "max_concurrent": int, "folds": list, "grace_period": int, "reduction_factor": int,
              "sampler": str, "objective": (str, list), "seeds": int, "partitions": int, "protocol": str,
              "gpus_per_fold": (int, float, str)}  # fmt: skip
DEFAULT_OBJECTIVE = "cv/val_f1_mean"
SAMPLERS = ("tpe", "grid")
"""tpe: Optuna TPE with ASHA early stopping; grid: every combination of `choice` params once, none
stopped early (ablation tables)."""
PROTOCOLS = ("joint", "nested")
"""joint: one search, a trial trains every fold (objective: the fold mean of the validation F1); nested: one
search per outer fold, a trial trains that fold only (objective: its validation F1), and the outer estimate
is the mean over folds of the test F1 of each search's selected configuration."""


class SpaceError(ValueError):
    """A search-space file is unusable; the message names the file and the key."""


@dataclass(frozen=True)
class Param:
    key: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SearchSpace:
    name: str
    path: str
    description: str = ""
    config: str | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    params: tuple[Param, ...] = ()
    sweep: dict[str, Any] = field(default_factory=dict)

    def base_config(self, overrides: dict[str, Any] | None = None) -> Config:
        """The config every trial starts from: preset/file <- fixed <- overrides (e.g. data.path)."""
        return load_config(self.config, {**self.fixed, **(overrides or {})})

    def trial_config(self, sampled: dict[str, Any], overrides: dict[str, Any] | None = None) -> Config:
        return unflatten(sampled, self.base_config(overrides))


def resolve_space_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.exists():
        return p
    for cand in (SPACE_DIR / f"{name_or_path}.yaml", SPACE_DIR / str(name_or_path)):
        if cand.exists():
            return cand
    known = ", ".join(sorted(q.stem for q in SPACE_DIR.glob("*.yaml"))) if SPACE_DIR.is_dir() else "none"
    raise SpaceError(f"search space {name_or_path} not found (shipped: {known})")


def _param(where: str, key: str, spec: Any, types: dict[str, Any]) -> Param:
    if key not in types:
        raise SpaceError(f"{where}: space key {key!r} is not a config field (see `farm train --help` for the keys)")
    if not isinstance(spec, dict):
        raise SpaceError(f"{where}: {key}: expected a mapping like {{float: [low, high]}} or {{choice: [a, b]}}")
    kinds = [k for k in KINDS if k in spec]
    extra = sorted(set(spec) - set(KINDS) - {"log"})
    if len(kinds) != 1 or extra:
        raise SpaceError(
            f"{where}: {key}: give exactly one of float / int / choice (and optionally log), got {sorted(spec)}"
        )
    kind, value = kinds[0], spec[kinds[0]]
    tp = types[key]
    if kind == "choice":
        if not isinstance(value, list) or not value:
            raise SpaceError(f"{where}: {key}: choice must be a non-empty list")
        try:
            choices = tuple(coerce(key, v) for v in value)
        except ConfigError as e:
            raise SpaceError(f"{where}: {e}") from None
        return Param(key, "choice", choices=choices)
    if kind == "int" and tp is not int or kind == "float" and tp is not float:
        raise SpaceError(f"{where}: {key}: a {kind} range, but the field is {getattr(tp, '__name__', tp)}")
    if not (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise SpaceError(f"{where}: {key}: {kind} must be [low, high] numbers, got {value!r}")
    low, high = value
    if kind == "int" and not all(float(v).is_integer() for v in value):
        raise SpaceError(f"{where}: {key}: int bounds must be integers, got {value!r}")
    if low > high:
        raise SpaceError(f"{where}: {key}: low {low} > high {high}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{where}: {key}: log must be true or false")
    if log and low <= 0:
        raise SpaceError(f"{where}: {key}: a log range needs low > 0, got {low}")
    cast = int if kind == "int" else float
    return Param(key, kind, cast(low), cast(high), log)


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Read and validate a search-space file (a name like `smoke` looks in search_spaces/)."""
    path = resolve_space_path(name_or_path)
    where = str(path)
    try:
        doc = load_yaml(path, where)
    except YamlError as e:
        raise SpaceError(str(e)) from None
    if not doc:  # without a word, an empty file would sweep the paper's defaults
        raise SpaceError(f"{where}: empty search space: give at least a `space:` mapping of the config keys to search")
    if not isinstance(doc, dict):
        raise SpaceError(f"{where}: expected a mapping with description / config / fixed / space / sweep")
    unknown = sorted(set(doc) - {"description", "config", "fixed", "space", "sweep"})
    if unknown:
        raise SpaceError(f"{where}: unknown top-level key(s) {unknown} (description, config, fixed, space, sweep)")
    types = _field_types()
    fixed = doc.get("fixed") or {}
    space = doc.get("space") or {}
    sweep = doc.get("sweep") or {}
    for name, section in (("fixed", fixed), ("space", space), ("sweep", sweep)):
        if not isinstance(section, dict):
            raise SpaceError(f"{where}: {name} must be a mapping")
    for key in fixed:
        if key not in types:
            raise SpaceError(f"{where}: fixed key {key!r} is not a config field")
    both = sorted(set(fixed) & set(space))
    if both:
        raise SpaceError(f"{where}: {', '.join(both)} both fixed and searched")
    for key, value in sweep.items():
        if key not in SWEEP_KEYS:
            raise SpaceError(f"{where}: sweep key {key!r} unknown (known: {', '.join(SWEEP_KEYS)})")
        if not isinstance(value, SWEEP_KEYS[key]) or isinstance(value, bool):
            kind = " or ".join(t.__name__ for t in SWEEP_KEYS[key]) if isinstance(SWEEP_KEYS[key], tuple) else (
                SWEEP_KEYS[key].__name__)  # fmt: skip
            raise SpaceError(f"{where}: sweep.{key} must be {kind}, got {value!r}")
    objectives(sweep, where)  # names checked here; against the data's modalities at plan time
    if sweep.get("seeds", 1) < 1:
        raise SpaceError(f"{where}: sweep.seeds must be >= 1, got {sweep['seeds']}")
    if sweep.get("partitions", 1) < 1:
        raise SpaceError(f"{where}: sweep.partitions must be >= 1, got {sweep['partitions']}")
    if "gpus_per_fold" in sweep:
        try:
            gpu_share(sweep["gpus_per_fold"])
        except ValueError as e:
            raise SpaceError(f"{where}: sweep.gpus_per_fold: {e}") from None
    if sweep.get("protocol", "joint") not in PROTOCOLS:
        raise SpaceError(f"{where}: sweep.protocol must be one of {', '.join(PROTOCOLS)}, got {sweep['protocol']!r}")
    params = tuple(_param(where, k, v, types) for k, v in space.items())
    sampler = sweep.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise SpaceError(f"{where}: sweep.sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    ranges = [p.key for p in params if p.kind != "choice"]
    if sampler == "grid" and (ranges or not params):
        raise SpaceError(
            f"{where}: sweep.sampler grid needs only choice params"
            + (f" ({', '.join(ranges)} are ranges)" if ranges else "")
        )
    result = SearchSpace(
        path.stem, where, str(doc.get("description", "")), doc.get("config"), dict(fixed), params, dict(sweep)
    )
    try:  # every bound and choice must give a valid config with the fixed values
        base = result.base_config()
        for p in params:
            for v in p.choices or (p.low, p.high):
                unflatten({p.key: v}, base)
    except ConfigError as e:
        raise SpaceError(f"{where}: {e}") from None
    return result


def objectives(sweep: dict[str, Any], where: str = "sweep") -> list[str]:
    """`sweep.objective` as a list of metric names to maximise (default [cv/val_f1_mean]).

    Only validation metrics (`cv/val_...`) may be optimised: a test-partition number in the objective
    would make the reported test F1 optimistic. Whether a name is measured (e.g. a modality the data
    lacks) is checked at plan time, `check_objectives`.
    """
    value = sweep.get("objective", DEFAULT_OBJECTIVE)
    names = [value] if isinstance(value, str) else list(value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise SpaceError(f"{where}: sweep.objective must be a metric name or a non-empty list of them, got {value!r}")
    for n in names:
        if not n.startswith("cv/val_") or "test" in n:
            raise SpaceError(f"{where}: sweep.objective {n!r}: only cross-validation validation metrics (cv/val_...) "
                             "may be optimised; test-partition numbers are reported, never searched")  # fmt: skip
    if len(set(names)) != len(names):
        raise SpaceError(f"{where}: sweep.objective repeats a metric: {names}")
    return names


def check_objectives(names: list[str], available: list[str], where: str) -> None:
    """Every objective must be a metric the trials will report (e.g. missing a modality the data has)."""
    unknown = [n for n in names if n not in available]
    if unknown:
        raise SpaceError(f"{where}: sweep.objective {unknown[0]!r} is not a metric these trials report; "
                         f"choose from: {', '.join(available)}")  # fmt: skip


def gpu_share(value: int | float | str) -> float:
    """`gpus_per_fold` (a number or a fraction such as "1/3") as GPUs per Ray Train worker: in (0, 1], or a whole
    number of GPUs. Raises ValueError saying what is expected."""
    text = str(value).strip()
    try:
        num, _, den = text.partition("/")
        share = float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"expected a number or a fraction such as 1/3, got {value!r}") from None
    if not (0 < share <= 1 or (share > 1 and share.is_integer())):
        raise ValueError(f"expected a share of one GPU in (0, 1] or a whole number of GPUs, got {value!r}")
    return math.floor(share * 100) / 100 if share < 1 else share  # 1/3 -> 0.33: three fit on one GPU


def grid_size(space: SearchSpace) -> float:
    """Number of distinct configurations (inf when a float range is searched)."""
    n = 1.0
    for p in space.params:
        n *= len(p.choices) if p.kind == "choice" else (p.high - p.low + 1 if p.kind == "int" else math.inf)
    return n
