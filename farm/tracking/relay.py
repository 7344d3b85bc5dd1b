"""MLflow through one Ray actor on the driver's node, so the tracking server can stay on loopback.

On a cluster, MLflow runs on the head bound to 127.0.0.1 (nothing exposed, not even inside the
VPC), and a sqlite store on the head's disk cannot be opened from other nodes at all. Fold
workers on GPU nodes therefore do not call MLflow themselves: they call a `TrackingRelay` actor
pinned to the node of the sweep's driver, which calls MLflow there. The relay serialises every
write, which also suits sqlite.

`tracking_client(tracking)` is what the farm's workers use: an `MlflowClient` when they can reach
the store directly, a `RelayClient` (the same methods, forwarded) when the sweep runs a relay.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

RELAY_NAME = "farm-tracking-relay"
RELAY_NAMESPACE = "farm"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def needs_relay(tracking_uri: str, mode: str, alive_nodes: int) -> bool:
    """on / off, or auto: a relay when other nodes cannot reach the store (sqlite or a loopback server)."""
    if mode in ("on", "off"):
        return mode == "on"
    if mode != "auto":
        raise ValueError(f"--tracking-relay must be auto, on or off, got {mode!r}")
    local_only = tracking_uri.startswith("sqlite:") or urlparse(tracking_uri).hostname in LOOPBACK
    return local_only and alive_nodes > 1


class TrackingRelay:
    """The actor: forwards MlflowClient calls; artifacts arrive as bytes (the file is on another node)."""

    def __init__(self, tracking_uri: str) -> None:
        from farm.tracking.mlflow import ensure_store

        self.client = ensure_store(tracking_uri)

    def call(self, method: str, args: tuple, kwargs: dict) -> Any:
        return getattr(self.client, method)(*args, **kwargs)

    def log_artifact_bytes(self, run_id: str, filename: str, data: bytes, artifact_path: str | None) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / filename
            path.write_bytes(data)
            self.client.log_artifact(run_id, str(path), artifact_path)


def start_relay(tracking_uri: str):
    """Start the relay on this (the driver's) node; it lives as long as the driver."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor = (
        ray.remote(num_cpus=0)(TrackingRelay)
        .options(name=RELAY_NAME, namespace=RELAY_NAMESPACE, scheduling_strategy=here, get_if_exists=True)
        .remote(tracking_uri)
    )
    ray.get(actor.call.remote("search_experiments", (), {"max_results": 1}))  # the store answers
    return actor


class RelayClient:
    """The MlflowClient methods the farm uses, forwarded to the relay actor."""

    def __init__(self, tracking_uri: str) -> None:
        import ray

        self.tracking_uri = tracking_uri
        self._actor = ray.get_actor(RELAY_NAME, namespace=RELAY_NAMESPACE)

    def __getattr__(self, method: str):
        import ray

        if method.startswith("_"):
            raise AttributeError(method)

        def forward(*args, **kwargs):
            return ray.get(self._actor.call.remote(method, args, kwargs))

        return forward

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        import ray

        path = Path(local_path)
        ray.get(self._actor.log_artifact_bytes.remote(run_id, path.name, path.read_bytes(), artifact_path))


def tracking_client(tracking: dict[str, Any]):
    """For a worker: the relay when the sweep runs one, else a direct client on the store."""
    if tracking.get("relay"):
        return RelayClient(tracking["uri"])
    from farm.tracking.mlflow import ensure_store

    return ensure_store(tracking["uri"])
