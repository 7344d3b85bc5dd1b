"""The `farm` command's argument tree, and nothing else: no command is implemented or imported here.

Every (sub)command names its handler as "module:function" (`farm.cli.data`, `farm.cli.train`,
`farm.cli.sweep`, `farm.cli.evaluate`); `farm.cli.main` imports the one that runs. So a job spec
can be checked against this parser (farm/sweep/jobs.py) without importing any command.
"""

from __future__ import annotations

import argparse

from farm.config import valid_keys

EPILOG = """\
examples:
  farm data synth --out data/synthetic
  farm data prepare bp4d --root /data/BP4D_crops --out data/bp4d
  farm data folds --dataset bp4dplus
  farm sweep                                   # the smoke sweep: synthetic set, local Ray, ./mlflow.db
  farm sweep --space amf_bp4d --data data/bp4d --trials 40 --address auto
  farm train --data data/synthetic --fusion amf --fold P1 --config cpu --out runs/amf_P1.json
  farm train --data data/synthetic --fusion single:depth --fold P2 --set train.epochs=5
  farm promote --sweep smoke-20261124-101500   # best trial -> MLflow Model Registry (champion if it wins)
  farm predict --model models:/amf-synthetic@champion --data data/synthetic --out preds.csv
  farm robustness --model models:/amf-synthetic@champion
  farm report --sweep smoke-20261124-101500 --paper bp4d --out reports/smoke
  farm submit jobs/smoke.yaml --follow          # a Ray Job on a cluster (docs/cluster.md)
"""


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="generate the synthetic multimodal AU dataset (the embedded default)",
        description="Render a synthetic visual + depth + thermal AU dataset with subjects, tasks and AU episodes. "
        "Re-running with the same arguments reuses the existing dataset; different arguments on an existing "
        "directory are refused.",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--subjects", type=int, default=12, help="number of subjects, alternating F/M (default 12)")
    p.add_argument("--tasks", type=int, default=4, help="tasks (sequences) per subject (default 4)")
    p.add_argument("--frames", type=int, default=60, help="frames per task (default 60)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64; the paper uses 256)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--modalities", default="visual,depth,thermal", help="comma list from visual,depth,thermal")
    p.add_argument("--difficulty", default="default", choices=("easy", "default", "hard"),
                   help="AU effect strength vs nuisances; 'easy' trains in seconds (tests)")  # fmt: skip
    p.set_defaults(handler="farm.cli.data:cmd_synth")


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="build a dataset from a licensed BP4D or BP4D+ copy (pre-processed crops or the raw release)",
        description="Read ROOT/AUCoding/AU_OCC/<subject>_<task>.csv and the images of every modality, and write the "
        "farm's dataset (manifest + memory-mapped image shards) to --out. ROOT is either a pre-processed tree "
        "ROOT/<modality folder>/<subject>/<task>/<frame>.jpg|png or the raw release (Sequences(2D+3D), "
        "BP4D-training or 2D+3D; 3D meshes are projected to depth maps). Every frame left out is reported with its "
        "reason (see `farm data check`). Re-running with the same arguments reuses the result.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  farm data prepare bp4d --root /data/BP4D_crops --out data/bp4d\n"
        "  farm data prepare bp4dplus --root /data/BP4D+ --out data/bp4dplus --layout raw --frame-offset -1\n"
        "  farm data prepare bp4d --root /data/crops --modalities visual=RGB,depth=Depth --out data/bp4d",
    )
    p.add_argument("dataset", choices=("bp4d", "bp4dplus"), help="dataset family (selects defaults and folds)")
    p.add_argument("--root", required=True, help="the licensed copy's top folder (holds AUCoding/)")
    p.add_argument("--out", required=True, help="output dataset directory (new, or one this command wrote)")
    p.add_argument("--modalities", help="comma list of name[=folder]; default visual,depth (bp4d), "
                   "visual,depth,thermal (bp4dplus)")  # fmt: skip
    p.add_argument("--layout", default="auto", choices=("auto", "tree", "raw"),
                   help="tree = pre-processed crops, raw = the release; auto picks tree if the first modality folder exists")  # fmt: skip
    p.add_argument("--size", type=int, default=256, help="stored image side in pixels (default 256, as the paper)")
    p.add_argument("--codec", default="jpeg", choices=("jpeg", "png", "raw"),
                   help="image storage (default jpeg q95; see docs/benchmarks.md for the trade-off)")  # fmt: skip
    p.add_argument("--frame-offset", type=int, default=0,
                   help="label row of frame f uses image f+OFFSET (default 0; BP4D+ copies may need -1: check the "
                   "'label row without frames' count)")  # fmt: skip
    p.add_argument("--tasks", help="comma list of tasks to keep (default: BP4D all, BP4D+ T1,T6,T7,T8)")
    p.add_argument("--aus", help="comma list of AUs (default the BP4D twelve)")
    p.add_argument("--strict", action="store_true", help="fail instead of skipping any frame")
    p.add_argument("--workers", type=int, default=0, help="decoding processes (default: one per core)")
    p.set_defaults(handler="farm.cli.data:cmd_prepare")


