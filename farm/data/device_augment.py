"""The training process's half of `data.augment_on: device`: per batch, on the training device.

The loader workers crop and ship uint8 (B, H, W, C) crops with the decisions they drew (`FrameDataset`, with the
same generator calls as the per-frame path); here the batch is flipped, normalised and cut-switched, bit for bit
as `farm/data/augment.py` does it frame by frame in the workers (tests compare the two paths with `torch.equal`):
- every operation is elementwise and rounded once to float32 in the same order as numpy's (the luminance of
  `convert_channels` is written out for that reason), so the result does not depend on the batch or the device;
- division is by a tensor on the batch's device, never by a Python scalar: CUDA turns `t / scalar` into
  `t * (1 / scalar)`, which can differ from numpy's division in the last bit.
On CUDA this is written to be exact for the same reasons but has not been run on a GPU yet.

With `data.decode: device` the workers ship the stored JPEG bytes instead of crops, and `decode_crops` decodes the
batch here first (torchvision's `decode_jpeg`: nvJPEG, batched, on a GPU; libjpeg-turbo on a CPU, where the
pixels equal Pillow's in the workers, tested; nvJPEG's inverse DCT may differ from libjpeg's by rounding).
"""

from __future__ import annotations

import functools

import torch

from farm.data.augment import LUMA


class DecodeError(ValueError):
    """A stored frame that is not a decodable JPEG (names the modality and the manifest row)."""


def decode_crops(
    blobs: dict[str, list[torch.Tensor]], window: torch.Tensor, rows: torch.Tensor, device: torch.device
) -> dict[str, torch.Tensor]:  # fmt: skip
    """JPEG bytes {modality: [B 1-D uint8 CPU tensors]} -> the crops {modality: (B, side, side, C) uint8} on
    `device`, as the workers' uint8 crops. window (B, 3): top, left, side of each frame's crop (one side per
    batch); rows (B,): the frames' manifest rows, named when one does not decode."""
    side = int(window[0, 2])
    corners = window[:, :2].tolist()  # on the CPU: no device sync
    out = {}
    for m, data in blobs.items():
        try:
            images = _decode_jpeg(data, device)  # each (C, H, W)
        except RuntimeError as e:
            raise DecodeError(_undecodable(m, data, rows, e)) from None
        if len({tuple(t.shape) for t in images}) > 1:
            shapes = sorted({tuple(t.shape) for t in images})
            raise DecodeError(f"{m}: the frames of one batch decode to different shapes {shapes} (C, H, W)")
        crops = torch.stack([t[:, top : top + side, left : left + side] for t, (top, left) in zip(images, corners)])
        out[m] = crops.permute(0, 2, 3, 1)  # (B, side, side, C), a view: normalize_batch copies it once
    return out


def _undecodable(modality: str, data: list[torch.Tensor], rows: torch.Tensor, error: Exception) -> str:
    """The message for a batch that failed to decode: the first frame that fails alone, by manifest row."""
    for blob, row in zip(data, rows.tolist()):
        try:
            _decode_jpeg([blob], torch.device("cpu"))
        except RuntimeError as e:
            return f"{modality}: the frame at manifest row {row} is not a decodable JPEG ({str(e).splitlines()[0]})"
    return f"{modality}: a batch of JPEG frames failed to decode on the device ({str(error).splitlines()[0]})"


def _decode_jpeg(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """torchvision's batched `decode_jpeg`, the stored channels kept. torchvision 0.29 deprecates its image codecs
    for TorchCodec's and warns on every call: silenced here (one warning per batch); a torchvision without them
    gets a clear error."""
    import warnings

    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError as e:
        raise ImportError(f"data.decode: device needs torchvision.io.decode_jpeg, which this torchvision lacks ({e}); "
                          "set data.decode: worker") from None  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.UNCHANGED, device=device)


