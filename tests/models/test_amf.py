"""AMF specifics: Gumbel selection statistics, the temperature schedule, Eq. 9 and Eq. 10."""

import math

import pytest
import torch
import torch.nn.functional as F

from farm.config import unflatten
from farm.models import build_model
from farm.models.amf import GumbelPick, gumbel_select, log_mean_sigmoid, pick_max, subtract_max, temperature


def test_gumbel_selection_frequencies_match_alpha():
    # alpha^k per dimension; Gumbel-max picks modality k with probability alpha^k / sum_j alpha^j.
    alpha = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.2], [0.9, 0.05, 0.9]])  # (D=3, M=3)
    expected = alpha / alpha.sum(-1, keepdim=True)
    n = 20000
    gen = torch.Generator().manual_seed(0)
    sel = gumbel_select(alpha.log().unsqueeze(0), n, tau=0.7, generator=gen)  # (1, n, D, M)
    freq = sel[0].mean(0)  # (D, M)
    assert sel.sum(-1).eq(1).all(), "each dimension picks exactly one modality"
    se = (expected * (1 - expected) / n).sqrt()
    assert torch.all((freq - expected).abs() < 5 * se + 1e-3), (freq, expected)
    # the model's sampler (GumbelPick, modality-major), from its own draws
    _, hard = GumbelPick.apply(
        alpha.log().T.unsqueeze(0), torch.zeros(1, 3, 3), 0.7, n, torch.Generator().manual_seed(1)
    )
    assert hard.shape == (1, n, 3, 3) and hard.sum(2).eq(1).all()  # (1, n, M, D)
    freq = hard[0].mean(0).T  # (D, M)
    assert torch.all((freq - expected).abs() < 5 * se + 1e-3), (freq, expected)


def test_gumbel_selection_is_vectorised_over_k():
    log_alpha = torch.randn(2, 8, 3)
    sel = gumbel_select(log_alpha, 5, tau=1.0)
    assert sel.shape == (2, 5, 8, 3)
    assert not torch.equal(sel[:, 0], sel[:, 1]) or not torch.equal(sel[:, 1], sel[:, 2])


def test_gumbel_straight_through_gradient_depends_on_tau():
    def grad_at(tau):
        log_alpha = torch.zeros(1, 4, 3, requires_grad=True)
        gen = torch.Generator().manual_seed(1)
        sel = gumbel_select(log_alpha, 16, tau=tau, generator=gen)
        (sel * torch.arange(3.0)).sum().backward()
        return log_alpha.grad

    g1, g2 = grad_at(1.0), grad_at(0.5)
    assert g1.abs().sum() > 0
    assert not torch.allclose(g1, g2)


def test_temperature_schedule():
    assert temperature(0, 1.0, 0.5, 0.3) == 1.0
    values = [temperature(t, 1.0, 0.5, 0.3) for t in range(30)]
    assert all(a > b for a, b in zip(values, values[1:])), "strictly decreasing"
    assert all(v > 0.5 for v in values) and values[-1] < 0.501
    assert temperature(5, 1.0, 0.5, 0.0) == 1.0  # no decay


def _amf(**overrides):
    flat = {"model.fusion": "amf", "model.backbone": "resnet10", "amf.num_samples": 6, **overrides}
    torch.manual_seed(0)
    return build_model(unflatten(flat), {"visual": 3, "depth": 1}, num_aus=5)


def test_schedule_units_epoch_and_step():
    m = _amf(**{"amf.tau_unit": "epoch", "amf.tau_decay": 1.0})
    m.set_progress(0.9)
    assert m.tau == 1.0  # per-epoch: constant within the first epoch
    m.set_progress(1.2)
    assert m.tau == pytest.approx(0.5 + 0.5 * math.exp(-1))
    s = _amf(**{"amf.tau_unit": "step", "amf.tau_decay": 1.0})
    s.set_progress(0.9)
    assert s.tau == pytest.approx(0.5 + 0.5 * math.exp(-0.9))


def _batch():
    g = torch.Generator().manual_seed(2)
    x = {"visual": torch.randn(4, 3, 32, 32, generator=g), "depth": torch.randn(4, 1, 32, 32, generator=g)}
    return x, torch.randint(0, 2, (4, 5), generator=g).float(), torch.ones(4, 5)


