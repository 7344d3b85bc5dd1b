"""One typed configuration tree, from the CLI (or a Tune trial) to the training worker.

The defaults are the AMF paper's (Sec. 4.2): lambda_* = 2, lambda_k = lambda*_k = 1, K = 100,
cut-switch block 50 on 224 crops, Adam lr 1e-4, batch 50, early stopping. `presets/cpu.yaml`
holds the CPU-friendly overrides used for the synthetic set and the tests.

Everything is a frozen dataclass validated once in `__post_init__` (every float finite, then the
ranges). YAML files and `--set key=value` overrides are merged into it by `load_config`;
`flatten` / `unflatten` turn it into the flat `{"amf.num_samples": 100, ...}` mapping used by
search spaces and trackers. `load_yaml` is the one YAML reader of the farm's own files (configs,
search spaces, partitions, job specs): `yaml.safe_load`, except that a repeated key is an error.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

BP4D_AUS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU14", "AU15", "AU17", "AU23", "AU24")
PRESET_DIR = Path(__file__).parent / "presets"


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the key."""


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


def _check_finite(section: object, prefix: str) -> None:
    """Every float field of a config section is a finite number (nan and inf pass `> 0` style checks)."""
    for f in fields(section):  # type: ignore[arg-type]
        value = getattr(section, f.name)
        if isinstance(value, float):
            _check(math.isfinite(value), f"{prefix}.{f.name}", f"must be a finite number, got {value}")


@dataclass(frozen=True)
class DataConfig:
    path: str = ""
    """Prepared dataset directory (written by `farm data synth` or `farm data prepare`)."""
    modalities: tuple[str, ...] = ()
    """Modalities to load; empty = every modality the dataset holds."""
    aus: tuple[str, ...] = BP4D_AUS
    """Action units to detect (the standard BP4D twelve, see DOMAIN.md section 2)."""
    fold: str = "P1"
    """Fold to run, named by its TEST partition (fold P3 = train P1+P2, test P3)."""
    fold_file: str = ""
    """YAML partitions file replacing the dataset's standard folds (empty = standard; see docs/data.md)."""
    val_fraction: float = 0.2
    """Share of the fold's training subjects held out (subject-exclusive) for early stopping."""
    split_seed: int = 0
    """Seed of the validation carve-out."""
    partition: int = 0
    """Which subject partition the folds come from: 0 = the standard partitions (or data.fold_file); r >= 1 = a
    fresh subject-exclusive split of the same subjects into as many partitions, balanced on sex, drawn with seed r
    (`redraw_partitions` in farm/data/folds.py; `sweep.partitions` trains every fold of r = 0..N-1)."""
    num_workers: int = 0
    """DataLoader worker processes decoding frames (0 = decode in the training process; -1 = auto: the fold's CPUs
    minus one for the training process, at most 8: in `farm sweep` the fold's CPU share, in `farm train` this
    machine's cores; see resolve_num_workers)."""
    augment_on: str = "worker"
    """Where the training augmentation and normalisation run: 'worker' (the loader workers return float32 inputs)
    or 'device' (they return uint8 crops and the random decisions, the training process flips, normalises and
    cut-switches each batch on the training device: 4x fewer bytes to pin and copy). Bit for bit the same
    inputs for a seed (docs/design.md)."""
    decode: str = "worker"
    """Where JPEG frames are decoded: 'worker' (the loader workers, with Pillow) or 'device' (the workers ship the
    stored JPEG bytes and the decisions; the training process decodes each batch with torchvision's decode_jpeg
    on the training device: nvJPEG on a GPU, libjpeg-turbo on a CPU). Needs data.augment_on: device and a JPEG
    dataset. On a CPU the decoded pixels equal Pillow's; on a GPU nvJPEG may differ by rounding (docs/design.md)."""

    def __post_init__(self) -> None:
        _check_finite(self, "data")
        _check(0.0 < self.val_fraction < 1.0, "data.val_fraction", f"must be in (0, 1), got {self.val_fraction}")
        _check(len(self.aus) > 0, "data.aus", "must name at least one AU")
        _check(self.partition >= 0, "data.partition", f"must be >= 0 (0 = the standard partitions), got {self.partition}")
        _check(self.num_workers >= -1, "data.num_workers", f"must be >= 0, or -1 (auto), got {self.num_workers}")
        _check(self.augment_on in ("worker", "device"), "data.augment_on",
               f"must be 'worker' or 'device', got {self.augment_on!r}")  # fmt: skip
        _check(self.decode in ("worker", "device"), "data.decode", f"must be 'worker' or 'device', got {self.decode!r}")
        _check(self.decode == "worker" or self.augment_on == "device", "data.decode",
               "'device' needs data.augment_on: device (the batch is augmented where it is decoded)")  # fmt: skip


