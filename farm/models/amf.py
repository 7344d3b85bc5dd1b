"""Adaptive Multimodal Fusion (Yang, Wang & Yin, ACM MM 2020), as DOMAIN.md section 1 states it.

Per modality k: backbone features a^k (B, D) (Eq. 1), scores alpha^k = g^k(a^k) in [0, 1]^D
(Eq. 2) and a classifier C^k with loss L^k (Eq. 8). For every feature dimension one modality is
picked with Gumbel-softmax over the modality axis, logits log(alpha^k) (Eq. 4-6); K samples are
drawn at once as a (B, K, D, M) tensor, classified by C* and their probabilities averaged (Eq. 9).
The hard one-hot pick is used in the forward pass with the straight-through gradient of the soft
sample, so tau shapes the gradient only. `GumbelPick` computes that fusion without materialising
the one-hot selection or its product with a (issue 16: the same draws, values and gradients as
`gumbel_select`, the form Eq. 4-6 are written in, at a fraction of the CPU cost; docs/benchmarks.md).
The scorer is guided towards |dL^k/da^k| (Eq. 10), a detached target; the guidance trains the
scorer and, through a^k, the backbone (as the paper states it), or the scorer alone with
`guidance_backbone=False` (a knob beyond the paper). `scorer_input="all"` (beyond the paper too) lets each g^k
read every modality's features, concatenated, instead of a^k alone.
Objective: lambda_* L* + sum_k (lambda_k L^k + lambda*_k L*k) (Eq. 11).

Evaluation (`eval_mode`):
- "mean" (default): the K-sample vote of training, with one set of Gumbel noise (1, K, D, M)
  drawn from a generator seeded with `eval_seed` and shared by every frame of the batch, so a
  frame's prediction is the same alone or in any batch, in any order.
- "argmax": no noise; per dimension the modality with the highest alpha, one fused vector.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from farm.models.backbones import ResNetFeatures
from farm.models.heads import FusionModel, masked_bce_with_logits


def temperature(epochs: float, start: float, floor: float, decay: float) -> float:
    """tau(t) = floor + (start - floor) * exp(-decay * t): starts at `start`, decays towards `floor`."""
    return floor + (start - floor) * math.exp(-decay * epochs)


U_RANGE = (1e-10, 1.0 - 1e-7)  # u is clamped into it so that log(-log u) is finite


def gumbel_noise(
    shape: tuple[int, ...], generator: torch.Generator | None = None, device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:  # fmt: skip
    """log(-log u) = -g, the negated Gumbel noise of Eq. 5, for u ~ U(0, 1) drawn as one `torch.rand(shape)`.

    Computed in place: one tensor of `shape`, no temporaries of that size.
    """
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    return u.clamp_(*U_RANGE).log_().neg_().log_()


def subtract_max(z: torch.Tensor) -> torch.Tensor:
    """z - max over the modality axis, in place on modality-major logits z (B, K, M, D).

    The result is <= 0 and exactly 0 at the max (x - y == 0 only if x == y). The max runs over M
    contiguous (B, K, D) slices (`amax`/`argmax` over a middle axis of size M is far slower on the CPU).
    """
    zs = z.unbind(2)  # M views (B, K, D)
    top = zs[0].clone()
    for zm in zs[1:]:
        torch.maximum(top, zm, out=top)  # (B, K, D)
    return z.sub_(top.unsqueeze(2))


def pick_max(shifted: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4's hard pick from `subtract_max(z)` (B, K, M, D), which it overwrites with the one-hot pick.

    Returns fused (B, K, D), a^k_j of the modality k with the largest z (the first on exact ties, as
    argmax does), and the one-hot pick (B, K, M, D).
    """
    hard = shifted.eq_(0.0)  # 1 at the max, else 0, (B, K, M, D)
    hs = hard.unbind(2)  # M views (B, K, D)
    for m in range(1, len(hs)):  # an exact tie keeps the first maximum only: h_m (1 - h_j) for j < m
        for j in range(m):
            hs[m].addcmul_(hs[m], hs[j], value=-1.0)
    fused = hs[0] * a[:, 0].unsqueeze(1)  # exactly the picked a^k_j: the others add zeros, (B, K, D)
    for m in range(1, len(hs)):
        fused.addcmul_(hs[m], a[:, m].unsqueeze(1))
    return fused, hard


