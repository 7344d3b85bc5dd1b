"""Joint augmentation of the aligned modalities of one frame (numpy, runs in loader workers).

- `random_crop_flip` / `center_crop`: the SAME crop window and flip for every modality.
- `normalize`: uint8 (H, W, C) -> float32 (C, H, W) in [-1, 1] (the range of the paper's noise study).
- `cut_switch` (Sec. 3.5): one box at the same place in all modalities; the patches are permuted
  among the modalities (a random non-identity permutation), labels unchanged. Channel counts
  are converted consistently: a patch moved from RGB into a 1-channel modality becomes its
  luminance (ITU-R BT.601 weights); a 1-channel patch moved into RGB is repeated on 3 channels.
"""

from __future__ import annotations

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def random_crop_flip(
    images: dict[str, np.ndarray], crop: int, flip: bool, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    h, w = next(iter(images.values())).shape[:2]
    top = int(rng.integers(0, h - crop + 1))
    left = int(rng.integers(0, w - crop + 1))
    mirror = flip and bool(rng.random() < 0.5)
    out = {}
    for m, img in images.items():
        patch = img[top : top + crop, left : left + crop]  # (crop, crop, C)
        out[m] = patch[:, ::-1] if mirror else patch
    return out


def center_crop(images: dict[str, np.ndarray], crop: int) -> dict[str, np.ndarray]:
    h, w = next(iter(images.values())).shape[:2]
    top, left = (h - crop) // 2, (w - crop) // 2
    return {m: img[top : top + crop, left : left + crop] for m, img in images.items()}


def normalize(img: np.ndarray) -> np.ndarray:
    """(H, W, C) uint8 -> (C, H, W) float32 in [-1, 1]."""
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / 127.5 - 1.0


def convert_channels(patch: np.ndarray, channels: int) -> np.ndarray:
    """(C, h, w) -> (channels, h, w): RGB -> luminance, grey -> repeated."""
    c = patch.shape[0]
    if c == channels:
        return patch
    if channels == 1:
        grey = np.tensordot(LUMA, patch, axes=1) if c == 3 else patch.mean(axis=0)
        return grey[None]
    grey = patch if c == 1 else patch.mean(axis=0, keepdims=True)
    return np.repeat(grey, channels, axis=0)


def scaled_block(block_at_224: int, crop: int) -> int:
    """The paper's block size (pixels of a 224 crop) at this crop size; >= 1 unless off."""
    return 0 if block_at_224 == 0 else max(1, round(block_at_224 * crop / 224))


def cut_switch(images: dict[str, np.ndarray], block: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """images {modality: (C, H, W) float}; returns new arrays with one box permuted among modalities."""
    names = list(images)
    if block <= 0 or len(names) < 2:
        return images
    _, h, w = images[names[0]].shape
    block = min(block, h, w)
    top = int(rng.integers(0, h - block + 1))
    left = int(rng.integers(0, w - block + 1))
    perm = np.arange(len(names))
    while (perm == np.arange(len(names))).all():  # a switch that switches something
        perm = rng.permutation(len(names))
    patches = [images[m][:, top : top + block, left : left + block] for m in names]  # each (C, s, s)
    out = {}
    for i, m in enumerate(names):
        img = images[m].copy()
        img[:, top : top + block, left : left + block] = convert_channels(patches[perm[i]], img.shape[0])
        out[m] = img
    return out
