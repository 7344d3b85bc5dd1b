"""The sweep's Ray: join a running cluster (`--address`), or start a new local one reachable from this machine only.

Without `--address`, `farm sweep` always starts its own Ray (`address="local"`): never the cluster
that `RAY_ADDRESS` or a `ray start` on this machine points at. Every listener of that Ray binds to
127.0.0.1: the node address is 127.0.0.1, from which Ray derives where the GCS, the raylet (node
and object manager), every worker's and driver's gRPC server, the dashboard and runtime-env agents
and the metrics exporters listen. The dashboard runs, on 127.0.0.1: Ray's State API is served by it,
and Ray Train's `PlacementGroupCleaner` asks that API whether a trial's Train controller is still
alive; without it, a trial that Tune stops (ASHA) or that fails keeps its placement group, and
later trials wait for CPUs that never come back (seen: a nested sweep stalled on its third outer
fold). Ray's own switch for the loopback addresses is its local-only
mode (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, the default on macOS and Windows), which makes
`ray.init` keep 127.0.0.1 as the node address instead of replacing it with the machine's address.

Ray's own log lines in the driver (start-up, Tune's and Train's messages, trial tracebacks) go to a file
in the sweep's folder (`log_ray_to_file`), not to the terminal; the workers' output stays in Ray's
session logs (`log_to_driver=False`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOCAL_IP = "127.0.0.1"
LOCAL_ONLY_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # Ray: 0 = no multi-node clusters, the node address is loopback
RAY_LOG = "ray.log"
"""Ray's log file, in the sweep's folder."""
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def local_ray_env() -> dict[str, str]:
    """Environment for the local Ray's processes (they inherit the driver's): local-only Ray, loopback collectives."""
    env = {LOCAL_ONLY_VAR: "0"}
    if sys.platform.startswith("linux"):  # torch.distributed's gloo/NCCL sockets (Ray Train's process group) on lo
        env.update({"GLOO_SOCKET_IFNAME": "lo", "NCCL_SOCKET_IFNAME": "lo"})
    return env


def local_init_args(temp_dir: str | None = None) -> dict[str, Any]:
    """`ray.init` arguments of the local Ray: a new instance (never an existing cluster) on 127.0.0.1, its dashboard
    (the State API Ray Train's placement-group cleaner needs) on 127.0.0.1 too."""
    args: dict[str, Any] = {"address": "local", "_node_ip_address": LOCAL_IP, "include_dashboard": True,
                            "dashboard_host": LOCAL_IP, "log_to_driver": False, "logging_format": LOG_FORMAT}  # fmt: skip
    if temp_dir:
        args["_temp_dir"] = temp_dir  # tests keep Ray's sockets and logs in their own directory
    return args


def start_local_ray(temp_dir: str | None = None, log: Callable[[str], None] = print) -> None:
    """Start a new Ray on this machine, bound to 127.0.0.1; a `RAY_ADDRESS` in the environment is ignored (said once)."""
    ignored = os.environ.pop("RAY_ADDRESS", None)  # popped: nothing this Ray starts should see it either
    if ignored:
        log(f"RAY_ADDRESS={ignored} ignored: without --address, farm sweep starts its own local Ray "
            "(--address auto joins the cluster RAY_ADDRESS names)")  # fmt: skip
    os.environ.update(local_ray_env())
    import ray
    from ray._private import ray_constants

    # Ray reads the variable once, when first imported; if something imported it earlier, apply it now
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(**local_init_args(temp_dir))
    except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception when its processes do not come up
        from farm.sweep.options import SweepError

        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SweepError(f"the local Ray did not start: {first} (an overloaded or memory-starved machine? its logs: "
                         f"{temp_dir or '/tmp/ray'}/session_latest/logs); nothing of the sweep ran: run the same "
                         "command again") from None  # fmt: skip
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOCAL_IP:  # a Ray version that no longer honours the switch: refuse rather than listen on the LAN
        ray.shutdown()
        raise RuntimeError(f"the local Ray came up on {node_ip}, expected {LOCAL_IP}: this Ray version "
                           f"({ray.__version__}) ignores {LOCAL_ONLY_VAR}=0; see farm/sweep/cluster.py")  # fmt: skip


def join_cluster(address: str) -> None:
    """Connect to a running Ray cluster: 'auto' (RAY_ADDRESS, else the `ray start` on this machine) or HOST:PORT."""
    import ray

    ray.init(address=address, log_to_driver=False, logging_format=LOG_FORMAT)


def log_ray_to_file(path: Path) -> Path:
    """Send the driver's Ray log records (the `ray` logger: `ray.tune`, `ray.train` and Ray's start-up lines
    propagate to it) to `path`, appended, instead of the terminal; turn Tune's console output off. Call it
    before `ray.init`, which keeps the handler (configure_logging=True sets only its level and LOG_FORMAT; False
    would remove it). The sweep's own progress lines, FAILED lines (with the reason) and leaderboard stay."""
    import ray  # noqa: F401 - importing Ray attaches its stderr handler to the `ray` logger: replaced below

    # Tune's default console output prints its configuration box and a TensorBoard hint even at verbose=0;
    # its legacy output prints nothing at verbose=0
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    logger = logging.getLogger("ray")
    for handler in list(logger.handlers):  # Ray's stderr handler, or this function's file of an earlier sweep
        logger.removeHandler(handler)
        if isinstance(handler, logging.FileHandler):
            handler.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # not to the root logger's handlers either
    return path


GPU_WAIT_VAR = "FARM_GPU_WAIT_S"
"""Seconds a sweep that asks for GPUs (--gpus-per-fold) waits for the autoscaler to bring up a GPU node of a joined
cluster that has none up (default 600; 0: refuse at once)."""


def await_gpus(share: float, workers: int, log: Callable[[str], None] = print, timeout_s: float | None = None) -> bool:
    """On a joined cluster with no GPU up, e.g. cluster.yaml's right after `ray up` (GPU workers from 0): ask Ray's
    autoscaler for one trial's fold GPUs (`ray.autoscaler.sdk.request_resources`), wait until a GPU node is up, at
    most `timeout_s` (FARM_GPU_WAIT_S), then withdraw the request (the sweep's own demand holds the nodes from then
    on). Returns whether the cluster has GPUs; without, `plan_resources` refuses naming the cluster's resources."""
    import time

    import ray
    from ray.autoscaler.sdk import request_resources

    if ray.cluster_resources().get("GPU", 0) > 0:
        return True
    timeout = float(os.environ.get(GPU_WAIT_VAR, "600")) if timeout_s is None else timeout_s
    if timeout <= 0:
        return False
    log(f"no GPU node is up: asking the autoscaler for {workers} x {share:g} GPU and waiting up to {timeout:.0f} s "
        f"({GPU_WAIT_VAR}=0: refuse at once)")  # fmt: skip
    request_resources(bundles=[{"GPU": share}] * workers)
    start = time.time()
    try:
        while time.time() - start < timeout:
            if ray.cluster_resources().get("GPU", 0) > 0:
                log(f"GPU node up after {time.time() - start:.0f} s")
                return True
            time.sleep(2)
        return False
    finally:
        request_resources(bundles=[])


TERMINATION = {"signal": 0}
"""The signal (SIGTERM, SIGHUP) that ended the sweep, once `forward_termination` saw one; 0 = none."""


def forward_termination() -> None:
    """SIGTERM and SIGHUP (what `timeout`, SLURM, Kubernetes, `ray stop` and a closed terminal send) end the sweep
    as Ctrl-C does: Tune's own SIGINT handling cuts the trials cleanly (the leaderboard marks them interrupted, the
    last line is the --resume command) and `farm sweep` exits 128 + the signal. Installed after Ray starts: it
    replaces the handler Ray's core worker installs, which prints a native crash dump and aborts (exit 134)."""
    import signal

    def forward(signum, frame) -> None:  # noqa: ARG001 - the signal module's handler signature
        first = not TERMINATION["signal"]
        TERMINATION["signal"] = signum
        if first:  # a second signal while stopping: Tune's second SIGINT ends at once, as a second Ctrl-C does
            os.kill(os.getpid(), signal.SIGINT)
        else:
            signal.default_int_handler(signal.SIGINT, frame)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
