import pytest

from farm.sweep.space import SPACE_DIR, SpaceError, grid_size, load_space


@pytest.mark.parametrize(
    "name", ["smoke", "amf_bp4d", "amf_bp4dplus", "baselines", "ablation_modalities", "ablation_cutswitch"]
)
def test_shipped_spaces_load_and_search_what_the_issue_asks(name):
    space = load_space(name)
    keys = {p.key for p in space.params}
    if name.startswith("amf"):
        assert {"amf.lambda_fused", "amf.lambda_modality", "amf.lambda_guidance", "amf.num_samples", "amf.tau_start",
                "amf.tau_floor", "amf.tau_decay", "augment.cut_switch_block", "train.lr"} <= keys  # fmt: skip
        assert 0 in next(p for p in space.params if p.key == "augment.cut_switch_block").choices  # 0 = off
    if name == "baselines":
        assert "model.fusion" in keys
    if name.startswith("ablation"):  # every cell of the paper's table, once
        assert space.sweep["sampler"] == "grid" and grid_size(space) == (12 if "modalities" in name else 4)
    assert space.base_config().data.path == ""  # the dataset comes from --data


@pytest.mark.parametrize(
    "body, msg",
    [
        (
            "space:\n  amf.lambda_fusd: {float: [1, 2]}\n",
            r"bad.yaml: space key 'amf.lambda_fusd' is not a config field",
        ),
        ("space:\n  train.lr: {float: [0.1, 0.01]}\n", r"bad.yaml: train.lr: low 0.1 > high 0.01"),
        ("space:\n  amf.num_samples: {float: [1, 2]}\n", r"amf.num_samples: a float range, but the field is int"),
        ("space:\n  amf.num_samples: {int: [1, many]}\n", r"amf.num_samples: int must be \[low, high\] numbers"),
        ("space:\n  train.lr: {float: [0, 1], log: true}\n", r"train.lr: a log range needs low > 0"),
        ("space:\n  amf.eval_mode: {choice: [mean, vote]}\n", r"amf.eval_mode: must be 'mean' or 'argmax'"),
        ("space:\n  amf.tau_floor: {float: [0.5, 2.0]}\n", r"amf.tau_floor: must be <= tau_start"),
        ("fixed:\n  train.epoch: 3\n", r"fixed key 'train.epoch' is not a config field"),
        ("fixed:\n  train.lr: 0.1\nspace:\n  train.lr: {float: [0.1, 0.2]}\n", r"train.lr both fixed and searched"),
        ("sweep:\n  trials: many\n", r"sweep.trials must be int"),
        ("sweeps: {}\n", r"unknown top-level key"),
        ("space:\n  train.lr: [0.1, 0.2]\n", r"train.lr: expected a mapping"),
        ("sweep:\n  sampler: random\n", r"sweep.sampler must be one of tpe, grid"),
        (
            "space:\n  train.lr: {float: [0.1, 0.2]}\nsweep:\n  sampler: grid\n",
            r"grid needs only choice params \(train.lr",
        ),
        (
            "space:\n  train.lr: {float: [0.1, 0.2]}\n  amf.tau_decay: {float: [0, 1]}\n  train.lr: {float: [1, 2]}\n",
            r"bad.yaml: duplicate key 'train.lr' on line 4 \(first on line 2\)",
        ),
        ("fixed:\n  train.epochs: 2\nsweep:\n  trials: 3\nfixed: {}\n", r"bad.yaml: duplicate key 'fixed' on line 5"),
        ("", r"bad.yaml: empty search space"),
        ("# a comment, nothing else\n", r"bad.yaml: empty search space"),
        ("{}\n", r"bad.yaml: empty search space"),
        ("space:\n  train.lr: {float: [1.0e-5, .inf]}\n", r"bad.yaml: train.lr: must be a finite number, got inf"),
        ("sweep:\n  objective: cv/test_f1_mean\n", r"bad.yaml: sweep.objective 'cv/test_f1_mean': only cross-valid"),
        ("sweep:\n  objective: [cv/val_f1_mean, cv/val_f1_mean]\n", r"sweep.objective repeats a metric"),
        ("sweep:\n  objective: []\n", r"sweep.objective must be a metric name or a non-empty list"),
        ("sweep:\n  objective: 3\n", r"sweep.objective must be str or list"),
    ],
)
def test_bad_space_files_fail_at_once_naming_the_key(tmp_path, body, msg):
    p = tmp_path / "bad.yaml"
    p.write_text(body)
    with pytest.raises(SpaceError, match=msg):
        load_space(p)


