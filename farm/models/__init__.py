"""Fusion model registry. `build_model(cfg, channels, num_aus)` is the only place that reads config.

The fusion contract (`FusionModel`, farm/models/heads.py): `model(x)` maps normalised images
{modality: (B, C, H, W)} to a dict holding at least `probs` (B, A); `model.loss(out, target, mask)`
gives the objective and its parts. Heads that read each modality through its own backbone also
split that forward, `model(x) == model.fuse(model.modality_features(x))` (issue 22):
- `feature_modalities`: the modalities `fuse` reads (TEMT-Net: its source; early fusion: none, it
  cannot split because its one backbone reads the stacked channels);
- `modality_features(x)`: {m: (B, D)} for those modalities present in x, each from x[m] alone;
- `fuse(feats)`: the forward's output dict from those features.
The robustness conditions use it to run each backbone once per distinct input and only `fuse`
per condition (`farm.data.perturb.condition_probs`); amf, late, cam, mtut, temt and single do;
early fusion runs its full forward per condition.
"""

from __future__ import annotations

from collections.abc import Callable

from farm.config import Config
from farm.models.amf import AMF
from farm.models.backbones import BACKBONES, build_backbone
from farm.models.heads import ChannelAttentionFusion, EarlyFusion, FusionModel, LateFusion, SingleModality
from farm.models.mtut import MTUT
from farm.models.temt import TEMTNet, two_modalities

__all__ = [
    "AMF",
    "BACKBONES",
    "FUSIONS",
    "MTUT",
    "FusionModel",
    "TEMTNet",
    "build_model",
    "fusion_modalities",
    "parse_fusion",
]


def _per_modality(cfg: Config, channels: dict[str, int]) -> dict:
    return {m: build_backbone(cfg.model.backbone, c, cfg.model.pretrained) for m, c in channels.items()}


def _amf(cfg: Config, channels: dict[str, int], num_aus: int) -> FusionModel:
    a = cfg.amf
    return AMF(
        _per_modality(cfg, channels), num_aus,
        num_samples=a.num_samples, lambda_fused=a.lambda_fused, lambda_modality=a.lambda_modality,
        lambda_guidance=a.lambda_guidance, tau_start=a.tau_start, tau_floor=a.tau_floor, tau_decay=a.tau_decay,
        tau_unit=a.tau_unit, eval_mode=a.eval_mode, eval_seed=a.eval_seed, guidance_backbone=a.guidance_backbone,
        scorer_input=a.scorer_input,
    )  # fmt: skip


def _late(cfg: Config, channels: dict[str, int], num_aus: int) -> FusionModel:
    return LateFusion(_per_modality(cfg, channels), num_aus)


def _cam(cfg: Config, channels: dict[str, int], num_aus: int) -> FusionModel:
    return ChannelAttentionFusion(_per_modality(cfg, channels), num_aus)


def _mtut(cfg: Config, channels: dict[str, int], num_aus: int) -> FusionModel:
    b = cfg.baselines
    return MTUT(_per_modality(cfg, channels), num_aus, lambda_ssa=b.mtut_lambda_ssa, beta=b.mtut_beta)


def _temt(cfg: Config, channels: dict[str, int], num_aus: int) -> FusionModel:
    modalities = tuple(channels)
    two_modalities(modalities)
    source, target = modalities  # visual first; thermal (BP4D+) or depth (BP4D) second
    backbone = build_backbone(cfg.model.backbone, channels[source], cfg.model.pretrained)
    return TEMTNet(backbone, modalities, channels[target], num_aus, lambda_transfer=cfg.baselines.temt_lambda_transfer)


def _early(cfg: Config, channels: dict[str, int], num_aus: int) -> FusionModel:
    backbone = build_backbone(cfg.model.backbone, sum(channels.values()), cfg.model.pretrained)
    return EarlyFusion(tuple(channels), backbone, num_aus)


def _single(cfg: Config, channels: dict[str, int], num_aus: int) -> FusionModel:
    ((modality, c),) = channels.items()
    return SingleModality(modality, build_backbone(cfg.model.backbone, c, cfg.model.pretrained), num_aus)


FUSIONS: dict[str, Callable[[Config, dict[str, int], int], FusionModel]] = {
    "amf": _amf,
    "late": _late,
    "early": _early,
    "cam": _cam,
    "mtut": _mtut,
    "temt": _temt,
    "single": _single,
}


def parse_fusion(spec: str) -> tuple[str, str | None]:
    """'amf' -> ('amf', None); 'single:depth' -> ('single', 'depth'). Raises KeyError if unknown."""
    name, _, arg = spec.partition(":")
    if name not in FUSIONS:
        raise KeyError(
            f"unknown fusion {spec!r}; valid: {', '.join(n if n != 'single' else 'single:<modality>' for n in FUSIONS)}"
        )
    if (name == "single") != bool(arg):
        raise KeyError(f"fusion {spec!r}: 'single' takes a modality (single:visual); the others take none")
    return name, arg or None


def fusion_modalities(spec: str, requested: tuple[str, ...], available: tuple[str, ...]) -> tuple[str, ...]:
    """The modalities a fusion head reads, checked against the dataset's."""
    name, arg = parse_fusion(spec)
    wanted = (arg,) if arg else (requested or available)
    unknown = [m for m in wanted if m not in available]
    if unknown:
        raise ValueError(f"modality {', '.join(unknown)} not in the dataset (it holds {', '.join(available)})")
    if name == "temt":
        two_modalities(tuple(wanted))  # checked here so that a sweep refuses before training
    elif name in ("amf", "late", "early", "cam", "mtut") and len(wanted) < 2:
        raise ValueError(f"fusion {name!r} needs at least two modalities, got {list(wanted)}; use single:<modality>")
    return tuple(wanted)


def check_modality_options(cfg: Config, used: tuple[str, ...], available: tuple[str, ...]) -> None:
    """Every modality a config option names is one the dataset holds and the model reads (`used`): a misspelt
    or absent one would otherwise be ignored, and the run would train as if nothing had been asked."""
    for key, names in (("augment.modality_dropout_only", cfg.augment.modality_dropout_only),):
        unknown = [m for m in names if m not in available]
        if unknown:
            raise ValueError(f"{key}: modality {', '.join(unknown)} not in the dataset (it holds "
                             f"{', '.join(available)})")  # fmt: skip
        unread = [m for m in names if m not in used]
        if unread:
            raise ValueError(f"{key}: modality {', '.join(unread)} is not read by {cfg.model.fusion} (it reads "
                             f"{', '.join(used)})")  # fmt: skip


def build_model(cfg: Config, channels: dict[str, int], num_aus: int) -> FusionModel:
    """channels: {modality: input channels} in the order the model should use."""
    name, _ = parse_fusion(cfg.model.fusion)
    return FUSIONS[name](cfg, channels, num_aus)