def test_guidance_target_is_detached_and_scorer_learns_from_it():
    # Only L*k in the objective: lambda_* = lambda_k = 0, lambda*_k = 1.
    m = _amf(**{"amf.lambda_fused": 0.0, "amf.lambda_modality": 0.0, "amf.lambda_guidance": 1.0})
    m.train()
    x, target, mask = _batch()
    loss, parts = m.loss(m(x), target, mask)
    loss.backward()
    for k in ("visual", "depth"):
        assert parts[f"loss_guide/{k}"] > 0
        assert m.scorers[k].weight.grad is not None and m.scorers[k].weight.grad.abs().sum() > 0
        # The target |dL^k/da^k| depends on C^k; were it not detached, C^k would get gradient here.
        assert m.classifiers[k].weight.grad is None or m.classifiers[k].weight.grad.abs().sum() == 0
    assert m.classifier.weight.grad is None or m.classifier.weight.grad.abs().sum() == 0


def test_guidance_term_equals_one_minus_cosine_to_gradient_magnitude():
    m = _amf()
    m.train()
    x, target, mask = _batch()
    out = m(x)
    _, parts = m.loss(out, target, mask)
    from farm.models.heads import masked_bce_with_logits

    lk = masked_bce_with_logits(out["logits/depth"], target, mask)
    (g,) = torch.autograd.grad(lk, out["features/depth"], retain_graph=True)
    expected = (1 - torch.nn.functional.cosine_similarity(out["alpha/depth"], g.abs(), dim=1)).mean()
    assert parts["loss_guide/depth"] == pytest.approx(expected.item(), rel=1e-5)


def test_fused_loss_is_bce_of_k_averaged_probability():
    logits = torch.randn(3, 7, 4)  # (B, K, A)
    log_p, log_not_p = log_mean_sigmoid(logits, dim=1)
    p = torch.sigmoid(logits).mean(1)
    assert torch.allclose(log_p.exp(), p, atol=1e-6)
    assert torch.allclose(log_not_p.exp(), 1 - p, atol=1e-6)
    big = torch.full((1, 3, 1), 80.0)  # stable where naive log(1 - p) would be log(0)
    assert torch.isfinite(log_mean_sigmoid(big, 1)[1]).all()


def test_lambdas_weight_the_objective():
    x, target, mask = _batch()
    base = _amf()
    base.train()
    torch.manual_seed(5)
    total, parts = base.loss(base(x), target, mask)
    expected = 2.0 * parts["loss_fused"] + sum(
        parts[f"loss/{k}"] + parts[f"loss_guide/{k}"] for k in ("visual", "depth")
    )
    assert total.item() == pytest.approx(float(expected), rel=1e-5)


def test_eval_modes_are_deterministic_and_differ():
    x, _, _ = _batch()
    mean = _amf(**{"amf.eval_mode": "mean"}).eval()
    argmax = _amf(**{"amf.eval_mode": "argmax"}).eval()
    assert torch.equal(mean(x)["probs"], mean(x)["probs"])
    assert torch.equal(argmax(x)["probs"], argmax(x)["probs"])
    assert argmax(x)["fused_logits"].shape[1] == 1
    assert not torch.equal(mean(x)["probs"], argmax(x)["probs"])


def test_a_frames_evaluation_vote_does_not_depend_on_its_batch():
    """Issue 13: the K-sample noise is drawn once per call and shared, so neighbours do not move a frame."""
    m = _amf(**{"amf.eval_mode": "mean", "amf.num_samples": 8}).eval()
    x, _, _ = _batch()
    n = next(iter(x.values())).shape[0]
    with torch.no_grad():
        together = m(x)["probs"]
        for i in range(n):
            alone = m({k: v[i : i + 1] for k, v in x.items()})["probs"]
            assert torch.allclose(alone[0], together[i], atol=1e-6), i
        flipped = m({k: v.flip(0) for k, v in x.items()})["probs"]
        assert torch.allclose(flipped.flip(0), together, atol=1e-6)
        doubled = m({k: torch.cat([v, v.flip(0)]) for k, v in x.items()})["probs"]
        assert torch.allclose(doubled[:n], together, atol=1e-6)