def test_unknown_space_name_lists_the_shipped_ones():
    import re

    shipped = sorted(p.stem for p in SPACE_DIR.glob("*.yaml"))  # the repository's search_spaces/, whatever it holds
    assert {"smoke", "amf_bp4d", "baselines"} <= set(shipped)
    with pytest.raises(SpaceError, match=re.escape(f"search space nope not found (shipped: {', '.join(shipped)})")):
        load_space("nope")
    assert SPACE_DIR.name == "search_spaces"


def test_check_plan_refuses_a_fusion_the_dataset_cannot_feed(tmp_path):
    from farm.data.synth import SynthSpec, generate
    from farm.sweep.run import SweepError, SweepOptions, check_plan

    data = tmp_path / "three"
    generate(SynthSpec(subjects=6, tasks=1, frames=4, size=16), data, progress=False)
    (tmp_path / "s.yaml").write_text("space:\n  model.fusion: {choice: [late, temt]}\nsweep:\n  folds: [P1]\n")
    with pytest.raises(SweepError, match=r"s.yaml: model.fusion temt: TEMT-Net takes exactly two modalities"):
        check_plan(load_space(str(tmp_path / "s.yaml")), SweepOptions(data=str(data)))
    (tmp_path / "ok.yaml").write_text("space:\n  model.fusion: {choice: [late, mtut]}\nsweep:\n  folds: [P1]\n")
    flat, folds = check_plan(load_space(str(tmp_path / "ok.yaml")), SweepOptions(data=str(data)))
    assert folds == ["P1"] and flat["data.path"] == str(data)


def test_objectives_default_single_and_list(tmp_path):
    from farm.sweep.space import objectives

    assert objectives({}) == ["cv/val_f1_mean"]
    assert objectives({"objective": "cv/val_f1_missing_worst"}) == ["cv/val_f1_missing_worst"]
    two = ["cv/val_f1_mean", "cv/val_f1_missing_worst"]
    p = tmp_path / "mo.yaml"
    p.write_text(
        "space:\n  train.lr: {float: [1.0e-4, 1.0e-3]}\nsweep:\n  objective: [cv/val_f1_mean, cv/val_f1_missing_worst]\n"
    )
    assert objectives(load_space(p).sweep) == two


def test_an_objective_the_trials_do_not_report_fails_at_plan_time_naming_the_key(tmp_path):
    from farm.data.synth import SynthSpec, generate
    from farm.sweep.run import SweepError, SweepOptions, check_plan

    data = tmp_path / "two"
    generate(SynthSpec(subjects=6, tasks=1, frames=4, size=16, modalities=("visual", "depth")), data, progress=False)
    (tmp_path / "s.yaml").write_text("space:\n  train.lr: {float: [1.0e-4, 1.0e-3]}\nsweep:\n  folds: [P1]\n"
                                     "  objective: [cv/val_f1_mean, cv/val_f1_missing_thermal]\n")  # fmt: skip
    with pytest.raises(SweepError, match=r"s.yaml: sweep.objective 'cv/val_f1_missing_thermal' is not a metric"):
        check_plan(load_space(str(tmp_path / "s.yaml")), SweepOptions(data=str(data)))
    (tmp_path / "off.yaml").write_text("fixed:\n  train.val_robustness: []\nsweep:\n  folds: [P1]\n"
                                       "  objective: cv/val_f1_missing_worst\n")  # fmt: skip
    with pytest.raises(SweepError, match=r"'cv/val_f1_missing_worst' is not a metric these trials report"):
        check_plan(load_space(str(tmp_path / "off.yaml")), SweepOptions(data=str(data)))
