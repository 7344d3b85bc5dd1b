"""One torch Dataset for every prepared dataset, driven by its manifest (no per-dataset classes)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from farm.data.augment import center_crop, cut_switch, normalize, random_crop_flip
from farm.data.store import FrameStore


class FrameDataset(Dataset):
    """Frames of the given subjects: ({modality: (C, crop, crop) float in [-1, 1]}, labels (A,) int8).

    Training mode draws the crop, flip and cut-switch from the torch RNG (seeded per DataLoader
    worker by torch), so a seeded run is reproducible with any number of workers.
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
    ) -> None:
        self.store = store
        self.indices = np.flatnonzero(np.isin(store.subjects, list(subjects)))
        self.modalities = tuple(modalities)
        self.labels = store.labels(tuple(aus))[self.indices]  # (N, A)
        self.crop, self.train, self.flip = crop, train, flip
        self.cut_switch_block, self.cut_switch_prob = cut_switch_block, cut_switch_prob
        for m in self.modalities:
            spec = store.meta.modality(m)
            if crop > min(spec.height, spec.width):
                raise ValueError(
                    f"augment.crop_size {crop} exceeds the {spec.height}x{spec.width} {m} images of {store.root}"
                )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        idx = int(self.indices[i])
        images = {m: self.store.image(idx, m) for m in self.modalities}  # each (H, W, C) uint8
        if self.train:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
            images = random_crop_flip(images, self.crop, self.flip, rng)
            arrays = {m: normalize(img) for m, img in images.items()}  # (C, crop, crop)
            if self.cut_switch_block and rng.random() < self.cut_switch_prob:
                arrays = cut_switch(arrays, self.cut_switch_block, rng)
        else:
            arrays = {m: normalize(img) for m, img in center_crop(images, self.crop).items()}
        return {m: torch.from_numpy(a) for m, a in arrays.items()}, torch.from_numpy(self.labels[i])
