"""Adaptive Multimodal Fusion (Yang, Wang & Yin, ACM MM 2020), as DOMAIN.md section 1 states it.

Per modality k: backbone features a^k (B, D) (Eq. 1), scores alpha^k = g^k(a^k) in [0, 1]^D
(Eq. 2) and a classifier C^k with loss L^k (Eq. 8). For every feature dimension one modality is
picked with Gumbel-softmax over the modality axis, logits log(alpha^k) (Eq. 4-6); K samples are
drawn at once as a (B, K, D, M) tensor, classified by C* and their probabilities averaged (Eq. 9).
The hard one-hot pick is used in the forward pass with the straight-through gradient of the soft
sample, so tau shapes the gradient only. The scorer is guided towards |dL^k/da^k| (Eq. 10), a
detached target; the guidance trains the scorer and, through a^k, the backbone (as the paper
states it), or the scorer alone with `guidance_backbone=False` (a knob beyond the paper). Objective: lambda_* L* + sum_k (lambda_k L^k + lambda*_k L*k) (Eq. 11).

Evaluation (`eval_mode`):
- "mean" (default): the K-sample vote of training, with one set of Gumbel noise (1, K, D, M)
  drawn from a generator seeded with `eval_seed` and shared by every frame of the batch, so a
  frame's prediction is the same alone or in any batch, in any order.
- "argmax": no noise; per dimension the modality with the highest alpha, one fused vector.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from farm.models.backbones import ResNetFeatures
from farm.models.heads import FusionModel, masked_bce_with_logits


def temperature(epochs: float, start: float, floor: float, decay: float) -> float:
    """tau(t) = floor + (start - floor) * exp(-decay * t): starts at `start`, decays towards `floor`."""
    return floor + (start - floor) * math.exp(-decay * epochs)


def gumbel_select(
    log_alpha: torch.Tensor, num_samples: int, tau: float, generator: torch.Generator | None = None,
    shared: bool = False,
) -> torch.Tensor:  # fmt: skip
    """Straight-through Gumbel-softmax over the last (modality) axis, K samples at once.

    log_alpha (B, D, M) -> one-hot selections (B, K, D, M) whose gradient is the soft sample's.
    `shared`: one noise draw (1, K, D, M) for the whole batch (evaluation: a frame's vote must not
    depend on its neighbours); otherwise independent noise per frame (training).
    """
    B, D, M = log_alpha.shape
    shape = (1 if shared else B, num_samples, D, M)
    u = torch.rand(shape, generator=generator, device=log_alpha.device, dtype=log_alpha.dtype)
    gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))  # Eq. 5, (B or 1, K, D, M)
    soft = torch.softmax((log_alpha.unsqueeze(1) + gumbel) / tau, dim=-1)  # Eq. 6, (B, K, D, M)
    hard = F.one_hot(soft.argmax(dim=-1), M).to(soft.dtype)  # Eq. 4, (B, K, D, M)
    return hard - soft.detach() + soft


def log_mean_sigmoid(logits: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """log(mean sigmoid(z)) and log(1 - mean sigmoid(z)) over `dim`, computed stably."""
    k = math.log(logits.shape[dim])
    return (torch.logsumexp(F.logsigmoid(logits), dim=dim) - k, torch.logsumexp(F.logsigmoid(-logits), dim=dim) - k)


class AMF(FusionModel):
    def __init__(
        self,
        backbones: dict[str, ResNetFeatures],
        num_aus: int,
        num_samples: int = 100,
        lambda_fused: float = 2.0,
        lambda_modality: float = 1.0,
        lambda_guidance: float = 1.0,
        tau_start: float = 1.0,
        tau_floor: float = 0.5,
        tau_decay: float = 0.3,
        tau_unit: str = "epoch",
        eval_mode: str = "mean",
        eval_seed: int = 0,
        guidance_backbone: bool = True,
    ) -> None:
        super().__init__()
        self.modalities = tuple(backbones)
        self.backbones = nn.ModuleDict(backbones)
        dims = {b.feature_dim for b in backbones.values()}
        if len(dims) != 1:
            raise ValueError(f"AMF needs backbones of one feature size, got {sorted(dims)}")
        dim = dims.pop()
        self.scorers = nn.ModuleDict({m: nn.Linear(dim, dim) for m in backbones})  # g^k, Eq. 2
        self.classifiers = nn.ModuleDict({m: nn.Linear(dim, num_aus) for m in backbones})  # C^k, Eq. 8
        self.classifier = nn.Linear(dim, num_aus)  # C*, Eq. 9
        self.num_samples = num_samples
        self.lambda_fused, self.lambda_modality, self.lambda_guidance = lambda_fused, lambda_modality, lambda_guidance
        self.tau_start, self.tau_floor, self.tau_decay, self.tau_unit = tau_start, tau_floor, tau_decay, tau_unit
        self.tau = tau_start
        self.eval_mode, self.eval_seed = eval_mode, eval_seed
        self.guidance_backbone = guidance_backbone

    def set_progress(self, epochs: float) -> None:
        t = math.floor(epochs) if self.tau_unit == "epoch" else epochs
        self.tau = temperature(t, self.tau_start, self.tau_floor, self.tau_decay)

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feats = {m: self.backbones[m](x[m]) for m in self.modalities}  # a^k, each (B, D)
        a = torch.stack([feats[m] for m in self.modalities], dim=-1)  # (B, D, M)
        # log(alpha^k) with alpha^k = sigmoid(g^k(a^k)), computed as logsigmoid for stability.
        log_alpha = torch.stack([F.logsigmoid(self.scorers[m](feats[m])) for m in self.modalities], dim=-1)  # (B, D, M)
        if self.training:
            select = gumbel_select(log_alpha, self.num_samples, self.tau)  # (B, K, D, M)
        elif self.eval_mode == "mean":
            gen = torch.Generator(device=a.device).manual_seed(self.eval_seed)
            select = gumbel_select(log_alpha, self.num_samples, self.tau_floor, gen, shared=True)  # (B, K, D, M)
        else:
            select = F.one_hot(log_alpha.argmax(dim=-1), len(self.modalities)).to(a.dtype).unsqueeze(1)  # (B, 1, D, M)
        fused = (select * a.unsqueeze(1)).sum(dim=-1)  # a*_j, (B, K, D)
        fused_logits = self.classifier(fused)  # (B, K, A)
        probs = torch.sigmoid(fused_logits).mean(dim=1)  # average vote, Eq. 9, (B, A)
        out = {"probs": probs, "fused_logits": fused_logits, "selection": select.detach().mean(dim=1)}  # (B, D, M)
        for m in self.modalities:
            out[f"features/{m}"] = feats[m]
            out[f"alpha/{m}"] = log_alpha[..., self.modalities.index(m)].exp()  # (B, D)
            out[f"logits/{m}"] = self.classifiers[m](feats[m])  # C^k(a^k), (B, A)
            if self.training and not self.guidance_backbone:  # Eq. 10 trains the scorer g^k only
                out[f"alpha_guide/{m}"] = torch.sigmoid(self.scorers[m](feats[m].detach()))  # (B, D)
        return out

    def loss(
        self, out: dict[str, torch.Tensor], target: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        # L*: cross-entropy of the K-averaged probability (Eq. 9), in log space.
        log_p, log_not_p = log_mean_sigmoid(out["fused_logits"], dim=1)  # (B, A) each
        bce = -(target * log_p + (1.0 - target) * log_not_p)
        loss_fused = (bce * mask).sum() / mask.sum().clamp_min(1.0)
        total = self.lambda_fused * loss_fused
        parts = {"loss_fused": loss_fused.detach()}
        for m in self.modalities:
            loss_m = masked_bce_with_logits(out[f"logits/{m}"], target, mask)  # L^k, Eq. 8
            total = total + self.lambda_modality * loss_m
            parts[f"loss/{m}"] = loss_m.detach()
            if self.lambda_guidance > 0 and self.training:
                # Eq. 10: the target |dL^k/da^k| is a constant: no gradient flows through it.
                (grad,) = torch.autograd.grad(loss_m, out[f"features/{m}"], retain_graph=True)  # (B, D)
                alpha = out.get(f"alpha_guide/{m}", out[f"alpha/{m}"])  # (B, D)
                guide = (1.0 - F.cosine_similarity(alpha, grad.detach().abs(), dim=1)).mean()
                total = total + self.lambda_guidance * guide
                parts[f"loss_guide/{m}"] = guide.detach()
        parts["loss"] = total.detach()
        return total, parts
