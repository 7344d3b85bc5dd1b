"""AMF specifics: Gumbel selection statistics, the temperature schedule, Eq. 9 and Eq. 10."""

import math

import pytest
import torch

from farm.config import unflatten
from farm.models import build_model
from farm.models.amf import gumbel_select, log_mean_sigmoid, temperature


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
