"""MTUT: multimodal training, unimodal testing (Abavisani, Vaezi Joze & Patel, CVPR 2019), for AUs.

One ResNet and one classifier per modality, each trained on its own AU loss L^m. A spatial
semantic alignment (SSA) loss pulls the correlation matrix of modality m's last feature map
towards modality n's, weighted by the focal regularisation parameter
    rho^{m,n} = ReLU(exp(beta * (L^m - L^n)) - 1),
so m learns from n only where n has the lower loss (no negative transfer); n, the teacher, is
detached. The paper's video maps are spatiotemporal; a frame's map is spatial only (T = 1).

    corr(F) = F_hat F_hat^T / C        F (N, C): N = h*w positions; F_hat: each channel L2-normalised
    SSA^{m,n} = mean_b rho_b^{m,n} ||corr(F^m_b) - sg(corr(F^n_b))||_F^2      (sg = stop-gradient)
    objective = sum_m L^m + lambda * sum_{m != n} SSA^{m,n}

corr is a trace-1 positive semi-definite (N, N) matrix, so each term lies in [0, 2] whatever the
batch, map size, channel count or feature scale. rho is computed per frame on detached losses.
MTUT tests each network alone; for one multimodal number (the AMF paper's Tables 1-2) the
per-modality probabilities are averaged. docs/baselines.md says where this differs from the paper.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from farm.models.backbones import ResNetFeatures
from farm.models.heads import FusionModel, masked_bce_with_logits


def feature_map(backbone: ResNetFeatures, x: torch.Tensor) -> torch.Tensor:
    """The backbone's last convolutional map (B, D, h, w); its spatial mean is `backbone(x)`."""
    net = backbone.net  # torchvision ResNet: the same modules, in the order of its own forward
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


def correlation(fmap: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, N, N), N = h*w: corr(F) = F_hat F_hat^T / C, channels unit-norm over positions."""
    f = F.normalize(fmap.flatten(2), dim=2, eps=1e-8)  # F_hat^T, (B, C, N)
    return f.transpose(1, 2) @ f / f.shape[1]  # (B, N, N), trace 1


def per_sample_bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked BCE averaged over each frame's known labels, (B,); 0 for a frame with none."""
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")  # (B, A)
    return (loss * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


def focal_rho(loss_m: torch.Tensor, loss_n: torch.Tensor, beta: float) -> torch.Tensor:
    """rho^{m,n} = ReLU(exp(beta (L^m - L^n)) - 1): > 0 only where n (the teacher) does better than m."""
    return F.relu(torch.exp(beta * (loss_m.detach() - loss_n.detach())) - 1.0)


def ssa_loss(corr_m: torch.Tensor, corr_n: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """mean_b rho_b ||corr_m - sg(corr_n)||_F^2: gradients reach m only."""
    dist = (corr_m - corr_n.detach()).pow(2).sum(dim=(1, 2))  # (B,), each in [0, 2]
    return (rho * dist).mean()


class MTUT(FusionModel):
    def __init__(
        self, backbones: dict[str, ResNetFeatures], num_aus: int, lambda_ssa: float = 1.0, beta: float = 2.0
    ) -> None:
        super().__init__()
        if len(backbones) < 2:
            raise ValueError(f"MTUT needs at least two modalities, got {list(backbones)}")
        self.modalities = self.feature_modalities = tuple(backbones)
        self.backbones = nn.ModuleDict(backbones)
        self.classifiers = nn.ModuleDict({m: nn.Linear(b.feature_dim, num_aus) for m, b in backbones.items()})
        self.lambda_ssa, self.beta = lambda_ssa, beta

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        fmaps = {m: feature_map(self.backbones[m], x[m]) for m in self.modalities}  # F^m, each (B, D, h, w)
        out = self.fuse({m: fmap.mean(dim=(2, 3)) for m, fmap in fmaps.items()})  # the pooled features, (B, D)
        out.update({f"fmap/{m}": fmap for m, fmap in fmaps.items()})  # the SSA loss reads the maps
        return out

    def modality_features(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: feature_map(self.backbones[m], x[m]).mean(dim=(2, 3)) for m in self.modalities if m in x}  # (B, D)

    def fuse(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {f"logits/{m}": self.classifiers[m](feats[m]) for m in self.modalities}  # each (B, A)
        # Unimodal networks; one multimodal prediction = the mean of their probabilities.
        out["probs"] = torch.stack([torch.sigmoid(out[f"logits/{m}"]) for m in self.modalities]).mean(dim=0)  # (B, A)
        return out

    def loss(
        self, out: dict[str, torch.Tensor], target: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts: dict[str, torch.Tensor] = {}
        total = target.new_zeros(())
        for m in self.modalities:
            loss_m = masked_bce_with_logits(out[f"logits/{m}"], target, mask)  # L^m
            total = total + loss_m
            parts[f"loss/{m}"] = loss_m.detach()
        if self.lambda_ssa > 0:
            frame_loss = {m: per_sample_bce(out[f"logits/{m}"], target, mask) for m in self.modalities}  # (B,)
            corr = {m: correlation(out[f"fmap/{m}"]) for m in self.modalities}  # (B, N, N)
            ssa = target.new_zeros(())
            for m, n in itertools.permutations(self.modalities, 2):  # student m, teacher n
                ssa = ssa + ssa_loss(corr[m], corr[n], focal_rho(frame_loss[m], frame_loss[n], self.beta))
            total = total + self.lambda_ssa * ssa
            parts["loss_ssa"] = ssa.detach()
        parts["loss"] = total.detach()
        return total, parts