@dataclass(frozen=True)
class ModelConfig:
    fusion: str = "amf"
    """Fusion head: amf, late, early, cam, mtut, temt or single:<modality> (docs/baselines.md)."""
    backbone: str = "resnet18"
    """Backbone per modality: resnet18 (paper) or resnet10 (one block per stage, for CPU tests)."""
    pretrained: str = "none"
    """Backbone weights: none (random init), imagenet (torchvision download) or a local .pth file."""

    def __post_init__(self) -> None:
        _check_finite(self, "model")
        _check(bool(self.fusion), "model.fusion", "must not be empty")


@dataclass(frozen=True)
class AMFConfig:
    num_samples: int = 100
    """K, Gumbel-softmax samples per frame (Eq. 9)."""
    lambda_fused: float = 2.0
    """lambda_*, weight of the fused loss L* (Eq. 11)."""
    lambda_modality: float = 1.0
    """lambda_k, weight of each per-modality loss L^k (Eq. 8, 11)."""
    lambda_guidance: float = 1.0
    """lambda*_k, weight of each reverse-gradient guidance loss L*k (Eq. 10, 11)."""
    tau_start: float = 1.0
    """Gumbel-softmax temperature at the start of training."""
    tau_floor: float = 0.5
    """Temperature the schedule decays towards."""
    tau_decay: float = 0.3
    """Decay rate per epoch: tau(t) = floor + (start - floor) * exp(-decay * t), t in epochs."""
    tau_unit: str = "epoch"
    """Update tau once per epoch ('epoch') or every optimiser step with fractional t ('step')."""
    eval_mode: str = "mean"
    """Evaluation: 'mean' = K-sample vote with Gumbel noise from a fixed seed; 'argmax' = per
    dimension the modality with the highest score, no noise (one fused vector)."""
    eval_seed: int = 0
    """Seed of the evaluation noise in 'mean' mode: one draw (1, K, D, M) shared by every frame of a batch."""
    guidance_backbone: bool = True
    """Eq. 10's guidance loss trains the backbones too (true, the paper as written) or only the scorers g
    (false; beyond the paper, searchable: docs/design.md)."""
    scorer_input: str = "own"
    """What each scorer g^k reads: 'own' = its modality's features a^k (Eq. 2, the paper) or 'all' = every
    modality's features concatenated (beyond the paper: a scorer that can see the other modalities, so that a blank
    or noisy one can be scored down; searchable: docs/results.md)."""

    def __post_init__(self) -> None:
        _check_finite(self, "amf")
        _check(self.num_samples >= 1, "amf.num_samples", f"must be >= 1, got {self.num_samples}")
        for name in ("lambda_fused", "lambda_modality", "lambda_guidance"):
            _check(getattr(self, name) >= 0, f"amf.{name}", f"must be >= 0, got {getattr(self, name)}")
        _check(self.tau_start > 0 and self.tau_floor > 0, "amf.tau_start", "temperatures must be > 0")
        _check(self.tau_floor <= self.tau_start, "amf.tau_floor", f"must be <= tau_start ({self.tau_start})")
        _check(self.tau_decay >= 0, "amf.tau_decay", f"must be >= 0, got {self.tau_decay}")
        _check(self.tau_unit in ("epoch", "step"), "amf.tau_unit", f"must be 'epoch' or 'step', got {self.tau_unit!r}")
        _check(
            self.eval_mode in ("mean", "argmax"), "amf.eval_mode", f"must be 'mean' or 'argmax', got {self.eval_mode!r}"
        )
        _check(self.scorer_input in ("own", "all"), "amf.scorer_input",
               f"must be 'own' or 'all', got {self.scorer_input!r}")  # fmt: skip


