"""Training and evaluation of one subject-exclusive fold. Plain PyTorch: no Ray, Optuna or MLflow.

`fit_fold(cfg)` trains on the fold's training subjects, early-stops on its validation subjects
(carved from the training subjects), then evaluates the best epoch's weights once on the test
partition. The farm plugs in through two arguments, both no-ops by default:
- `report(metrics, checkpoint)`: called once per epoch with the epoch's metrics and the directory
  of the epoch checkpoint (Ray Train's `report`);
- `tracker`: an object with `log_params`, `log_metrics` (MLflow).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader

from farm.checkpoints import (
    BEST_FILE,
    BEST_KEYS,
    LAST_FILE,
    LAST_KEYS,
    PREDICTIONS_FILE,
    CheckpointError,
    InputSpec,
    load_checkpoint,
    predictions_table,
    save_checkpoint,
)
from farm.config import Config, ConfigError, flatten, resolve_num_workers, to_dict
from farm.data.augment import scaled_block
from farm.data.dataset import FrameDataset, collate_encoded
from farm.data.device_augment import augment_batch, decode_crops, in_memory_format, normalize_batch
from farm.data.folds import Split, make_split, redraw_partitions, resolve_partitions
from farm.data.perturb import Condition, condition_probs, conditions, draw_noise, drop_modalities, metric_suffix
from farm.data.store import FrameStore
from farm.files import atomic_path
from farm.metrics import all_positive_f1, au_counts, summarize
from farm.models import FusionModel, build_model, check_modality_options, fusion_modalities


class Tracker(Protocol):
    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...


class NullTracker:
    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass


Report = Callable[..., None]


def no_report(metrics: dict[str, float], checkpoint: str | None = None) -> None:
    pass


class TrainingDiverged(RuntimeError):
    """The loss or a weight became non-finite, or the loss exploded (see `check_divergence`); the message says
    which fold, epoch and value."""


@dataclass
class FoldResult:
    fusion: str
    fold: str
    test: dict
    val: dict
    epochs_run: int
    best_epoch: int
    config: dict
    split: dict = field(default_factory=dict)
    data_hash: str = ""
    baseline_all_positive: float = float("nan")
    """Test F1 of predicting every AU present, on the same frames: the floor to beat."""
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    val_robustness: dict[str, float] = field(default_factory=dict)
    """Best epoch's validation F1 under each robustness condition: {'val/f1_missing_depth': ..., ...}."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""`train.precision` -> the autocast dtype of forward passes and losses (None: plain float32)."""


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's mixed-precision context for `train.precision` (a no-op for fp32)."""
    dtype = AUTOCAST_DTYPES[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def check_precision(precision: str, device: torch.device) -> None:
    """fp16 autocast needs a GradScaler and CUDA; on the CPU it is refused (bf16 works there)."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.precision: fp16 needs a CUDA device, this fold runs on {device}; "
                          "use bf16 or fp32")  # fmt: skip


def fold_split(cfg: Config, store: FrameStore) -> tuple[Split, dict[str, str]]:
    """The fold's split and a record of the partitions it came from (source, hash, notes)."""
    parts, notes = resolve_partitions(store.meta, set(store.subjects), cfg.data.fold_file)
    standard = parts.source_hash or parts.hash  # the partitions list as shipped or given
    parts = redraw_partitions(parts, store.meta.subjects, cfg.data.partition)
    split = make_split(parts.parts, cfg.data.fold, cfg.data.val_fraction, cfg.data.split_seed)
    # the split hash covers the subjects used; partition r >= 1 records the redrawn list's own hash too
    return split, {
        "partitions": parts.source,
        "partitions_hash": standard,
        "partition": cfg.data.partition,
        **({"partition_hash": parts.hash} if cfg.data.partition else {}),
        "notes": " ".join(notes),
    }


def crop_size(cfg: Config, store: FrameStore, modalities: tuple[str, ...]) -> int:
    if cfg.augment.crop_size:
        return cfg.augment.crop_size
    side = min(min(store.meta.modality(m).height, store.meta.modality(m).width) for m in modalities)
    return round(side * 224 / 256)  # the paper's 224 crop of 256 faces


def input_spec(cfg: Config, store: FrameStore, modalities: tuple[str, ...]) -> InputSpec:
    """What the fold's model reads, saved with its checkpoint so it can be used without the dataset."""
    first = store.meta.modality(modalities[0])
    return InputSpec(modalities, {m: store.meta.modality(m).channels for m in modalities}, first.height, first.width,
                     crop_size(cfg, store, modalities), tuple(cfg.data.aus))  # fmt: skip


def build_loaders(
    cfg: Config, store: FrameStore, split: Split, modalities: tuple[str, ...], *,
    train_sampler: torch.utils.data.Sampler | None = None, pin_memory: bool | None = None,
) -> dict[str, DataLoader]:  # fmt: skip
    """train / val / test loaders of a fold. `train_sampler` replaces the shuffled pass (benchmarks draw with
    replacement); `pin_memory` defaults to whether CUDA is available."""
    crop = crop_size(cfg, store, modalities)
    uint8 = cfg.data.augment_on == "device"  # uint8 crops (+ the decisions) from the workers; see to_device_inputs
    encoded = cfg.data.decode == "device"  # JPEG bytes (+ crop windows) from the workers, decoded on the device
    common = dict(store=store, modalities=modalities, aus=cfg.data.aus, crop=crop, uint8=uint8, encoded=encoded)
    sets = {
        "train": FrameDataset(subjects=split.train, train=True, flip=cfg.augment.flip,
                              cut_switch_block=scaled_block(cfg.augment.cut_switch_block, crop),
                              cut_switch_prob=cfg.augment.cut_switch_prob, **common),
        "val": FrameDataset(subjects=split.val, **common),
        "test": FrameDataset(subjects=split.test, **common),
    }  # fmt: skip
    for name, ds in sets.items():
        if len(ds) == 0:
            raise ValueError(f"fold {split.fold}: the {name} subjects have no frames in {store.root}")
    workers = resolve_num_workers(cfg.data.num_workers)  # -1: this machine's cores (a sweep resolves it per fold)
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    loader_args = dict(num_workers=workers, pin_memory=pin, persistent_workers=workers > 0,
                       collate_fn=collate_encoded if encoded else None)  # fmt: skip
    gen = torch.Generator().manual_seed(cfg.train.seed)
    order = dict(sampler=train_sampler) if train_sampler is not None else dict(shuffle=True, generator=gen)
    return {
        "train": DataLoader(sets["train"], batch_size=cfg.train.batch_size, drop_last=len(sets["train"]) > cfg.train.batch_size, **order, **loader_args),
        "val": DataLoader(sets["val"], batch_size=cfg.train.eval_batch_size, shuffle=False, **loader_args),
        "test": DataLoader(sets["test"], batch_size=cfg.train.eval_batch_size, shuffle=False, **loader_args),
    }  # fmt: skip


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)


