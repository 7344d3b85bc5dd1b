"""Trained fold models as a predictor: load, preprocess raw images, predict, perturb inputs.

Plain PyTorch/NumPy/PyArrow (no MLflow): `farm promote` packages a `FoldEnsemble` as an MLflow
model, `farm predict` and `farm robustness` use it, and so can a script.

- A fold model is the best-validation epoch of one cross-validation fold (`best.pt`); its test
  subjects were never seen in its training or early stopping (under the joint protocol the choice of
  configuration did see them, as other folds' validation subjects; a nested sweep's selection did not).
- `FoldEnsemble` averages the fold models' probabilities. On new subjects this is the registered
  model (docs/registry.md says why an ensemble rather than a refit); on a fold's own test subjects
  use that fold's model alone (`predict_tensors(..., fold=...)`), as the robustness study does.
- Inputs are the prepared dataset's images, uint8 (N, H, W, C); the ensemble resizes them to the
  training size if they differ, centre-crops and normalises to [-1, 1] exactly as evaluation does.
- A missing modality is all zeros after normalisation (DOMAIN.md section 1, the paper's Fig. 4);
  `perturb` also adds the Gaussian noise of Fig. 5.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from farm.checkpoints import InputSpec, load_checkpoint, read_fold_models, save_fold_models
from farm.config import from_dict
from farm.data.perturb import Condition, Noise, condition_probs
from farm.models import FusionModel, build_model


class ModelInputError(ValueError):
    """Inputs that do not fit the model (a missing modality, a wrong shape or type): the message says which."""


# ---------------------------------------------------------------------------------------------
# models


def rebuild_model(config: dict, spec: InputSpec) -> FusionModel:
    """The fold's architecture from its saved config, never downloading weights (they come from the checkpoint)."""
    cfg = from_dict(config, {"model.pretrained": "none"})
    return build_model(cfg, {m: spec.channels[m] for m in spec.modalities}, len(spec.aus))


