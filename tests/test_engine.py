"""The training engine in-process on a tiny hand-made dataset: mechanics, hooks, resume."""

import json

import pytest
import torch

from farm.config import unflatten
from farm.engine import fit_fold

FAST = {
    "model.backbone": "resnet10",
    "amf.num_samples": 3,
    "train.batch_size": 8,
    "train.eval_batch_size": 16,
    "train.device": "cpu",
    "data.val_fraction": 0.25,
}


def _cfg(path, **kw):
    return unflatten({**FAST, "data.path": str(path), **kw})


class RecordingTracker:
    def __init__(self):
        self.params, self.metrics = {}, []

    def log_params(self, params):
        self.params.update(params)

    def log_metrics(self, metrics, step=None):
        self.metrics.append((step, dict(metrics)))


def test_fit_fold_runs_reports_and_tracks(tiny_dataset, tmp_path):
    reports, tracker = [], RecordingTracker()
    cfg = _cfg(tiny_dataset, **{"train.epochs": 2, "model.fusion": "amf", "data.fold": "P2"})
    result = fit_fold(
        cfg,
        report=lambda m, checkpoint=None: reports.append((m, checkpoint)),
        tracker=tracker,
        checkpoint_dir=tmp_path / "ckpt",
        log=lambda s: None,
    )
    assert result.fold == "P2" and result.epochs_run == 2 and len(result.history) == 2
    split = result.split
    assert not set(split["train"]) & set(split["test"]) and not set(split["val"]) & set(split["test"])
    assert not set(split["train"]) & set(split["val"])
    assert set(result.test["f1"]) == set(cfg.data.aus) and 0 <= result.test["f1_mean"] <= 1
    c = result.test["counts"]["AU1"]
    assert sum(c.values()) == 20  # 2 test subjects x 10 frames, all AU1 labels known
    assert [m["epoch"] for m, _ in reports] == [0, 1] and all(ck == str(tmp_path / "ckpt") for _, ck in reports)
    assert "val/f1_mean" in reports[0][0] and "train/loss_guide/visual" in reports[0][0]
    assert tracker.params["amf.num_samples"] == 3
    assert [s for s, _ in tracker.metrics[:2]] == [0, 1] and "test/f1_mean" in tracker.metrics[-1][1]
    data = json.loads(result.to_json())
    assert {"fusion", "fold", "test", "val", "epochs_run", "config"} <= set(data)
    assert (tmp_path / "ckpt" / "last.pt").exists() and (tmp_path / "ckpt" / "best.pt").exists()
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and state["config"]["model"]["fusion"] == "amf"


def test_resume_continues_from_last_checkpoint(tiny_dataset, tmp_path):
    ckpt = tmp_path / "ckpt"
    first = fit_fold(
        _cfg(tiny_dataset, **{"train.epochs": 1, "model.fusion": "late"}), checkpoint_dir=ckpt, log=lambda s: None
    )
    logs = []
    second = fit_fold(
        _cfg(tiny_dataset, **{"train.epochs": 3, "model.fusion": "late"}), checkpoint_dir=ckpt, log=logs.append
    )
    assert any("resumed" in line for line in logs)
    assert second.epochs_run == 3
    assert second.history[0] == first.history[0], "the first epoch is not re-run"
    best = second.history[second.best_epoch]
    assert second.val["f1_mean"] == best["val/f1_mean"], "val summary is the chosen epoch's, also across a resume"


def test_empty_partition_or_bad_crop_is_a_clear_error(tiny_dataset):
    with pytest.raises(ValueError, match="crop_size 64 exceeds the 20x20"):
        fit_fold(_cfg(tiny_dataset, **{"augment.crop_size": 64}), log=lambda s: None)
    with pytest.raises(ValueError, match="unknown fold 'P7'"):
        fit_fold(_cfg(tiny_dataset, **{"data.fold": "P7"}), log=lambda s: None)


def test_divergence_is_detected_from_loss_weights_and_bound():
    from farm.engine import TrainingDiverged, check_divergence

    model = torch.nn.Linear(2, 2)
    ok = {"train/loss": 5.0, "train/loss_first_batch": 4.0}
    check_divergence(model, ok, initial_loss=4.0, factor=100, epoch=0, fold="P1")  # a sane epoch passes
    with pytest.raises(TrainingDiverged, match=r"fold P1: training diverged in epoch 3: mean training loss 500"):
        check_divergence(model, {"train/loss": 500.0}, initial_loss=4.0, factor=100, epoch=3, fold="P1")
    check_divergence(model, {"train/loss": 500.0}, initial_loss=4.0, factor=0, epoch=3, fold="P1")  # bound off
    with pytest.raises(TrainingDiverged, match="training loss is nan"):
        check_divergence(model, {"train/loss": float("nan")}, initial_loss=4.0, factor=0, epoch=1, fold="P1")
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    with pytest.raises(TrainingDiverged, match="weight weight is not finite"):
        check_divergence(model, ok, initial_loss=4.0, factor=100, epoch=2, fold="P1")


def test_fit_fold_ends_a_blown_up_run_with_training_diverged(tiny_dataset):
    from farm.engine import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="epoch 0"):
        fit_fold(_cfg(tiny_dataset, **{"train.epochs": 2, "model.fusion": "late", "train.lr": 1e6}), log=lambda s: None)
