import re

import pytest

from farm.config import (
    BP4D_AUS,
    Config,
    ConfigError,
    YamlError,
    flatten,
    load_config,
    load_yaml,
    parse_overrides,
    to_dict,
    unflatten,
)


def test_defaults_are_the_papers():
    cfg = Config()
    assert (cfg.amf.lambda_fused, cfg.amf.lambda_modality, cfg.amf.lambda_guidance) == (2.0, 1.0, 1.0)
    assert cfg.amf.num_samples == 100 and cfg.augment.cut_switch_block == 50
    assert (cfg.train.lr, cfg.train.batch_size) == (1e-4, 50)
    assert (cfg.amf.tau_start, cfg.amf.tau_floor) == (1.0, 0.5)
    assert cfg.data.aus == BP4D_AUS and "AU14" in BP4D_AUS and "AU25" not in BP4D_AUS


def test_throughput_knobs_default_to_the_papers_setting():
    cfg = Config()
    assert (cfg.data.augment_on, cfg.train.precision, cfg.train.channels_last) == ("worker", "fp32", False)
    assert load_config("paper") == load_config("paper", {"data.augment_on": "worker", "train.precision": "fp32"})
    fast = unflatten({"data.augment_on": "device", "train.precision": "bf16", "train.channels_last": "true"})
    assert (fast.data.augment_on, fast.train.precision, fast.train.channels_last) == ("device", "bf16", True)
    assert unflatten({"train.precision": "fp16", "train.device": "cuda"}).train.precision == "fp16"


def test_frozen():
    with pytest.raises(AttributeError):
        Config().amf.num_samples = 3  # type: ignore[misc]


def test_flat_round_trip_and_coercion_from_strings():
    cfg = unflatten(
        {"amf.num_samples": "16", "augment.flip": "false", "train.lr": "1e-3", "data.modalities": "visual,depth"}
    )
    assert cfg.amf.num_samples == 16 and cfg.augment.flip is False and cfg.train.lr == 1e-3
    assert cfg.data.modalities == ("visual", "depth")
    assert unflatten(flatten(cfg)) == cfg
    assert to_dict(cfg)["data"]["modalities"] == ["visual", "depth"]


@pytest.mark.parametrize(
    "flat,match",
    [
        ({"amf.num_sample": 3}, "unknown config key 'amf.num_sample'"),
        ({"amf.num_samples": 0}, "amf.num_samples"),
        ({"amf.num_samples": 2.5}, "amf.num_samples: expected int"),
        ({"amf.tau_floor": 2.0}, "amf.tau_floor"),
        ({"amf.eval_mode": "median"}, "amf.eval_mode"),
        ({"augment.flip": "maybe"}, "augment.flip: expected bool"),
        ({"train.lr": "fast"}, "train.lr: expected float"),
        ({"data.augment_on": "gpu"}, r"^data.augment_on: must be 'worker' or 'device', got 'gpu'$"),
        ({"data.decode": "gpu"}, r"^data.decode: must be 'worker' or 'device', got 'gpu'$"),
        ({"data.decode": "device"}, r"^data.decode: 'device' needs data.augment_on: device"),
        ({"train.precision": "fp8"}, r"^train.precision: must be fp32, bf16 or fp16, got 'fp8'$"),
        ({"train.precision": "fp16", "train.device": "cpu"}, r"^train.precision: fp16 autocast needs a CUDA device"),
        ({"train.channels_last": "sometimes"}, "train.channels_last: expected bool"),
    ],
)
def test_bad_values_name_the_key(flat, match):
    with pytest.raises(ConfigError, match=match):
        unflatten(flat)


