"""Input corruptions of the paper's robustness study (Fig. 4, 5), and modality dropout for training.

Plain PyTorch, on normalised [-1, 1] inputs (what the models read):
- a missing modality is all zeros (DOMAIN.md section 1, the paper's Fig. 4);
- noise is Gaussian of std sigma added to a modality's input, not clipped (Fig. 5);
- `drop_modalities` zeroes whole modalities of single frames during training (a remedy beyond
  the paper, off by default: `augment.modality_dropout`), the same zeros the study measures.

Shared by the engine (validation robustness of every fold), `farm robustness` (test subjects of
a promoted model) and `farm predict` (a modality the input lacks).

`condition_probs` predicts a batch under every condition at once from cached features (issue 22): in
evaluation mode a modality's backbone features depend on that modality's input alone, so each
modality's backbone runs once on the clean batch, once on one frame of the missing fill (zeros,
broadcast over the batch) and once per noise sigma, and only the fusion head runs per condition.
A model that cannot split per modality (early fusion) runs its whole forward per condition.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where tensors are touched: the report reads conditions without it
    import torch

Noise = dict[tuple[str, float], "torch.Tensor"]
"""One batch's standard Gaussian noise per (modality, sigma), shaped like that modality's input."""

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
    x: dict[str, torch.Tensor], cond: Condition, generator: torch.Generator | None = None, noise: Noise | None = None
) -> dict[str, torch.Tensor]:
    """Apply a condition to normalised inputs (new tensors; the input is unchanged). Noise is not clipped.

    The noise is `noise[(m, sigma)]` (see `draw_noise`) where given, else drawn from `generator`."""
    import torch

    if cond.kind == "clean":
        return x
    out = dict(x)
    for m in cond.modalities:
        if cond.kind == "missing":
            out[m] = torch.zeros_like(x[m])
        else:
            z = noise[(m, cond.sigma)] if noise is not None else draw_like(x[m], generator)
            out[m] = add_noise(x[m], cond.sigma, z)
    return out


def draw_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard Gaussian noise shaped like x, drawn on the CPU (the same draws on every device)."""
    import torch

    return torch.randn(x.shape, generator=generator, device="cpu").to(x.device, x.dtype)


def add_noise(x: torch.Tensor, sigma: float, z: torch.Tensor) -> torch.Tensor:
    """x + sigma z: a noise condition's input, the one expression both evaluation paths compute."""
    return x + sigma * z


def draw_noise(x: dict[str, torch.Tensor], conds: list[Condition], gens: list[torch.Generator | None]) -> Noise:
    """This batch's noise for every (modality, sigma) a condition puts noise on, each drawn once.

    Conditions are visited in order; a (modality, sigma) is drawn from the generator of the first
    condition that puts noise on it. In `conditions()`'s list each modality's own noise condition
    comes first, so its draws are those it always had, and noise on all modalities at sigma reuses
    the per-modality draws at that sigma (before issue 22 it drew its own from its own generator).
    """
    out: Noise = {}
    for cond, gen in zip(conds, gens):
        for m in cond.modalities if cond.kind == "noise" else ():
            if (m, cond.sigma) not in out:
                out[(m, cond.sigma)] = draw_like(x[m], gen)
    return out


def condition_probs(
    model: Any, x: dict[str, torch.Tensor], conds: list[Condition], noise: Noise,
    amp: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext, cached: bool = True,
) -> dict[Condition, torch.Tensor]:  # fmt: skip
    """{condition: probabilities (B, A)} of an eval-mode fusion model on one normalised batch.

    `model` is a `farm.models.FusionModel`; `amp` gives the forward passes' autocast context. With `cached` and a
    model that splits per modality (`feature_modalities`) every backbone runs once per distinct input (clean,
    the missing fill, each sigma of noise) and `fuse` once per condition; otherwise `model(perturb(...))` per
    condition. Both read the same `noise` (`draw_noise`), so they agree to float rounding.
    """
    import torch

    if not cached or not model.feature_modalities:
        out = {}
        for cond in conds:
            with amp():
                out[cond] = model(perturb(x, cond, noise=noise))["probs"]
        return out
    with amp():
        clean = model.modality_features(x)  # {m: (B, D)}, the modalities the prediction reads
        swapped: dict[tuple[str, str, float], torch.Tensor] = {}  # (kind, m, sigma) -> that input's features
        for cond in conds:
            for m in (m for m in cond.modalities if m in clean):  # another modality changes no feature
                key = (cond.kind, m, cond.sigma)
                if key in swapped:
                    continue
                if cond.kind == "missing":  # zeros: one frame's features (per-frame BatchNorm), (1, D) -> (B, D)
                    fill = model.modality_features({m: torch.zeros_like(x[m][:1])})[m]  # in x's memory format
                    swapped[key] = fill.expand_as(clean[m])
                else:
                    swapped[key] = model.modality_features({m: add_noise(x[m], cond.sigma, noise[(m, cond.sigma)])})[m]
        out = {}
        for cond in conds:
            feats = {m: swapped.get((cond.kind, m, cond.sigma), f) if m in cond.modalities else f
                     for m, f in clean.items()}  # fmt: skip
            out[cond] = model.fuse(feats)["probs"]
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
