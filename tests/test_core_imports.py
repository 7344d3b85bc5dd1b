"""The pure core (config, data, models, checkpoints, engine, evaluate, the CLI parser) must import and run without Ray, Optuna or MLflow."""

import subprocess
import sys

CODE = r"""
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("ray", "optuna", "mlflow"):
            raise ImportError(f"core imported {name}")
        return None

sys.meta_path.insert(0, Block())
import farm.config, farm.metrics, farm.checkpoints, farm.engine, farm.models, farm.models.amf, farm.cli
import farm.data.store, farm.data.dataset, farm.data.augment, farm.data.folds, farm.data.synth
import farm.evaluate.inference, farm.evaluate.robustness, farm.evaluate.promotion, farm.evaluate.predict
import farm.evaluate.report, farm.evaluate.cv, farm.sweep.jobs
import farm.cli.data, farm.cli.train
farm.cli.build_parser()
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("ray", "optuna", "mlflow"))
assert not bad, bad
print("core ok")
"""


def test_core_imports_without_ray_optuna_mlflow():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "core ok" in out.stdout


def test_the_trial_side_of_a_sweep_imports_without_torch():
    """Tune's trial actor and Train's controller import farm.sweep.trial/worker (the trainable, FoldMeanCallback):
    importing torch there costs seconds of CPU per trial on the path to its first epoch (issue 16)."""
    code = "import sys, farm.sweep.trial, farm.sweep.worker; bad = [m for m in ('torch', 'torchvision') if m in sys.modules]; assert not bad, bad"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
