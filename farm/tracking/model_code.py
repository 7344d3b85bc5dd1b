"""Loaded by MLflow when a registered farm model is loaded ("models from code"; see farm/tracking/pyfunc.py)."""

import mlflow

from farm.tracking.pyfunc import AUDetector

mlflow.models.set_model(AUDetector())
