"""Fusion models sharing one interface, and the baselines of the AMF paper (Sec. 4.3.2).

Every model maps a dict of normalised images {modality: (B, C, H, W)} to a dict holding at least
`probs` (B, A); `loss(out, target, mask)` returns the training objective and its named parts.
`target` is (B, A) in {0, 1} and `mask` (B, A) is 0 where the label is unknown (BP4D's 9).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from farm.models.backbones import ResNetFeatures


def masked_bce_with_logits(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the known labels only."""
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # (B, A)
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


class FusionModel(nn.Module):
    """Base: a classifier on some fused feature, trained with masked BCE.

    A model that reads each modality through its own backbone computes its forward in two halves,
    `forward(x) = fuse(modality_features(x))`, so that the robustness conditions can reuse the features of the
    modalities a condition leaves alone (`farm.data.perturb.condition_probs`, issue 22):
    - `feature_modalities`: the modalities whose features `fuse` reads (TEMT-Net: its source only); empty for a
      model that cannot split per modality (early fusion: one backbone on the stacked channels), which then
      runs its whole forward under each condition;
    - `modality_features(x)`: {m: (B, D)} for each of those modalities present in x, each from x[m] alone. In
      eval mode a frame's feature depends on that frame's input only (BatchNorm uses its running statistics);
    - `fuse(feats)`: `forward`'s output dict from every such modality's features.
    """

    modalities: tuple[str, ...]
    feature_modalities: tuple[str, ...] = ()

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.fuse(self.modality_features(x))

    def modality_features(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} does not split its forward per modality")

    def fuse(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.outputs(self.forward_head(self.fuse_features(feats)))

    def fuse_features(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-modality features -> the fused feature the classifier reads."""
        raise NotImplementedError

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.classifier(feats)

    @staticmethod
    def outputs(logits: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": logits, "probs": torch.sigmoid(logits)}  # (B, A) each

    def loss(
        self, out: dict[str, torch.Tensor], target: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(objective, {name: detached part}); parts stay tensors so the loop syncs once per epoch."""
        loss = masked_bce_with_logits(out["logits"], target, mask)
        return loss, {"loss": loss.detach()}

    def set_progress(self, epochs: float) -> None:
        """Training progress in (fractional) epochs; used by schedules such as AMF's temperature."""


class SingleModality(FusionModel):
    """ResNet-18 on one modality (the paper's 'ResNet-18 Visual / Depth / Thermal' rows)."""

    def __init__(self, modality: str, backbone: ResNetFeatures, num_aus: int) -> None:
        super().__init__()
        self.modalities = self.feature_modalities = (modality,)
        self.backbone = backbone
        self.classifier = nn.Linear(backbone.feature_dim, num_aus)

    def modality_features(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.backbone(x[m]) for m in self.modalities if m in x}  # (B, D)

    def fuse_features(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return feats[self.modalities[0]]  # (B, D)


class EarlyFusion(FusionModel):
    """Modalities stacked along the channel axis into one backbone (Table 1, 'Early fusion').

    Its features mix every modality from the first convolution on: it cannot split per modality
    (`feature_modalities` is empty), so each robustness condition runs the whole forward."""

    def __init__(self, modalities: tuple[str, ...], backbone: ResNetFeatures, num_aus: int) -> None:
        super().__init__()
        self.modalities = modalities
        self.backbone = backbone
        self.classifier = nn.Linear(backbone.feature_dim, num_aus)

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.outputs(self.forward_head(self.forward_features(x)))

    def forward_features(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        stacked = torch.cat([x[m] for m in self.modalities], dim=1)  # (B, sum C, H, W)
        return self.backbone(stacked)  # (B, D)


class LateFusion(FusionModel):
    """One backbone per modality, features concatenated (Table 1, 'Late fusion')."""

    def __init__(self, backbones: dict[str, ResNetFeatures], num_aus: int) -> None:
        super().__init__()
        self.modalities = self.feature_modalities = tuple(backbones)
        self.backbones = nn.ModuleDict(backbones)
        dim = sum(b.feature_dim for b in backbones.values())
        self.classifier = nn.Linear(dim, num_aus)

    def modality_features(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.backbones[m](x[m]) for m in self.modalities if m in x}  # each (B, D)

    def fuse_features(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([feats[m] for m in self.modalities], dim=1)  # (B, M*D)


class ChannelAttentionFusion(LateFusion):
    """Late fusion with squeeze-and-excitation channel attention on the concatenated features
    (the paper's 'ResNet-18 + CAM'; it gives no details, so this follows SE-Net's gating)."""

    def __init__(self, backbones: dict[str, ResNetFeatures], num_aus: int, reduction: int = 16) -> None:
        super().__init__(backbones, num_aus)
        dim = self.classifier.in_features
        self.attention = nn.Sequential(
            nn.Linear(dim, dim // reduction), nn.ReLU(inplace=True), nn.Linear(dim // reduction, dim), nn.Sigmoid()
        )

    def fuse_features(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        fused = super().fuse_features(feats)  # (B, M*D)
        return fused * self.attention(fused)  # channel re-weighting, (B, M*D)
