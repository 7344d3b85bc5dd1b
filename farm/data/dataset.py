"""One torch Dataset for every prepared dataset, driven by its manifest (no per-dataset classes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from farm.data.augment import center_crop, cut_switch, draw_crop_flip, draw_cut_switch, normalize, random_crop_flip
from farm.data.store import FrameStore


class FrameDataset(Dataset):
    """Frames of the given subjects: ({modality: (C, crop, crop) float in [-1, 1]}, labels (A,) int8).

    Training mode draws the crop, flip and cut-switch from the torch RNG (seeded per DataLoader
    worker by torch), so a seeded run is reproducible with any number of workers.

    `uint8=True` (`data.augment_on: device`): the frame stays uint8 (crop, crop, C), cropped only; a training
    item also carries the decisions drawn as above, ({modality: crops}, labels, {"flip": (), "box": (3,),
    "perm": (M,)}) (box = top, left, side; side 0: not switched; "box" and "perm" only with cut-switch on and
    two modalities or more), for `device_augment.augment_batch` to apply on the device.

    `encoded=True` (`data.decode: device`, JPEG datasets): the stored JPEG bytes, not decoded, as 1-D uint8
    tensors, and in every mode the crop window and the manifest row: ({modality: bytes}, labels, {"window": (3,)
    top, left, side, "row": (), ...the training decisions above}); batch them with `collate_encoded`, decode them
    with `device_augment.decode_crops`. The same generator calls as the other paths: the same crops and decisions.
    """

    def __init__(
        self,
        store: FrameStore,
        subjects: Sequence[str],
        modalities: Sequence[str],
        aus: Sequence[str],
        crop: int,
        train: bool = False,
        flip: bool = True,
        cut_switch_block: int = 0,
        cut_switch_prob: float = 1.0,
        uint8: bool = False,
        encoded: bool = False,
    ) -> None:
        self.store = store
        self.indices = np.flatnonzero(np.isin(store.subjects, list(subjects)))
        self.modalities = tuple(modalities)
        self.labels = store.labels(tuple(aus))[self.indices]  # (N, A)
        self.crop, self.train, self.flip = crop, train, flip
        self.cut_switch_block, self.cut_switch_prob = cut_switch_block, cut_switch_prob
        self.uint8, self.encoded = uint8 or encoded, encoded
        if encoded and store.meta.codec != "jpeg":
            raise ValueError(f"data.decode: device decodes JPEG frames on the device, but {store.root} stores "
                             f"{store.meta.codec!r} frames (prepare it with --codec jpeg, or set data.decode: worker)")  # fmt: skip
        for m in self.modalities:
            spec = store.meta.modality(m)
            if crop > min(spec.height, spec.width):
                raise ValueError(
                    f"augment.crop_size {crop} exceeds the {spec.height}x{spec.width} {m} images of {store.root}"
                )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple:
        idx = int(self.indices[i])
        if self.encoded:
            return self._encoded_item(i, idx)
        images = {m: self.store.image(idx, m) for m in self.modalities}  # each (H, W, C) uint8
        if self.uint8:
            return self._uint8_item(i, images)
        if self.train:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            images = random_crop_flip(images, self.crop, self.flip, rng)
            arrays = {m: normalize(img) for m, img in images.items()}  # (C, crop, crop)
            if self.cut_switch_block and rng.random() < self.cut_switch_prob:
                arrays = cut_switch(arrays, self.cut_switch_block, rng)
        else:
            arrays = {m: normalize(img) for m, img in center_crop(images, self.crop).items()}
        return {m: torch.from_numpy(a) for m, a in arrays.items()}, torch.from_numpy(self.labels[i])

    def _uint8_item(self, i: int, images: dict[str, np.ndarray]) -> tuple:
        """The crops as uint8 and, in training, the decisions `__getitem__` would apply (the same draws)."""
        labels = torch.from_numpy(self.labels[i])
        if not self.train:
            crops = center_crop(images, self.crop)  # each (crop, crop, C) uint8, a view
            return {m: torch.from_numpy(np.ascontiguousarray(c)) for m, c in crops.items()}, labels
        h, w = next(iter(images.values())).shape[:2]
        top, left, aug = self._draw(h, w)
        window = (slice(top, top + self.crop), slice(left, left + self.crop))
        crops = {m: torch.from_numpy(np.ascontiguousarray(img[window])) for m, img in images.items()}  # not flipped
        return crops, labels, aug

    def _encoded_item(self, i: int, idx: int) -> tuple:
        """The stored JPEG bytes (copied out of the memory map), the crop window and, in training, the decisions."""
        blobs = {m: torch.from_numpy(np.frombuffer(self.store.blob(idx, m), dtype=np.uint8).copy())
                 for m in self.modalities}  # fmt: skip
        spec = self.store.meta.modality(self.modalities[0])
        if self.train:
            top, left, aug = self._draw(spec.height, spec.width)
        else:
            top, left, aug = (spec.height - self.crop) // 2, (spec.width - self.crop) // 2, {}
        aug.update(window=torch.tensor([top, left, self.crop]), row=torch.tensor(idx))
        return blobs, torch.from_numpy(self.labels[i]), aug

    def _draw(self, h: int, w: int) -> tuple[int, int, dict[str, torch.Tensor]]:
        """A training frame's crop corner and decisions, drawn as `__getitem__` draws them (same generator calls)."""
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        top, left, mirror = draw_crop_flip(h, w, self.crop, self.flip, rng)
        aug = {"flip": torch.tensor(mirror)}
        num = len(self.modalities)
        if self.cut_switch_block and num >= 2:
            box, perm = torch.zeros(3, dtype=torch.int64), torch.arange(num)
            if rng.random() < self.cut_switch_prob:
                top_, left_, side, order = draw_cut_switch(self.crop, self.crop, self.cut_switch_block, num, rng)
                box, perm = torch.tensor([top_, left_, side]), torch.from_numpy(order)
            aug.update(box=box, perm=perm)
        return top, left, aug


def collate_encoded(batch: list[tuple]) -> tuple:
    """`FrameDataset(encoded=True)` items -> ({modality: [B 1-D uint8 tensors]}, labels (B, A), decisions batched):
    the JPEG bytes differ in length, so they stay a list (what `decode_jpeg` takes)."""
    blobs = {m: [item[0][m] for item in batch] for m in batch[0][0]}
    labels, aug = default_collate([item[1:] for item in batch])
    return blobs, labels, aug