@dataclass
class FoldEnsemble:
    """The fold models of one configuration; probabilities averaged over folds."""

    models: dict[str, FusionModel]
    spec: InputSpec
    config: dict
    test_subjects: dict[str, tuple[str, ...]] = field(default_factory=dict)
    device: torch.device = torch.device("cpu")

    def __post_init__(self) -> None:
        for m in self.models.values():
            m.to(self.device).eval()

    @classmethod
    def from_checkpoints(
        cls, checkpoints: dict[str, str | Path], spec: InputSpec, test_subjects: dict[str, tuple[str, ...]] | None = None,
        device: torch.device | str = "cpu",
    ) -> FoldEnsemble:  # fmt: skip
        """{fold: best.pt} (as written by the engine) -> ensemble."""
        models, config = {}, None
        for fold, path in checkpoints.items():
            state = load_checkpoint(path, device)
            config = state["config"]
            model = rebuild_model(config, spec)
            try:
                model.load_state_dict(state["model"])
            except RuntimeError as e:
                raise ValueError(f"{path}: weights do not fit the model of its config ({e})") from None
            models[fold] = model
        if not models:
            raise ValueError("no fold checkpoints given")
        return cls(models, spec, config, dict(test_subjects or {}), torch.device(device))

    def save(self, out: str | Path, extra: dict | None = None) -> Path:
        """<out>/model.json and <out>/<fold>.pt (state dicts only): the registered model's artifacts."""
        states = {fold: model.state_dict() for fold, model in self.models.items()}
        return save_fold_models(out, states, self.spec, self.config, self.test_subjects, extra)

    @classmethod
    def load(cls, root: str | Path, device: torch.device | str = "cpu") -> FoldEnsemble:
        info, states = read_fold_models(root, device)
        spec = InputSpec.from_dict(info["input"])
        models = {}
        for fold, state in states.items():
            models[fold] = rebuild_model(info["config"], spec)
            try:
                models[fold].load_state_dict(state)
            except RuntimeError as e:
                raise ValueError(
                    f"{Path(root) / f'{fold}.pt'}: weights do not fit the model of its config ({e})"
                ) from None
        subjects = {k: tuple(v) for k, v in info.get("test_subjects", {}).items()}
        return cls(models, spec, info["config"], subjects, torch.device(device))

    # -- inputs -----------------------------------------------------------------------------

    def preprocess(self, images: dict[str, np.ndarray], missing: Iterable[str] = ()) -> dict[str, torch.Tensor]:
        """uint8 (N, H, W, C) per modality -> normalised (N, C, crop, crop) tensors; `missing` modalities -> zeros.

        A modality absent from `images` must be named in `missing`. Images of another size are
        resized (bilinear) to the training size first.
        """
        missing = set(missing)
        unknown = sorted(missing - set(self.spec.modalities))
        if unknown:
            raise ModelInputError(
                f"missing modalities {unknown} are not inputs of this model ({list(self.spec.modalities)})"
            )
        absent = [m for m in self.spec.modalities if m not in images and m not in missing]
        if absent:
            raise ModelInputError(f"no input for modality {', '.join(absent)} (pass it, or declare it missing)")
        n = {len(images[m]) for m in self.spec.modalities if m not in missing}
        if len(n) > 1:
            raise ModelInputError(f"modalities have different frame counts: {sorted(n)}")
        count = n.pop() if n else 0
        s, c = self.spec, self.spec.crop
        out = {}
        for m in s.modalities:
            if m in missing:
                out[m] = torch.zeros(count, s.channels[m], c, c, device=self.device)
                continue
            x = np.asarray(images[m])
            if x.ndim == 3 and s.channels[m] == 1:
                x = x[..., None]
            if x.ndim != 4 or x.shape[-1] != s.channels[m]:
                raise ModelInputError(f"{m}: expected uint8 images (N, H, W, {s.channels[m]}), got shape {x.shape}")
            t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device).permute(0, 3, 1, 2).float()  # (N, C, H, W)
            if t.shape[-2:] != (s.height, s.width):
                t = F.interpolate(t, size=(s.height, s.width), mode="bilinear", align_corners=False)
            top, left = (s.height - c) // 2, (s.width - c) // 2  # the evaluation centre crop
            out[m] = t[:, :, top : top + c, left : left + c] / 127.5 - 1.0
        return out

    @torch.no_grad()
    def predict_tensors(self, x: dict[str, torch.Tensor], fold: str | None = None) -> torch.Tensor:
        """Normalised inputs -> probabilities (N, A): one fold's model, or the mean over folds."""
        models = [self.models[fold]] if fold else list(self.models.values())
        x = {m: t.to(self.device) for m, t in x.items()}
        return torch.stack([model(x)["probs"].float() for model in models]).mean(0)

    @torch.no_grad()
    def predict_conditions(
        self, x: dict[str, torch.Tensor], conds: list[Condition], noise: Noise, fold: str
    ) -> dict[Condition, torch.Tensor]:
        """Normalised inputs -> {condition: probabilities (N, A)} of one fold's model, from cached features."""
        x = {m: t.to(self.device) for m, t in x.items()}
        noise = {k: z.to(self.device) for k, z in noise.items()}
        return {c: p.float() for c, p in condition_probs(self.models[fold], x, conds, noise).items()}

    def predict(self, images: dict[str, np.ndarray], missing: Iterable[str] = (), batch_size: int = 64) -> np.ndarray:
        """uint8 images -> probabilities (N, A), in batches."""
        missing = tuple(missing)
        n = max((len(v) for k, v in images.items() if k not in missing), default=0)
        parts = [self.predict_tensors(self.preprocess({m: v[i : i + batch_size] for m, v in images.items()}, missing))
                 for i in range(0, n, batch_size)]  # fmt: skip
        return torch.cat(parts).cpu().numpy() if parts else np.zeros((0, len(self.spec.aus)), np.float32)