def _add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="summarise a prepared dataset and every frame that was skipped",
                       description="Print counts of subjects, tasks and frames, frames per modality, the rate of "
                       "each AU (1 / 0 / unknown) and the frames left out by `farm data prepare` with their reasons.")  # fmt: skip
    p.add_argument("path", help="dataset directory")
    p.add_argument("--all-skips", action="store_true", help="list every skipped frame, not three per reason")
    p.set_defaults(handler="farm.cli.data:cmd_check")


def _add_folds(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("folds", help="print the subject-exclusive folds of a dataset family or a prepared dataset",
                       description="Folds are named by their TEST partition: fold P3 trains on P1+P2 and tests on P3 "
                       "(ME-GraphAU's fold1 is our P3). BP4D uses the standard DRML partitions, BP4D+ the farm's "
                       "seeded sex-balanced list (farm/data/partitions/bp4dplus.yaml). Validation subjects for early "
                       "stopping are carved from each fold's training subjects.")  # fmt: skip
    p.add_argument("path", nargs="?", help="a prepared dataset (checks the folds against its subjects)")
    p.add_argument("--dataset", choices=("bp4d", "bp4dplus", "synthetic"), help="dataset family, without a dataset")
    p.add_argument("--fold-file", default="", help="YAML partitions file replacing the standard folds")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of training subjects used for validation")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the validation carve-out")
    p.add_argument("--partition", type=int, default=0, help="subject partition r (data.partition): 0 the standard "
                   "folds, r >= 1 a sex-balanced redraw of the same subjects with seed r (farm sweep --partitions)")  # fmt: skip
    p.set_defaults(handler="farm.cli.data:cmd_folds")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train and test one subject-exclusive fold",
        description="Train one fold with early stopping on validation subjects carved from the training subjects, "
        "then evaluate the best epoch once on the test partition and print per-AU F1. Config precedence: "
        "dataclass defaults (the paper's) < --config FILE|PRESET < --fusion/--fold/--epochs < --set.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="config keys for --set:\n  " + "\n  ".join(valid_keys()),
    )
    p.add_argument("--data", required=True, help="prepared dataset directory")
    p.add_argument("--fusion", help="amf, late, early, cam, mtut, temt or single:<modality> (default amf)")
    p.add_argument("--fold", help="fold, named by its test partition (default P1)")
    p.add_argument("--epochs", type=int, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--config", help="YAML config file or preset name (presets: cpu, paper)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--out", help="write the result as JSON here")
    p.add_argument("--checkpoint-dir", help="save last/best checkpoints here and resume from them")
    p.set_defaults(handler="farm.cli.train:cmd_train")


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="search configurations: folds in parallel on Ray Train, Optuna TPE + ASHA on Ray Tune, all in MLflow",
        description="Each trial is one configuration proposed by Optuna (TPE); its subject-exclusive folds train "
        "concurrently as Ray Train workers (a GPU per fold when the cluster has GPUs), each early-stopping on its "
        "own validation subjects and testing once on its test partition. The objective is the fold-mean "
        "validation F1; ASHA stops weak trials on it per epoch. Every trial is a parent MLflow run, every fold a "
        "child run. --seeds N trains every fold N times (the objective and every F1 average the seeds; their "
        "spread is reported); --partitions N repeats the folds on N subject partitions (the standard one and "
        "N-1 sex-balanced redraws). --protocol nested runs one search per outer fold instead (a trial trains only that "
        "fold; --trials per fold) and reports the mean test F1 of each fold's selected configuration. With no "
        "arguments: the smoke sweep on the synthetic set (generated if missing), a local Ray and ./mlflow.db.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  farm sweep\n  farm sweep --space search_spaces/amf_bp4d.yaml --data data/bp4d --trials 40 "
        "--address auto\n  farm sweep --seeds 3 --protocol nested\n  farm sweep --partitions 3 --seeds 2\n  farm sweep --resume --name smoke-20261124-101500",
    )
    p.add_argument("--space", default="", help="search-space YAML file or name in search_spaces/ (default smoke; "
                   "--resume: the sweep's own)")  # fmt: skip
    p.add_argument("--data", default="", help="prepared dataset (default data/synthetic, generated if missing)")
    p.add_argument(
        "--fusion", default="", help="fix the fusion head (amf, late, early, cam, mtut, temt, single:<modality>)"
    )
    p.add_argument("--trials", type=int, default=0, help="number of trials (nested: per outer fold; default: the "
                   "space file's)")  # fmt: skip
    p.add_argument("--max-concurrent", type=int, default=0, help="trials running at once (default: the space file's)")
    p.add_argument("--address", default="", help="Ray cluster: auto or HOST:PORT (default: start a local Ray)")
    p.add_argument("--tracking-uri", default="", help="MLflow tracking URI (default sqlite:///./mlflow.db)")
    p.add_argument("--name", default="", help="sweep name = MLflow experiment (default <space>-<time>)")
    p.add_argument("--storage", default="runs/sweeps", help="where Tune/Train state and checkpoints go (shared "
                   "storage on a cluster; default runs/sweeps)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue the sweep --name after Ctrl-C or a crash")
    p.add_argument("--seed", type=int, default=0, help="TPE sampler seed")
    p.add_argument("--seeds", type=int, default=0, help="training seeds per fold: train.seed + 0..N-1, the subject "
                   "split unchanged (default: the space file's sweep.seeds, else 1)")  # fmt: skip
    p.add_argument("--partitions", type=int, default=0, help="subject partitions: every trial trains every fold "
                   "of N subject-exclusive partitions (0: the standard one; 1..N-1: sex-balanced redraws, seed r); "
                   "the objective averages them and their spread is reported (default: the space file's "
                   "sweep.partitions, else 1)")  # fmt: skip
    p.add_argument("--protocol", default="", help="joint: one search, a trial "
                   "trains every fold; nested: one search per outer fold (default: the space file's sweep.protocol, "
                   "else joint)")  # fmt: skip
    p.add_argument("--gpus-per-fold", default="", help="GPUs per fold (and seed) worker, e.g. 1/3: a 3-fold trial "
                   "shares one GPU (default: the space file's sweep.gpus_per_fold, else one GPU per fold when a "
                   "trial fits, else an equal share)")  # fmt: skip
    p.add_argument("--cpus-per-fold", type=float, default=0.0, help="CPUs per fold (and seed) worker; its torch "
                   "threads follow (default: the node's CPUs shared among the workers)")  # fmt: skip
    p.add_argument("--tracking-relay", default="auto", choices=("auto", "on", "off"),
                   help="workers log to MLflow through a Ray actor on this node (auto: when the cluster has other "
                   "nodes and the store is sqlite or a 127.0.0.1 server; docs/cluster.md)")  # fmt: skip
    p.set_defaults(handler="farm.cli.sweep:cmd_sweep")