def test_guidance_can_train_the_scorer_only():
    """amf.guidance_backbone=false: Eq. 10 moves g^k, never the backbone."""
    only_guidance = {"amf.lambda_fused": 0.0, "amf.lambda_modality": 0.0, "amf.lambda_guidance": 1.0}
    grads = {}
    for flag in (True, False):
        m = _amf(**only_guidance, **{"amf.guidance_backbone": flag})
        m.train()
        x, target, mask = _batch()
        loss, _ = m.loss(m(x), target, mask)
        loss.backward()
        grads[flag] = sum(float(p.grad.abs().sum()) for p in m.backbones.parameters() if p.grad is not None)
        assert m.scorers["visual"].weight.grad.abs().sum() > 0
    assert grads[True] > 0 and grads[False] == 0


# Issue 16: the selection is computed without its (B, K, D, M) one-hot product (GumbelPick). The
# reference below is AMF's forward before that change, kept minimal, to check that the same seed
# still gives the same draws, the same outputs and the same gradients.


def _reference_forward(model, x):
    """AMF.forward as it was: one-hot straight-through selection (B, K, D, M) times a, summed over M."""
    feats = {m: model.backbones[m](x[m]) for m in model.modalities}
    a = torch.stack([feats[m] for m in model.modalities], dim=-1)  # (B, D, M)
    log_alpha = torch.stack([F.logsigmoid(model.scorers[m](feats[m])) for m in model.modalities], dim=-1)
    B, D, M = a.shape
    if model.training or model.eval_mode == "mean":
        gen = None if model.training else torch.Generator().manual_seed(model.eval_seed)
        u = torch.rand((B if model.training else 1, model.num_samples, D, M), generator=gen)
        gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))
        tau = model.tau if model.training else model.tau_floor
        soft = torch.softmax((log_alpha.unsqueeze(1) + gumbel) / tau, dim=-1)
        select = F.one_hot(soft.argmax(dim=-1), M).to(soft.dtype) - soft.detach() + soft
    else:
        select = F.one_hot(log_alpha.argmax(dim=-1), M).to(a.dtype).unsqueeze(1)
    fused_logits = model.classifier((select * a.unsqueeze(1)).sum(dim=-1))
    out = {"probs": torch.sigmoid(fused_logits).mean(1), "fused_logits": fused_logits}
    out["selection"] = select.detach().mean(dim=1)
    for i, m in enumerate(model.modalities):
        out[f"features/{m}"] = feats[m]
        out[f"alpha/{m}"] = log_alpha[..., i].exp()
        out[f"logits/{m}"] = model.classifiers[m](feats[m])
        if model.training and not model.guidance_backbone:
            out[f"alpha_guide/{m}"] = torch.sigmoid(model.scorers[m](feats[m].detach()))
    return out


def _outputs_and_grads(model, forward, x, target, mask):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(11)
    out = forward(x)
    loss, _ = model.loss(out, target, mask)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in out.items()}, grads


@pytest.mark.parametrize("modalities", [("visual", "depth"), ("visual", "depth", "thermal")])
@pytest.mark.parametrize("num_samples", [1, 7])
@pytest.mark.parametrize("mode", ["train", "eval_mean", "eval_argmax"])
def test_same_draws_outputs_and_gradients_as_the_one_hot_selection(modalities, num_samples, mode):
    channels = {"visual": 3, "depth": 1, "thermal": 1}
    flat = {"model.fusion": "amf", "model.backbone": "resnet10", "amf.num_samples": num_samples, "amf.tau_start": 0.8}
    flat["amf.eval_mode"] = "argmax" if mode == "eval_argmax" else "mean"
    torch.manual_seed(0)
    model = build_model(unflatten(flat), {m: channels[m] for m in modalities}, num_aus=5)
    model.train(mode == "train")
    g = torch.Generator().manual_seed(2)
    x = {m: torch.randn(4, channels[m], 32, 32, generator=g) for m in modalities}
    target, mask = torch.randint(0, 2, (4, 5), generator=g).float(), torch.ones(4, 5)
    mask[0, 1] = 0.0

    out, grads = _outputs_and_grads(model, model, x, target, mask)
    ref, ref_grads = _outputs_and_grads(model, lambda x: _reference_forward(model, x), x, target, mask)
    assert out.keys() == ref.keys()
    for k in ref:
        assert out[k].shape == ref[k].shape, k
        assert torch.allclose(out[k], ref[k], atol=1e-6), (k, (out[k] - ref[k]).abs().max())
    assert torch.equal(out["fused_logits"], ref["fused_logits"])  # the same picks: bit for bit
    assert grads.keys() == ref_grads.keys()
    for n in ref_grads:
        assert torch.allclose(grads[n], ref_grads[n], atol=1e-6), (n, (grads[n] - ref_grads[n]).abs().max())
    if mode == "eval_mean":  # no gradient needed: the softmax is skipped, the outputs are unchanged
        with torch.no_grad():
            assert torch.equal(model(x)["fused_logits"], out["fused_logits"])


