"""cluster.yaml, cluster.local.yaml and jobs/*.yaml: checked by Ray's launcher and by the farm's own parser."""

import copy
from pathlib import Path

import pytest
import yaml

from farm.sweep.jobs import JobSpecError, check_job, load_job

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_FILES = ["cluster.yaml", "cluster.local.yaml"]
JOBS = sorted((ROOT / "jobs").glob("*.yaml"))


def ray_validate(config: dict) -> dict:
    """What `ray up` does to a config before launching anything: fill defaults, then schema + semantic checks."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_files_pass_rays_validation(name):
    config = yaml.safe_load((ROOT / name).read_text())
    prepared = ray_validate(config)
    assert prepared["head_node_type"] in prepared["available_node_types"]
    setup = " ".join(config["head_setup_commands"]) + " ".join(config["head_start_ray_commands"])
    assert "start_mlflow.sh" in setup and "--dashboard-host=127.0.0.1" in setup  # nothing on a public interface
    assert "pip install -q -e ~/amf-farm" in " ".join(config["setup_commands"])


def test_the_cloud_cluster_has_a_cpu_head_and_autoscaled_gpu_workers():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    types = config["available_node_types"]
    head, workers = types[config["head_node_type"]], [t for n, t in types.items() if n != config["head_node_type"]]
    assert head["max_workers"] == 0 and workers
    assert all(w["min_workers"] == 0 and w["max_workers"] >= 1 for w in workers)
    assert any(w["node_config"]["InstanceType"].startswith(("g", "p")) for w in workers)  # GPU instance families


def test_the_lab_cluster_uses_the_local_provider_with_head_and_worker_ips():
    config = yaml.safe_load((ROOT / "cluster.local.yaml").read_text())
    assert config["provider"]["type"] == "local" and config["provider"]["head_ip"]
    assert len(config["provider"]["worker_ips"]) == config["max_workers"]


@pytest.mark.parametrize(
    "breakage, error",
    [
        (lambda c: c.__setitem__("availabe_node_types", c.pop("available_node_types")), "availabe_node_types"),
        (lambda c: c.__setitem__("head_node_type", "gpu_head"), "head_node_type"),
        (lambda c: c["available_node_types"]["gpu_worker"].__setitem__("min_workerz", 0), "min_workerz"),
        (lambda c: c["provider"].pop("type"), "type"),
    ],
)
def test_a_broken_copy_fails_rays_validation(breakage, error):
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    breakage(config)
    with pytest.raises(Exception, match=error):
        ray_validate(config)


def test_a_broken_local_copy_fails_rays_validation():
    config = yaml.safe_load((ROOT / "cluster.local.yaml").read_text())
    config["provider"]["head_ipp"] = config["provider"].pop("head_ip")
    with pytest.raises(Exception, match="head_ip"):
        ray_validate(config)


@pytest.mark.parametrize("path", JOBS, ids=[p.stem for p in JOBS])
def test_every_job_parses_and_names_a_valid_command_and_space(path):
    spec = load_job(path)
    argv = check_job(spec)
    assert argv[0] == "farm" and argv[1] in ("sweep", "robustness", "promote", "report")
    assert spec.metadata.get("experiment")
    if argv[1] == "sweep":
        assert "--address" in argv and argv[argv.index("--address") + 1] == "auto"
        assert argv[argv.index("--storage") + 1].startswith("/shared")  # shared storage on the cluster


def test_the_paper_experiments_all_have_a_job():
    argvs = [check_job(load_job(p)) for p in JOBS]
    spaces = {argv[argv.index("--space") + 1] for argv in argvs if "--space" in argv}
    assert {"amf_bp4d", "amf_bp4dplus", "baselines", "ablation_modalities", "ablation_cutswitch", "smoke"} <= spaces
    assert any(argv[1] == "robustness" for argv in argvs)


@pytest.mark.parametrize(
    "text, error",
    [
        ("entrypoint: farm sweep --space nope\n", "search space nope not found|nope"),
        ("entrypoint: farm sweep --spaec smoke\n", "unrecognized arguments: --spaec"),
        ("entrypoint: python train.py\n", "must run `farm"),
        ("entrypoint: farm sweep --data $DATA\n", r"uses \$DATA, which runtime_env.env_vars does not define"),
        ("entrypoint: farm sweep\nruntim_env: {}\n", r"unknown key\(s\) \['runtim_env'\]"),
        ("entrypoint: farm sweep\nruntime_env: {env_vars: {N: 3}}\n", "must map names to strings"),
        ("entrypoint: [farm, sweep]\n", "entrypoint must be a non-empty command string"),
    ],
)
def test_bad_job_specs_fail_naming_the_file(tmp_path, text, error):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(JobSpecError, match=error):
        check_job(load_job(p))


def test_env_overrides_reach_the_entrypoint():
    spec = load_job(ROOT / "jobs" / "smoke.yaml").with_env({"FARM_SHARED": "/mnt/x", "FARM_SWEEP_NAME": "s2"})
    argv = check_job(spec)
    assert argv[argv.index("--data") + 1] == "/mnt/x/data/synthetic" and argv[argv.index("--name") + 1] == "s2"
    assert spec.submit_kwargs()["runtime_env"]["env_vars"]["FARM_SHARED"] == "/mnt/x"


def test_a_job_spec_with_a_repeated_key_is_refused_naming_it(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text("entrypoint: farm sweep\nentrypoint: farm sweep --trials 2\n")
    with pytest.raises(JobSpecError, match=r"job.yaml: duplicate key 'entrypoint' on line 2"):
        load_job(spec)
