"""Synthetic aligned visual / depth / thermal face sequences with BP4D-like AU labels.

The data is built so that a fusion method can win or lose on it:

* Labels. Per (subject, task) sequence five latent expression drivers (smile, surprise, sad,
  press, frown) switch on and off as an alternating renewal process whose share of time "on"
  depends on the task (T1..T8 mimic BP4D's happy / sad / surprise / embarrassment / fear /
  pain / anger / disgust tasks). Each driver episode recruits its AUs (DRIVERS) with a
  raised-cosine onset-apex-offset envelope; AU-specific episodes (INDEPENDENT) and a weak
  sub-threshold activity are added. Label = latent intensity >= THRESHOLD; a few short runs
  per AU are -1 (unknown, BP4D's 9). Time is measured in sequence fractions, so base rates do
  not depend on `frames`.
* Subjects. Face shape, feature positions, skin albedo + texture, hair line, temperature
  pattern, expressiveness and "resting" AU-like offsets (rendered, never labelled) are drawn
  per subject from a stream that depends only on (seed, subject index).
* Modalities are rendered from ONE geometry per frame (same head motion), each with its own
  AU strengths taken from AU_EFFECTS: visual = albedo + dark brows / eyes / lips + Lambertian
  shading of the height field under a slowly moving light; depth = the height field;
  thermal = skin temperature + AU-driven warming, blurred to a quarter resolution.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from farm.config import BP4D_AUS
from farm.data.store import DatasetMeta, DatasetWriter, ModalitySpec, claim_output

MODALITIES = ("visual", "depth", "thermal")
CHANNELS = {"visual": 3, "depth": 1, "thermal": 1}
VERSION = 2
THRESHOLD = 0.3
"""Occurrence threshold on the latent intensity (full scale = 1)."""

AU_EFFECTS: dict[str, dict[str, float]] = {
    # How strongly each AU shows in each modality (multiplies the AU's rendered intensity).
    # The renderer's per-AU deformations are calibrated so that 1.0 means a comparable
    # ideal-observer detectability (effect norm / frame-to-frame noise) in every modality.
    # Visual is best overall; depth carries AU6/10/14/17; thermal carries AU4/6/23/24;
    # AU1/2/7/12/15 are mainly visual.
    "AU1": {"visual": 1.0, "depth": 0.25, "thermal": 0.15},
    "AU2": {"visual": 1.0, "depth": 0.25, "thermal": 0.15},
    "AU4": {"visual": 0.55, "depth": 0.35, "thermal": 1.0},
    "AU6": {"visual": 0.3, "depth": 1.0, "thermal": 0.7},
    "AU7": {"visual": 1.0, "depth": 0.25, "thermal": 0.2},
    "AU10": {"visual": 0.4, "depth": 1.0, "thermal": 0.2},
    "AU12": {"visual": 1.0, "depth": 0.35, "thermal": 0.2},
    "AU14": {"visual": 0.35, "depth": 1.0, "thermal": 0.15},
    "AU15": {"visual": 1.0, "depth": 0.3, "thermal": 0.15},
    "AU17": {"visual": 0.35, "depth": 1.0, "thermal": 0.3},
    "AU23": {"visual": 0.45, "depth": 0.3, "thermal": 1.0},
    "AU24": {"visual": 0.45, "depth": 0.4, "thermal": 1.0},
}

UNIT = {"visual": 1.5, "depth": 2.5, "thermal": 1.0}
"""Per-modality scale of the renderer's AU deformations that makes AU_EFFECTS comparable across modalities."""

DIFFICULTY: dict[str, dict[str, float]] = {
    # effect: AU effect gain; noise: sensor noise; nuisance: head motion, light, drift, gain;
    # holes: depth dropout rate.
    "easy": {"effect": 1.8, "noise": 0.4, "nuisance": 0.4, "holes": 0.3},
    "default": {"effect": 1.0, "noise": 1.0, "nuisance": 1.0, "holes": 1.0},
    "hard": {"effect": 0.6, "noise": 1.6, "nuisance": 1.5, "holes": 2.0},
}