def test_gumbel_pick_equals_the_straight_through_product_in_float64():
    """GumbelPick's closed-form backward is autograd's through (hard - soft.detach() + soft) * a."""
    B, K, D, M = 3, 5, 6, 3
    g = torch.Generator().manual_seed(4)
    log_alpha = torch.randn(B, D, M, generator=g, dtype=torch.float64).sigmoid().log()
    a = torch.randn(B, D, M, generator=g, dtype=torch.float64)
    w = torch.randn(B, K, D, generator=g, dtype=torch.float64)  # weights of a downstream loss

    la1, a1 = log_alpha.clone().requires_grad_(), a.clone().requires_grad_()
    sel = gumbel_select(la1, K, 0.6, torch.Generator().manual_seed(9))  # (B, K, D, M)
    ref = (sel * a1.unsqueeze(1)).sum(-1)  # (B, K, D)
    (ref * w).sum().backward()

    la2 = log_alpha.transpose(1, 2).contiguous().requires_grad_()  # modality-major, (B, M, D)
    a2 = a.transpose(1, 2).contiguous().requires_grad_()
    fused, hard = GumbelPick.apply(la2, a2, 0.6, K, torch.Generator().manual_seed(9))  # the same draws
    (fused * w).sum().backward()

    assert torch.equal(hard.transpose(2, 3), sel.detach().round())
    assert torch.allclose(fused, ref, atol=1e-12)
    assert torch.allclose(la2.grad.transpose(1, 2), la1.grad, atol=1e-12)
    assert torch.allclose(a2.grad.transpose(1, 2), a1.grad, atol=1e-12)


def test_gumbel_pick_breaks_exact_ties_like_argmax():
    # Dimension 0 ties all three modalities, 1 ties modalities 1 and 2, 2 ties 0 and 1.
    z = torch.tensor([[[[-1.0, -2.0, -0.5], [-1.0, -0.5, -0.5], [-1.0, -0.5, -3.0]]]])  # (B=1, K=1, M=3, D=3)
    a = torch.arange(9.0).view(1, 3, 3)  # (B, M, D)
    pick = z.argmax(dim=2)  # (B, K, D)
    fused, hard = pick_max(subtract_max(z.clone()), a)  # (1, 1, D), (1, 1, M, D)
    assert torch.equal(hard.argmax(2), pick) and torch.equal(hard.sum(2), torch.ones(1, 1, 3))
    assert torch.equal(fused[0, 0], a[0].gather(0, pick[0])[0])
    _, hard = pick_max(subtract_max(torch.full((1, 1, 3, 4), -0.7)), torch.ones(1, 3, 4))
    assert torch.equal(hard[0, 0, 0], torch.ones(4)) and hard.sum() == 4  # all tied: the first modality


def test_gumbel_pick_skips_the_softmax_without_gradients():
    """Evaluation: no softmax is computed or kept when log_alpha needs no gradient."""
    log_alpha, a = torch.randn(2, 3, 4).sigmoid().log(), torch.randn(2, 3, 4, requires_grad=True)
    gen = torch.Generator().manual_seed(3)
    fused, hard = GumbelPick.apply(log_alpha, a, 0.5, 5, gen, True)  # shared noise (1, K, D, M)
    assert fused.grad_fn.saved_tensors[0] is None
    fused.sum().backward()
    assert torch.equal(a.grad, hard.sum(1))  # each sample's pick receives its gradient, (B, M, D)


