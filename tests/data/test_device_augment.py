"""`data.augment_on: device` gives bit for bit the inputs of the per-frame worker path (torch.equal)."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from farm.data.augment import LUMA, convert_channels, normalize
from farm.data.dataset import FrameDataset
from farm.data.device_augment import augment_batch, convert_channels_batch, in_memory_format, normalize_batch
from farm.data.store import FrameStore

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CROP = 18


@pytest.mark.parametrize("device", DEVICES)
def test_normalize_batch_gives_normalizes_value_for_every_byte(device):
    every = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    ref = torch.from_numpy(normalize(every[0]))[None]  # (1, 1, 16, 16)
    out = normalize_batch(torch.from_numpy(every).to(device)).cpu()
    assert out.dtype == torch.float32 and torch.equal(out, ref)
    last = normalize_batch(torch.from_numpy(every).to(device), torch.channels_last)
    assert last.is_contiguous(memory_format=torch.channels_last) and torch.equal(last.cpu(), ref)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("c,channels", [(3, 1), (1, 3), (2, 1), (2, 3), (3, 3)])
def test_convert_channels_batch_equals_convert_channels(device, c, channels):
    rng = np.random.default_rng(c * 10 + channels)
    frames = [normalize(rng.integers(0, 256, (9, 7, c), dtype=np.uint8)) for _ in range(4)]  # each (c, 9, 7)
    ref = torch.from_numpy(np.stack([convert_channels(f, channels) for f in frames]))
    out = convert_channels_batch(torch.from_numpy(np.stack(frames)).to(device), channels).cpu()
    assert torch.equal(out, ref)


def test_luminance_is_computed_in_a_fixed_order():
    p = normalize(np.array([[[10, 200, 77]]], dtype=np.uint8))  # (3, 1, 1)
    assert convert_channels(p, 1)[0, 0, 0] == np.float32((LUMA[0] * p[0] + LUMA[1] * p[1]) + LUMA[2] * p[2])[0, 0]


def _store(make_tiny_dataset, modalities):
    return FrameStore(make_tiny_dataset(num_subjects=4, frames=8, size=22, modalities=modalities))


def _batches(store, uint8, train=True, workers=0, block=5, prob=0.7, flip=True):
    ds = FrameDataset(store, sorted(set(store.subjects)), store.meta.modality_names, store.meta.aus, crop=CROP,
                      train=train, flip=flip, cut_switch_block=block, cut_switch_prob=prob, uint8=uint8)  # fmt: skip
    torch.manual_seed(7)  # the per-frame seeds come from the torch generator (of each worker)
    gen = torch.Generator().manual_seed(3)
    return list(DataLoader(ds, batch_size=10, shuffle=train, generator=gen, num_workers=workers))


MODALITY_SETS = [("visual",), ("depth",), ("visual", "depth"), ("depth", "thermal"), ("visual", "depth", "thermal")]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("modalities", MODALITY_SETS, ids="+".join)
@pytest.mark.parametrize("block,prob", [(5, 1.0), (5, 0.5), (0, 1.0)])
def test_device_path_equals_worker_path_in_training(make_tiny_dataset, modalities, block, prob, device):
    store = _store(make_tiny_dataset, modalities)
    worker, uint8 = _batches(store, False, block=block, prob=prob), _batches(store, True, block=block, prob=prob)
    flips = switched = 0
    for (xw, yw), (xu, yu, aug) in zip(worker, uint8, strict=True):
        assert all(t.dtype == torch.uint8 and t.shape[1:3] == (CROP, CROP) for t in xu.values())
        before = {m: t.clone() for m, t in xu.items()}
        xd = {m: t.cpu() for m, t in augment_batch({m: t.to(device) for m, t in xu.items()}, **aug).items()}
        assert all(torch.equal(xu[m], before[m]) for m in xu), "the loader's batch is left as it was"
        assert list(xd) == list(xw) and torch.equal(yu, yw)
        for m in xw:
            assert xd[m].stride() == xw[m].stride() and torch.equal(xd[m], xw[m]), m
        flips += int(aug["flip"].sum())
        switched += int((aug["box"][:, 2] > 0).sum()) if "box" in aug else 0
    assert 0 < flips < 32, "both flip decisions occur"
    if block and len(modalities) > 1:
        assert switched > 0 and (prob == 1.0) == (switched == 32), "cut-switch happened, at the configured rate"
    else:
        assert switched == 0


def test_device_path_equals_worker_path_with_two_workers(make_tiny_dataset):
    store = _store(make_tiny_dataset, ("visual", "depth", "thermal"))
    worker, device = _batches(store, False, workers=2), _batches(store, True, workers=2)
    for (xw, _), (xu, _, aug) in zip(worker, device, strict=True):
        xd = augment_batch(xu, **aug)
        assert all(torch.equal(xd[m], xw[m]) for m in xw)


@pytest.mark.parametrize("modalities", [("visual",), ("visual", "depth", "thermal")], ids="+".join)
def test_device_path_equals_worker_path_in_evaluation(make_tiny_dataset, modalities):
    store = _store(make_tiny_dataset, modalities)
    for (xw, yw), (xu, yu) in zip(_batches(store, False, train=False), _batches(store, True, train=False), strict=True):
        assert torch.equal(yu, yw)
        for m in xw:
            xd = normalize_batch(xu[m])
            assert xd.stride() == xw[m].stride() and torch.equal(xd, xw[m]), m


def test_in_memory_format_gives_the_standard_strides():
    grey = torch.arange(2 * 3 * 4.0).view(2, 3, 4, 1).permute(0, 3, 1, 2)  # (2, 1, 3, 4), is_contiguous() yet
    assert grey.is_contiguous() and grey.stride() != (12, 12, 4, 1)
    assert in_memory_format(grey, torch.contiguous_format).stride() == (12, 12, 4, 1)
    last = in_memory_format(grey, torch.channels_last)
    assert last.stride() == torch.empty(2, 1, 3, 4, memory_format=torch.channels_last).stride()
    assert torch.equal(last, grey) and in_memory_format(last, torch.channels_last) is last


def test_without_flip_no_frame_is_mirrored(make_tiny_dataset):
    store = _store(make_tiny_dataset, ("visual", "depth"))
    assert not any(bool(aug["flip"].any()) for _, _, aug in _batches(store, True, flip=False))
