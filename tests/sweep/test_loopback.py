"""A local `farm sweep` starts its own Ray, listening on loopback only, and never joins the cluster RAY_ADDRESS names."""

import os
import subprocess
import time
from pathlib import Path

import pytest
from sweep_helpers import descendants, free_port, is_loopback, listeners, marked, sweep_args

from farm.sweep import cluster

# The processes that must be seen listening (so the check below cannot pass on an empty list):
# GCS, raylet, the agents, the driver and the trial's Ray Train fold workers.
EXPECTED = ("gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent", "farm.cli sweep",
            "ray::RayTrainWorker")  # fmt: skip


@pytest.mark.slow
def test_local_sweep_listens_on_loopback_only_and_ignores_ray_address(farm_env):
    env, tmp_path = farm_env
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there: joining it would fail the sweep
    env = {**env, "RAY_ADDRESS": nowhere}
    log = open(tmp_path / "sweep.log", "w")
    proc = subprocess.Popen(sweep_args(tmp_path, "loopback", "--trials", "1"), env=env, stdout=log,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    sockets: dict[tuple, set[str]] = {}  # (pid, proto, ip, port) -> the process titles it was seen under
    started = time.time()
    try:
        while proc.poll() is None:
            assert time.time() < started + 600, "the sweep did not finish in time"
            for s in listeners(descendants(proc.pid) | marked(f"FARM_RAY_TEMP_DIR={env['FARM_RAY_TEMP_DIR']}")):
                sockets.setdefault((s.pid, s.proto, s.ip, s.port), set()).add(s.process)
            if time.time() > started + 240 and not any("gcs_server" in t for ts in sockets.values() for t in ts):
                pytest.fail(f"no local Ray started in 240 s: trying to join RAY_ADDRESS={nowhere}?\n"
                            + (tmp_path / "sweep.log").read_text()[-2000:])  # fmt: skip
            time.sleep(0.3)
    finally:
        proc.kill()  # on a failure above; the fixture ends its Ray by the environment marker
        proc.wait()
    out = (tmp_path / "sweep.log").read_text()
    assert proc.returncode == 0, out[-3000:]
    assert f"RAY_ADDRESS={nowhere} ignored" in out and "--address auto joins" in out

    report = "\n".join(f"  {proto} {ip}:{port}  {' | '.join(sorted(t[:40] for t in titles))}"
                       for (_, proto, ip, port), titles in sorted(sockets.items()))  # fmt: skip
    missing = [name for name in EXPECTED if not any(name in t for ts in sockets.values() for t in ts)]
    assert not missing and len(sockets) >= 15, f"too few listeners seen to judge ({missing} never listened):\n{report}"
    exposed = [key for key, titles in sockets.items() if not is_loopback(key[2])]
    assert not exposed, f"listening beyond loopback: {exposed}\nall listeners seen:\n{report}"
    print(f"\n{len(sockets)} listening sockets seen, all on loopback:\n{report}")

    # Ray Train's placement-group cleaner could ask the State API (served by the dashboard, on 127.0.0.1) whether
    # the trial's controller lives: without it, a trial that Tune stops keeps its placement group and later trials
    # starve. Its log says so every few seconds when it cannot.
    logs = list(Path(env["FARM_RAY_TEMP_DIR"]).glob("session_*/logs/worker-*"))
    cleaners = [f for f in logs if "PlacementGroupCleaner" in f.read_text(errors="replace")]
    assert cleaners, "no PlacementGroupCleaner log found: the check below would mean nothing"
    blind = [f.name for f in cleaners if "State API may be temporarily unavailable" in f.read_text(errors="replace")]
    assert not blind, f"the placement-group cleaner could not reach the State API: {blind}"


def isolate_env(monkeypatch) -> None:
    """The variables start_local_ray sets or removes: unset now, restored after the test."""
    for var in (*cluster.local_ray_env(), "RAY_ADDRESS"):
        monkeypatch.setenv(var, "")  # records the original (or its absence) for the restore
        monkeypatch.delenv(var)


def test_local_ray_is_a_new_instance_on_loopback(monkeypatch, capsys):
    """RAY_ADDRESS set: the local start neither passes nor keeps it; it says once that it ignored it."""
    import ray
    from ray._private import ray_constants

    calls = []
    isolate_env(monkeypatch)
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)  # as if ray was imported before the variable
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append((kw, os.environ.get("RAY_ADDRESS"))))
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "127.0.0.1")
    cluster.start_local_ray("/tmp/ray-test")

    [(kwargs, env_address)] = calls
    assert kwargs["address"] == "local" and env_address is None  # "local": Ray never reads RAY_ADDRESS
    assert kwargs["_node_ip_address"] == "127.0.0.1" and kwargs["include_dashboard"] is True  # the State API
    assert kwargs["dashboard_host"] == "127.0.0.1" and kwargs["_temp_dir"] == "/tmp/ray-test"
    assert os.environ[cluster.LOCAL_ONLY_VAR] == "0" and ray_constants.ENABLE_RAY_CLUSTER is False
    assert capsys.readouterr().out.strip() == (
        "RAY_ADDRESS=10.1.2.3:6379 ignored: without --address, farm sweep starts its own local Ray "
        "(--address auto joins the cluster RAY_ADDRESS names)"
    )


def test_local_ray_refuses_a_non_loopback_node(monkeypatch):
    import ray
    from ray._private import ray_constants

    isolate_env(monkeypatch)
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    monkeypatch.setattr(ray, "init", lambda **kw: None)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray.util, "get_node_ip_address", lambda: "192.0.2.7")
    with pytest.raises(RuntimeError, match="came up on 192.0.2.7, expected 127.0.0.1"):
        cluster.start_local_ray()