def build_training(
    cfg: Config, store: FrameStore, modalities: tuple[str, ...], device: torch.device
) -> tuple[FusionModel, torch.optim.Optimizer, torch.amp.GradScaler | None, dict[str, Any]]:
    """What a fold trains with: the model on `device` (channels-last weights if asked), its optimizer, the fp16
    GradScaler (else None) and the compute settings train/predict take (`precision`, `channels_last`)."""
    check_precision(cfg.train.precision, device)
    model = build_model(cfg, {m: store.meta.modality(m).channels for m in modalities}, len(cfg.data.aus)).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)  # conv weights; the inputs follow in to_device_inputs
    scaler = torch.amp.GradScaler(device.type) if cfg.train.precision == "fp16" else None
    compute = dict(precision=cfg.train.precision, channels_last=cfg.train.channels_last)
    return model, build_optimizer(cfg, model), scaler, compute


def to_device_inputs(
    x: dict[str, torch.Tensor], device: torch.device, aug: dict[str, torch.Tensor] | None = None,
    channels_last: bool = False,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """A loader batch's inputs on the device as the model takes them: normalised (B, C, H, W) float32.

    uint8 crops (`data.augment_on: device`) are normalised here, and with the workers' decisions `aug` flipped and
    cut-switched (farm/data/device_augment.py); JPEG bytes (`data.decode: device`, `aug` then holds the crop
    "window") are decoded on the device first; `channels_last` puts them in that memory format.
    """
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if aug is not None and "window" in aug:  # JPEG bytes (`data.decode: device`): decoded and cropped here
        aug = dict(aug)
        x = decode_crops(x, aug.pop("window"), aug.pop("row"), device)
        aug = aug or None  # an evaluation batch: no decisions
    else:
        x = {m: t.to(device, non_blocking=True) for m, t in x.items()}
    if aug is not None:
        x = augment_batch(x, **aug)  # the decisions stay on the CPU: no device sync there
    elif next(iter(x.values())).dtype == torch.uint8:  # evaluation crops of the device path
        x = {m: normalize_batch(t, fmt) for m, t in x.items()}
    return {m: in_memory_format(t, fmt) for m, t in x.items()}  # no copy when already so


def _to_device(
    x: dict[str, torch.Tensor], y: torch.Tensor, device: torch.device, aug: dict[str, torch.Tensor] | None = None,
    channels_last: bool = False,
):  # fmt: skip
    x = to_device_inputs(x, device, aug, channels_last)
    y = y.to(device, non_blocking=True)
    return x, (y == 1).float(), (y >= 0).float()  # inputs, target, mask (0 = unknown label)


def train_step(
    model: FusionModel, optimizer: torch.optim.Optimizer, x: dict[str, torch.Tensor], target: torch.Tensor,
    mask: torch.Tensor, precision: str = "fp32", scaler: torch.amp.GradScaler | None = None,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """One optimiser step on one batch; returns the loss parts as float32 device tensors (no host sync).

    Forward and loss run under `autocast(precision)`; `scaler` (fp16) scales the loss and skips steps whose
    gradients overflowed."""
    with autocast(target.device, precision):
        out = model(x)
        loss, parts = model.loss(out, target, mask)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return {k: v.float() for k, v in parts.items()}  # summed over an epoch: not in bf16 / fp16


def train_one_epoch(
    model: FusionModel, loader: DataLoader, optimizer: torch.optim.Optimizer, device: torch.device,
    epoch: int, max_batches: int = 0, batch_transform: Callable[[dict], dict] | None = None, *,
    precision: str = "fp32", channels_last: bool = False, scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:  # fmt: skip
    """Mean loss parts over the epoch; `train/loss_first_batch` is the loss of its first batch (one host sync).

    A batch is (inputs, labels) or, from `data.augment_on: device`, (uint8 crops, labels, decisions): see
    `to_device_inputs`. `batch_transform` acts on the normalised inputs on the device (modality dropout)."""
    model.train()
    steps = len(loader) if not max_batches else min(max_batches, len(loader))
    sums: dict[str, torch.Tensor] = {}
    first = float("nan")
    frames, t0 = 0, time.perf_counter()
    for step, (x, y, *aug) in enumerate(loader):
        if step >= steps:
            break
        model.set_progress(epoch + step / steps)
        x, target, mask = _to_device(x, y, device, *aug, channels_last=channels_last)
        if batch_transform is not None:
            x = batch_transform(x)
        parts = train_step(model, optimizer, x, target, mask, precision, scaler)
        frames += len(y)
        if step == 0:
            first = float(parts["loss"])
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
    metrics = {f"train/{k}": float(v) / steps for k, v in sums.items()}  # one host sync per epoch
    metrics["train/loss_first_batch"] = first
    # loader + device copy + step, end to end (the sync above waited for the device's last step)
    metrics["time/train_frames_per_s"] = frames / max(time.perf_counter() - t0, 1e-9)
    if hasattr(model, "tau"):
        metrics["train/tau"] = float(model.tau)
    return metrics


def check_divergence(model: torch.nn.Module, metrics: dict[str, float], initial_loss: float, factor: float,
                     epoch: int, fold: str) -> None:  # fmt: skip
    """Raise TrainingDiverged if the loss or a weight is not finite, or the epoch's mean training loss exceeds
    `factor` x the untrained model's loss (`initial_loss`, the very first batch's; factor 0 = off)."""
    loss = metrics["train/loss"]
    where = f"fold {fold}: training diverged in epoch {epoch}"
    if not math.isfinite(loss) or not math.isfinite(metrics.get("train/loss_first_batch", 0.0)):
        raise TrainingDiverged(f"{where}: the training loss is {loss}; lower train.lr")
    bad = next((n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())), None)
    if bad is not None:
        raise TrainingDiverged(f"{where}: weight {bad} is not finite (a non-finite gradient); lower train.lr")
    if factor and math.isfinite(initial_loss) and initial_loss > 0 and loss > factor * initial_loss:
        raise TrainingDiverged(f"{where}: mean training loss {loss:.3g} is {loss / initial_loss:.3g}x the untrained "
                               f"model's {initial_loss:.3g} (train.divergence_factor = {factor:g}); lower train.lr")  # fmt: skip


@torch.no_grad()
def robustness_f1(
    model: FusionModel, loader: DataLoader, device: torch.device, conds: list[Condition], aus: tuple[str, ...],
    seed: int = 0, *, precision: str = "fp32", channels_last: bool = False, cached: bool = True,
) -> dict[str, float]:  # fmt: skip
    """AU-mean F1 under each condition, every batch decoded once for all conditions: {'val/f1_<condition>': F1}.

    The noise of modality m at sigma comes from a generator seeded with (seed, j), j the first condition putting
    it there (`draw_noise`), so it is the same in every run. `cached`: each backbone runs once per distinct input
    and the fusion head once per condition (`condition_probs`; early fusion runs its whole forward anyway).
    """
    model.eval()
    gens = [torch.Generator().manual_seed(seed * 100_003 + j) for j in range(len(conds))]
    counts = {c: np.zeros((len(aus), 4), np.int64) for c in conds}
    for x, y, *aug in loader:
        xd = to_device_inputs(x, device, *aug, channels_last=channels_last)
        labels = y.numpy()
        probs = condition_probs(model, xd, conds, draw_noise(xd, conds, gens), lambda: autocast(device, precision),
                                cached)  # fmt: skip
        for cond in conds:
            counts[cond] += au_counts(probs[cond].float().cpu().numpy(), labels)
    return {f"val/f1_{metric_suffix(c)}": summarize(counts[c], aus)["f1_mean"] for c in conds}


def val_conditions(cfg: Config, modalities: tuple[str, ...]) -> list[Condition]:
    """The robustness conditions a fold measures on its validation subjects (none for one modality's missing)."""
    kinds = set(cfg.train.val_robustness)
    return [c for c in conditions(modalities, cfg.train.val_noise_sigmas) if c.kind in kinds]


@torch.no_grad()
def predict(
    model: FusionModel, loader: DataLoader, device: torch.device, *, precision: str = "fp32",
    channels_last: bool = False,
) -> tuple[np.ndarray, np.ndarray, float]:  # fmt: skip
    """-> probabilities (N, A), labels (N, A) in {1, 0, -1}, mean loss."""
    model.eval()
    probs, labels, loss_sum, n = [], [], 0.0, 0
    for x, y, *aug in loader:
        xd, target, mask = _to_device(x, y, device, *aug, channels_last=channels_last)
        with autocast(device, precision):
            out = model(xd)
            loss, _ = model.loss(out, target, mask)
        probs.append(out["probs"].float().cpu().numpy())
        labels.append(y.numpy())
        loss_sum += float(loss) * len(y)
        n += len(y)
    return np.concatenate(probs), np.concatenate(labels), loss_sum / max(n, 1)


def fit_fold(
    cfg: Config,
    *,
    report: Report = no_report,
    tracker: Tracker | None = None,
    checkpoint_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> FoldResult:
    """Train, early-stop on validation F1, test the best epoch. Resumes from `checkpoint_dir/last.pt`."""
    start = time.time()
    tracker = tracker or NullTracker()
    torch.manual_seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    store = FrameStore(cfg.data.path)
    modalities = fusion_modalities(cfg.model.fusion, cfg.data.modalities, store.meta.modality_names)
    check_modality_options(cfg, modalities, store.meta.modality_names)
    split, provenance = fold_split(cfg, store)
    if provenance["notes"]:
        log(provenance["notes"])
    loaders = build_loaders(cfg, store, split, modalities)
    device = resolve_device(cfg.train.device)
    model, optimizer, scaler, compute = build_training(cfg, store, modalities, device)
    tracker.log_params(flatten(cfg))
    spec = input_spec(cfg, store, modalities)

    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    history: list[dict[str, float]] = []
    best_f1, best_epoch, first_epoch, best_state, best_val = -1.0, -1, 0, None, {}
    initial_loss = float("nan")  # the untrained model's training loss: the divergence bound's reference
    if ckpt and (ckpt / LAST_FILE).exists():
        state = load_checkpoint(ckpt / LAST_FILE, device, LAST_KEYS)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{ckpt / LAST_FILE}: does not fit this fold's model and optimizer (another "
                                  f"configuration's checkpoint? {type(e).__name__}: {str(e)[:200]})") from None  # fmt: skip
        history, best_f1, best_epoch, best_val = (
            state["history"],
            state["best_f1"],
            state["best_epoch"],
            state["best_val"],
        )
        first_epoch = state["epoch"] + 1
        initial_loss = float(state.get("initial_loss", float("nan")))
        torch.set_rng_state(state["rng"].cpu())  # loaded onto `device`; the CPU generator wants it back
        if scaler is not None and "scaler" in state:  # fp16: the loss scale found so far
            scaler.load_state_dict(state["scaler"])
        if "loader_rng" in state and loaders["train"].generator is not None:  # the shuffling order goes on, too
            loaders["train"].generator.set_state(state["loader_rng"].cpu())
        log(f"resumed fold {split.fold} from {ckpt / LAST_FILE} after epoch {state['epoch']}")
    if ckpt:
        ckpt.mkdir(parents=True, exist_ok=True)

    dropout = None
    if cfg.augment.modality_dropout > 0 and len(modalities) > 1:  # beyond the paper; the same zeros as 'missing'
        p, only = cfg.augment.modality_dropout, tuple(cfg.augment.modality_dropout_only)
        dropout = lambda x: drop_modalities(x, p, only=only)  # noqa: E731 - the global RNG: seeded, resumed
    log(f"fold {split.fold}: {len(loaders['train'].dataset)} train / {len(loaders['val'].dataset)} val / "
        f"{len(loaders['test'].dataset)} test frames; {cfg.model.fusion} on {', '.join(modalities)}; {device}")  # fmt: skip
    for epoch in range(first_epoch, cfg.train.epochs):
        if epoch - best_epoch > cfg.train.patience and best_epoch >= 0:
            break
        t0 = time.time()
        trained = train_one_epoch(model, loaders["train"], optimizer, device, epoch, cfg.train.max_train_batches,
                                  batch_transform=dropout, scaler=scaler, **compute)  # fmt: skip
        metrics = {"epoch": epoch, **trained}
        first_batch = metrics.pop("train/loss_first_batch")
        if epoch == 0:
            initial_loss = first_batch
        check_divergence(model, metrics, initial_loss, cfg.train.divergence_factor, epoch, split.fold)
        probs, labels, val_loss = predict(model, loaders["val"], device, **compute)
        val = summarize(au_counts(probs, labels), cfg.data.aus)
        metrics.update(
            {"val/loss": val_loss, "val/f1_mean": val["f1_mean"], **{f"val/f1_{au}": f for au, f in val["f1"].items()}}
        )
        metrics["time/epoch_s"] = time.time() - t0
        history.append(metrics)
        improved = val["f1_mean"] > best_f1
        if improved:
            best_f1, best_epoch, best_val = val["f1_mean"], epoch, val
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        log(f"epoch {epoch:3d}  train/loss {metrics['train/loss']:.4f}  val/loss {val_loss:.4f}  "
            f"val/f1 {val['f1_mean']:.3f}{'  *' if improved else ''}  ({metrics['time/epoch_s']:.1f}s)")  # fmt: skip
        tracker.log_metrics({**{k: v for k, v in metrics.items() if k != "epoch"}, "val/f1_best": best_f1}, step=epoch)
        if ckpt:
            if improved:
                save_checkpoint({"model": best_state, "config": to_dict(cfg), "input": spec.to_dict(), "epoch": epoch,
                       "val_f1": best_f1}, ckpt / BEST_FILE)  # fmt: skip
            save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": to_dict(cfg), "epoch": epoch,
                   "history": history, "best_f1": best_f1, "best_epoch": best_epoch, "best_val": best_val,
                   "rng": torch.get_rng_state(), "initial_loss": initial_loss,
                   **({"scaler": scaler.state_dict()} if scaler is not None else {}),
                   **({"loader_rng": loaders["train"].generator.get_state()} if loaders["train"].generator is not None else {})},
                  ckpt / LAST_FILE)  # fmt: skip
        report(metrics, checkpoint=str(ckpt) if ckpt else None)

    if best_state is None and ckpt and (ckpt / BEST_FILE).exists():  # resumed after the last improvement
        best_state = load_checkpoint(ckpt / BEST_FILE, device, BEST_KEYS)["model"]
    if best_state is None:
        raise RuntimeError(f"fold {split.fold}: no epoch was trained (train.epochs={cfg.train.epochs})")
    model.load_state_dict(best_state)
    probs, labels, _ = predict(model, loaders["test"], device, **compute)
    test = summarize(au_counts(probs, labels), cfg.data.aus)
    if ckpt:  # per-frame test predictions: the subject-level bootstrap of `farm promote` reads them
        ids = store.frame_ids(loaders["test"].dataset.indices)
        table = predictions_table(ids["subject"], ids["task"], ids["frame"], probs, labels, cfg.data.aus, split.fold,
                                  partition=cfg.data.partition or None)  # fmt: skip
        with atomic_path(ckpt / PREDICTIONS_FILE) as tmp:  # a new file: a round's hard link keeps its version
            pq.write_table(table, tmp)
    tracker.log_metrics({"test/f1_mean": test["f1_mean"], **{f"test/f1_{au}": f for au, f in test["f1"].items()}})
    val_robust: dict[str, float] = {}
    conds = val_conditions(cfg, modalities)
    if conds:  # the best epoch on VALIDATION subjects: what a search may see (never the test subjects)
        t0 = time.time()
        val_robust = robustness_f1(model, loaders["val"], device, conds, tuple(cfg.data.aus), cfg.amf.eval_seed,
                                   **compute)  # fmt: skip
        tracker.log_metrics({**val_robust, "time/val_robustness_s": time.time() - t0})
        how = "cached features" if model.feature_modalities else "full forward each: early fusion cannot split"
        log(f"validation robustness ({len(conds)} conditions, {how}, {time.time() - t0:.1f}s): worst missing "
            f"{min((v for k, v in val_robust.items() if 'missing' in k), default=float('nan')):.3f}")  # fmt: skip
    return FoldResult(
        fusion=cfg.model.fusion, fold=split.fold, test=test, val=best_val, epochs_run=len(history), best_epoch=best_epoch,
        config=to_dict(cfg), split={**split.to_dict(), **provenance}, data_hash=store.meta.data_hash,
        baseline_all_positive=all_positive_f1(labels), history=history, seconds=time.time() - start,
        val_robustness=val_robust,
    )  # fmt: skip