def normalize_batch(x: torch.Tensor, memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """(B, H, W, C) uint8 -> (B, C, H, W) float32 in [-1, 1], the values of `augment.normalize`."""
    B, H, W, C = x.shape
    # a fresh tensor with the standard strides of `memory_format` (see in_memory_format)
    t = torch.empty((B, C, H, W), dtype=torch.float32, device=x.device, memory_format=memory_format)
    t.copy_(x.permute(0, 3, 1, 2))  # (B, C, H, W), uint8 -> float32 is exact
    return t.div_(_constant(127.5, t.device)).sub_(1.0)  # a tensor divisor: true division on CUDA too


@functools.cache
def _constant(value: float, device: torch.device) -> torch.Tensor:
    """A 0-dim float32 tensor on `device`, made once (no host-to-device copy per batch)."""
    return torch.tensor(value, dtype=torch.float32, device=device)


def in_memory_format(t: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """`t` with the standard strides of `memory_format`, copied only when its strides differ.

    Not `t.contiguous(memory_format)`: a (B, 1, H, W) batch passes that check with either layout's strides, and
    the CPU convolutions pick their algorithm from the strides, so equal values could still round differently.
    """
    standard = torch.empty(t.shape, device="meta", memory_format=memory_format).stride()  # no allocation
    return t if t.stride() == standard else torch.empty_like(t, memory_format=memory_format).copy_(t)


def convert_channels_batch(t: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, C, ...) -> (B, channels, ...) as `augment.convert_channels`: RGB -> luminance, grey -> repeated."""
    c = t.shape[1]
    if c == channels:
        return t
    if channels == 1:
        if c == 3:  # each product and sum rounded to float32 in convert_channels' order (no fused multiply-add)
            return (t[:, 0:1] * float(LUMA[0]) + t[:, 1:2] * float(LUMA[1])) + t[:, 2:3] * float(LUMA[2])
        return _channel_mean(t)
    grey = t if c == 1 else _channel_mean(t)  # (B, 1, ...)
    return grey.expand(-1, channels, *grey.shape[2:])


def _channel_mean(t: torch.Tensor) -> torch.Tensor:
    """numpy's float32 mean over the channel axis: a sum in channel order, then one division."""
    total = functools.reduce(torch.add, t.unbind(1)).unsqueeze(1)  # (B, 1, ...)
    return total / _constant(float(t.shape[1]), t.device)


def cut_switch_batch(
    x: dict[str, torch.Tensor], box: torch.Tensor, perm: torch.Tensor, side: int
) -> dict[str, torch.Tensor]:  # fmt: skip
    """`augment.cut_switch` for a batch, in place: x {modality: (B, C, H, W) contiguous float}; box (B, 3) top,
    left, side per frame (side 0: not switched); perm (B, M): modality i receives the patch of modality perm[:, i]
    (the identity for a frame not switched); `side`: the largest side in `box`, a host int (every switched frame
    of a batch has the same side).

    Vectorised over the batch: each modality's (side x side) patch is gathered from every frame at its box
    (top-left (0, 0) for a frame not switched, which gets its own patch back), the patches are permuted and
    converted, and scattered back; no loop over frames, no host sync.
    """
    names = list(x)
    first = x[names[0]]
    B, _, H, W = first.shape
    steps = torch.arange(side, device=first.device)
    pos = (box[:, 0:1] + steps)[:, :, None] * W + (box[:, 1:2] + steps)[:, None, :]  # pixel index, (B, side, side)
    pos = pos.view(B, 1, side * side)  # (B, 1, side^2)
    flat = [x[m].view(B, x[m].shape[1], H * W) for m in names]  # views, each (B, C, H W)
    patches = [f.gather(2, pos.expand(-1, f.shape[1], -1)) for f in flat]  # each (B, C, side^2), copies
    for i, f in enumerate(flat):
        patch = patches[i]
        for j in range(len(names)):
            if j != i:
                take = (perm[:, i] == j).view(B, 1, 1)  # (B, 1, 1)
                patch = torch.where(take, convert_channels_batch(patches[j], patch.shape[1]), patch)
        f.scatter_(2, pos.expand(-1, f.shape[1], -1), patch)  # back into the box of x[m]
    return x


def augment_batch(
    x: dict[str, torch.Tensor], flip: torch.Tensor, box: torch.Tensor | None = None, perm: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:  # fmt: skip
    """uint8 crops {modality: (B, H, W, C)} on the device and the workers' decisions, still on the CPU as the loader
    made them -> the training inputs (B, C, H, W) contiguous float32 on the crops' device.

    flip (B,) bool: mirror the frame (all modalities); box, perm: cut-switch (`cut_switch_batch`), None = off.
    The order is the workers': flip, normalise, cut-switch. Which frames are mirrored and the box side are read
    on the CPU (no device sync); only the mirrored frames are flipped, in a copy (the loader's batch is left as is).
    """
    device = next(iter(x.values())).device
    mirrored = flip.nonzero().squeeze(1)  # (n,) on the CPU
    if len(mirrored):
        mirrored = mirrored.to(device, non_blocking=True)
        x = {m: t.index_copy(0, mirrored, t.index_select(0, mirrored).flip(2)) for m, t in x.items()}  # along W
    images = {m: normalize_batch(t) for m, t in x.items()}  # fresh (B, C, H, W) tensors: switched in place below
    if box is None or perm is None or len(images) < 2:
        return images
    side = int(box[:, 2].max())
    if side == 0:  # no frame of the batch is switched
        return images
    if not bool(((box[:, 2] == 0) | (box[:, 2] == side)).all()):  # on the CPU: free
        raise ValueError(f"cut-switch boxes of one batch must share their side, got {sorted(set(box[:, 2].tolist()))}")
    return cut_switch_batch(images, box.to(device, non_blocking=True), perm.to(device, non_blocking=True), side)
