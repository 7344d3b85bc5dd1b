"""TEMT-Net: thermal-empowered multi-task network (Liu, Zhang, Yang & Yin, WACV 2019), two modalities.

The paper trains on colour + thermal and tests on colour alone: one network on the colour image
learns AU detection together with facial landmark detection and thermal-image reconstruction,
the two extra tasks regularising the shared features. Here the source is the first modality
(visual) and the target the second (thermal on BP4D+, depth on BP4D as the AMF paper ran it):

    a = E(x_s)                                  ResNet on the source image, feature map (B, D, h, w)
    L_AU = masked BCE of C(pool(a))             the prediction, from the source alone (as the paper)
    L_transfer = mean |G(a) - x_t|              G: a small upsampling decoder, tanh to [-1, 1]
    objective = L_AU + lambda_transfer * L_transfer

The reconstruction gradient is meant to shape E (that is the transfer), so it is not stopped on the
source; the target image is only a regression target. Landmarks are not in the farm's datasets, so
that task is left out. docs/baselines.md lists the other choices the paper's abstract leaves open.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from farm.models.backbones import ResNetFeatures
from farm.models.heads import FusionModel, masked_bce_with_logits
from farm.models.mtut import feature_map


def two_modalities(modalities: tuple[str, ...]) -> None:
    """Raise the farm's one message for anything but (source, target)."""
    if len(modalities) != 2:
        raise ValueError(
            "TEMT-Net takes exactly two modalities (visual + thermal or depth); "
            f"got {', '.join(modalities) or 'none'}. The AMF paper also reports no three-modality result."
        )


class Generator(nn.Module):
    """Target image from the source feature map: 1x1 reduction, three x2 up-convolutions, tanh."""

    def __init__(self, in_dim: int, out_chans: int, widths: tuple[int, ...] = (256, 128, 64, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_dim, widths[0], 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            ]
        layers += [nn.Conv2d(widths[-1], out_chans, 1), nn.Tanh()]  # inputs are normalised to [-1, 1]
        self.net = nn.Sequential(*layers)

    def forward(self, fmap: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        img = self.net(fmap)  # (B, C_t, 8h, 8w): stride 4 of the input
        return F.interpolate(img, size=size, mode="bilinear", align_corners=False)  # (B, C_t, H, W)


class TEMTNet(FusionModel):
    def __init__(
        self, source: ResNetFeatures, modalities: tuple[str, ...], target_chans: int, num_aus: int,
        lambda_transfer: float = 1.0,
    ) -> None:  # fmt: skip
        super().__init__()
        two_modalities(modalities)
        self.modalities = modalities
        self.feature_modalities = modalities[:1]  # the source: the prediction reads it alone
        self.backbone = source
        self.classifier = nn.Linear(source.feature_dim, num_aus)
        self.generator = Generator(source.feature_dim, target_chans)
        self.lambda_transfer = lambda_transfer

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        source, target = self.modalities
        fmap = feature_map(self.backbone, x[source])  # a, (B, D, h, w)
        out = self.fuse({source: fmap.mean(dim=(2, 3))})
        if self.lambda_transfer > 0 and self.training:  # the decoder serves training only
            out["reconstruction"] = self.generator(fmap, x[target].shape[-2:])  # G(a), (B, C_t, H, W)
            out["target_image"] = x[target]  # x_t: a regression target, never an input to the prediction
        return out

    def modality_features(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The source's pooled features (B, D): the prediction reads no other modality."""
        return {m: feature_map(self.backbone, x[m]).mean(dim=(2, 3)) for m in self.feature_modalities if m in x}

    def fuse(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.outputs(self.classifier(feats[self.modalities[0]]))  # (B, A)

    def loss(
        self, out: dict[str, torch.Tensor], target: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss_au = masked_bce_with_logits(out["logits"], target, mask)
        parts = {"loss_au": loss_au.detach()}
        total = loss_au
        if "reconstruction" in out:
            transfer = F.l1_loss(out["reconstruction"], out["target_image"])
            total = total + self.lambda_transfer * transfer
            parts["loss_transfer"] = transfer.detach()
        parts["loss"] = total.detach()
        return total, parts