def test_yaml_preset_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("amf:\n  num_samples: 8\ntrain:\n  epochs: 3\n")
    cfg = load_config(f, {"train.epochs": "5"})
    assert cfg.amf.num_samples == 8 and cfg.train.epochs == 5
    assert load_config("cpu").amf.num_samples < Config().amf.num_samples
    with pytest.raises(ConfigError, match="presets: cpu"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("amf: [1, 2]\n")
    with pytest.raises(ConfigError, match="section 'amf' must be a mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["amf.num_samples"])


FLOAT_KEYS = [k for k, v in flatten(Config()).items() if isinstance(v, float)]


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("value, shown", [("inf", "inf"), ("-inf", "-inf"), ("nan", "nan"), (float("inf"), "inf")])
def test_every_float_field_must_be_finite(key, value, shown):
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}: must be a finite number, got {shown}$"):
        unflatten({key: value})


def test_non_finite_values_are_refused_from_yaml_and_the_command_line(tmp_path, capsys):
    f = tmp_path / "c.yaml"
    f.write_text("amf:\n  tau_decay: .nan\n")
    with pytest.raises(ConfigError, match=r"^amf.tau_decay: must be a finite number, got nan$"):
        load_config(f)
    from farm.cli import main

    assert main(["train", "--data", str(tmp_path / "nowhere"), "--set", "train.lr=inf"]) == 2
    err = capsys.readouterr().err
    assert err == "farm: error: train.lr: must be a finite number, got inf\n"
    assert FLOAT_KEYS and "train.lr" in FLOAT_KEYS and "data.val_fraction" in FLOAT_KEYS


def test_strict_yaml_refuses_duplicate_keys_naming_file_key_and_line(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text("a: 1\nb:\n  c: 2\n  d: 3\n  c: 4\n")
    with pytest.raises(YamlError, match=r"dup.yaml: duplicate key 'c' on line 5 \(first on line 3\)"):
        load_yaml(p)
    with pytest.raises(YamlError, match=r"^spec: duplicate key 'a' on line 2 \(first on line 1\)"):
        load_yaml("a: 1\na: 2\n", "spec")
    with pytest.raises(YamlError, match=r"^flow.yaml: duplicate key 1 on line 1"):
        load_yaml("{1: a, 1: b}", "flow.yaml")
    with pytest.raises(
        YamlError, match=r"^x.yaml: not valid YAML at line 2, column 1: expected ',' or '\]'.*line 1\)$"
    ):
        load_yaml("a: [1\n", "x.yaml")
    with pytest.raises(YamlError, match=r"^x.yaml: not valid YAML at line 1, .*python/object"):
        load_yaml("a: !!python/object:os.system {}\n", "x.yaml")  # still safe_load
    assert isinstance(YamlError("x"), ValueError)
    # what safe_load reads is read the same: merge keys may override what they merge in
    assert load_yaml("base: &b {x: 1, y: 2}\nover:\n  <<: *b\n  y: 3\n", "m") == {
        "base": {"x": 1, "y": 2},
        "over": {"x": 1, "y": 3},
    }
    assert load_yaml("", "empty") is None and load_yaml("[1, 2]") == [1, 2]


@pytest.mark.parametrize(
    "body, msg",
    [
        ("train:\n  lr: 0.1\n  lr: 0.2\n", r"c.yaml: duplicate key 'lr' on line 3 \(first on line 2\)"),
        (
            "train:\n  lr: 0.1\namf:\n  num_samples: 4\ntrain:\n  epochs: 2\n",
            r"c.yaml: duplicate key 'train' on line 5",
        ),
        ("", r"c.yaml: empty config file"),
        ("# nothing\n", r"c.yaml: empty config file"),
    ],
)
def test_config_files_with_duplicate_keys_or_nothing_in_them_are_refused(tmp_path, body, msg):
    f = tmp_path / "c.yaml"
    f.write_text(body)
    with pytest.raises(ConfigError, match=msg):
        load_config(f)


@pytest.mark.parametrize(
    "text,expected",
    [("0.2,0.8", (0.2, 0.8)), ("[0.2,0.8]", (0.2, 0.8)), ("[0.2, 0.8]", (0.2, 0.8)), ("[]", ()), ("", ())],
)
def test_tuple_overrides_take_commas_or_yamls_flow_list(text, expected):
    assert unflatten(parse_overrides([f"train.val_noise_sigmas={text}"])).train.val_noise_sigmas == expected


def test_string_tuple_override_in_flow_form_keeps_the_names():
    cfg = unflatten(parse_overrides(["data.modalities=[visual, 'depth']"]))
    assert cfg.data.modalities == ("visual", "depth")


def test_auto_loader_workers_follow_the_cpus_up_to_the_cap():
    from farm.config import AUTO_LOADER_WORKERS, resolve_num_workers

    assert [resolve_num_workers(-1, c) for c in (0.5, 1, 2, 5, 5.9, 16, 64)] == [0, 0, 1, 4, 4, 8, AUTO_LOADER_WORKERS]
    assert resolve_num_workers(3, 64) == 3 and resolve_num_workers(0) == 0  # a count is kept as it is
    assert 0 <= resolve_num_workers(-1) <= AUTO_LOADER_WORKERS  # this machine's cores
    assert load_config("paper").data.num_workers == -1
    with pytest.raises(ConfigError, match=r"^data.num_workers: must be >= 0, or -1 \(auto\), got -2$"):
        unflatten({"data.num_workers": -2})


def test_a_sweep_unit_resolves_auto_loader_workers_from_its_cpu_share():
    from farm.sweep.worker import fold_config

    flat = flatten(load_config("paper"))
    unit = {"fold": "P2", "seed": 7, "name": "P2"}
    cfg = fold_config({"flat": flat, "threads": 5}, unit)  # 3 folds sharing one GPU of a 16-core node
    assert (cfg.data.fold, cfg.train.seed, cfg.data.num_workers) == ("P2", 7, 4)
    assert fold_config({"flat": {**flat, "data.num_workers": 2}, "threads": 5}, unit).data.num_workers == 2
    assert fold_config({"flat": flat, "threads": 1}, unit).data.num_workers == 0