def _tracking(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", default="", help="MLflow tracking URI (default sqlite:///./mlflow.db)")


def _add_promote(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "promote",
        help="register a sweep's best trial in the MLflow Model Registry; it becomes champion only if it wins",
        description="Pick the sweep's best finished trial by a validation metric, package its fold models as one "
        "MLflow model (an ensemble: probabilities averaged over the folds, and their seeds with sweep.seeds > 1; see docs/registry.md), and register a "
        "new version with its lineage (sweep, trial, fold runs, data, split and partitions hashes, git SHA, CV "
        "metrics). The alias 'champion' moves to it only if a paired subject-level bootstrap of the test-fold F1 "
        "difference against the current champion has its lower 95%% bound above zero (or there is no champion); "
        "otherwise the version gets 'challenger' and the reason. Then the robustness study runs and is attached. "
        "A nested sweep registers its selection: the fold models of the trial each outer fold's search selected, "
        "compared with the champion on their pooled test predictions (each subject predicted by a model whose "
        "selection never saw it).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  farm promote --sweep smoke-20261124-101500\n"
        "  farm promote --sweep amf-bp4d --model-name amf-bp4d-vd --tracking-uri http://127.0.0.1:5000\n"
        "  farm promote --sweep amf-bp4d --trial 3f2a_00007 --force",
    )
    p.add_argument("--sweep", required=True, help="sweep name (its MLflow experiment)")
    p.add_argument("--metric", default="", help="selection metric, higher is better (default: the sweep's first "
                   "objective, cv/val_f1_mean unless its space named others; with several objectives that picks the "
                   "Pareto front's best by the first; validation subjects only: test metrics are refused)")  # fmt: skip
    p.add_argument("--model-name", default="", help="registered model name (default <fusion>-<dataset>)")
    p.add_argument("--trial", default="", help="promote this trial (run name) instead of the best (nested: that "
                   "trial's one outer-fold model instead of the selection)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="make it champion whatever the bootstrap says (recorded)")
    p.add_argument("--no-robustness", action="store_true", help="skip the robustness study")
    p.add_argument("--data", default="", help="dataset for the robustness study (default: the trial's data.path)")
    p.add_argument("--bootstrap", type=int, default=2000, help="subject resamples of the bootstrap (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap and noise seed (default 0)")
    p.add_argument("--stride", type=int, default=1, help="robustness on every N-th test frame (default 1 = all)")
    _tracking(p)
    p.set_defaults(handler="farm.cli.evaluate:cmd_promote")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="per-frame AU probabilities and 0/1 decisions from a registered model",
        description="Load a registered model and predict every frame of a prepared dataset (--data) or of an image "
        "tree (--input TREE/<modality>/**/<frame>.jpg|png, frames matched by path). A modality the model reads "
        "but the input lacks is filled with zeros after normalisation, as in the robustness study; the command "
        "says which, and the CSV has a 'missing' column. Decisions use the threshold 0.5 the model was evaluated at.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  farm predict --model models:/amf-synthetic@champion --data data/synthetic --subjects F001\n"
        "  farm predict --model models:/amf-bp4d/3 --input /data/new_session --out preds.csv",
    )
    p.add_argument("--model", required=True, help="models:/NAME@ALIAS, models:/NAME/VERSION or a model directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="a prepared dataset directory")
    src.add_argument("--input", help="an image tree: INPUT/<modality>/**/<frame>.jpg|png")
    p.add_argument("--subjects", default="", help="with --data: comma list of subjects (default all)")
    p.add_argument("--out", default="predictions.csv", help="output CSV (default predictions.csv)")
    p.add_argument("--batch-size", type=int, default=128, help="frames per model call (default 128)")
    _tracking(p)
    p.set_defaults(handler="farm.cli.evaluate:cmd_predict")


def _add_robustness(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "robustness",
        help="the paper's missing/noisy-modality study (Fig. 4, 5) for a model or a trial, logged to MLflow",
        description="Test each fold model on its own fold's test subjects with each modality missing (zeros; "
        "with three modalities also each pair) and with Gaussian noise sigma 0.1, 0.2, 0.5, 0.8 on the [-1, 1] "
        "input of each modality and of all. Writes a table (CSV + Markdown) and PNG curves to the run of the "
        "model version (--model) or of the trial (--run); a run that already has a study keeps it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  farm robustness --model models:/amf-synthetic@champion\n"
        "  farm robustness --run 0123abcd... --data data/bp4d --stride 5",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", default="", help="models:/NAME@ALIAS or models:/NAME/VERSION")
    which.add_argument("--run", default="", help="a trial's parent run id (from a sweep)")
    p.add_argument("--data", default="", help="dataset holding the folds' test subjects (default: the run's data.path)")
    p.add_argument("--stride", type=int, default=1, help="every N-th test frame (default 1 = all)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    _tracking(p)
    p.set_defaults(handler="farm.cli.evaluate:cmd_robustness")


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="per-AU F1 of the best trial of each fusion method, beside the AMF paper's Table 1 or 2",
        description="For each fusion method that ran in the sweep(s), take the best finished trial by the "
        "validation metric (a nested sweep: per outer fold the best of the method's trials in that fold's search, "
        "their pooled test predictions) and report its per-AU test F1, mean ± sample std over folds, with the "
        "data, split and "
        "preprocessing each number came from. With --paper, the paper's table sits beside it, its AU columns "
        "relabelled to the BP4D set the numbers belong to (DOMAIN.md section 2). AMF is compared with each "
        "baseline on the test frames both predicted: the difference with a 95%% paired subject-level bootstrap "
        "interval, and words that claim only what the interval supports. Writes report.md, report.csv, "
        "report.png and robustness.png (missing and noisy modalities per method, from the validation measures and "
        "any promoted model's test study, beside the paper's Fig. 4/5 numbers). A joint sweep's report says how many "
        "test subjects its selection saw as validation subjects of other folds and, where the store holds a nested "
        "sweep of the same space, both estimates. --trial A --trial B compares two trials of one sweep instead "
        "(e.g. AMF with and without modality dropout), labelled by the searched values in which they differ.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  farm report --sweep smoke-20261124-101500\n"
        "  farm report --sweep amf-bp4d --sweep baselines-bp4d --paper bp4d --out reports/bp4d\n"
        "  farm report --sweep amf-bp4d --trial 3f2a_00007 --trial 3f2a_00011\n"
        "  farm report --sweep amf-nested --trial tag:best=true --trial 3f2a_00002",
    )
    p.add_argument("--sweep", action="append", required=True, help="sweep name (repeat for several sweeps)")
    p.add_argument("--paper", choices=("bp4d", "bp4dplus"), default=None, help="put the paper's table beside")
    p.add_argument("--metric", default="cv/val_f1_mean", help="selection metric (default cv/val_f1_mean)")
    p.add_argument("--out", default="", help="output directory (default reports/<first sweep>)")
    p.add_argument("--trial", action="append", default=[], help="with one --sweep, twice: compare these two trials "
                   "(trial id as the leaderboard shows it, run id, or tag:KEY=VALUE for the best trial with that "
                   "tag)")  # fmt: skip
    p.add_argument("--bootstrap", type=int, default=2000,
                   help="replicates of the paired subject-level bootstrap behind the comparisons (default 2000)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="random seed of that bootstrap (default 0)")
    _tracking(p)
    p.set_defaults(handler="farm.cli.evaluate:cmd_report")


def _add_submit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit",
        help="submit a job spec (jobs/*.yaml) to a Ray cluster; --follow streams its logs and returns its status",
        description="Check a Ray Job spec (YAML: entrypoint, runtime_env, metadata) here, its farm command and "
        "search space included, then submit it with Ray's JobSubmissionClient. The address is the Ray dashboard's "
        "(default $RAY_API_SERVER_ADDRESS, an http $RAY_ADDRESS, or http://127.0.0.1:8265, where `ray dashboard "
        "cluster.yaml` opens its SSH tunnel). With --follow the logs stream here and the exit status is the job's: "
        "0 succeeded, 1 failed or stopped.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  farm submit jobs/smoke.yaml --follow\n"
        "  farm submit jobs/amf_bp4d_vd.yaml --address http://127.0.0.1:8265\n"
        "  farm submit jobs/smoke.yaml --env FARM_SHARED=/mnt/nfs --env FARM_SWEEP_NAME=smoke-2 --follow",
    )
    p.add_argument("job", help="job spec YAML (see jobs/)")
    p.add_argument("--address", default="", help="Ray dashboard address (default http://127.0.0.1:8265)")
    p.add_argument("--follow", action="store_true", help="stream the logs; exit with the job's status")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="override or add runtime_env.env_vars (repeatable)")  # fmt: skip
    p.add_argument("--check", action="store_true", help="only check the spec; submit nothing")
    p.set_defaults(handler="farm.cli.sweep:cmd_submit")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="farm",
        description="Cross-validation farm for multimodal facial action unit detection with Adaptive Multimodal "
        "Fusion (AMF, ACM MM 2020): synthetic and prepared BP4D/BP4D+ datasets, subject-exclusive folds, AMF and "
        "baselines, hyperparameter sweeps whose folds train in parallel on Ray, tracked in MLflow; the best "
        "configuration promoted to the MLflow Model Registry, robustness studies, paper-style reports, and Ray Jobs "
        "for a cluster (cluster.yaml, jobs/).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    data = sub.add_parser("data", help="create and inspect datasets (synth, prepare, check, folds)",
                          description="Create and inspect prepared datasets.")  # fmt: skip
    data_sub = data.add_subparsers(title="data commands", metavar="COMMAND", required=True)
    _add_synth(data_sub)
    _add_prepare(data_sub)
    _add_check(data_sub)
    _add_folds(data_sub)
    _add_train(sub)
    _add_sweep(sub)
    _add_promote(sub)
    _add_predict(sub)
    _add_robustness(sub)
    _add_report(sub)
    _add_submit(sub)
    return parser
