"""Issue 23 item 3 end to end: SIGTERM (what `timeout`, SLURM, Kubernetes and `ray stop` send) ends `farm sweep` as
Ctrl-C does, and `--resume` finishes it without a duplicate (a real local Ray, a real sqlite MLflow store)."""

import signal
import subprocess
import time
from pathlib import Path

import pytest
from sweep_helpers import FARM, marked, runs_by_parent, sweep_args

pytestmark = pytest.mark.slow
SPACE = Path(__file__).parent / "spaces" / "seeds.yaml"


def live(pids: set[int]) -> list[int]:
    """The processes of `pids` still alive (a zombie holds nothing)."""
    out = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z":
                out.append(pid)
        except OSError:
            pass
    return out


def test_sigterm_in_epoch_one_cuts_the_trial_cleanly_and_resume_finishes_it(farm_env):
    env, tmp_path = farm_env
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        first = subprocess.Popen(sweep_args(tmp_path, "term", "--space", str(SPACE), "--seeds", "1"), env=env,
                                 stdout=out, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        deadline = time.time() + 600
        while " epoch 1: " not in log.read_text():
            assert first.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "the trial did not reach epoch 1 in time"
            time.sleep(0.5)
        first.send_signal(signal.SIGTERM)
        code = first.wait(timeout=300)
    text = log.read_text()
    assert code == 128 + signal.SIGTERM, text[-3000:]
    assert "SIGTERM received" not in text and "PC: @" not in text  # no native crash dump from Ray
    assert "interrupted" in text  # the leaderboard marks the cut trial
    last = text.strip().splitlines()[-1]
    assert "stopped by SIGTERM" in last and "--resume" in last, last
    assert "farm sweep --resume --name term" in text
    deadline = time.time() + 60  # the sweep's own Ray is gone with it
    while (left := live(marked(f"FARM_RAY_TEMP_DIR={env['FARM_RAY_TEMP_DIR']}"))) and time.time() < deadline:
        time.sleep(1)
    assert not left, f"Ray processes of the sweep left running: {left}"
    client, parents, _ = runs_by_parent(tmp_path, "term")
    assert len(parents) == 1 and parents[0].info.status == "RUNNING" and "interrupted" in parents[0].data.tags

    again = subprocess.run([*FARM, "sweep", "--storage", str(tmp_path / "sweeps"), "--name", "term", "--resume"],
                           env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    client, parents, children = runs_by_parent(tmp_path, "term")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and "interrupted" not in parents[0].data.tags
    kids = children[parents[0].info.run_id]
    assert sorted(k.data.tags["fold"] for k in kids) == ["P1", "P2", "P3"]  # none duplicated
    for k in kids:
        assert k.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(k.info.run_id, "val/f1_mean")]
        assert sorted(steps) == sorted(set(steps)) and len(steps) == 2, steps  # every epoch once
