"""Robustness conditions from cached features (issue 22): the same predictions as a full forward per condition,
for every fusion head, with the backbones run once per distinct input."""

import numpy as np
import pytest
import torch

from farm.config import BP4D_AUS, unflatten
from farm.data.perturb import Condition, condition_probs, conditions, draw_noise, perturb
from farm.metrics import au_counts, summarize
from farm.models import build_model, fusion_modalities

CHANNELS = {"visual": 3, "depth": 1, "thermal": 1}
SIGMAS = (0.1, 0.8)  # two of the four: the same code path at half the cost
B = 6

# (fusion, AMF eval mode, number of modalities, seed of the noise generators and of AMF's Gumbel noise; None: the
# global RNG's noise)
CASES = [
    ("amf", "mean", 2, 0), ("amf", "mean", 3, 5), ("amf", "mean", 3, None), ("amf", "argmax", 2, 1),
    ("amf", "argmax", 3, 2), ("late", "mean", 2, None), ("late", "mean", 3, 3), ("cam", "mean", 2, 4),
    ("cam", "mean", 3, 0), ("mtut", "mean", 2, 6), ("mtut", "mean", 3, 7), ("early", "mean", 2, 8),
    ("early", "mean", 3, None), ("temt", "mean", 2, 9), ("single:visual", "mean", 1, 0),
    ("single:depth", "mean", 1, None),
]  # fmt: skip


def _model(fusion: str, eval_mode: str, num_modalities: int, seed: int):
    cfg = unflatten({"model.fusion": fusion, "model.backbone": "resnet10", "amf.num_samples": 4,
                     "amf.eval_mode": eval_mode, "amf.eval_seed": seed})  # fmt: skip
    requested = () if fusion.startswith("single") else tuple(CHANNELS)[:num_modalities]
    mods = fusion_modalities(fusion, requested, tuple(CHANNELS))
    torch.manual_seed(seed)
    return build_model(cfg, {m: CHANNELS[m] for m in mods}, len(BP4D_AUS)).eval(), mods


def _batch(mods, seed=1, size=32):
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(B, CHANNELS[m], size, size, generator=g) for m in mods}


def _gens(n: int, seed: int | None):
    return [None if seed is None else torch.Generator().manual_seed(seed * 100_003 + j) for j in range(n)]


def _f1(probs: torch.Tensor, labels: np.ndarray) -> float:
    return summarize(au_counts(probs.float().numpy(), labels), BP4D_AUS)["f1_mean"]


@pytest.mark.parametrize("fusion,eval_mode,num_modalities,seed", CASES)
@torch.no_grad()
def test_cached_conditions_predict_what_a_full_forward_per_condition_predicts(fusion, eval_mode, num_modalities, seed):
    model, mods = _model(fusion, eval_mode, num_modalities, seed or 0)
    x = _batch(mods)
    labels = np.random.default_rng(0).integers(0, 2, (B, len(BP4D_AUS)))
    conds = conditions(mods, SIGMAS)
    if seed is None:
        torch.manual_seed(11)
    noise = draw_noise(x, conds, _gens(len(conds), seed))
    cached = condition_probs(model, x, conds, noise)
    full = condition_probs(model, x, conds, noise, cached=False)
    assert set(cached) == set(conds)
    for c in conds:
        assert cached[c].shape == (B, len(BP4D_AUS))
        assert torch.allclose(cached[c], full[c], rtol=0, atol=1e-6), c.name
        assert abs(_f1(cached[c], labels) - _f1(full[c], labels)) <= 1e-6, c.name
    # the conditions change the prediction where the model reads the modality (a cache that ignored them would not)
    read = [c for c in conds if c.kind != "clean" and set(c.modalities) & set(model.feature_modalities or mods)]
    assert read and all(not torch.allclose(cached[c], cached[conds[0]]) for c in read)
    if seed is None:
        return
    # against the code before issue 22: a generator per condition, drawing its own noise. Every condition but noise
    # on all modalities draws what it drew; that one now reuses each modality's own draws (docs/design.md)
    for c, gen in zip(conds, _gens(len(conds), seed)):
        before = model(perturb(x, c, gen))["probs"]
        changed = c.kind == "noise" and len(c.modalities) > 1
        assert torch.allclose(cached[c], before, rtol=0, atol=1e-6) != changed, c.name


@pytest.mark.parametrize("fusion,num_modalities", [("late", 3), ("amf", 2), ("temt", 2), ("early", 3)])
@torch.no_grad()
def test_each_backbone_runs_once_per_distinct_input(fusion, num_modalities):
    """Frames through each backbone: clean + one frame of the missing fill + one batch per sigma (cached), or one
    batch per condition (early fusion's full forwards); TEMT-Net's target modality reaches no backbone."""
    model, mods = _model(fusion, "mean", num_modalities, 0)
    if fusion in ("early", "temt"):  # one backbone: on the stacked channels, or on TEMT-Net's source
        convs = {"stacked" if fusion == "early" else mods[0]: model.backbone.net.conv1}
    else:
        convs = {m: model.backbones[m].net.conv1 for m in mods}
    seen: dict[str, int] = {}

    def count(name):
        return lambda module, args: seen.__setitem__(name, seen.get(name, 0) + len(args[0]))  # frames in

    for name, conv in convs.items():
        conv.register_forward_pre_hook(count(name))
    x = _batch(mods)
    conds = conditions(mods, SIGMAS)
    condition_probs(model, x, conds, draw_noise(x, conds, _gens(len(conds), 0)))
    expected = B * len(conds) if fusion == "early" else B * (1 + len(SIGMAS)) + 1
    assert seen == dict.fromkeys(convs, expected)


def test_noise_on_all_modalities_reuses_each_modalitys_draws():
    x = {"visual": torch.zeros(4, 3, 8, 8), "depth": torch.zeros(4, 1, 8, 8)}
    conds = conditions(("visual", "depth"), (0.5,))  # clean, missing x2, noise visual, noise depth, noise both
    noise = draw_noise(x, conds, _gens(len(conds), 3))
    assert set(noise) == {("visual", 0.5), ("depth", 0.5)}
    # each modality's noise is what its own condition's generator gives, as before issue 22
    assert torch.equal(noise[("visual", 0.5)], torch.randn(4, 3, 8, 8, generator=_gens(len(conds), 3)[3]))
    assert torch.equal(noise[("depth", 0.5)], torch.randn(4, 1, 8, 8, generator=_gens(len(conds), 3)[4]))
    both = perturb(x, conds[5], noise=noise)
    assert torch.equal(both["visual"], perturb(x, conds[3], noise=noise)["visual"])
    assert torch.equal(both["depth"], 0.5 * noise[("depth", 0.5)])
    # a list whose first noise condition covers every modality draws them all from its own generator, in order
    first = draw_noise(x, [Condition("noise", ("visual", "depth"), 0.5)], _gens(1, 3))
    g = _gens(1, 3)[0]
    assert torch.equal(first[("visual", 0.5)], torch.randn(4, 3, 8, 8, generator=g))
    assert torch.equal(first[("depth", 0.5)], torch.randn(4, 1, 8, 8, generator=g))
