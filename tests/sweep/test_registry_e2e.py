"""`farm promote`, `farm predict`, `farm robustness` and `farm report` on a finished smoke sweep.

Real parts: the sweep ran on a local Ray into a sqlite MLflow store (the session fixture); the
registry is that store's; models are loaded back through `mlflow.pyfunc`.
"""

import csv
import json
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sweep_helpers import FARM, runs_by_parent, tracking_uri

from farm.cli import main
from farm.data.store import FrameStore

pytestmark = pytest.mark.slow
NAME = "amf-e2e"


@pytest.fixture(scope="module")
def promoted(smoke_sweep):
    uri = tracking_uri(smoke_sweep.root)
    args = ["promote", "--sweep", smoke_sweep.name, "--tracking-uri", uri, "--model-name", NAME, "--bootstrap", "500"]
    proc = subprocess.run([*FARM, *args], env=smoke_sweep.env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Add type hints" not in proc.stdout + proc.stderr  # MLflow's warning on the model class (issue 15)
    client, parents, children = runs_by_parent(smoke_sweep.root, smoke_sweep.name)
    best = max(parents, key=lambda p: p.data.metrics["cv/val_f1_mean"])
    worst = min(parents, key=lambda p: p.data.metrics["cv/val_f1_mean"])
    return uri, client, best, worst, children


def test_promote_registers_the_best_trial_as_champion_with_its_lineage(promoted):
    uri, client, best, _, children = promoted
    v = client.get_model_version_by_alias(NAME, "champion")
    assert str(v.version) == "1"
    tags = v.tags
    assert tags["trial"] == best.info.run_name and tags["trial_run_id"] == best.info.run_id
    folds = dict(item.split(":") for item in tags["fold_run_ids"].split(","))
    assert folds == {k.data.tags["fold"]: k.info.run_id for k in children[best.info.run_id]}
    for key in ("data_hash", "split_hashes", "partitions_hash", "git_sha"):
        assert tags[key] == best.data.tags[key], key
    assert float(tags["cv/val_f1_mean"]) == pytest.approx(best.data.metrics["cv/val_f1_mean"], abs=1e-4)
    assert tags["decision"] == "no champion yet" and tags["sweep"] == "e2e"
    # the promotion run holds the folds' test predictions the next challenger is compared on
    arts = {a.path for a in client.list_artifacts(v.run_id, "evaluation")}
    assert arts == {"evaluation/test_predictions.parquet", "evaluation/decision.json"}


def test_champion_predicts_from_a_dict_and_from_a_dataframe(promoted, smoke_sweep):
    uri = promoted[0]
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    store = FrameStore(smoke_sweep.root / "data")
    mods = ("visual", "depth", "thermal")
    images = {m: np.stack([store.image(i, m) for i in range(6)]) for m in mods}
    out = model.predict(images)
    assert list(out.columns) == list(store.meta.aus) and out.shape == (6, 12)
    assert ((out.to_numpy() >= 0) & (out.to_numpy() <= 1)).all()
    frame = pd.DataFrame({m: [img.reshape(-1) for img in images[m]] for m in mods})  # one column per modality
    np.testing.assert_allclose(model.predict(frame).to_numpy(), out.to_numpy(), atol=1e-6)
    # a missing modality (zeros after normalisation) is a declared parameter, and it changes the output
    no_depth = model.predict({**images, "depth": np.zeros_like(images["depth"])}, params={"missing": "depth"})
    assert no_depth.shape == out.shape and not np.allclose(no_depth.to_numpy(), out.to_numpy())
    # the signature, input example and pip requirements are part of the model
    info = mlflow.models.get_model_info(f"models:/{NAME}@champion")
    assert info.signature.inputs.input_names() == list(mods) and info.saved_input_example_info
    reqs = mlflow.artifacts.download_artifacts(
        f"models:/{NAME}@champion/requirements.txt", dst_path=str(smoke_sweep.root)
    )
    assert any(line.startswith("torch==") for line in open(reqs))


def test_robustness_is_attached_and_its_clean_row_is_the_logged_test_f1(promoted):
    uri, client, best, _, children = promoted
    v = client.get_model_version_by_alias(NAME, "champion")
    path = client.download_artifacts(v.run_id, "robustness/robustness.csv")
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 1 + 6 + 4 * 4  # clean, 3 single + 3 pairs missing, noise on 3 modalities and all
    clean = rows[0]
    for k in children[best.info.run_id]:  # same model, same frames, same batches: the same F1
        assert float(clean[f"f1_{k.data.tags['fold']}"]) == pytest.approx(k.data.metrics["test/f1_mean"], abs=1e-9)
    assert {a.path for a in client.list_artifacts(v.run_id, "robustness")} >= {"robustness/robustness.png",
                                                                                "robustness/robustness.md"}  # fmt: skip
    assert "robustness.missing_visual" in v.tags
    # the version's page (issue 15): the decision, links to the trial and fold runs, the robustness table
    text = v.description
    assert "**Decision** (no champion to compare with): no champion yet." in text
    exp = best.info.experiment_id
    for run in [best, *children[best.info.run_id]]:
        assert f"(#/experiments/{exp}/runs/{run.info.run_id})" in text, run.info.run_name
    assert f"| clean | {float(clean['f1_mean']):.3f} |" in text and f"data hash {best.data.tags['data_hash']}" in text
    table = json.loads(open(client.download_artifacts(v.run_id, "robustness/robustness_table.json")).read())
    assert [r[0] for r in table["data"]] == [r["condition"] for r in rows]
    # a second study on the same run keeps the first (nothing logged is overwritten)
    before = client.get_run(v.run_id).data.metrics
    assert main(["robustness", "--model", f"models:/{NAME}@champion", "--tracking-uri", uri]) == 0
    assert client.get_run(v.run_id).data.metrics == before


def test_worse_trial_becomes_challenger_and_force_overrides(promoted, capsys):
    uri, client, best, worst, _ = promoted
    assert best.info.run_id != worst.info.run_id
    assert main(["promote", "--sweep", "e2e", "--tracking-uri", uri, "--model-name", NAME, "--trial",
                 worst.info.run_name, "--no-robustness", "--bootstrap", "500"]) == 0  # fmt: skip
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    challenger = client.get_model_version_by_alias(NAME, "challenger")
    assert str(challenger.version) == "2" and challenger.tags["compared_with"] == "1"
    assert challenger.tags["decision"].startswith(("the candidate is worse", "no clear difference"))
    lo, hi = (float(challenger.tags[f"decision.ci_{k}"]) for k in ("low", "high"))
    assert "**Decision** (against version 1)" in challenger.description
    assert f"95% paired subject-bootstrap interval [{lo:+.4f}, {hi:+.4f}]" in challenger.description
    assert "as challenger" in capsys.readouterr().out
    # promoting the same trial again changes nothing; --force makes it champion and says so
    assert main(["promote", "--sweep", "e2e", "--tracking-uri", uri, "--model-name", NAME, "--trial",
                 worst.info.run_name]) == 0  # fmt: skip
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    assert main(["promote", "--sweep", "e2e", "--tracking-uri", uri, "--model-name", NAME, "--trial",
                 worst.info.run_name, "--force"]) == 0  # fmt: skip
    forced = client.get_model_version_by_alias(NAME, "champion")
    assert str(forced.version) == "2" and "--force" in forced.tags["forced_champion"]
    client.set_registered_model_alias(NAME, "champion", "1")  # restore for the other tests


def test_predict_cli_on_a_dataset_and_on_an_image_tree(promoted, smoke_sweep, tmp_path, capsys):
    from PIL import Image

    uri = promoted[0]
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", f"models:/{NAME}@champion", "--data", str(smoke_sweep.root / "data"),
                 "--subjects", "F001", "--out", str(out), "--tracking-uri", uri]) == 0  # fmt: skip
    said = capsys.readouterr().out  # model from code runs the model's own Python: the command says so first
    assert f"loading model code from models:/{NAME}@champion (its model_code.py and code/ run as you" in said
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 16 and {r["subject"] for r in rows} == {"F001"}
    assert {r["AU1"] for r in rows} <= {"0", "1"} and 0 <= float(rows[0]["p_AU12"]) <= 1
    store = FrameStore(smoke_sweep.root / "data")
    for i in range(3):
        (tmp_path / "tree" / "visual" / "s1").mkdir(parents=True, exist_ok=True)
        Image.fromarray(store.image(i, "visual")).save(tmp_path / "tree" / "visual" / "s1" / f"{i:04d}.png")
    mlflow.set_tracking_uri(uri)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion", dst_path=str(tmp_path / "model")))
    capsys.readouterr()
    assert main(["predict", "--model", str(local), "--input", str(tmp_path / "tree"),  # a model folder on disk
                 "--out", str(tmp_path / "tree.csv"), "--tracking-uri", uri]) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert f"loading model code from {local.resolve()} (its model_code.py and code/ run as you" in said
    assert "missing for every frame: depth, thermal" in said
    rows = list(csv.DictReader(open(tmp_path / "tree.csv")))
    assert [r["path"] for r in rows] == ["s1/0000", "s1/0001", "s1/0002"] and rows[0]["missing"] == "depth+thermal"


def test_report_numbers_equal_the_runs_metrics(smoke_sweep, tmp_path):
    uri = tracking_uri(smoke_sweep.root)
    assert main(["report", "--sweep", "e2e", "--paper", "bp4d", "--out", str(tmp_path / "rep"), "--tracking-uri",
                 uri]) == 0  # fmt: skip
    client = MlflowClient(uri)
    _, parents, _ = runs_by_parent(smoke_sweep.root, "e2e")
    best = max(parents, key=lambda p: p.data.metrics["cv/val_f1_mean"])
    rows = list(csv.DictReader(open(tmp_path / "rep" / "report.csv")))
    ours = {r["au"]: r for r in rows if r["source"] == "farm"}
    assert float(ours["Avg"]["f1_mean_pct"]) == pytest.approx(100 * best.data.metrics["cv/test_f1_mean"], abs=1e-6)
    assert float(ours["AU12"]["f1_mean_pct"]) == pytest.approx(100 * best.data.metrics["cv/test_f1_AU12"], abs=1e-6)
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "AU24" in md and "AU26" not in md and best.info.run_id in md
    assert (tmp_path / "rep" / "report.png").stat().st_size > 5000
    del client
