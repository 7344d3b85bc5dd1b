import pytest

from farm.config import BP4D_AUS, Config, ConfigError, flatten, load_config, parse_overrides, to_dict, unflatten


def test_defaults_are_the_papers():
    cfg = Config()
    assert (cfg.amf.lambda_fused, cfg.amf.lambda_modality, cfg.amf.lambda_guidance) == (2.0, 1.0, 1.0)
    assert cfg.amf.num_samples == 100 and cfg.augment.cut_switch_block == 50
    assert (cfg.train.lr, cfg.train.batch_size) == (1e-4, 50)
    assert (cfg.amf.tau_start, cfg.amf.tau_floor) == (1.0, 0.5)
    assert cfg.data.aus == BP4D_AUS and "AU14" in BP4D_AUS and "AU25" not in BP4D_AUS


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
