"""Training and full-evaluation speed of the graph models, ours next to RecBole's in one run.

RecBole's settings: batch 2048, 64 dims, 3 layers (set for both: RecBole's LightGCN defaults to 2),
Adam, one negative per interaction. Each
job runs in its own process (so peak RSS is its own), one at a time; reported are the median
seconds per epoch (first epoch excluded), the time to rank the whole test split, and the peak
RSS. With ``--recbole-python`` (the python of a venv with RecBole 1.2.1, see
``../shared/benchmarks-peers.md``) RecBole runs the same jobs in the same run.

    python benchmarks/bench_speed.py --data-dir ../shared/data \
        --recbole-python /path/to/venv-recbole/bin/python

Merges its rows into ``benchmarks/results/speed.json`` (a row of the same model, dataset and
implementation is replaced, the others are kept) and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def run_ours(model: str, dataset: str, epochs: int, device: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from gcf.config import resolve_config
    from gcf.data.prepare import load_split
    from gcf.models import build_model
    from gcf.trainer import Trainer

    cfg, kwargs = resolve_config(model, [f"dataset={dataset}", f"epochs={epochs}", "batch_size=2048",
                                         "embedding_size=64", "progress=false", f"device={device}",
                                         f"eval_step={10 ** 9}", "learning_rate=0.001"])
    t0 = time.perf_counter()
    split = load_split(cfg)
    load_sec = time.perf_counter() - t0
    net = build_model(model, kwargs, split, int(cfg["seed"]))
    trainer = Trainer(net, split, cfg)
    metrics = trainer.fit()
    return {"impl": "gcf", "model": model, "dataset": dataset, "epoch_secs": [h["sec"] for h in trainer.history],
            "train_interactions": len(split.train), "n_layers": kwargs.get("n_layers", len(kwargs.get("hidden_size_list", []))),
            "eval_sec": metrics["eval_sec"], "load_sec": load_sec, "device": device,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "test": {k: v for k, v in metrics["test"].items() if k in ("recall@20", "ndcg@20")}}


def recbole_data_path(dataset: str, data_dir: Path) -> Path:
    """RecBole reads ``<path>/<dataset>/<dataset>.inter``; Gowalla's train+test become one file
    (RecBole then splits it 8:1:1 itself)."""
    if dataset == "ml-100k":
        return data_dir
    out = Path(tempfile.gettempdir()) / "gcf-bench-recbole"
    target = out / dataset / f"{dataset}.inter"
    if not target.exists():
        from gcf.data.datasets import load_dataset

        train, test = load_dataset(dataset, data_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "w") as f:
            f.write("user_id:token\titem_id:token\n")
            for part in (train, test):
                for u, i in zip(part.users.tolist(), part.items.tolist()):
                    f.write(f"{u}\t{i}\n")
    return out


def run_job(cmd: list[str], env: dict) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# RecBole keys that differ from its defaults in our settings (LightGCN: RecBole's default is 2 layers)
RECBOLE_SAME_SETTINGS = {"lightgcn": {"n_layers": 3}, "ngcf": {"hidden_size_list": [64, 64, 64]}}


def median(xs):
    xs = sorted(xs[1:] if len(xs) > 2 else xs)
    return xs[len(xs) // 2] if xs else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("GCF_DATA_DIR", str(HERE.parents[1] / "shared" / "data")))
    p.add_argument("--models", default="lightgcn,ngcf")
    p.add_argument("--datasets", default="ml-100k,gowalla")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--gowalla-epochs", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--recbole-python", default=None, help="python of a venv with RecBole 1.2.1")
    p.add_argument("--recbole-datasets", default="ml-100k", help="datasets RecBole also runs (gowalla is slow)")
    p.add_argument("--out", default=str(HERE / "results" / "speed.json"))
    p.add_argument("--one", nargs=3, metavar=("MODEL", "DATASET", "EPOCHS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run_ours(args.one[0], args.one[1], int(args.one[2]), args.device, args.threads)))
        return
    env = {**os.environ, "GCF_DATA_DIR": args.data_dir, "PYTHONPATH": str(HERE.parent),
           "OMP_NUM_THREADS": str(args.threads)}
    rows = []
    for dataset in args.datasets.split(","):
        epochs = args.gowalla_epochs if dataset == "gowalla" else args.epochs
        for model in args.models.split(","):
            res = run_job([sys.executable, str(HERE / "bench_speed.py"), "--one", model, dataset, str(epochs),
                           "--device", args.device, "--threads", str(args.threads)], env)
            rows.append({"model": model, "dataset": dataset, **res})
            print(f"gcf     {model:9s} {dataset:8s} {json.dumps(res)[:200]}", file=sys.stderr)
            if args.recbole_python and dataset in args.recbole_datasets.split(","):
                name = {"lightgcn": "LightGCN", "ngcf": "NGCF"}[model]
                same = RECBOLE_SAME_SETTINGS[model]  # what RecBole must be told to run our settings
                res = run_job([args.recbole_python, str(HERE / "recbole_runner.py"), name, dataset,
                               str(recbole_data_path(dataset, Path(args.data_dir))), str(epochs), json.dumps(same)],
                              env)
                rows.append({"model": model, "dataset": dataset, **res, "impl": "recbole-1.2.1"})
                print(f"recbole {model:9s} {dataset:8s} {json.dumps(res)[:200]}", file=sys.stderr)
    print("| dataset | model | impl | train interactions | sec/epoch | full eval s | peak RSS MB | "
          "speed-up vs RecBole per epoch | per training interaction |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['dataset']} | {r['model']} | {r.get('impl', '?')} | | error: {r['error'][:60]} | | | | |")
            continue
        r["sec_per_epoch"] = median(r["epoch_secs"])
        peer = next((q for q in rows if q["model"] == r["model"] and q["dataset"] == r["dataset"]
                     and q.get("impl", "").startswith("recbole") and "epoch_secs" in q), None)
        ratio = per_inter = ""
        if peer and r["impl"] == "gcf":
            x = median(peer["epoch_secs"]) / r["sec_per_epoch"]
            ratio = f"{x:.1f}x"
            if peer.get("train_interactions"):  # RecBole may train on a different number of rows
                per_inter = f"{x * r['train_interactions'] / peer['train_interactions']:.1f}x"
        print(f"| {r['dataset']} | {r['model']} | {r['impl']} | {r.get('train_interactions', '')} | "
              f"{r['sec_per_epoch']:.3f} | {r['eval_sec']:.2f} | {r['peak_rss_mb']:.0f} | {ratio} | {per_inter} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # merged: this run's rows replace those of the same (model, dataset, impl), the others stay
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = [{**r, "measured": stamp} for r in rows]
    key = lambda r: (r["model"], r["dataset"], r.get("impl"))  # noqa: E731
    kept = json.loads(out.read_text()).get("rows", []) if out.exists() else []
    new = {key(r) for r in rows}
    with open(out, "w") as f:
        json.dump({"threads": args.threads, "device": args.device,
                   "rows": [r for r in kept if key(r) not in new] + rows}, f, indent=2)
    print(f"\nwrote {args.out} (this run's rows merged into it)")


if __name__ == "__main__":
    main()
