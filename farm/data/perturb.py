"""Input corruptions of the paper's robustness study (Fig. 4, 5), and modality dropout for training.

Plain PyTorch, on normalised [-1, 1] inputs (what the models read):
- a missing modality is all zeros (DOMAIN.md section 1, the paper's Fig. 4);
- noise is Gaussian of std sigma added to a modality's input, not clipped (Fig. 5);
- `drop_modalities` zeroes whole modalities of single frames during training (a remedy beyond
  the paper, off by default: `augment.modality_dropout`), the same zeros the study measures.

Shared by the engine (validation robustness of every fold), `farm robustness` (test subjects of
a promoted model) and `farm predict` (a modality the input lacks).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where tensors are touched: the report reads conditions without it
    import torch

SIGMAS = (0.1, 0.2, 0.5, 0.8)


@dataclass(frozen=True)
class Condition:
    """A test-time corruption: 'clean', 'missing' (modalities set to zero) or 'noise' (Gaussian, std sigma)."""

    kind: str
    modalities: tuple[str, ...] = ()
    sigma: float = 0.0

    @property
    def name(self) -> str:
        if self.kind == "clean":
            return "clean"
        target = "+".join(self.modalities)
        return f"missing {target}" if self.kind == "missing" else f"noise {target} sigma={self.sigma:g}"

    @property
    def label(self) -> str:
        """As a table shows it: 'clean', 'visual missing', 'visual+depth missing'."""
        return "clean" if self.kind == "clean" else f"{'+'.join(self.modalities)} missing"


def perturb(
    x: dict[str, torch.Tensor], cond: Condition, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """Apply a condition to normalised inputs (new tensors; the input is unchanged). Noise is not clipped."""
    import torch

    if cond.kind == "clean":
        return x
    out = dict(x)
    for m in cond.modalities:
        if cond.kind == "missing":
            out[m] = torch.zeros_like(x[m])
        else:
            noise = torch.randn(x[m].shape, generator=generator, device="cpu").to(x[m].device, x[m].dtype)
            out[m] = x[m] + cond.sigma * noise
    return out


def conditions(modalities: tuple[str, ...] | list[str], sigmas: tuple[float, ...] = SIGMAS) -> list[Condition]:
    """clean; each modality (and, for 3+, each pair) missing; noise on each modality and on all."""
    mods = tuple(modalities)
    out = [Condition("clean")]
    for k in range(1, min(2, len(mods) - 1) + 1):
        out += [Condition("missing", combo) for combo in itertools.combinations(mods, k)]
    for target in [(m,) for m in mods] + ([mods] if len(mods) > 1 else []):  # 'all' once, for 2+
        out += [Condition("noise", target, s) for s in sigmas]
    return out


def metric_suffix(cond: Condition) -> str:
    """The condition in a metric name: 'missing_depth', 'missing_depth-thermal', 'noise_visual_0.5', and noise on
    every modality at once named by all of them, 'noise_visual-depth-thermal_0.5' ('+' is not allowed in MLflow
    keys)."""
    if cond.kind == "clean":
        return "clean"
    target = "-".join(cond.modalities)
    if cond.kind == "missing":
        return f"missing_{target}"
    return f"noise_{target}_{cond.sigma:g}"


def drop_modalities(
    x: dict[str, torch.Tensor], prob: float, generator: torch.Generator | None = None,
    only: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:  # fmt: skip
    """Zero each modality of each frame with probability `prob` (those in `only`, or all); never all of a frame.

    A frame that would lose every modality keeps one, chosen uniformly among them. Returns new
    tensors for the modalities that changed; x is unchanged. One mask draw per batch (B, M).
    """
    import torch

    mods = [m for m in x if not only or m in only]
    if prob <= 0 or not mods or len(x) < 2:
        return x
    first = next(iter(x.values()))
    B, M = first.shape[0], len(x)
    names = list(x)
    droppable = torch.tensor([m in mods for m in names], device=first.device)  # (M,)
    u = torch.rand((B, M), generator=generator, device="cpu").to(first.device)
    drop = (u < prob) & droppable  # (B, M)
    everything = drop.all(dim=1)  # (B,) frames that would have no input left
    if bool(everything.any()):
        keep = torch.randint(0, M, (B,), generator=generator, device="cpu").to(first.device)  # (B,)
        drop[everything, keep[everything]] = False
    out = dict(x)
    for j, m in enumerate(names):
        if bool(drop[:, j].any()):
            keep_mask = (~drop[:, j]).to(x[m].dtype).view(B, *([1] * (x[m].dim() - 1)))  # (B, 1, 1, 1)
            out[m] = x[m] * keep_mask
    return out
