"""Fold ensembles, input perturbations and the robustness study on a tiny hand-made dataset (no MLflow)."""

import numpy as np
import pytest
import torch

from farm.checkpoints import InputSpec, Predictions
from farm.config import BP4D_AUS, unflatten
from farm.data.dataset import FrameDataset
from farm.data.perturb import Condition, conditions, perturb
from farm.data.store import FrameStore
from farm.evaluate import robustness
from farm.evaluate.inference import FoldEnsemble, ModelInputError
from farm.models import build_model

SIZE, CROP = 20, 16


def _ensemble(store, fusion="late", folds=("P1", "P2"), seed=0):
    spec = InputSpec(("visual", "depth"), {"visual": 3, "depth": 1}, SIZE, SIZE, CROP, BP4D_AUS)
    cfg = unflatten({"model.fusion": fusion, "model.backbone": "resnet10", "amf.num_samples": 4})
    models = {}
    for i, f in enumerate(folds):
        torch.manual_seed(seed + i)
        models[f] = build_model(cfg, spec.channels, len(BP4D_AUS))
    subjects = sorted(set(store.subjects))
    tests = {f: tuple(subjects[i :: len(folds)]) for i, f in enumerate(folds)}
    from farm.config import to_dict

    return FoldEnsemble(models, spec, to_dict(cfg), tests)


def _images(store, n=5):
    return {m: np.stack([store.image(i, m) for i in range(n)]) for m in ("visual", "depth")}


def test_preprocess_matches_the_evaluation_transform(tiny_dataset):
    from farm.data.augment import center_crop, normalize

    store = FrameStore(tiny_dataset)
    ens = _ensemble(store)
    x = ens.preprocess(_images(store, 3))
    for m in ("visual", "depth"):
        ref = np.stack([normalize(center_crop({m: store.image(i, m)}, CROP)[m]) for i in range(3)])
        assert x[m].shape == (3, ens.spec.channels[m], CROP, CROP)
        np.testing.assert_allclose(x[m].numpy(), ref, atol=1e-6)
    # images of another size are resized to the training size first
    big = {m: np.repeat(np.repeat(v, 2, axis=1), 2, axis=2) for m, v in _images(store, 2).items()}
    assert ens.preprocess(big)["visual"].shape == (2, 3, CROP, CROP)


def test_missing_modality_is_zeros_and_changes_late_fusion(tiny_dataset):
    store = FrameStore(tiny_dataset)
    ens = _ensemble(store, "late")
    imgs = _images(store)
    clean = ens.predict(imgs)
    no_depth = ens.predict({"visual": imgs["visual"]}, missing=["depth"])
    assert clean.shape == no_depth.shape == (5, 12) and np.all((clean >= 0) & (clean <= 1))
    assert not np.allclose(clean, no_depth)  # late fusion reads depth: zeroing it changes its output
    x = ens.preprocess({"visual": imgs["visual"]}, missing=["depth"])
    assert torch.count_nonzero(x["depth"]) == 0
    # the same through perturb(), the robustness study's path
    full = ens.preprocess(imgs)
    zeroed = perturb(full, Condition("missing", ("depth",)))
    assert torch.equal(zeroed["visual"], full["visual"]) and torch.count_nonzero(zeroed["depth"]) == 0
    np.testing.assert_allclose(ens.predict_tensors(zeroed).numpy(), no_depth, atol=1e-6)


def test_input_errors_name_the_modality(tiny_dataset):
    ens = _ensemble(FrameStore(tiny_dataset))
    imgs = _images(FrameStore(tiny_dataset), 2)
    with pytest.raises(ModelInputError, match="depth"):
        ens.preprocess({"visual": imgs["visual"]})
    with pytest.raises(ModelInputError, match="thermal"):
        ens.preprocess(imgs, missing=["thermal"])
    with pytest.raises(ModelInputError, match="visual: expected uint8 images"):
        ens.preprocess({"visual": imgs["visual"][..., :1], "depth": imgs["depth"]})


