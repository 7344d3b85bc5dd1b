"""Joint augmentation of the aligned modalities of one frame (numpy, runs in loader workers).

With `data.augment_on: device` the workers only draw the decisions (`draw_crop_flip`, `draw_cut_switch`, the same
generator calls in the same order) and crop; `farm/data/device_augment.py` applies them per batch on the device.

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


def draw_crop_flip(h: int, w: int, crop: int, flip: bool, rng: np.random.Generator) -> tuple[int, int, bool]:
    """The random crop's top-left corner and the flip decision, in the order `random_crop_flip` draws them."""
    top = int(rng.integers(0, h - crop + 1))
    left = int(rng.integers(0, w - crop + 1))
    mirror = flip and bool(rng.random() < 0.5)
    return top, left, mirror


def random_crop_flip(
    images: dict[str, np.ndarray], crop: int, flip: bool, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    h, w = next(iter(images.values())).shape[:2]
    top, left, mirror = draw_crop_flip(h, w, crop, flip, rng)
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
        # written out, each product and sum rounded to float32 in this order, so that the device path
        # (farm/data/device_augment.py) can repeat it bit for bit; equal to the former np.tensordot(LUMA, patch)
        # on all 256^3 normalised RGB values (checked exhaustively with numpy 2.4 / OpenBLAS on x86-64)
        grey = (LUMA[0] * patch[0] + LUMA[1] * patch[1]) + LUMA[2] * patch[2] if c == 3 else patch.mean(axis=0)
        return grey[None]
    grey = patch if c == 1 else patch.mean(axis=0, keepdims=True)
    return np.repeat(grey, channels, axis=0)


def scaled_block(block_at_224: int, crop: int) -> int:
    """The paper's block size (pixels of a 224 crop) at this crop size; >= 1 unless off."""
    return 0 if block_at_224 == 0 else max(1, round(block_at_224 * crop / 224))


def draw_cut_switch(
    h: int, w: int, block: int, num_modalities: int, rng: np.random.Generator
) -> tuple[int, int, int, np.ndarray]:
    """The box (top, left, side) and the permutation of a cut-switch (block >= 1, two modalities or more), in
    the order `cut_switch` draws them: modality i receives the patch of modality perm[i]."""
    block = min(block, h, w)
    top = int(rng.integers(0, h - block + 1))
    left = int(rng.integers(0, w - block + 1))
    perm = np.arange(num_modalities)
    while (perm == np.arange(num_modalities)).all():  # a switch that switches something
        perm = rng.permutation(num_modalities)
    return top, left, block, perm


def cut_switch(images: dict[str, np.ndarray], block: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """images {modality: (C, H, W) float}; returns new arrays with one box permuted among modalities."""
    names = list(images)
    if block <= 0 or len(names) < 2:
        return images
    _, h, w = images[names[0]].shape
    top, left, block, perm = draw_cut_switch(h, w, block, len(names), rng)
    patches = [images[m][:, top : top + block, left : left + block] for m in names]  # each (C, s, s)
    out = {}
    for i, m in enumerate(names):
        img = images[m].copy()
        img[:, top : top + block, left : left + block] = convert_channels(patches[perm[i]], img.shape[0])
        out[m] = img
    return out
