"""The MLflow pyfunc of a registered farm model: a fold ensemble behind a dict-of-images interface.

Logged as a "model from code" (farm/tracking/model_code.py): nothing is pickled; loading runs
that file, which builds this class from the farm code shipped with the model (`code_paths`).
"""

from __future__ import annotations

import warnings
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from farm.evaluate.inference import FoldEnsemble

MODEL_ARTIFACTS = "fold_models"


# MLflow warns "Add type hints to the `predict` method" when the class is defined (its predict takes a dict or a
# DataFrame, so it has no hint MLflow could validate with; the signature is logged explicitly: registry.signature_for).
# Recorded and dropped rather than filtered: MLflow wraps the check in its own "once" filter, which overrides "ignore".
with warnings.catch_warnings(record=True) as _caught:

    class AUDetector(mlflow.pyfunc.PythonModel):
        """Per-AU probabilities from a dict of uint8 modality images (or a DataFrame, one column per modality).

        Input: {modality: uint8 array (N, H, W, C)} at the size the model was trained on (other sizes
        are resized). A DataFrame works too: one column per modality, each cell one frame's image
        (flattened or not). Output: a DataFrame with one probability column per AU. `params={"missing":
        "depth"}` (comma-separated) treats those modalities as missing (zeros after normalisation, as
        in the robustness study); their input arrays are then ignored.
        """

        def load_context(self, context) -> None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
            self.ensemble = FoldEnsemble.load(context.artifacts[MODEL_ARTIFACTS], device)

        def predict(self, context, model_input, params: dict[str, Any] | None = None) -> pd.DataFrame:
            spec = self.ensemble.spec
            missing = [m.strip() for m in str((params or {}).get("missing", "") or "").split(",") if m.strip()]
            if isinstance(model_input, pd.DataFrame):
                shape = lambda m: (-1, spec.height, spec.width, spec.channels[m])  # noqa: E731
                model_input = {m: np.stack([np.asarray(v) for v in model_input[m]]).reshape(shape(m))
                               for m in spec.modalities if m in model_input}  # fmt: skip
            probs = self.ensemble.predict(model_input, missing)
            return pd.DataFrame(probs, columns=list(spec.aus))


for _w in _caught:  # any other warning is shown as usual
    if "Add type hints to the `predict` method" not in str(_w.message):
        warnings.warn_explicit(_w.message, _w.category, _w.filename, _w.lineno)