class GumbelPick(torch.autograd.Function):
    """Straight-through Gumbel-softmax fusion over the modality axis (Eq. 4-6), K samples at once.

    log_alpha (B, M, D), a (B, M, D) -> fused (B, K, D) and the one-hot pick (B, K, M, D).
    The noise is drawn inside, one `torch.rand((B or 1, K, D, M), generator)` as `gumbel_select`
    (the form Eq. 4-6 are written in) draws it, so the draws and the logits z = (log alpha + g) / tau
    are bit for bit the same; they are laid out modality-major, (B, K, M, D), so that the
    reductions over M run over contiguous (B, K, D) slices. `shared`: one draw (1, K, D, M) for
    the whole batch.

    Forward: `pick_max(subtract_max(z), a)`. Backward: the gradient of the soft product
    sum_k softmax(z)^k_j a^k_j (Eq. 6), i.e. of `((hard - soft.detach() + soft) * a).sum(M)`, in
    closed form: dz^k = soft^k g (a^k - sum_m soft^m a^m) (the softmax Jacobian), summed over K
    for log alpha; g at the pick, summed over K, for a. No one-hot product or straight-through sum
    exists; three (B, K, M, D) buffers are allocated per training step (noise and logits, their
    softmax, one in the backward: on the CPU each fresh buffer costs page faults), and the softmax
    is only computed when log_alpha requires a gradient.
    """

    @staticmethod
    def forward(ctx, log_alpha, a, tau: float, num_samples: int, generator=None, shared: bool = False):
        B, M, D = a.shape
        # Eq. 5 drawn as gumbel_select draws it, u (B or 1, K, D, M), and transposed by the clamp
        u = torch.rand((1 if shared else B, num_samples, D, M), generator=generator, device=a.device,
                       dtype=log_alpha.dtype)  # fmt: skip
        noise = torch.empty((u.shape[0], num_samples, M, D), device=u.device, dtype=u.dtype)  # modality-major
        torch.clamp(u.transpose(-1, -2), *U_RANGE, out=noise).log_().neg_().log_()  # -g, (B or 1, K, M, D)
        # (log alpha - (-g)) / tau: bit for bit Eq. 6's (log alpha + g) / tau; in the noise's buffer when it fits
        z = torch.sub(log_alpha.unsqueeze(1), noise, out=noise if not shared else None).div_(tau)  # (B, K, M, D)
        shifted = subtract_max(z)  # (B, K, M, D)
        soft = None
        if ctx.needs_input_grad[0]:  # softmax over M (Eq. 6), in u's buffer (no longer needed) when it fits
            soft = torch.exp(shifted, out=u.view(B, num_samples, M, D) if not shared else None)  # (B, K, M, D)
            soft.div_(functools.reduce(torch.add, soft.unbind(2)).unsqueeze(2))
        fused, hard = pick_max(shifted, a)  # (B, K, D), (B, K, M, D)
        ctx.save_for_backward(soft, hard, a)
        ctx.tau = tau
        ctx.mark_non_differentiable(hard)
        ctx.set_materialize_grads(False)  # no (B, K, M, D) zeros for the gradient of `hard`, which has none
        return fused, hard

    @staticmethod
    @once_differentiable  # its saved softmax carries no graph: a second derivative would be silently wrong
    def backward(ctx, grad: torch.Tensor, _: torch.Tensor):
        soft, hard, a = ctx.saved_tensors
        grad_log_alpha = grad_a = None
        if grad is None:  # nothing downstream of `fused` needs a gradient
            return None, None, None, None, None, None
        g = grad.unsqueeze(2)  # (B, K, 1, D)
        buf = torch.empty_like(hard)  # (B, K, M, D), the one buffer of that size
        if ctx.needs_input_grad[0]:
            mean_a = soft[:, :, 0] * a[:, 0].unsqueeze(1)  # sum_m soft^m a^m, (B, K, D)
            for m in range(1, a.shape[1]):
                mean_a.addcmul_(soft[:, :, m], a[:, m].unsqueeze(1))
            torch.sub(a.unsqueeze(1), mean_a.unsqueeze(2), out=buf).mul_(soft).mul_(g)  # dz, (B, K, M, D)
            grad_log_alpha = buf.sum(dim=1).div_(ctx.tau)  # (B, M, D)
        if ctx.needs_input_grad[1]:
            grad_a = torch.mul(hard, g, out=buf).sum(dim=1)  # the picked modality receives the gradient, (B, M, D)
        return grad_log_alpha, grad_a, None, None, None, None