def test_noise_is_seeded_and_scaled():
    x = {"visual": torch.zeros(4, 3, 8, 8), "depth": torch.zeros(4, 1, 8, 8)}
    a = perturb(x, Condition("noise", ("visual",), 0.5), torch.Generator().manual_seed(1))
    b = perturb(x, Condition("noise", ("visual",), 0.5), torch.Generator().manual_seed(1))
    assert torch.equal(a["visual"], b["visual"]) and a["depth"] is x["depth"]
    assert a["visual"].std().item() == pytest.approx(0.5, rel=0.2)


def test_conditions_follow_the_paper():
    two = conditions(("visual", "depth"))
    assert [c.name for c in two[:3]] == ["clean", "missing visual", "missing depth"]
    assert len(two) == 1 + 2 + 3 * 4  # noise on each modality and on both, at 4 sigmas
    three = conditions(("visual", "depth", "thermal"))
    assert sum(c.kind == "missing" for c in three) == 3 + 3  # each modality and each pair
    assert len(three) == 1 + 6 + 4 * 4


def test_robustness_table_shape_and_files(tiny_dataset, tmp_path):
    store = FrameStore(tiny_dataset)
    ens = _ensemble(store, "late")
    conds = conditions(ens.spec.modalities)
    counts = robustness.evaluate(ens, store, conds, batch_size=8)
    assert set(counts) == {"P1", "P2"} and all(c.shape == (12, 4) for c in counts["P1"].values())
    # each fold is tested on its own test subjects only
    frames = {f: int(counts[f]["clean"][:, :2].sum() + counts[f]["clean"][:, 2:].sum()) for f in counts}
    expected = {f: int((store.labels(BP4D_AUS)[np.isin(store.subjects, ens.test_subjects[f])] >= 0).sum())
                for f in counts}  # fmt: skip
    assert frames == expected
    rows = robustness.summarize(counts, conds)
    assert len(rows) == len(conds) and rows[0]["delta"] == 0.0
    assert {"condition", "f1_mean", "f1_std", "f1_P1", "f1_P2", "delta"} <= set(rows[0])
    paths = robustness.write(rows, tmp_path / "rob", "tiny")
    assert robustness.read_csv(paths["csv"])[3]["f1_mean"] == pytest.approx(rows[3]["f1_mean"])
    assert paths["png"].stat().st_size > 5000
    assert paths["md"].read_text().count("\n| ") == len(conds) + 1  # header + one line per condition


@pytest.mark.parametrize("fusion", ["amf", "late", "early"])
def test_robustness_rows_from_cached_features_are_those_of_a_full_forward_per_condition(tiny_dataset, fusion):
    """Issue 22: `farm robustness` runs each backbone once per distinct input; its counts are those of the loop it
    replaced (a forward per condition, a generator per (fold, condition)) for every condition but noise on all
    modalities, which now reuses each modality's own draws (the same counts as full forwards on those draws)."""
    from farm.data.perturb import draw_noise
    from farm.metrics import au_counts

    store = FrameStore(tiny_dataset)
    ens = _ensemble(store, fusion)
    conds = conditions(ens.spec.modalities, (0.5,))
    counts = robustness.evaluate(ens, store, conds, batch_size=8, seed=2)
    for fold_i, fold in enumerate(ens.models):
        ds = FrameDataset(store, list(ens.test_subjects[fold]), ens.spec.modalities, ens.spec.aus, crop=CROP)
        gens = [torch.Generator().manual_seed(2 * 100_003 + 1000 * fold_i + j) for j in range(len(conds))]
        shared = [torch.Generator().manual_seed(2 * 100_003 + 1000 * fold_i + j) for j in range(len(conds))]
        before = {c.name: np.zeros((12, 4), np.int64) for c in conds}
        reused = {c.name: np.zeros((12, 4), np.int64) for c in conds}
        for x, y in torch.utils.data.DataLoader(ds, batch_size=8):
            noise = draw_noise(x, conds, shared)
            for c, gen in zip(conds, gens):
                before[c.name] += au_counts(ens.predict_tensors(perturb(x, c, gen), fold=fold).numpy(), y.numpy())
                reused[c.name] += au_counts(ens.predict_tensors(perturb(x, c, noise=noise), fold=fold).numpy(),
                                            y.numpy())  # fmt: skip
        for c in conds:
            assert np.array_equal(counts[fold][c.name], reused[c.name]), (fold, c.name)
            if not (c.kind == "noise" and len(c.modalities) > 1):
                assert np.array_equal(counts[fold][c.name], before[c.name]), (fold, c.name)