@dataclass(frozen=True)
class BaselinesConfig:
    """Weights of the multimodal baselines of the AMF paper's Tables 1-2 (docs/baselines.md)."""

    mtut_lambda_ssa: float = 1.0
    """MTUT: weight lambda of the focal-regularised SSA loss. The paper's I3D setups use 1e-3 to 5e-2
    (mmpose configs: 5e-3, 1e-3) on an unnormalised correlation; ours is scale-free (each term in
    [0, 2]): on ResNet-18 at 224 px, 1.0 here gives about the loss of mmpose's 5e-3 (docs/baselines.md)."""
    mtut_beta: float = 2.0
    """MTUT: focal sharpness beta in rho = ReLU(exp(beta * (L^m - L^n)) - 1); 2 in the paper and mmpose."""
    temt_lambda_transfer: float = 1.0
    """TEMT-Net: weight of the visual -> thermal/depth image-reconstruction task (mean L1 in [-1, 1]
    units). The WACV paper's task weights are not public; 1.0 = equal weighting with the AU task."""

    def __post_init__(self) -> None:
        _check_finite(self, "baselines")
        for name in ("mtut_lambda_ssa", "mtut_beta", "temt_lambda_transfer"):
            _check(getattr(self, name) >= 0, f"baselines.{name}", f"must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class AugmentConfig:
    crop_size: int = 0
    """Training random crop / test centre crop in pixels; 0 = 7/8 of the stored size (224 of 256)."""
    flip: bool = True
    """Random horizontal flip (the same for every modality of a frame)."""
    cut_switch_block: int = 50
    """Cut-switch box side in pixels of a 224 crop, scaled with the crop (50 -> 12 on a 56 crop);
    0 = off."""
    cut_switch_prob: float = 1.0
    """Probability that a training frame is cut-switched."""
    modality_dropout: float = 0.0
    """Beyond the paper (off by default): probability that a training frame loses a modality (zeros after
    normalisation, as the robustness study's 'missing'), drawn per frame and modality; a frame keeps at least
    one. Applies to every multimodal fusion head alike. Searchable."""
    modality_dropout_only: tuple[str, ...] = ()
    """Modalities modality_dropout may drop (empty = all)."""

    def __post_init__(self) -> None:
        _check_finite(self, "augment")
        _check(self.crop_size >= 0, "augment.crop_size", f"must be >= 0, got {self.crop_size}")
        _check(
            0 <= self.cut_switch_block <= 224,
            "augment.cut_switch_block",
            f"must be in [0, 224], got {self.cut_switch_block}",
        )
        _check(
            0.0 <= self.cut_switch_prob <= 1.0,
            "augment.cut_switch_prob",
            f"must be in [0, 1], got {self.cut_switch_prob}",
        )
        _check(0.0 <= self.modality_dropout < 1.0, "augment.modality_dropout",
               f"must be in [0, 1), got {self.modality_dropout}")  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    """Maximum epochs; early stopping usually ends sooner."""
    patience: int = 5
    """Epochs without a better validation F1 before stopping."""
    batch_size: int = 50
    eval_batch_size: int = 100
    lr: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0
    """Seed of initialisation, sampling order, augmentation and Gumbel noise."""
    device: str = "auto"
    """'auto' (cuda if available), 'cpu', 'cuda' or 'cuda:N'."""
    max_train_batches: int = 0
    """Cap on optimiser steps per epoch (0 = a full pass); for smoke runs."""
    val_robustness: tuple[str, ...] = ("missing", "noise")
    """After training, each fold measures its best epoch on its VALIDATION subjects under the robustness study's
    conditions (docs/design.md): 'missing' (each modality, and each pair for 3+), 'noise' (Gaussian, sigmas
    below, per modality and on all); () = off. Logged as val/f1_missing_<m>, val/f1_noise_<m>_<sigma>."""
    val_noise_sigmas: tuple[float, ...] = (0.1, 0.2, 0.5, 0.8)
    """Noise levels of the validation robustness measures (the paper's Fig. 5)."""
    divergence_factor: float = 100.0
    """End the fold with TrainingDiverged when an epoch's mean training loss exceeds this multiple of the
    untrained model's loss (the first batch's), or any loss or weight is not finite (0 = only the latter)."""
    precision: str = "fp32"
    """Forward passes and losses in 'fp32' (the paper), 'bf16' autocast, or 'fp16' autocast with a GradScaler
    (CUDA only). Weights and optimiser state stay float32; AMF's Gumbel selection always runs in float32."""
    channels_last: bool = False
    """Model and inputs in the channels-last memory format (faster convolutions on recent GPUs; same values
    within float rounding)."""

    def __post_init__(self) -> None:
        _check_finite(self, "train")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            _check(getattr(self, name) >= 1, f"train.{name}", f"must be >= 1, got {getattr(self, name)}")
        _check(self.patience >= 1, "train.patience", f"must be >= 1, got {self.patience}")
        _check(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        _check(self.max_train_batches >= 0, "train.max_train_batches", "must be >= 0")
        bad = sorted(set(self.val_robustness) - {"missing", "noise"})
        _check(not bad, "train.val_robustness", f"unknown kind(s) {bad}; use missing, noise or leave empty")
        _check(all(s > 0 for s in self.val_noise_sigmas), "train.val_noise_sigmas", "sigmas must be > 0")
        _check(self.divergence_factor == 0 or self.divergence_factor > 1, "train.divergence_factor",
               f"must be 0 (off) or > 1, got {self.divergence_factor}")  # fmt: skip
        _check(self.precision in ("fp32", "bf16", "fp16"), "train.precision",
               f"must be fp32, bf16 or fp16, got {self.precision!r}")  # fmt: skip
        _check(not (self.precision == "fp16" and self.device == "cpu"), "train.precision",
               "fp16 autocast needs a CUDA device (train.device is cpu); use bf16 or fp32 on the CPU")  # fmt: skip


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    amf: AMFConfig = field(default_factory=AMFConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ---------------------------------------------------------------------------------------------
# flat <-> tree, YAML, overrides


def flatten(cfg: Config) -> dict[str, Any]:
    """`{"amf.num_samples": 100, ...}` with tuples kept as tuples."""
    flat: dict[str, Any] = {}
    for section in fields(cfg):
        sub = getattr(cfg, section.name)
        for f in fields(sub):
            flat[f"{section.name}.{f.name}"] = getattr(sub, f.name)
    return flat


def to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """Nested plain dict (tuples as lists), the form written to YAML and JSON."""
    return {
        s.name: {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(getattr(cfg, s.name)).items()}
        for s in fields(cfg)
    }


def from_dict(nested: dict[str, dict[str, Any]], overrides: dict[str, Any] | None = None) -> Config:
    """The Config that `to_dict` wrote (a checkpoint's `config`), with flat `overrides` ("data.path": ...) on top."""
    return unflatten(
        {**{f"{s}.{k}": v for s, section in nested.items() for k, v in section.items()}, **(overrides or {})}
    )


AUTO_LOADER_WORKERS = 8
"""The most loader workers `data.num_workers: -1` gives a fold: enough to decode JPEG for one GPU fold of the paper
preset (docs/benchmarks.md, "GPU (H100)": 5 to 7 needed); more would idle."""


def resolve_num_workers(value: int, cpus: float | None = None) -> int:
    """`data.num_workers` as a count: itself when >= 0; for -1 (auto), the fold's `cpus` (default: the cores this
    process may run on) minus one for the training process, from 0 to AUTO_LOADER_WORKERS."""
    if value >= 0:
        return value
    if cpus is None:
        import os

        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return int(min(AUTO_LOADER_WORKERS, max(0, math.floor(cpus) - 1)))


def valid_keys() -> list[str]:
    return sorted(flatten(Config()))


def _field_types() -> dict[str, Any]:
    types: dict[str, Any] = {}
    for section in fields(Config):
        cls = typing.get_type_hints(Config)[section.name]
        for name, tp in typing.get_type_hints(cls).items():
            types[f"{section.name}.{name}"] = tp
    return types


def coerce(key: str, value: Any) -> Any:
    """Convert a YAML / CLI / Tune value to the type of field `key`, or raise ConfigError."""
    types = _field_types()
    if key not in types:
        raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(sorted(types))}")
    tp = types[key]
    try:
        if tp is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes", "on"):
                    return True
                if value.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            if isinstance(value, (bool, int)) and value in (0, 1):
                return bool(value)
            raise ValueError(value)
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if tp is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError(value)
            return str(value)
        if typing.get_origin(tp) is tuple:
            if isinstance(value, str):  # "a,b", or YAML's flow form "[a, b]" ("[]": empty)
                text = value.strip()
                text = text[1:-1] if text.startswith("[") and text.endswith("]") else text
                value = [v.strip().strip("'\"") for v in text.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise ValueError(value)
            if typing.get_args(tp)[0] is float:
                if any(isinstance(v, bool) for v in value) or not all(math.isfinite(float(v)) for v in value):
                    raise ValueError(value)
                return tuple(float(v) for v in value)
            return tuple(str(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {getattr(tp, '__name__', tp)}, got {value!r}") from None
    raise ConfigError(f"{key}: unsupported field type {tp}")  # pragma: no cover


def unflatten(flat: dict[str, Any], base: Config | None = None) -> Config:
    """Apply a flat mapping of (possibly string) values over `base` and validate."""
    base = base or Config()
    updates: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        value = coerce(key, value)
        section, name = key.split(".", 1)
        updates.setdefault(section, {})[name] = value
    try:
        return dataclasses.replace(
            base, **{s: dataclasses.replace(getattr(base, s), **kv) for s, kv in updates.items()}
        )
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:  # pragma: no cover - coerce() guards types
        raise ConfigError(str(e)) from None


def parse_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value, e.g. amf.num_samples=16")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


class YamlError(ValueError):
    """A YAML file is not valid YAML or repeats a key in one mapping; the message names the file and line."""


class _DuplicateKey(Exception):
    """Raised inside the loader; load_yaml turns it into a YamlError naming the file."""


class _StrictLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` (same tags, same types) whose mappings refuse a repeated key.

    PyYAML keeps the last of two equal keys without a word, so a second `train.lr:` line silently
    overrides the first. Merge keys (`<<: *base`) may still override what they merge in.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in lines:
                        raise _DuplicateKey(f"duplicate key {key!r} on line {line} (first on line {lines[key]})")
                    lines[key] = line
                except TypeError:  # an unhashable key: the base constructor reports it
                    continue
        return super().construct_mapping(node, deep=deep)


def load_yaml(source: Path | str, where: str = "") -> Any:
    """`yaml.safe_load` of a file (a Path) or of YAML text (a str), refusing a key repeated in one mapping.

    Errors are YamlError (a ValueError) starting with `where` (default: the path), e.g.
    "spaces/x.yaml: duplicate key 'train.lr' on line 7 (first on line 4)". An empty document gives None;
    OSError from reading the file is left to the caller.
    """
    text = source.read_text() if isinstance(source, Path) else source
    where = where or (str(source) if isinstance(source, Path) else "<string>")
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as e:
        raise YamlError(f"{where}: {e}") from None
    except yaml.YAMLError as e:
        raise YamlError(f"{where}: not valid YAML {_yaml_problem(e)}") from None


def _yaml_problem(e: yaml.YAMLError) -> str:
    """PyYAML's error on one line: 'at line L, column C: problem (context)'."""
    if not isinstance(e, yaml.MarkedYAMLError) or e.problem_mark is None:
        return f"({e})"
    mark = e.problem_mark
    context = f" ({e.context}{f' on line {e.context_mark.line + 1}' if e.context_mark else ''})" if e.context else ""
    return f"at line {mark.line + 1}, column {mark.column + 1}: {e.problem}{context}"


def read_yaml_config(path: str | Path) -> dict[str, Any]:
    """Flat mapping from a nested config YAML file; a preset name (e.g. 'cpu') also works."""
    p = Path(path)
    if not p.exists() and (PRESET_DIR / f"{path}.yaml").exists():
        p = PRESET_DIR / f"{path}.yaml"
    if not p.exists():
        presets = sorted(q.stem for q in PRESET_DIR.glob("*.yaml"))
        raise ConfigError(f"config file {path} not found (presets: {', '.join(presets)})")
    try:
        tree = load_yaml(p)
    except YamlError as e:
        raise ConfigError(str(e)) from None
    if tree is None:
        raise ConfigError(f"{p}: empty config file (leave out the config file for the defaults, the paper's)")
    if not isinstance(tree, dict):
        raise ConfigError(f"{p}: expected a mapping of sections (data, model, amf, baselines, augment, train)")
    flat: dict[str, Any] = {}
    for section, values in tree.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{p}: section {section!r} must be a mapping, got {type(values).__name__}")
        for k, v in values.items():
            flat[f"{section}.{k}"] = v
    return flat


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Defaults <- YAML file (or preset) <- overrides, validated once."""
    flat = read_yaml_config(path) if path else {}
    flat.update(overrides or {})
    return unflatten(flat)