# driver -> {AU: (probability that the AU takes part in an episode, weight)}
DRIVERS: dict[str, dict[str, tuple[float, float]]] = {
    "smile": {"AU6": (0.85, 0.95), "AU12": (0.97, 1.0), "AU10": (0.8, 0.85), "AU7": (0.6, 0.8), "AU14": (0.7, 0.8)},
    "surprise": {"AU1": (0.95, 1.0), "AU2": (0.9, 0.95)},
    "sad": {"AU15": (0.9, 0.9), "AU17": (0.8, 0.9), "AU1": (0.3, 0.7), "AU4": (0.3, 0.7)},
    "press": {"AU23": (0.9, 0.95), "AU24": (0.85, 0.95), "AU17": (0.6, 0.8), "AU14": (0.3, 0.7)},
    "frown": {"AU4": (0.95, 1.0), "AU7": (0.85, 0.9), "AU10": (0.35, 0.7)},
}
# share of time each driver is active, per task (tasks beyond T8 cycle)
TASKS: list[dict[str, float]] = [
    {"smile": 0.85, "surprise": 0.12, "sad": 0.08, "press": 0.12, "frown": 0.08},  # T1 happiness
    {"smile": 0.40, "surprise": 0.06, "sad": 0.50, "press": 0.25, "frown": 0.30},  # T2 sadness
    {"smile": 0.50, "surprise": 0.55, "sad": 0.08, "press": 0.12, "frown": 0.20},  # T3 surprise
    {"smile": 0.75, "surprise": 0.15, "sad": 0.15, "press": 0.35, "frown": 0.12},  # T4 embarrassment
    {"smile": 0.30, "surprise": 0.45, "sad": 0.20, "press": 0.20, "frown": 0.30},  # T5 fear
    {"smile": 0.40, "surprise": 0.08, "sad": 0.20, "press": 0.35, "frown": 0.55},  # T6 pain
    {"smile": 0.20, "surprise": 0.08, "sad": 0.12, "press": 0.45, "frown": 0.55},  # T7 anger
    {"smile": 0.35, "surprise": 0.12, "sad": 0.12, "press": 0.25, "frown": 0.45},  # T8 disgust
]
# share of time of AU-specific episodes (all tasks)
INDEPENDENT = {
    "AU1": 0.02,
    "AU2": 0.03,
    "AU4": 0.06,
    "AU6": 0.05,
    "AU7": 0.35,
    "AU10": 0.36,
    "AU12": 0.11,
    "AU14": 0.18,
    "AU15": 0.04,
    "AU17": 0.21,
    "AU23": 0.03,
    "AU24": 0.02,
}
TARGET_RATES = {
    "AU1": 0.21,
    "AU2": 0.17,
    "AU4": 0.20,
    "AU6": 0.46,
    "AU7": 0.55,
    "AU10": 0.59,
    "AU12": 0.56,
    "AU14": 0.47,
    "AU15": 0.17,
    "AU17": 0.34,
    "AU23": 0.17,
    "AU24": 0.15,
}
AU_INDEX = {au: j for j, au in enumerate(BP4D_AUS)}


@dataclass(frozen=True)
class SynthSpec:
    subjects: int = 12
    tasks: int = 4
    frames: int = 60
    """Frames per (subject, task) sequence."""
    size: int = 64
    """Square image side in pixels."""
    seed: int = 0
    modalities: tuple[str, ...] = MODALITIES
    """Any non-empty subset of visual, depth, thermal (stored in that order)."""
    difficulty: str = "default"
    """easy | default | hard (see DIFFICULTY)."""

    def __post_init__(self) -> None:
        mods = (self.modalities,) if isinstance(self.modalities, str) else tuple(self.modalities)
        bad = [m for m in mods if m not in MODALITIES]
        if not mods or bad or len(set(mods)) != len(mods):
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES} without repeats, got {mods}")
        object.__setattr__(self, "modalities", tuple(m for m in MODALITIES if m in mods))
        if self.difficulty not in DIFFICULTY:
            raise ValueError(f"difficulty must be one of {tuple(DIFFICULTY)}, got {self.difficulty!r}")
        for name, low in (("subjects", 1), ("tasks", 1), ("frames", 2), ("size", 8), ("seed", 0)):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {getattr(self, name)!r}")


