"""Issue 15: what the MLflow UI shows of a finished sweep, read through the REST API the UI itself calls, from a
real `mlflow ui` on 127.0.0.1 over the smoke sweep's sqlite store."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from sweep_helpers import free_port

from farm.tracking.story import TRIAL_METRICS

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def ui(smoke_sweep):
    port = free_port()
    log = smoke_sweep.root / "mlflow-ui.log"
    proc = subprocess.Popen([str(BIN / "mlflow"), "ui", "--backend-store-uri", f"sqlite:///{smoke_sweep.root / 'mlflow.db'}",
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "TMPDIR": str(smoke_sweep.root)})  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=5)
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def get(base: str, path: str, **params) -> dict:
    url = f"{base}/ajax-api/2.0/mlflow/{path}?{urllib.parse.urlencode(params)}"
    return json.loads(urllib.request.urlopen(url, timeout=30).read())


def post(base: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"{base}/ajax-api/2.0/mlflow/{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    return json.loads(urllib.request.urlopen(req, timeout=30).read())


def artifact(base: str, run_id: str, path: str) -> bytes:
    url = f"{base}/get-artifact?{urllib.parse.urlencode({'path': path, 'run_uuid': run_id})}"
    return urllib.request.urlopen(url, timeout=30).read()


def tags(obj: dict) -> dict:
    return {t["key"]: t["value"] for t in obj.get("tags", [])}


def test_the_ui_shows_the_sweeps_story(ui, smoke_sweep):
    assert b"<html" in urllib.request.urlopen(ui, timeout=30).read().lower()  # the UI's page itself
    exp = get(ui, "experiments/get-by-name", experiment_name=smoke_sweep.name)["experiment"]
    et = tags(exp)
    note = et["mlflow.note.content"]
    assert f"Sweep {smoke_sweep.name}" in note and "folds: P1, P2, P3" in note and "protocol: joint" in note
    assert "command: `farm sweep" in note and str(smoke_sweep.root / "data") in note
    data_hash = json.loads((smoke_sweep.root / "data" / "dataset.json").read_text())["data_hash"]
    assert et["space"] == "smoke" and et["data_hash"] == data_hash and et["dataset"]
    assert f"#/experiments/{exp['experiment_id']}" in smoke_sweep.proc.stdout  # the printed address opens it

    runs = post(ui, "runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 100})["runs"]
    parents = [r for r in runs if "mlflow.parentRunId" not in tags(r["data"])]
    children = [r for r in runs if "mlflow.parentRunId" in tags(r["data"])]
    best = post(ui, "runs/search", {"experiment_ids": [exp["experiment_id"]], "filter": "tags.best = 'true'"})["runs"]
    assert len(parents) == 2 and len(best) == 1  # exactly one best trial, the best by the objective
    val = {r["info"]["run_id"]: {m["key"]: m["value"] for m in r["data"]["metrics"]}["cv/val_f1_mean"] for r in parents}
    assert best[0]["info"]["run_id"] == max(val, key=val.get)
    assert tags(best[0]["data"])["mlflow.note.content"].startswith(f"**Best trial of sweep {smoke_sweep.name} by")

    patterns = [re.compile("^" + re.sub(r"<[^>]+>", "[^/]+", re.escape(name)) + "$")
                for names, _ in TRIAL_METRICS for name in names.split(", ")]  # fmt: skip
    for p in parents:
        rid, t = p["info"]["run_id"], tags(p["data"])
        params = {x["key"]: x["value"] for x in p["data"]["params"]}
        assert "data.fold" not in params  # a trial spans folds
        searched = t["searched"].split(",")
        assert searched and all(k in params for k in searched)
        assert all(f"`{k}`" in t["mlflow.note.content"] for k in searched)
        for m in p["data"]["metrics"]:  # every cv/* metric on the run is defined in its description
            assert m["key"].startswith("fold/") or any(pat.match(m["key"]) for pat in patterns), m["key"]
        doc = yaml.safe_load(artifact(ui, rid, "config.yaml"))
        config = {f"{section}.{k}": v for section, values in doc.items() for k, v in values.items()}
        assert "data.fold" not in config and all(str(config[k]) == params[k] for k in searched)
        table = json.loads(artifact(ui, rid, "per_au_test_f1.json"))
        assert {"path": "per_au_test_f1.json", "type": "table"} in json.loads(t["mlflow.loggedArtifacts"])
        assert table["columns"] == ["AU", "P1", "P2", "P3", "mean", "std"]
        kids = {tags(k["data"])["fold"]: k for k in children if tags(k["data"])["mlflow.parentRunId"] == rid}
        for row in table["data"][:-1]:  # per AU and fold: the fold run's metric
            for fold, value in zip(("P1", "P2", "P3"), row[1:4]):
                logged = {m["key"]: m["value"] for m in kids[fold]["data"]["metrics"]}.get(f"test/f1_{row[0]}")
                assert (value is None and (logged is None or np.isnan(logged))) or value == pytest.approx(logged)
        inputs = p["inputs"]["dataset_inputs"]
        assert len(inputs) == 1 and inputs[0]["dataset"]["digest"] == data_hash
        assert tags(inputs[0])["mlflow.data.context"] == "cross-validation"
        assert t["mlflow.source.git.commit"] == t["git_sha"] and t["mlflow.user"] and t["mlflow.source.name"]

    for k in children:
        rid, t = k["info"]["run_id"], tags(k["data"])
        keys = {m["key"] for m in k["data"]["metrics"]}
        assert not any(key.startswith("test/count_") for key in keys) and "val/f1_best" in keys
        counts = json.loads(artifact(ui, rid, "test_counts.json"))
        assert counts["columns"] == ["AU", "tp", "fp", "fn", "tn", "f1"] and len(counts["data"]) == 12
        assert Path(t["checkpoint"]).is_file() and t["checkpoint"].endswith(f"/{t['fold']}/best.pt")
        inputs = k["inputs"]["dataset_inputs"]
        assert inputs[0]["dataset"]["digest"] == data_hash and tags(inputs[0])["split.test"] == t["split.test"]
        curve = get(ui, "metrics/get-history", run_id=rid, metric_key="val/f1_best")["metrics"]
        epochs = get(ui, "metrics/get-history", run_id=rid, metric_key="val/f1_mean")["metrics"]
        by_step = {m["step"]: m["value"] for m in epochs}
        for m in curve:  # the running best of the per-epoch values
            assert m["value"] == pytest.approx(max(v for s, v in by_step.items() if s <= m["step"]))
