"""Synthetic multimodal AU data: determinism, reuse, schema, label statistics and the designed
modality specificity (the property a fusion method must be able to exploit)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from farm.config import BP4D_AUS
from farm.data import synth
from farm.data.store import DatasetError, FrameStore, read_meta
from farm.data.synth import AU_EFFECTS, TARGET_RATES, SynthSpec, generate

SMALL = SynthSpec(subjects=6, tasks=2, frames=40, size=32)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "small"
    return out, generate(SMALL, out, progress=False)


def test_spec_validation():
    with pytest.raises(ValueError, match="difficulty"):
        SynthSpec(difficulty="medium")
    with pytest.raises(ValueError, match="modalities"):
        SynthSpec(modalities=("visual", "rgb"))
    with pytest.raises(ValueError, match="modalities"):
        SynthSpec(modalities=())
    with pytest.raises(ValueError, match="frames"):
        SynthSpec(frames=1)
    assert SynthSpec(modalities=("thermal", "visual")).modalities == ("visual", "thermal")


def test_deterministic_and_seed_sensitive(small, tmp_path):
    _, meta = small
    again = generate(SMALL, tmp_path / "again", progress=False)
    assert again.data_hash == meta.data_hash
    other = generate(dataclasses.replace(SMALL, seed=1), tmp_path / "other", progress=False)
    assert other.data_hash != meta.data_hash


def test_reuse_and_conflict(tmp_path):
    spec = SynthSpec(subjects=2, tasks=1, frames=8, size=16)
    out = tmp_path / "d"
    meta = generate(spec, out, progress=False)
    manifest = out / "manifest.parquet"
    stamp = manifest.stat().st_mtime_ns
    assert generate(spec, out, progress=False) == meta
    assert manifest.stat().st_mtime_ns == stamp
    with pytest.raises(DatasetError, match=r"subjects: 2 != 3.*choose another --out"):
        generate(dataclasses.replace(spec, subjects=3), out, progress=False)
    with pytest.raises(DatasetError, match=r"difficulty: default != hard"):
        generate(dataclasses.replace(spec, difficulty="hard"), out, progress=False)
    assert read_meta(out) == meta


def test_interrupted_run_is_regenerated(tmp_path):
    out = tmp_path / "d"
    (out / "images").mkdir(parents=True)
    (out / "images" / "part-00007.arrow").write_bytes(b"junk")
    (out / "manifest.parquet").write_bytes(b"junk")
    spec = SynthSpec(subjects=2, tasks=1, frames=8, size=16)
    meta = generate(spec, out, progress=False)
    assert not (out / "images" / "part-00007.arrow").exists()
    assert meta.data_hash == generate(spec, tmp_path / "fresh", progress=False).data_hash
    assert len(FrameStore(out)) == 16


def test_schema(small):
    out, meta = small
    store = FrameStore(out)
    assert meta.name == "synthetic" and meta.aus == BP4D_AUS and meta.codec == "raw"
    assert meta.modality_names == ("visual", "depth", "thermal")
    assert list(meta.subjects) == ["F001", "M001", "F002", "M002", "F003", "M003"]
    assert meta.subjects["M002"] == {"sex": "M"}
    assert meta.source["generator"] == "farm.data.synth" and meta.source["modalities"] == list(SMALL.modalities)
    assert len(store) == meta.num_frames == 6 * 2 * 40
    labels = store.labels()
    assert set(np.unique(labels)) == {-1, 0, 1}
    assert 0 < (labels == -1).mean() < 0.05
    assert set(store.manifest.column("task").to_pylist()) == {"T1", "T2"}
    assert store.manifest.column("frame").to_pylist()[:40] == list(range(40))
    for name, ch in (("visual", 3), ("depth", 1), ("thermal", 1)):
        img = store.image(123, name)
        assert img.shape == (32, 32, ch) and img.dtype == np.uint8
    depth = np.stack([store.image(i, "depth") for i in range(0, 480, 7)])
    assert (depth[:, 0, 0] == 0).all() and depth[:, 16, 16].mean() > 40  # background 0, face in front


def test_modality_subset(tmp_path):
    spec = SynthSpec(subjects=2, tasks=1, frames=6, size=16, modalities=("depth", "visual"))
    meta = generate(spec, tmp_path / "vd", progress=False)
    assert meta.modality_names == ("visual", "depth")
    store = FrameStore(tmp_path / "vd")
    with pytest.raises(DatasetError, match="thermal"):
        store.meta.modality("thermal")
    assert store.image(0, "depth").shape == (16, 16, 1)
    # a modality's pixels do not depend on which other modalities were generated
    generate(dataclasses.replace(spec, modalities=synth.MODALITIES), tmp_path / "all", progress=False)
    full = FrameStore(tmp_path / "all")
    assert np.array_equal(full.image(5, "visual"), store.image(5, "visual"))
    assert np.array_equal(full.labels(), store.labels())


def _label_set(seed: int = 0, subjects: int = 12, tasks: int = 4, frames: int = 120):
    """Labels exactly as generate() draws them, without rendering: list of (frames, 12) arrays."""
    out = []
    for s in range(subjects):
        for t in range(tasks):
            rng = synth._rng(seed, 1, s, t)
            out.append(synth.latent_to_labels(synth.sample_latent(rng, t, frames), rng))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_label_statistics(seed):
    seqs = _label_set(seed)
    lab = np.concatenate(seqs)
    for j, au in enumerate(BP4D_AUS):
        known = lab[:, j] >= 0
        rate = (lab[known, j] == 1).mean()
        assert abs(rate - TARGET_RATES[au]) < 0.12, (au, rate)

    def cond(a: str, b: str) -> tuple[float, float]:
        ia, ib = BP4D_AUS.index(a), BP4D_AUS.index(b)
        ok = (lab[:, ia] >= 0) & (lab[:, ib] >= 0)
        y_a, y_b = lab[ok, ia] == 1, lab[ok, ib] == 1
        return y_b[y_a].mean(), y_b.mean()

    for a, b in (("AU1", "AU2"), ("AU6", "AU12"), ("AU23", "AU24"), ("AU15", "AU17")):
        p_cond, p = cond(a, b)
        assert p_cond > p + 0.2, (a, b, p_cond, p)
    flips = np.mean([(np.diff(s, axis=0) != 0).mean() for s in seqs])
    assert flips < 0.15
    unknown = (lab == -1).mean()
    assert 0.005 < unknown < 0.04
    # unknown labels come in runs: far fewer run starts than unknown frames
    starts = sum(((np.diff((s == -1).astype(int), axis=0)) == 1).sum() + (s[0] == -1).sum() for s in seqs)
    assert starts < 0.2 * (lab == -1).sum()


def test_tasks_differ():
    seqs = _label_set(subjects=12, tasks=3)
    rate = {t: np.concatenate(seqs[t::3]).clip(0).mean(0) for t in range(3)}
    i12, i1, i15 = BP4D_AUS.index("AU12"), BP4D_AUS.index("AU1"), BP4D_AUS.index("AU15")
    assert rate[0][i12] > rate[1][i12] + 0.15  # T1 (happiness) smiles more than T2 (sadness)
    assert rate[1][i15] > rate[0][i15] + 0.15  # T2 is sad
    assert rate[2][i1] > rate[0][i1] + 0.15  # T3 (surprise) raises brows


def _detectability(spec: SynthSpec, au: str, subjects: int = 3, frames: int = 8) -> dict[str, float]:
    """Ideal-observer detectability of `au` per modality.

    The same subject, nuisances (head motion, light, drift) AND sensor-noise draws are rendered
    twice, once neutral and once with only `au` at intensity 0.7, so the difference image is
    exactly the AU's effect with every other factor cancelled (a within-subject on/off
    comparison without confounds from co-occurring AUs). Its L2 norm per frame is divided by
    the modality's per-pixel frame-to-frame noise, a robust (median-absolute-deviation) estimate
    over face pixels of the neutral sequence, so depth holes and quantisation of one modality
    cannot dominate. This is the d' of a matched filter in white noise: comparable across
    modalities although they differ in channels, range and blur.
    """
    j = BP4D_AUS.index(au)
    score = dict.fromkeys(synth.MODALITIES, 0.0)
    for s in range(subjects):
        subj = dict(synth.make_subject(spec.seed, s), gain=0.9, au_gain=np.ones(len(BP4D_AUS)))
        nz = synth.sample_nuisance(spec.seed, s, 0, frames, synth.DIFFICULTY[spec.difficulty]["nuisance"])

        def rngs(s=s):
            return {m: synth._rng(99, 4, s, i) for i, m in enumerate(synth.MODALITIES)}

        neutral = np.zeros((frames, len(BP4D_AUS)))
        on = neutral.copy()
        on[:, j] = 0.7
        ref = synth.render_sequence(subj, neutral, nz, spec, rngs(), synth.MODALITIES)
        img = synth.render_sequence(subj, on, nz, spec, rngs(), synth.MODALITIES)
        face = (ref["depth"][1:, ..., 0] > 0) & (ref["depth"][:-1, ..., 0] > 0)
        for m in synth.MODALITIES:
            r = ref[m].astype(np.float64)
            sigma = 1.4826 * np.median(np.abs(np.diff(r, axis=0))[face]) / np.sqrt(2)
            effect = np.sqrt(((img[m] - r) ** 2).sum(axis=(1, 2, 3))).mean()
            score[m] += effect / max(sigma, 0.5) / subjects
    return score


SPEC48 = SynthSpec(size=48)


@pytest.mark.parametrize(
    ("au", "strong", "weak"),
    [
        ("AU6", "depth", "visual"),
        ("AU17", "depth", "visual"),
        ("AU14", "depth", "visual"),
        ("AU12", "visual", "depth"),
        ("AU2", "visual", "depth"),
        ("AU7", "visual", "thermal"),
        ("AU4", "thermal", "depth"),
        ("AU23", "thermal", "visual"),
        ("AU24", "thermal", "depth"),
    ],
)
def test_modality_specificity(au, strong, weak):
    d = _detectability(SPEC48, au)
    assert d[strong] > 1.5 * d[weak], d


def test_visual_best_overall_but_not_everywhere():
    d = {au: _detectability(SPEC48, au, subjects=2, frames=4) for au in BP4D_AUS}
    best = {au: max(v, key=v.get) for au, v in d.items()}
    assert sum(b == "visual" for b in best.values()) >= 5
    assert {"depth", "thermal"} <= set(best.values())
    assert best["AU6"] != "visual"


def test_effect_table_drives_rendering(monkeypatch):
    base = _detectability(SPEC48, "AU6", subjects=1, frames=4)
    monkeypatch.setitem(AU_EFFECTS, "AU6", {"visual": 0.3, "depth": 0.0, "thermal": 0.7})
    off = _detectability(SPEC48, "AU6", subjects=1, frames=4)
    assert base["depth"] > 10 and off["depth"] == 0.0
    assert off["visual"] == pytest.approx(base["visual"])


def test_difficulty_orders_effect_to_noise():
    d = {
        k: _detectability(dataclasses.replace(SPEC48, difficulty=k), "AU12", subjects=2, frames=6)["visual"]
        for k in ("easy", "default", "hard")
    }
    assert d["easy"] > 1.5 * d["default"] > 1.5 * 1.2 * d["hard"], d


def test_subject_gap(small):
    """Subjects differ more than one subject's frames do (expressions, light, noise included)."""
    out, _ = small
    store = FrameStore(out)
    imgs = np.stack([store.image(i, "visual") for i in range(len(store))]).astype(np.float64)
    subjects = sorted(set(store.subjects))
    means = np.stack([imgs[store.subjects == s].mean(0) for s in subjects])
    between = means.var(0).mean()
    within = np.mean([imgs[store.subjects == s].var(0).mean() for s in subjects])
    assert between > 2 * within, (between, within)