def _rng(seed: int, *key: int) -> np.random.Generator:
    """Independent stream per (seed, purpose, indices): 0 subject, 1 labels, 2 nuisance, 3 task, 4 noise."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def subject_name(i: int) -> str:
    return f"{'FM'[i % 2]}{i // 2 + 1:03d}"


# ---------------------------------------------------------------------------------------------
# labels


def _episodes(rng: np.random.Generator, share: float, mean_on: float = 0.22) -> list[tuple[float, float]]:
    """On-intervals in [0, 1] of an alternating gamma renewal process that is on `share` of the time."""
    if share <= 0:
        return []
    mean_off = mean_on * (1 - share) / share
    on, t, out = bool(rng.random() < share), -3 * (mean_on + mean_off), []  # warm-up: ~stationary at t = 0
    while t < 1:
        d = rng.gamma(3.0, (mean_on if on else mean_off) / 3.0)
        if on and t + d > 0:
            out.append((t, t + d))
        t, on = t + d, not on
    return out


def _envelope(t: np.ndarray, start: float, end: float, ramp: float) -> np.ndarray:
    """Raised-cosine onset, apex plateau, raised-cosine offset; 1 at the apex."""
    x = np.clip(np.minimum(t - start, end - t) / min(ramp, 0.45 * (end - start)), 0, 1)
    return 0.5 - 0.5 * np.cos(np.pi * x)


def sample_latent(rng: np.random.Generator, task: int, frames: int) -> np.ndarray:
    """(frames, 12) AU intensities in [0, 1] of one sequence of task index `task` (0 = T1)."""
    t = (np.arange(frames) + 0.5) / frames
    lat = np.zeros((frames, len(BP4D_AUS)))
    profile = TASKS[task % len(TASKS)]
    for driver, links in DRIVERS.items():
        for start, end in _episodes(rng, profile[driver]):
            env = rng.uniform(0.5, 1.0) * _envelope(t, start, end, rng.uniform(0.03, 0.08))
            for au, (p, w) in links.items():
                take, gain = rng.random() < p, w * rng.uniform(0.8, 1.15)
                if take:
                    lat[:, AU_INDEX[au]] = np.maximum(lat[:, AU_INDEX[au]], gain * env)
    for au, share in INDEPENDENT.items():
        for start, end in _episodes(rng, share, mean_on=0.15):
            env = rng.uniform(0.45, 1.0) * _envelope(t, start, end, rng.uniform(0.03, 0.08))
            lat[:, AU_INDEX[au]] = np.maximum(lat[:, AU_INDEX[au]], env)
    f, ph, amp = rng.uniform(0.5, 3, 12), rng.uniform(0, 2 * np.pi, 12), rng.uniform(0, 0.1, 12)
    lat += amp * (0.5 + 0.5 * np.sin(2 * np.pi * f * t[:, None] + ph))  # sub-threshold activity
    return np.clip(lat, 0, 1)


def latent_to_labels(lat: np.ndarray, rng: np.random.Generator, p_unknown: float = 0.25) -> np.ndarray:
    """Occurrence labels; per AU, with probability `p_unknown` one run of 3-12% of the frames is -1."""
    lab = (lat >= THRESHOLD).astype(np.int8)
    n = len(lab)
    for j in range(lab.shape[1]):
        hit, frac, pos = rng.random() < p_unknown, rng.uniform(0.03, 0.12), rng.random()
        if hit:
            length = max(1, round(frac * n))
            start = int(pos * (n - length + 1))
            lab[start : start + length, j] = -1
    return lab


# ---------------------------------------------------------------------------------------------
# subjects and nuisances


def make_subject(seed: int, index: int) -> dict[str, Any]:
    """Identity parameters of subject `index` (independent of the other spec fields)."""
    r = _rng(seed, 0, index)
    sex = "FM"[index % 2]
    tone = r.uniform(0.3, 0.85)
    skin = np.clip(tone * np.array([1.0, r.uniform(0.68, 0.84), r.uniform(0.52, 0.72)]), 0, 1)
    return {
        "sex": sex,
        "cx": r.uniform(-0.06, 0.06),
        "cy": r.uniform(-0.04, 0.08),
        "ax": r.uniform(0.58, 0.7) + (0.05 if sex == "M" else 0.0),
        "ay": r.uniform(0.78, 0.92),
        "brow_y": r.uniform(-0.46, -0.3),
        "brow_th": r.uniform(0.035, 0.06),
        "brow_dark": r.uniform(0.35, 0.75),
        "eye_x": r.uniform(0.3, 0.42),
        "eye_y": r.uniform(-0.22, -0.12),
        "eye_w": r.uniform(0.11, 0.16),
        "eye_h": r.uniform(0.05, 0.075),
        "nose_y": r.uniform(0.12, 0.3),
        "mouth_y": r.uniform(0.47, 0.6),
        "mouth_w": r.uniform(0.22, 0.34),
        "lip_th": r.uniform(0.06, 0.1),
        "hair_y": r.uniform(-1.0, -0.55),
        "skin": skin,
        "lip": skin * np.array([0.9, 0.55, 0.6]) * r.uniform(0.75, 1.0),
        "hair": r.uniform(0.04, 0.55) * np.array([1.0, 0.85, 0.7]),
        "bg": r.uniform(0.15, 0.75) * r.uniform(0.85, 1.15, 3),
        "tex": (r.uniform(-3, 3, (6, 2)), r.uniform(0, 2 * np.pi, 6), r.uniform(0.3, 1.0, 6), r.uniform(0.5, 1.5, 3)),
        "t_base": r.uniform(33.0, 35.5),
        "t_nose": r.uniform(0.5, 2.5),
        "t_eye": r.uniform(0.3, 1.0),
        "t_fore": r.uniform(0.0, 0.8),
        "t_tex": (r.uniform(-3, 3, (4, 2)), r.uniform(0, 2 * np.pi, 4)),
        "gain": r.uniform(0.5, 1.3),
        "au_gain": np.exp(r.normal(0, 0.2, len(BP4D_AUS))),
        "rest": np.where(r.random(len(BP4D_AUS)) < 0.35, r.uniform(0.1, 0.4, len(BP4D_AUS)), 0.0),
    }


def sample_nuisance(seed: int, subject: int, task: int, frames: int, scale: float) -> dict[str, Any]:
    """Head motion, light, camera gain, depth distance and temperature drift of one sequence."""
    tr, r = _rng(seed, 3, task), _rng(seed, 2, subject, task)  # per-task setup + per-sequence variation
    t = (np.arange(frames) + 0.5) / frames

    def slow(amp: float) -> np.ndarray:
        a, f, ph = r.uniform(-1, 1, 2), r.uniform(0.3, 1.2), r.uniform(0, 2 * np.pi)
        return scale * amp * (a[0] * np.sin(2 * np.pi * f * t + ph) + a[1] * (t - 0.5))

    az = scale * (tr.uniform(-0.5, 0.5) + r.uniform(-0.15, 0.15)) + slow(0.35)
    el = 0.25 + scale * tr.uniform(-0.15, 0.15) + slow(0.1)
    return {
        "tx": slow(0.03),
        "ty": slow(0.03),
        "s": 1 + slow(0.03),
        "light": np.stack([np.sin(az) * np.cos(el), -np.sin(el), np.cos(az) * np.cos(el)], 1),
        "gain": 1 + scale * (tr.uniform(-0.15, 0.15) + r.uniform(-0.05, 0.05, 3)),
        "bg": 1 + scale * r.uniform(-0.08, 0.08, 3),  # times the subject's background colour
        "depth": 55 + scale * (tr.uniform(-8, 8) + r.uniform(-8, 8)) + slow(12),
        "ambient": 23 + scale * tr.uniform(-2, 2) + r.uniform(-0.3, 0.3),
        "t_drift": scale * r.uniform(-0.3, 0.3) + slow(0.5),
    }


# ---------------------------------------------------------------------------------------------
# rendering


def _g(z: Any, c: Any, s: Any) -> Any:
    return np.exp(-0.5 * ((z - c) / s) ** 2)


def _step(z: Any, soft: float) -> Any:
    return 0.5 + 0.5 * np.tanh(z / soft)


@lru_cache(maxsize=8)
def _blur_matrix(size: int) -> np.ndarray:
    """(H, H) operator: block-average to size/4, bilinear back up, Gaussian smoothing."""
    low = max(2, size // 4)
    bins = np.arange(size) * low // size
    down = (bins[None, :] == np.arange(low)[:, None]).astype(np.float64)
    down /= down.sum(1, keepdims=True)
    pos = np.clip((np.arange(size) + 0.5) * low / size - 0.5, 0, low - 1)
    up = np.maximum(0, 1 - np.abs(pos[:, None] - np.arange(low)[None, :]))
    k = _g(np.arange(size)[:, None], np.arange(size)[None, :], 0.5 * size / low)
    return ((k / k.sum(1, keepdims=True)) @ up @ down).astype(np.float32)


def _waves(X: np.ndarray, Y: np.ndarray, freq: np.ndarray, phase: np.ndarray, amp: Any = 1.0) -> np.ndarray:
    amp = np.broadcast_to(amp, phase.shape)
    return sum(a * np.cos(2 * np.pi * (f[0] * X + f[1] * Y) + p) for f, p, a in zip(freq, phase, amp)) / len(phase)


def _geometry(p: dict, X: np.ndarray, Y: np.ndarray, E: dict[str, np.ndarray], px: float) -> dict[str, Any]:
    """Feature layout and the height field under AU intensities E (each (N, 1, 1))."""
    aX, r2 = np.abs(X), X**2 + Y**2
    line = np.hypot(0.02, 0.6 * px)  # thin-line width, never below about a pixel
    by = p["brow_y"] - 0.10 * E["AU1"] * _g(aX, 0.12, 0.12) - 0.10 * E["AU2"] * _g(aX, 0.55, 0.14) + 0.05 * E["AU4"]
    inner = 0.1 - 0.06 * E["AU4"]
    brow = _g(Y, by, np.hypot(p["brow_th"], 0.5 * px)) * _step(aX - inner, 0.03) * _step(0.62 - aX, 0.04)
    eh = p["eye_h"] * np.clip(1 - 0.55 * E["AU7"] - 0.2 * E["AU6"] + 0.3 * E["AU1"] + 0.3 * E["AU2"], 0.2, None)
    eye = _step(1 - ((aX - p["eye_x"]) / p["eye_w"]) ** 2 - ((Y - p["eye_y"] + 0.015 * E["AU6"]) / eh) ** 2, 0.3)
    mw = p["mouth_w"] * (1 + 0.18 * E["AU12"] - 0.3 * E["AU23"] - 0.08 * E["AU24"] + 0.05 * E["AU14"])
    yc = p["mouth_y"] + (-0.12 * E["AU12"] + 0.14 * E["AU15"]) * (X / mw) ** 2 - 0.04 * E["AU17"]
    th = p["lip_th"] * np.clip(1 - 0.5 * E["AU23"] - 0.55 * E["AU24"], 0.2, None)
    inside = _step(mw - aX, 0.03)
    lips = inside * _step(Y - (yc - 0.55 * th - 0.06 * E["AU10"]), 0.015) * _step(yc + 0.55 * th - Y, 0.015)
    ny, my = p["nose_y"], p["mouth_y"]
    x0, y0, x1, y1 = 0.14, ny + 0.03, p["mouth_w"] + 0.05, my  # nasolabial fold segment
    d = np.abs((aX - x0) * (y1 - y0) - (Y - y0) * (x1 - x0)) / np.hypot(x1 - x0, y1 - y0)
    fold = _g(d, 0, line) * _step(Y - y0, 0.03) * _step(y1 - Y, 0.03)
    dimple = _g(aX, mw + 0.05, 0.05) * _g(Y, p["mouth_y"] - 0.01, 0.05)
    forehead = (
        (E["AU1"] * _g(X, 0, 0.25) + E["AU2"] * _g(aX, 0.45, 0.2)) * _step(Y + 0.85, 0.04) * _step(by - 0.12 - Y, 0.04)
    )
    wrinkle = forehead * (0.5 + 0.5 * np.cos(2 * np.pi * Y / 0.1))
    furrow = E["AU4"] * _g(aX, 0.05, line) * _step(Y - p["brow_y"] + 0.12, 0.03) * _step(p["brow_y"] + 0.1 - Y, 0.03)
    h = 0.5 * np.sqrt(np.clip(1 - r2, 0, None))
    h = h + 0.16 * _g(X, 0, 0.08) * _step(Y + 0.25, 0.05) * _step(ny - Y, 0.04) * np.clip(
        (Y + 0.45) / (ny + 0.45), 0, 1
    )
    h = h + (0.06 + 0.03 * E["AU10"]) * _g(aX, 0.11, 0.06) * _g(Y, ny, 0.06)  # nose tip and wings
    h = (
        h
        + 0.06 * _g(aX, 0.3, 0.25) * _g(Y, by + 0.05, 0.07)
        - 0.05 * _g(aX, p["eye_x"], 0.13) * _g(Y, p["eye_y"], 0.08)
    )
    h = h + 0.08 * E["AU4"] * _g(X, 0, 0.1) * _g(Y, p["brow_y"], 0.08) - 0.05 * furrow - 0.03 * wrinkle
    h = h + 0.1 * E["AU7"] * _g(aX, p["eye_x"], 0.12) * _g(Y, p["eye_y"] + 0.07, 0.04)
    h = h + (0.05 + 0.05 * E["AU6"] + 0.03 * E["AU12"]) * _g(aX, 0.42, 0.17) * _g(Y, 0.18 - 0.07 * E["AU6"], 0.15)
    h = h - 0.09 * E["AU10"] * fold - 0.14 * E["AU14"] * dimple
    h = h - 0.05 * E["AU15"] * _g(aX, mw, 0.08) * _g(Y, yc + 0.1, 0.08)
    h = (
        h
        + 0.05 * np.clip(1 - 0.8 * E["AU24"], 0, None) * lips
        + 0.04 * E["AU24"] * _g(X, 0, 0.25) * _g(np.abs(Y - my), 0.1, 0.05)
    )
    h = h + 0.1 * E["AU23"] * _g(X, 0, 0.12) * _g(Y, my, 0.06)
    h = h + (0.05 + 0.08 * E["AU17"]) * _g(X, 0, 0.18) * _g(Y, 0.82 - 0.06 * E["AU17"], 0.12)
    h = h - 0.04 * E["AU17"] * _g(X, 0, 0.15) * _g(Y, my + 0.2, 0.04)
    return {
        "h": h,
        "brow": brow,
        "eye": eye,
        "lips": lips,
        "mouth_line": inside * _g(Y, yc, line),
        "fold": fold,
        "dimple": dimple,
        "wrinkle": wrinkle,
        "furrow": furrow,
        "mw": mw,
        "yc": yc,
    }


def render_sequence(
    p: dict,
    latent: np.ndarray,
    nz: dict,
    spec: SynthSpec,
    rngs: dict[str, np.random.Generator],
    modalities: tuple[str, ...] | None = None,
) -> dict[str, np.ndarray]:
    """{modality: (N, H, W, C) uint8} of a sequence with AU intensities `latent` (N, 12)."""
    diff, size, n = DIFFICULTY[spec.difficulty], spec.size, len(latent)
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    col = lambda a: np.asarray(a, np.float32).reshape(-1, 1, 1)  # noqa: E731
    X = (c[None, None, :] - p["cx"] - col(nz["tx"])) / (p["ax"] * col(nz["s"]))  # (N, 1, W) face coordinates
    Y = (c[None, :, None] - p["cy"] - col(nz["ty"])) / (p["ay"] * col(nz["s"]))  # (N, H, 1)
    face = _step(1 - X**2 - Y**2, 0.04)
    hair = face * _step(p["hair_y"] - Y, 0.04)
    px = 2 / size / p["ax"]
    base = p["rest"] + p["gain"] * p["au_gain"] * latent  # rendered intensity (rest offsets are never labelled)
    out = {}
    for m in modalities or spec.modalities:
        E = {au: col(diff["effect"] * UNIT[m] * AU_EFFECTS[au][m] * base[:, j]) for j, au in enumerate(BP4D_AUS)}
        geo = _geometry(p, X, Y, E, px)
        noise = rngs[m].standard_normal((n, size, size, CHANNELS[m]), dtype=np.float32)
        if m == "visual":
            freq, phase, amp, chan = p["tex"]
            tex = _waves(X, Y, freq, phase, amp)
            dark = np.clip(
                p["brow_dark"] * geo["brow"]
                + 0.8 * geo["eye"]
                + 0.45 * geo["mouth_line"]
                + 0.25 * geo["fold"] * E["AU10"]
                + 0.5 * geo["dimple"] * E["AU14"]
                + 0.35 * geo["wrinkle"]
                + 0.3 * geo["furrow"],
                0,
                0.9,
            )
            alb = p["skin"] * (1 + 0.12 * tex[..., None] * chan) * (1 - dark[..., None])
            alb = alb + 0.85 * geo["lips"][..., None] * (p["lip"] - alb)
            alb = alb + hair[..., None] * (p["hair"] - alb)
            hy, hx = np.gradient(np.broadcast_to(geo["h"], (n, size, size)), axis=(1, 2))
            k = 1.6 * size / 2 * p["ax"]  # slope in face units, independent of resolution
            norm = np.sqrt(1 + (k * hx) ** 2 + (k * hy) ** 2)
            L = nz["light"].astype(np.float32)
            lam = (-k * hx * col(L[:, 0]) - k * hy * col(L[:, 1]) + col(L[:, 2])) / norm
            img = alb * (0.3 + 0.75 * np.clip(lam, 0, 1))[..., None]
            bg = p["bg"] * nz["bg"] * (1 + 0.15 * c[None, :, None, None])
            img = (face[..., None] * (img - bg) + bg) * nz["gain"] + 0.02 * diff["noise"] * noise
            out[m] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
        elif m == "depth":
            val = face * (col(nz["depth"]) + 170 * geo["h"]) + 1.5 * diff["noise"] * noise[..., 0] * face
            k_hole = rngs[m].random((n, 4)) < 0.35 * diff["holes"]
            hc = rngs[m].uniform(-0.6, 0.6, (n, 4, 2)).astype(np.float32)
            rad = rngs[m].uniform(0.03, 0.1, (n, 4)).astype(np.float32)
            d2 = (c[None, None, None, :] - hc[..., 0, None, None]) ** 2 + (
                c[None, None, :, None] - hc[..., 1, None, None]
            ) ** 2
            val = np.where(((d2 < rad[..., None, None] ** 2) & k_hole[..., None, None]).any(1), 0, val)
            out[m] = np.clip(val + 0.5, 0, 255).astype(np.uint8)[..., None]
        else:
            aX, my, ny, by = np.abs(X), p["mouth_y"], p["nose_y"], p["brow_y"]
            warm = (
                1.0 * E["AU4"] * _g(X, 0, 0.25) * _g(Y, by - 0.1, 0.15)
                + 0.8 * (E["AU1"] * _g(X, 0, 0.3) + E["AU2"] * _g(aX, 0.45, 0.2)) * _g(Y, -0.62, 0.15)
                + 1.0 * E["AU6"] * _g(aX, 0.42, 0.17) * _g(Y, 0.15, 0.15)
                + 1.3 * E["AU7"] * _g(aX, p["eye_x"], 0.15) * _g(Y, p["eye_y"], 0.08)
                + 1.3 * E["AU10"] * _g(aX, 0.15, 0.1) * _g(Y, ny + 0.05, 0.1)
                + 1.1 * E["AU12"] * _g(aX, geo["mw"] + 0.05, 0.12) * _g(Y, my - 0.05, 0.12)
                + 2.0 * E["AU14"] * _g(aX, geo["mw"] + 0.05, 0.08) * _g(Y, my, 0.08)
                + 1.3 * E["AU15"] * _g(aX, geo["mw"], 0.1) * _g(Y, my + 0.1, 0.1)
                + 1.3 * E["AU17"] * _g(X, 0, 0.18) * _g(Y, 0.82, 0.12)
                + 1.0 * (E["AU23"] + E["AU24"]) * _g(X, 0, 0.3) * _g(Y, my, 0.12)
            )
            pat = (
                -p["t_nose"] * _g(X, 0, 0.1) * _g(Y, ny, 0.1)
                + p["t_eye"] * _g(aX, p["eye_x"] - 0.1, 0.08) * _g(Y, p["eye_y"], 0.07)
                + p["t_fore"] * _g(X, 0, 0.4) * _g(Y, -0.6, 0.2)
                + 0.6 * _waves(X, Y, *p["t_tex"])
                - 1.5 * (X**2 + Y**2) ** 2
            )
            skin = p["t_base"] + pat + warm + col(nz["t_drift"]) - 2.0 * hair
            amb = nz["ambient"] + 0.5 * c[None, :, None]
            temp = face * (skin - amb) + amb
            temp = _blur_matrix(size) @ temp @ _blur_matrix(size).T + 0.07 * diff["noise"] * noise[..., 0]
            out[m] = np.clip((temp - 21) * 14 + 0.5, 0, 255).astype(np.uint8)[..., None]
    return out


def sequence(spec: SynthSpec, s: int, t: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(latent, labels, images) of subject index s, task index t."""
    lab_rng = _rng(spec.seed, 1, s, t)
    latent = sample_latent(lab_rng, t, spec.frames)
    labels = latent_to_labels(latent, lab_rng)
    nz = sample_nuisance(spec.seed, s, t, spec.frames, DIFFICULTY[spec.difficulty]["nuisance"])
    rngs = {m: _rng(spec.seed, 4, s, t, i) for i, m in enumerate(MODALITIES)}
    return latent, labels, render_sequence(make_subject(spec.seed, s), latent, nz, spec, rngs)


