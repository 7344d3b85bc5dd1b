"""Contract tests run over every registered fusion head (like optuna's shared sampler tests)."""

import pytest
import torch

from farm.config import unflatten
from farm.models import FUSIONS, build_model, fusion_modalities, parse_fusion

CHANNELS = {"visual": 3, "depth": 1, "thermal": 1}
SPECS = [
    name if name != "single" else f"single:{m}" for name in FUSIONS for m in (["depth"] if name == "single" else [None])
]
SPECS += ["single:visual"]


def _model(spec: str, seed: int = 0):
    cfg = unflatten({"model.fusion": spec, "model.backbone": "resnet10", "amf.num_samples": 4})
    requested = ("visual", "depth") if spec == "temt" else ()  # TEMT-Net takes exactly two
    mods = fusion_modalities(spec, requested, tuple(CHANNELS))
    torch.manual_seed(seed)
    return build_model(cfg, {m: CHANNELS[m] for m in mods}, num_aus=12), mods


def _batch(mods, seed=1, batch=3, size=32):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(batch, CHANNELS[m], size, size, generator=g) for m in mods}


@pytest.mark.parametrize("spec", SPECS)
def test_output_shape_and_range(spec):
    model, mods = _model(spec)
    model.eval()
    probs = model(_batch(mods))["probs"]
    assert probs.shape == (3, 12)
    assert torch.all((probs >= 0) & (probs <= 1))


@pytest.mark.parametrize("spec", SPECS)
def test_gradients_reach_every_modality(spec):
    model, mods = _model(spec)
    model.train()
    x = {m: t.requires_grad_(True) for m, t in _batch(mods).items()}
    target = torch.randint(0, 2, (3, 12)).float()
    loss, _ = model.loss(model(x), target, torch.ones(3, 12))
    loss.backward()
    for m in mods:
        assert x[m].grad is not None and x[m].grad.abs().sum() > 0, f"no gradient reaches {m}"
    # every parameter that the forward pass uses receives a gradient
    dead = [n for n, p in model.named_parameters() if p.grad is None]
    assert not dead, f"parameters without gradient: {dead[:5]}"


@pytest.mark.parametrize("spec", SPECS)
def test_deterministic_under_seed(spec):
    a, mods = _model(spec, seed=3)
    b, _ = _model(spec, seed=3)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    x = _batch(mods)
    a.eval(), b.eval()
    assert torch.equal(a(x)["probs"], b(x)["probs"])
    assert torch.equal(a(x)["probs"], a(x)["probs"])  # evaluation is deterministic (AMF: fixed eval seed)
    a.train(), b.train()
    torch.manual_seed(7)
    pa = a(x)["probs"]
    torch.manual_seed(7)
    pb = b(x)["probs"]
    assert torch.equal(pa, pb)
    c, _ = _model(spec, seed=4)
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


@pytest.mark.parametrize("spec", SPECS)
def test_forward_is_fuse_of_per_modality_features_except_early_fusion(spec):
    """The split the robustness conditions reuse (issue 22): features of each modality from its own input and
    frame alone, fused by `fuse`; early fusion mixes the modalities in its first convolution and cannot split."""
    model, mods = _model(spec)
    model.eval()
    x = _batch(mods)
    if spec == "early":
        assert model.feature_modalities == ()
        with pytest.raises(NotImplementedError, match="EarlyFusion"):
            model.modality_features(x)
        return
    assert model.feature_modalities == (mods[:1] if spec == "temt" else mods)  # TEMT-Net predicts from its source
    feats = model.modality_features(x)
    assert list(feats) == list(model.feature_modalities) and all(f.shape == (3, 512) for f in feats.values())
    assert torch.equal(model.fuse(feats)["probs"], model(x)["probs"])
    for m in model.feature_modalities:
        assert torch.equal(model.modality_features({m: x[m]})[m], feats[m])  # no other modality needed
        assert torch.allclose(model.modality_features({m: x[m][1:2]})[m], feats[m][1:2], atol=1e-6)  # nor frame


def test_unknown_fusion_raises_with_valid_names():
    with pytest.raises(KeyError, match="valid: amf, late"):
        parse_fusion("attention")
    with pytest.raises(KeyError, match="single"):
        parse_fusion("single")
    with pytest.raises(ValueError, match="not in the dataset"):
        fusion_modalities("single:thermal", (), ("visual", "depth"))
    with pytest.raises(ValueError, match="at least two"):
        fusion_modalities("amf", ("visual",), ("visual", "depth"))


def test_unknown_backbone_raises():
    from farm.models.backbones import build_backbone

    with pytest.raises(KeyError, match="resnet18"):
        build_backbone("vgg", 3)


def test_local_pretrained_weights_load_and_adapt(tmp_path):
    from torchvision.models import resnet18

    from farm.models.backbones import build_backbone

    torch.manual_seed(0)
    ref = resnet18()
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    rgb = build_backbone("resnet18", 3, str(path))
    assert torch.equal(rgb.net.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    grey = build_backbone("resnet18", 1, str(path))
    assert torch.allclose(grey.net.conv1.weight, ref.conv1.weight.sum(1, keepdim=True))
    with pytest.raises(FileNotFoundError, match="not found"):
        build_backbone("resnet18", 3, str(tmp_path / "missing.pth"))


def test_a_modality_option_naming_an_absent_or_unread_modality_is_refused():
    from farm.config import Config, load_config
    from farm.models import check_modality_options

    cfg = load_config(overrides={"augment.modality_dropout_only": "sonar"})
    with pytest.raises(ValueError, match=r"augment.modality_dropout_only: modality sonar not in the dataset \(it holds "
                       r"visual, depth, thermal\)"):  # fmt: skip
        check_modality_options(cfg, ("visual", "depth"), ("visual", "depth", "thermal"))
    cfg = load_config(overrides={"augment.modality_dropout_only": "thermal"})
    with pytest.raises(ValueError, match=r"modality thermal is not read by amf \(it reads visual, depth\)"):
        check_modality_options(cfg, ("visual", "depth"), ("visual", "depth", "thermal"))
    check_modality_options(cfg, ("visual", "thermal"), ("visual", "depth", "thermal"))  # read: accepted
    check_modality_options(Config(), ("visual",), ("visual",))  # nothing named: nothing to check