def gumbel_select(
    log_alpha: torch.Tensor, num_samples: int, tau: float, generator: torch.Generator | None = None,
    shared: bool = False,
) -> torch.Tensor:  # fmt: skip
    """Straight-through Gumbel-softmax over the last (modality) axis, K samples at once (Eq. 4-6 as written).

    log_alpha (B, D, M) -> one-hot selections (B, K, D, M) whose gradient is the soft sample's.
    `shared`: one noise draw (1, K, D, M) for the whole batch. The reference form, for analysis and
    tests: `AMF` computes `(select * a).sum(-1)` with `GumbelPick`, from the same draws, instead.
    """
    B, D, M = log_alpha.shape
    neg_gumbel = gumbel_noise((1 if shared else B, num_samples, D, M), generator, log_alpha.device, log_alpha.dtype)
    z = (log_alpha.unsqueeze(1) - neg_gumbel) / tau  # Eq. 6's (log alpha + g) / tau, (B, K, D, M)
    soft = torch.softmax(z, dim=-1)  # Eq. 6
    hard = F.one_hot(z.argmax(dim=-1), M).to(soft.dtype)  # Eq. 4
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
        scorer_input: str = "own",
    ) -> None:
        super().__init__()
        self.modalities = self.feature_modalities = tuple(backbones)
        self.backbones = nn.ModuleDict(backbones)
        dims = {b.feature_dim for b in backbones.values()}
        if len(dims) != 1:
            raise ValueError(f"AMF needs backbones of one feature size, got {sorted(dims)}")
        dim = dims.pop()
        if scorer_input not in ("own", "all"):
            raise ValueError(f"scorer_input must be 'own' or 'all', got {scorer_input!r}")
        self.scorer_input = scorer_input
        width = dim * (len(backbones) if scorer_input == "all" else 1)
        self.scorers = nn.ModuleDict({m: nn.Linear(width, dim) for m in backbones})  # g^k, Eq. 2
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

    def modality_features(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {m: self.backbones[m](x[m]) for m in self.modalities if m in x}  # a^k (Eq. 1), each (B, D)

    def fuse(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Eq. 2-9 from the features a^k; `forward(x)` is `fuse(modality_features(x))`."""
        # the selection runs in float32 under autocast too (a no-op in fp32): in bf16, u of Eq. 5 would take
        # 2,304 values (0 for 0.2 % of draws, the Gumbel tail cut at 5.5) and z would tie, to the first
        # modality's benefit, for 0.1 % of picks; (B, M, D) casts, negligible next to the (B, K, M, D) work
        a = torch.stack([feats[m] for m in self.modalities], dim=1).float()  # modality-major, (B, M, D)
        # log(alpha^k) with alpha^k = sigmoid(g^k(a^k)), computed as logsigmoid for stability.
        context = torch.cat([feats[m] for m in self.modalities], dim=1) if self.scorer_input == "all" else None
        scores = [self.scorers[m](self._scorer_in(feats, m, context)).float() for m in self.modalities]  # each (B, D)
        log_alpha = torch.stack([F.logsigmoid(g) for g in scores], dim=1)  # (B, M, D)
        alpha_in = log_alpha if torch.is_grad_enabled() else log_alpha.detach()  # no backward: no softmax either
        if self.training:
            fused, hard = GumbelPick.apply(alpha_in, a, self.tau, self.num_samples)  # (B, K, D), (B, K, M, D)
        elif self.eval_mode == "mean":  # one noise draw (1, K, D, M) shared by the batch
            gen = torch.Generator(device=a.device).manual_seed(self.eval_seed)
            fused, hard = GumbelPick.apply(alpha_in, a, self.tau_floor, self.num_samples, gen, True)
        else:  # no noise: the largest alpha, one sample, no gradient to g^k; (B, 1, D), (B, 1, M, D)
            fused, hard = pick_max(subtract_max(log_alpha.detach().unsqueeze(1).clone()), a)
        fused_logits = self.classifier(fused).float()  # (B, K, A); the vote and L* in float32 under autocast too
        probs = torch.sigmoid(fused_logits).mean(dim=1)  # average vote, Eq. 9, (B, A)
        out = {
            "probs": probs,
            "fused_logits": fused_logits,
            "selection": hard.mean(dim=1).transpose(1, 2),
        }  # pick shares, (B, D, M)
        for m in self.modalities:
            out[f"features/{m}"] = feats[m]
            out[f"alpha/{m}"] = log_alpha[:, self.modalities.index(m)].exp()  # (B, D)
            out[f"logits/{m}"] = self.classifiers[m](feats[m])  # C^k(a^k), (B, A)
            if self.training and not self.guidance_backbone:  # Eq. 10 trains the scorer g^k only
                guide_in = self._scorer_in(feats, m, context).detach()
                out[f"alpha_guide/{m}"] = torch.sigmoid(self.scorers[m](guide_in))  # (B, D)
        return out

    def _scorer_in(self, feats: dict[str, torch.Tensor], m: str, context: torch.Tensor | None) -> torch.Tensor:
        """What g^m reads: a^m (B, D), or with scorer_input 'all' every modality's features (B, M D)."""
        return feats[m] if context is None else context

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