# ---------------------------------------------------------------------------------------------
# dataset


def source_of(spec: SynthSpec) -> dict[str, Any]:
    return {"generator": "farm.data.synth", "version": VERSION, **asdict(spec), "modalities": list(spec.modalities)}


def generate(spec: SynthSpec, out: str | Path, progress: bool = True) -> DatasetMeta:
    """Write the synthetic dataset of `spec` to `out` (or reuse an identical one already there)."""
    out, source = Path(out), source_of(spec)
    existing = claim_output(out, source, "synthetic")
    if existing is not None:
        return existing
    meta = DatasetMeta(
        name="synthetic",
        modalities=tuple(ModalitySpec(m, CHANNELS[m], spec.size, spec.size) for m in spec.modalities),
        aus=BP4D_AUS,
        codec="raw",
        subjects={subject_name(i): {"sex": "FM"[i % 2]} for i in range(spec.subjects)},
        source=source,
    )
    writer = DatasetWriter(out, meta)
    frames = np.arange(spec.frames)
    with tqdm(total=spec.subjects * spec.tasks, desc="synth", disable=not progress) as bar:
        for s in range(spec.subjects):
            for t in range(spec.tasks):
                _, labels, images = sequence(spec, s, t)
                writer.add(subject_name(s), f"T{t + 1}", frames, labels, images)
                bar.update()
    return writer.close()
