"""TEMT-Net specifics: exactly two modalities, visual-only prediction, the visual -> target transfer."""

import pytest
import torch

from farm.config import ConfigError, unflatten
from farm.models import build_model, fusion_modalities

CHANNELS = {"visual": 3, "depth": 1, "thermal": 1}


def _temt(mods=("visual", "depth"), **overrides):
    flat = {"model.fusion": "temt", "model.backbone": "resnet10", **overrides}
    torch.manual_seed(0)
    return build_model(unflatten(flat), {m: CHANNELS[m] for m in mods}, num_aus=12)


def _batch(mods, size=32, batch=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, CHANNELS[m], size, size, generator=g).clamp(-1, 1) for m in mods}


def test_refuses_anything_but_two_modalities_at_plan_time():
    msg = r"TEMT-Net takes exactly two modalities \(visual \+ thermal or depth\); got visual, depth, thermal\. "
    with pytest.raises(ValueError, match=msg + "The AMF paper also reports no three-modality result"):
        fusion_modalities("temt", (), ("visual", "depth", "thermal"))
    with pytest.raises(ValueError, match=r"exactly two modalities .*; got visual\. "):
        fusion_modalities("temt", ("visual",), ("visual", "depth", "thermal"))
    with pytest.raises(ValueError, match="exactly two modalities"):
        _temt(("visual", "depth", "thermal"))
    assert fusion_modalities("temt", ("visual", "thermal"), ("visual", "depth", "thermal")) == ("visual", "thermal")


def test_prediction_reads_the_visual_image_only():
    model = _temt().eval()
    x = _batch(("visual", "depth"))
    probs = model(x)["probs"]
    assert probs.shape == (3, 12) and torch.all((probs >= 0) & (probs <= 1))
    assert torch.equal(model({**x, "depth": torch.zeros_like(x["depth"])})["probs"], probs)
    assert not torch.equal(model({**x, "visual": torch.zeros_like(x["visual"])})["probs"], probs)


def test_transfer_reconstructs_the_target_and_shapes_the_visual_backbone():
    model = _temt(("visual", "thermal")).train()
    x = _batch(("visual", "thermal"))
    out = model(x)
    assert out["reconstruction"].shape == x["thermal"].shape == (3, 1, 32, 32)
    assert out["reconstruction"].abs().max() <= 1  # tanh: the [-1, 1] range of the inputs
    loss, parts = model.loss(out, torch.randint(0, 2, (3, 12)).float(), torch.ones(3, 12))
    assert torch.isclose(loss, parts["loss_au"] + parts["loss_transfer"])
    model.zero_grad()
    transfer = torch.nn.functional.l1_loss(out["reconstruction"], x["thermal"])
    transfer.backward()
    # The reconstruction is the transfer: by design (WACV 2019) its gradient reaches the visual encoder.
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    assert all(p.grad is None for p in model.classifier.parameters())


def test_transfer_weight_zero_is_a_visual_resnet():
    model = _temt(**{"baselines.temt_lambda_transfer": 0.0}).train()
    out = model(_batch(("visual", "depth")))
    assert "reconstruction" not in out
    loss, parts = model.loss(out, torch.ones(3, 12), torch.ones(3, 12))
    assert torch.equal(loss, parts["loss_au"])
    with pytest.raises(ConfigError, match="baselines.temt_lambda_transfer"):
        unflatten({"baselines.temt_lambda_transfer": -1})
