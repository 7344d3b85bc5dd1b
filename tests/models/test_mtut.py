"""MTUT specifics: the feature map, the focal regularisation rho, the SSA loss and its stop-gradient."""

import pytest
import torch

from farm.config import unflatten
from farm.models import build_model, fusion_modalities
from farm.models.mtut import correlation, feature_map, focal_rho, ssa_loss

CHANNELS = {"visual": 3, "depth": 1, "thermal": 1}


def _mtut(mods=("visual", "depth"), **overrides):
    flat = {"model.fusion": "mtut", "model.backbone": "resnet10", **overrides}
    torch.manual_seed(0)
    return build_model(unflatten(flat), {m: CHANNELS[m] for m in mods}, num_aus=12)


def _batch(mods, size=32, batch=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, CHANNELS[m], size, size, generator=g) for m in mods}


def test_feature_map_is_the_backbones_own():
    model = _mtut().eval()
    x = _batch(("visual",), size=64)["visual"]
    fmap = feature_map(model.backbones["visual"], x)
    assert fmap.shape == (3, 512, 2, 2)
    assert torch.allclose(fmap.mean(dim=(2, 3)), model.backbones["visual"](x), atol=1e-6)


def test_rho_is_zero_when_the_teacher_is_worse_and_positive_when_better():
    student = torch.tensor([0.9, 0.3, 0.5])
    teacher = torch.tensor([0.4, 0.8, 0.5])  # better, worse, equal
    rho = focal_rho(student, teacher, beta=2.0)
    assert rho[0] > 0 and rho[1] == 0 and rho[2] == 0
    assert torch.isclose(rho[0], torch.exp(torch.tensor(2.0 * 0.5)) - 1)
    assert focal_rho(student, teacher, beta=0.0).eq(0).all()  # beta = 0 switches the transfer off


def test_ssa_is_zero_for_identical_maps_and_scale_free():
    g = torch.Generator().manual_seed(0)
    f = torch.rand(3, 16, 4, 4, generator=g)
    ones = torch.ones(3)
    assert ssa_loss(correlation(f), correlation(f.clone()), ones) == 0
    assert torch.allclose(correlation(f), correlation(5.0 * f), atol=1e-6)  # feature scale does not matter
    trace = torch.diagonal(correlation(f), dim1=1, dim2=2).sum(-1)
    assert torch.allclose(trace, torch.ones(3))
    for side in (2, 7):  # each frame's term stays in [0, 2] whatever the map size
        a, b = torch.rand(2, 3, 16, side, side, generator=g)
        dist = ssa_loss(correlation(a), correlation(b), ones)
        assert 0 < dist <= 2


def test_ssa_gradient_reaches_the_student_backbone_only():
    model = _mtut().train()
    out = model(_batch(("visual", "depth"), size=64))  # 2x2 maps: a non-trivial correlation
    ssa = ssa_loss(correlation(out["fmap/visual"]), correlation(out["fmap/depth"]), torch.ones(3))
    ssa.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbones["visual"].parameters())
    assert all(p.grad is None for p in model.backbones["depth"].parameters()), "the teacher must be detached"


def test_loss_transfers_only_from_the_better_modality():
    model = _mtut(**{"baselines.mtut_lambda_ssa": 1.0})
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    good = (2 * target - 1) * 5.0  # confident and right
    g = torch.Generator().manual_seed(0)
    fmaps = {m: torch.rand(3, 8, 3, 3, generator=g).requires_grad_(True) for m in ("visual", "depth")}
    out = {"logits/visual": good, "logits/depth": -good, "fmap/visual": fmaps["visual"], "fmap/depth": fmaps["depth"]}
    loss, parts = model.loss(out, target, torch.ones(3, 2))
    loss.backward()
    assert parts["loss_ssa"] > 0
    assert fmaps["depth"].grad.abs().sum() > 0, "the worse modality (depth) learns from visual"
    assert fmaps["visual"].grad.abs().sum() == 0, "the better modality (visual) is not pulled towards depth"


def test_loss_without_ssa_is_the_sum_of_modality_losses():
    model = _mtut(**{"baselines.mtut_lambda_ssa": 0.0}).train()
    out = model(_batch(("visual", "depth")))
    target = torch.randint(0, 2, (3, 12)).float()
    loss, parts = model.loss(out, target, torch.ones(3, 12))
    assert "loss_ssa" not in parts
    assert torch.isclose(loss, parts["loss/visual"] + parts["loss/depth"])


def test_probs_average_the_modality_networks():
    model = _mtut(("visual", "depth", "thermal")).eval()
    out = model(_batch(("visual", "depth", "thermal")))
    assert out["probs"].shape == (3, 12)
    assert torch.all((out["probs"] >= 0) & (out["probs"] <= 1))
    mean = torch.stack([torch.sigmoid(out[f"logits/{m}"]) for m in ("visual", "depth", "thermal")]).mean(0)
    assert torch.allclose(out["probs"], mean)


def test_needs_two_modalities():
    with pytest.raises(ValueError, match="at least two"):
        fusion_modalities("mtut", ("visual",), ("visual", "depth"))
    assert fusion_modalities("mtut", (), ("visual", "depth", "thermal")) == ("visual", "depth", "thermal")
