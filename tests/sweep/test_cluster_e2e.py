"""`farm submit` without a cluster: one clear line. The cluster path itself (a Ray head and worker nodes on
127.0.0.1, an `mlflow server`, `farm submit jobs/smoke.yaml --follow` through Ray's Jobs API) is tested on a real
multi-node cluster in tests/sweep/test_multinode_e2e.py."""

import subprocess
import sys
from pathlib import Path

from sweep_helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_submit_says_clearly_when_no_cluster_answers(tmp_path):
    proc = subprocess.run([str(BIN / "farm"), "submit", str(ROOT / "jobs" / "smoke.yaml"), "--address",
                           f"http://127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot reach the Ray Jobs API" in proc.stderr and "ray dashboard cluster.yaml" in proc.stderr
