import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from sweep_helpers import kill_ray_processes, make_env, sweep_args


@dataclass
class SweepRun:
    root: Path
    name: str
    env: dict
    proc: subprocess.CompletedProcess


@pytest.fixture
def farm_env(tmp_path):
    env, ray_tmp = make_env(tmp_path)
    yield env, tmp_path
    kill_ray_processes(ray_tmp)
    shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory):
    """One finished 2-trial smoke sweep shared by the sweep, registry and report tests (read-mostly)."""
    tmp_path = tmp_path_factory.mktemp("smoke")
    env, ray_tmp = make_env(tmp_path)
    proc = subprocess.run(sweep_args(tmp_path, "e2e", "--trials", "2"), env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    kill_ray_processes(ray_tmp)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    yield SweepRun(tmp_path, "e2e", env, proc)
