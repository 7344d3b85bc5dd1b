"""Per-modality feature extractors: torchvision ResNets with a configurable input channel count.

`build_backbone("resnet18", in_chans=1, pretrained="none")` returns a module mapping
(B, C, H, W) to (B, 512) pooled features. ImageNet weights come through torchvision's weights API
(needs internet on the node) or from a local state-dict file (loaded with weights_only=True);
for 1-channel inputs the RGB filters of conv1 are summed, as timm's `adapt_input_conv` does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18
from torchvision.models.resnet import BasicBlock, ResNet

from farm.checkpoints import load_checkpoint


class ResNetFeatures(nn.Module):
    """A torchvision ResNet without its classifier: (B, C, H, W) -> (B, feature_dim)."""

    def __init__(self, net: ResNet, in_chans: int) -> None:
        super().__init__()
        if in_chans != 3:
            old = net.conv1
            net.conv1 = nn.Conv2d(in_chans, old.out_channels, kernel_size=7, stride=2, padding=3, bias=False)
        net.fc = nn.Identity()
        self.net = net
        self.in_chans = in_chans
        self.feature_dim = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, D)


def adapt_conv1(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """(O, 3, k, k) ImageNet filters -> (O, in_chans, k, k)."""
    if in_chans == 3:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    # Stacked-channel inputs (early fusion): tile the RGB filters and rescale to keep activations.
    reps = -(-in_chans // 3)
    return weight.repeat(1, reps, 1, 1)[:, :in_chans] * (3.0 / in_chans)


def _load_weights(model: ResNetFeatures, pretrained: str, arch: str) -> None:
    if pretrained == "none":
        return
    if pretrained == "imagenet":
        if arch != "resnet18":
            raise ValueError(f"model.pretrained=imagenet: torchvision has no ImageNet weights for {arch}")
        state = ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"model.pretrained: weights file {path} not found (or use 'none' / 'imagenet')")
        state = load_checkpoint(path)  # weights_only=True; an empty, foreign or hostile file: one line naming it
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"model.pretrained: {path} is not a state dict of tensors (a .pth saved from "
                             "model.state_dict(), optionally under 'state_dict')")  # fmt: skip
    state = {k.removeprefix("module.").removeprefix("net."): v for k, v in state.items() if not k.startswith("fc.")}
    if "conv1.weight" in state:
        state["conv1.weight"] = adapt_conv1(state["conv1.weight"], model.in_chans)
    missing, unexpected = model.net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(
            f"model.pretrained={pretrained}: weights do not fit {arch} (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )


def _resnet18() -> ResNet:
    return resnet18(weights=None)


def _resnet10() -> ResNet:
    # One BasicBlock per stage: the same family at about half of ResNet-18's cost, for CPU tests.
    return ResNet(BasicBlock, [1, 1, 1, 1])


BACKBONES: dict[str, Callable[[], ResNet]] = {"resnet18": _resnet18, "resnet10": _resnet10}


def build_backbone(name: str, in_chans: int, pretrained: str = "none") -> ResNetFeatures:
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")
    model = ResNetFeatures(BACKBONES[name](), in_chans)
    _load_weights(model, pretrained, name)
    return model
