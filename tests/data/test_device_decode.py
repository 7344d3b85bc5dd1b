"""`data.decode: device`: JPEG bytes from the workers, decoded per batch in the training process, give bit for bit
the inputs of Pillow decoding in the workers (on the CPU; nvJPEG on a GPU may round differently)."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from farm.data.dataset import FrameDataset, collate_encoded
from farm.data.device_augment import DecodeError, decode_crops
from farm.data.store import FrameStore
from farm.engine import to_device_inputs

CROP = 18
CPU = torch.device("cpu")


def _store(make_tiny_dataset, modalities, codec="jpeg"):
    return FrameStore(make_tiny_dataset(num_subjects=4, frames=8, size=22, modalities=modalities, codec=codec))


def _batches(store, encoded, train=True, workers=0):
    ds = FrameDataset(store, sorted(set(store.subjects)), store.meta.modality_names, store.meta.aus, crop=CROP,
                      train=train, cut_switch_block=5, cut_switch_prob=0.7, encoded=encoded)  # fmt: skip
    torch.manual_seed(7)  # the per-frame seeds come from the torch generator (of each worker)
    gen = torch.Generator().manual_seed(3)
    return list(DataLoader(ds, batch_size=10, shuffle=train, generator=gen, num_workers=workers,
                           collate_fn=collate_encoded if encoded else None))  # fmt: skip


@pytest.mark.parametrize("modalities", [("visual",), ("depth",), ("visual", "depth", "thermal")], ids="+".join)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_decoding_in_the_training_process_equals_decoding_in_the_workers(make_tiny_dataset, modalities, train):
    store = _store(make_tiny_dataset, modalities)
    worker, encoded = _batches(store, False, train), _batches(store, True, train)
    flips = 0
    for (xw, yw), (blobs, ye, aug) in zip(worker, encoded, strict=True):
        assert all(isinstance(b, list) and b[0].dtype == torch.uint8 and b[0].dim() == 1 for b in blobs.values())
        assert torch.equal(ye, yw) and aug["window"][:, 2].eq(CROP).all()
        assert train == ("flip" in aug)
        flips += int(aug["flip"].sum()) if train else 0
        xd = to_device_inputs(blobs, CPU, aug)
        assert list(xd) == list(xw)
        for m in xw:
            assert xd[m].stride() == xw[m].stride() and torch.equal(xd[m], xw[m]), m
    assert not train or 0 < flips < 32


def test_two_workers_ship_the_same_bytes_and_decisions(make_tiny_dataset):
    store = _store(make_tiny_dataset, ("visual", "depth"))
    for (xw, _), (blobs, _, aug) in zip(
        _batches(store, False, workers=2), _batches(store, True, workers=2), strict=True
    ):
        xd = to_device_inputs(blobs, CPU, aug)
        assert all(torch.equal(xd[m], xw[m]) for m in xw)


def test_the_crop_window_is_applied_per_frame(make_tiny_dataset):
    store = _store(make_tiny_dataset, ("visual",))
    idx = [0, 5]
    blobs = {"visual": [torch.from_numpy(np.frombuffer(store.blob(i, "visual"), np.uint8).copy()) for i in idx]}
    window = torch.tensor([[0, 0, 4], [3, 2, 4]])
    crops = decode_crops(blobs, window, torch.tensor(idx), CPU)["visual"]  # (2, 4, 4, 3)
    assert crops.shape == (2, 4, 4, 3)
    assert torch.equal(crops[0], torch.from_numpy(store.image(0, "visual")[0:4, 0:4].copy()))
    assert torch.equal(crops[1], torch.from_numpy(store.image(5, "visual")[3:7, 2:6].copy()))


def test_a_corrupt_frame_is_named_by_modality_and_manifest_row(make_tiny_dataset):
    store = _store(make_tiny_dataset, ("depth",))
    good = torch.from_numpy(np.frombuffer(store.blob(0, "depth"), np.uint8).copy())
    bad = good.clone()
    bad[len(bad) // 3 :] = 0  # the entropy-coded data and the end marker gone
    with pytest.raises(DecodeError, match=r"^depth: the frame at manifest row 17 is not a decodable JPEG \("):
        decode_crops({"depth": [good, bad]}, torch.tensor([[0, 0, 4]] * 2), torch.tensor([3, 17]), CPU)


def test_a_dataset_that_is_not_jpeg_is_refused_naming_its_codec(make_tiny_dataset):
    store = _store(make_tiny_dataset, ("visual",), codec="raw")
    with pytest.raises(ValueError, match=r"data.decode: device decodes JPEG frames .* stores 'raw' frames"):
        FrameDataset(store, ["F001"], ("visual",), store.meta.aus, crop=CROP, encoded=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG needs a CUDA GPU")
def test_nvjpeg_decodes_within_rounding_of_pillow(make_tiny_dataset):
    """On a GPU the batch is decoded by nvJPEG, whose inverse DCT may round differently from libjpeg-turbo's: the
    crops must agree with Pillow's to within a few grey levels (measured there; docs/design.md)."""
    store = _store(make_tiny_dataset, ("visual", "depth"))
    worker, encoded = _batches(store, False, train=False), _batches(store, True, train=False)
    for (xw, _), (blobs, _, aug) in zip(worker, encoded, strict=True):
        crops = decode_crops(blobs, aug["window"], aug["row"], torch.device("cuda"))
        for m, c in crops.items():
            ref = (xw[m].permute(0, 2, 3, 1) + 1.0) * 127.5  # back to the uint8 grey levels
            diff = (c.cpu().float() - ref.round()).abs()
            print(f"{m}: nvJPEG vs Pillow, max {diff.max():.0f} mean {diff.mean():.3f} grey levels")
            assert diff.max() <= 4 and diff.mean() < 0.5, m
