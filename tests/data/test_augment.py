import numpy as np
import pytest

from farm.data.augment import LUMA, center_crop, convert_channels, cut_switch, normalize, random_crop_flip, scaled_block


def _frame(rng, size=16):
    return {
        "visual": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "depth": rng.integers(0, 256, (size, size, 1), dtype=np.uint8),
        "thermal": rng.integers(0, 256, (size, size, 1), dtype=np.uint8),
    }


def test_crop_and_flip_are_the_same_for_every_modality():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (16, 16, 1), dtype=np.uint8)
    images = {"a": base, "b": base.copy(), "c": np.repeat(base, 3, axis=2)}
    seen_flip = seen_plain = False
    for seed in range(40):
        out = random_crop_flip(images, 12, True, np.random.default_rng(seed))
        assert out["a"].shape == (12, 12, 1) and out["c"].shape == (12, 12, 3)
        assert np.array_equal(out["a"], out["b"]) and np.array_equal(out["a"][..., 0], out["c"][..., 1])
        # the crop is a window of the original, possibly mirrored
        windows = [base[t : t + 12, c : c + 12] for t in range(5) for c in range(5)]
        plain = any(np.array_equal(out["a"], w) for w in windows)
        mirrored = any(np.array_equal(out["a"], w[:, ::-1]) for w in windows)
        assert plain or mirrored
        seen_flip |= mirrored and not plain
        seen_plain |= plain
    assert seen_flip and seen_plain


def test_center_crop_and_normalize():
    img = np.arange(64, dtype=np.uint8).reshape(8, 8, 1)
    c = center_crop({"d": img}, 4)["d"]
    assert np.array_equal(c[..., 0], img[2:6, 2:6, 0])
    n = normalize(np.array([[[0, 255, 127]]], dtype=np.uint8))
    assert n.shape == (3, 1, 1) and n.min() == -1.0 and n.max() == 1.0


def test_cut_switch_changes_only_the_box_and_permutes_patches():
    rng = np.random.default_rng(3)
    # All 1-channel so the permutation is exact.
    arrays = {m: rng.standard_normal((1, 20, 20)).astype(np.float32) for m in ("v", "d", "t")}
    for seed in range(20):
        out = cut_switch(arrays, 6, np.random.default_rng(seed))
        changed = np.zeros((20, 20), bool)
        for m in arrays:
            changed |= (out[m] != arrays[m])[0]
        ys, xs = np.nonzero(changed)
        assert len(ys) > 0, "a non-identity permutation changes something"
        top, left = ys.min(), xs.min()
        assert ys.max() - top < 6 and xs.max() - left < 6, "changes stay inside one 6x6 box"
        top, left = min(top, 14), min(left, 14)
        box = (slice(None), slice(top, top + 6), slice(left, left + 6))
        originals = sorted(arrays[m][box].tobytes() for m in arrays)
        switched = sorted(out[m][box].tobytes() for m in arrays)
        assert originals == switched, "inside the box the patches are a permutation of the originals"
        for m in arrays:
            outside = np.ones((20, 20), bool)
            outside[top : top + 6, left : left + 6] = False
            assert np.array_equal(out[m][0][outside], arrays[m][0][outside])


def test_cut_switch_converts_channels_consistently():
    rgb = np.stack([np.full((8, 8), v, np.float32) for v in (0.2, 0.4, 0.6)])
    grey = np.full((1, 8, 8), -0.5, np.float32)
    out = cut_switch({"visual": rgb, "depth": grey}, 8, np.random.default_rng(0))  # box = whole image
    assert np.allclose(out["depth"], float(LUMA @ np.array([0.2, 0.4, 0.6])))
    assert out["visual"].shape == (3, 8, 8) and np.allclose(out["visual"], -0.5)
    assert convert_channels(grey, 3).shape == (3, 8, 8)


def test_cut_switch_off_and_single_modality_are_no_ops():
    a = {"v": np.zeros((1, 4, 4), np.float32)}
    assert cut_switch(a, 2, np.random.default_rng(0)) is a
    b = {"v": np.zeros((1, 4, 4), np.float32), "d": np.ones((1, 4, 4), np.float32)}
    assert cut_switch(b, 0, np.random.default_rng(0)) is b


@pytest.mark.parametrize("block,crop,expected", [(50, 224, 50), (50, 56, 12), (0, 56, 0), (1, 28, 1)])
def test_block_scales_with_crop(block, crop, expected):
    assert scaled_block(block, crop) == expected