def test_temt_ignores_its_target_modality_at_test_time(tiny_dataset):
    # TEMT-Net predicts from the visual image alone (docs/baselines.md): zeroing depth changes nothing
    store = FrameStore(tiny_dataset)
    ens = _ensemble(store, "temt")
    imgs = _images(store)
    np.testing.assert_allclose(ens.predict(imgs), ens.predict({"visual": imgs["visual"]}, missing=["depth"]))


def test_save_and_load_round_trip(tiny_dataset, tmp_path):
    store = FrameStore(tiny_dataset)
    ens = _ensemble(store, "amf")
    ens.save(tmp_path / "m", extra={"lineage": {"trial": "t1"}})
    back = FoldEnsemble.load(tmp_path / "m")
    imgs = _images(store)
    assert back.spec == ens.spec and back.test_subjects == ens.test_subjects
    np.testing.assert_array_equal(back.predict(imgs), ens.predict(imgs))


def test_predictions_table_round_trip(tmp_path):
    import pyarrow.parquet as pq

    from farm.checkpoints import predictions_table

    probs = np.random.default_rng(0).random((4, 2)).astype(np.float32)
    labels = np.array([[1, 0], [0, -1], [1, 1], [0, 0]], np.int8)
    t = predictions_table(
        np.array(["F001"] * 4), np.array(["T1"] * 4), np.arange(4), probs, labels, ("AU1", "AU2"), "P1"
    )
    pq.write_table(t, tmp_path / "p.parquet")
    p = Predictions.read([tmp_path / "p.parquet"])
    assert p.aus == ("AU1", "AU2") and list(p.keys())[1] == "F001/T1/1"
    np.testing.assert_array_equal(p.labels, labels)
    np.testing.assert_allclose(p.probs, probs)
    with pytest.raises(ValueError, match="cannot read predictions"):
        Predictions.read([tmp_path / "missing.parquet"])


def test_a_failed_robustness_write_or_prediction_keeps_the_previous_files(tiny_dataset, tmp_path, monkeypatch):
    from farm.evaluate import predict

    store = FrameStore(tiny_dataset)
    ens = _ensemble(store, "late")
    rows = robustness.summarize(robustness.evaluate(ens, store, [Condition("clean")], batch_size=8),
                                [Condition("clean")])  # fmt: skip
    paths = robustness.write(rows, tmp_path / "rob", "first")
    before = {k: p.read_bytes() for k, p in paths.items()}
    monkeypatch.setattr(robustness, "plot", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no plot")))
    with pytest.raises(RuntimeError):
        robustness.write(rows, tmp_path / "rob", "second")
    assert {k: p.read_bytes() for k, p in paths.items()} == before

    out = tmp_path / "preds.csv"
    out.write_text("previous predictions\n")
    n, _, batches = predict.dataset_batches(tiny_dataset, ens.spec, batch_size=4)
    calls = []

    def failing_model(images, missing):  # the second batch fails, as a zero-byte PNG would
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("frame 5: cannot read image")
        return ens.predict(images, missing)

    with pytest.raises(ValueError, match="cannot read image"):
        predict.run(failing_model, batches, ens.spec, out)
    assert out.read_text() == "previous predictions\n"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind
