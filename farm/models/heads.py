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
    """Base: a classifier on some fused feature, trained with masked BCE."""

    modalities: tuple[str, ...]

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.forward_head(self.forward_features(x))  # (B, A)
        return {"logits": logits, "probs": torch.sigmoid(logits)}

    def forward_features(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.classifier(feats)

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
        self.modalities = (modality,)
        self.backbone = backbone
        self.classifier = nn.Linear(backbone.feature_dim, num_aus)

    def forward_features(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.backbone(x[self.modalities[0]])  # (B, D)


class EarlyFusion(FusionModel):
    """Modalities stacked along the channel axis into one backbone (Table 1, 'Early fusion')."""

    def __init__(self, modalities: tuple[str, ...], backbone: ResNetFeatures, num_aus: int) -> None:
        super().__init__()
        self.modalities = modalities
        self.backbone = backbone
        self.classifier = nn.Linear(backbone.feature_dim, num_aus)

    def forward_features(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        stacked = torch.cat([x[m] for m in self.modalities], dim=1)  # (B, sum C, H, W)
        return self.backbone(stacked)  # (B, D)


class LateFusion(FusionModel):
    """One backbone per modality, features concatenated (Table 1, 'Late fusion')."""

    def __init__(self, backbones: dict[str, ResNetFeatures], num_aus: int) -> None:
        super().__init__()
        self.modalities = tuple(backbones)
        self.backbones = nn.ModuleDict(backbones)
        dim = sum(b.feature_dim for b in backbones.values())
        self.classifier = nn.Linear(dim, num_aus)

    def forward_features(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([self.backbones[m](x[m]) for m in self.modalities], dim=1)  # (B, M*D)


class ChannelAttentionFusion(LateFusion):
    """Late fusion with squeeze-and-excitation channel attention on the concatenated features
    (the paper's 'ResNet-18 + CAM'; it gives no details, so this follows SE-Net's gating)."""

    def __init__(self, backbones: dict[str, ResNetFeatures], num_aus: int, reduction: int = 16) -> None:
        super().__init__(backbones, num_aus)
        dim = self.classifier.in_features
        self.attention = nn.Sequential(
            nn.Linear(dim, dim // reduction), nn.ReLU(inplace=True), nn.Linear(dim // reduction, dim), nn.Sigmoid()
        )

    def forward_features(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        feats = super().forward_features(x)  # (B, M*D)
        return feats * self.attention(feats)  # channel re-weighting, (B, M*D)