@pytest.mark.parametrize("mode", ["train", "eval_mean", "eval_argmax"])
def test_bf16_autocast_on_the_cpu_runs_with_finite_losses_and_a_float32_selection(mode):
    """Under bf16 autocast the backbones and linear layers run in bf16; the Gumbel selection (noise, picks,
    straight-through gradient), the K-sample vote and L* stay float32."""
    channels = {"visual": 3, "depth": 1}
    flat = {"model.fusion": "amf", "model.backbone": "resnet10", "amf.num_samples": 7}
    flat["amf.eval_mode"] = "argmax" if mode == "eval_argmax" else "mean"
    torch.manual_seed(0)
    model = build_model(unflatten(flat), channels, num_aus=5)
    model.train(mode == "train")
    g = torch.Generator().manual_seed(2)
    x = {m: torch.randn(4, c, 32, 32, generator=g) for m, c in channels.items()}
    target, mask = torch.randint(0, 2, (4, 5), generator=g).float(), torch.ones(4, 5)

    def run(bf16: bool):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(11)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
            loss, parts = model.loss(out, target, mask)
        loss.backward()
        return out, parts, {n: p.grad for n, p in model.named_parameters()}

    out, parts, grads = run(bf16=True)
    assert out["features/visual"].dtype == torch.bfloat16, "autocast is on"
    assert out["fused_logits"].dtype == torch.float32 and out["probs"].dtype == torch.float32
    assert out["alpha/visual"].dtype == torch.float32 and out["selection"].dtype == torch.float32
    assert all(bool(torch.isfinite(v).all()) for v in parts.values()), parts
    assert all(bool(torch.isfinite(gr).all()) for gr in grads.values() if gr is not None)
    if mode != "eval_argmax":  # argmax: no noise, no gradient to g^k
        assert grads["scorers.visual.weight"].abs().sum() > 0, "the straight-through gradient reaches g^k"
    if mode == "train":
        assert all(gr is not None for gr in grads.values()), "every parameter learns"
    ref, ref_parts, _ = run(bf16=False)
    assert ref["fused_logits"].dtype == torch.float32
    assert float(parts["loss"]) == pytest.approx(float(ref_parts["loss"]), rel=0.05)  # bf16 rounding, same model


@pytest.mark.parametrize("guidance_backbone", [True, False])
def test_scorers_reading_all_modalities_see_the_other_modality(guidance_backbone):
    """amf.scorer_input=all (beyond the paper): alpha^visual depends on the depth input too; 'own' (the paper's
    Eq. 2) does not. The guidance still trains g^k, and with guidance_backbone=false never the backbones."""
    x, target, mask = _batch()
    other = {**x, "depth": torch.randn_like(x["depth"])}
    for scorer_input, sees in (("own", False), ("all", True)):
        m = _amf(**{"amf.scorer_input": scorer_input, "amf.guidance_backbone": guidance_backbone})
        dim = m.classifier.in_features
        assert m.scorers["visual"].weight.shape == (dim, dim * (2 if sees else 1))
        m.eval()
        with torch.no_grad():
            changed = not torch.allclose(m(x)["alpha/visual"], m(other)["alpha/visual"])
        assert changed == sees, scorer_input
        m.train()
        only_guidance = _amf(**{"amf.scorer_input": scorer_input, "amf.guidance_backbone": guidance_backbone,
                                "amf.lambda_fused": 0.0, "amf.lambda_modality": 0.0})  # fmt: skip
        loss, _ = only_guidance.loss(only_guidance(x), target, mask)
        loss.backward()
        assert only_guidance.scorers["visual"].weight.grad.abs().sum() > 0
        backbone = sum(float(p.grad.abs().sum()) for p in only_guidance.backbones.parameters() if p.grad is not None)
        assert (backbone > 0) == guidance_backbone


def test_scorer_input_is_checked():
    from farm.config import ConfigError

    with pytest.raises(ConfigError, match=r"^amf.scorer_input: must be 'own' or 'all', got 'both'$"):
        unflatten({"amf.scorer_input": "both"})
