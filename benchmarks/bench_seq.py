"""Sequence models: accuracy on ml-100k leave-one-out next to Pop and RecBole, and speed against
RecBole 1.2.1 in the same run (time to reach RecBole's validation NDCG@10).

Accuracy (``--accuracy``): every model through ``python -m seq.train MODEL dataset=D``
for each of ``--datasets`` (shipped defaults, early stopping on valid NDCG@10), full ranking
over all items with the history masked, test split, seeds ``--seeds`` (the seed sets the model
and sampling streams; leave-one-out has no random split); ``--jobs`` runs at a time, one torch
thread each (accuracy does not depend on it; the train times then are per core). RecBole's numbers: ``../shared/benchmarks-peers.md``
(20 epochs for SASRec, 30 for GRU4Rec, CE, max_len 50).

Speed (``--speed``): SASRec and GRU4Rec at RecBole's settings (max_len 50, hidden 64, 2 layers
and 2 heads for SASRec, batch 2048, full cross-entropy), ours validating every epoch; with
``--recbole-python`` RecBole trains ``--recbole-epochs`` epochs in the same run and ranks its
validation split after each. Reported: median sec/epoch, and the training time each needs to
first reach RecBole's last validation NDCG@10 (RecBole trains on every prefix, ~98k rows per
epoch; ours on one sequence per user with a loss at every position, so epochs are not
comparable and time-to-quality is the measure).

    GCF_DATA_DIR=../shared/data python benchmarks/bench_seq.py --accuracy --speed \
        --recbole-python /work/venv-recbole/bin/python

Writes ``benchmarks/results/seq_ml-100k.json`` and prints Markdown tables.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import seq.models  # noqa: E402,F401  (registers the sequence models)
from gcf.train import run  # noqa: E402

# RecBole 1.2.1 on ml-100k, LOO, CE, full ranking, test (../shared/benchmarks-peers.md): HR@10, NDCG@10, epochs
RECBOLE = {"sasrec": (0.1251, 0.0584, 20), "gru4rec": (0.1241, 0.0597, 30)}
# our settings that match RecBole's for the speed comparison
SPEED_SETTINGS = {
    "sasrec": ["loss=ce", "max_len=50", "hidden_size=64", "n_layers=2", "n_heads=2", "batch_size=2048"],
    "gru4rec": ["loss=ce", "max_len=50", "hidden_size=64", "batch_size=2048"],
}
RECBOLE_SETTINGS = {"MAX_ITEM_LIST_LENGTH": 50, "loss_type": "CE", "train_neg_sample_args": None,
                    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full",
                                  "group_by": "user"},
                    "metrics": ["Hit", "NDCG", "MRR"], "topk": [10], "valid_metric": "NDCG@10",
                    "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "_valid_each_epoch": True}


def fmt(xs):
    if len(xs) == 1:
        return f"{xs[0]:.4f}"
    return f"{statistics.mean(xs):.4f} +- {statistics.stdev(xs):.4f}"


def _train_one(job):
    """One accuracy run in a worker process (one torch thread: small models gain nothing from a
    second one, and two single-thread workers use both cores)."""
    import torch
    torch.set_num_threads(1)
    dataset, model, seed, data_dir = job
    m = run(model, [f"dataset={dataset}", f"data_dir={data_dir}", "progress=false", f"seed={seed}",
                    f"out_dir=runs/bench-seq/{dataset}/{model}-{seed}", "resume=true"], quiet=True, family="seq")
    return job, {k: m[k] for k in ("test", "valid", "sec_per_epoch", "epochs", "best_epoch", "train_sec")}


def accuracy(datasets, models, seeds, data_dir, results, save, jobs):
    acc = results.setdefault("accuracy", {})
    todo = [(d, m, s, data_dir) for d in datasets for m in models for s in seeds if f"{d}/{m}/{s}" not in acc]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(jobs) as pool:
        for (dataset, model, seed, _), r in pool.imap_unordered(_train_one, todo):
            acc[f"{dataset}/{model}/{seed}"] = r
            print(f"{dataset} {model} seed {seed}: HR@10 {r['test']['hit@10']:.4f} NDCG@10 {r['test']['ndcg@10']:.4f} "
                  f"({r['epochs']} epochs, {r['train_sec']:.0f} s)", file=sys.stderr, flush=True)
            save()
    for dataset in datasets:
        print(f"\n{dataset}, leave-one-out, full ranking, test split (mean +- std over seeds " +
              ",".join(map(str, seeds)) + f"; {jobs} runs at a time, one torch thread each)\n")
        print("| model | HR@10 | NDCG@10 | MRR@10 | epochs (median) | train s (median) | RecBole HR@10 | RecBole NDCG@10 |")
        print("|---|---|---|---|---|---|---|---|")
        for model in models:
            rows = [acc[f"{dataset}/{model}/{s}"] for s in seeds if f"{dataset}/{model}/{s}" in acc]
            if not rows:
                continue
            peer = RECBOLE.get(model) if dataset == "ml-100k" else None
            peer_cols = f"{peer[0]:.4f} | {peer[1]:.4f}" if peer else "- | -"
            print(f"| {model} | {fmt([r['test']['hit@10'] for r in rows])} | {fmt([r['test']['ndcg@10'] for r in rows])} "
                  f"| {fmt([r['test']['mrr@10'] for r in rows])} | {statistics.median(r['epochs'] for r in rows):.0f} | "
                  f"{statistics.median(r['train_sec'] for r in rows):.0f} | {peer_cols} |")


def time_to_reach(secs, scores, target):
    total = 0.0
    for s, v in zip(secs, scores):
        total += s
        if v is not None and v >= target:
            return total
    return None


def speed(data_dir, recbole_python, recbole_epochs, epochs, results, save):
    sp = results.setdefault("speed", {})
    for model, settings in SPEED_SETTINGS.items():
        if f"recbole/{model}" not in sp and recbole_python:
            name = {"sasrec": "SASRec", "gru4rec": "GRU4Rec"}[model]
            cfg = dict(RECBOLE_SETTINGS)
            if model == "sasrec":
                cfg.update(n_layers=2, n_heads=2, hidden_size=64)
            proc = subprocess.run([recbole_python, str(HERE / "recbole_runner.py"), name, "ml-100k", data_dir,
                                   str(recbole_epochs[model]), json.dumps(cfg)], capture_output=True, text=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "2"})
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"RecBole {name} failed")
            sp[f"recbole/{model}"] = json.loads(proc.stdout.strip().splitlines()[-1])
            save()
        if f"gcf/{model}" not in sp:
            m = run(model, ["dataset=ml-100k", f"data_dir={data_dir}", "progress=false", f"epochs={epochs}",
                            f"out_dir=runs/bench-seq/speed-{model}", *settings], quiet=True, family="seq")
            sp[f"gcf/{model}"] = {"epoch_secs": [h["sec"] for h in m["history"]],
                                  "valid_ndcg10": [h.get("valid", {}).get("ndcg@10") for h in m["history"]],
                                  "test": m["test"], "settings": settings}
            save()
    print("\nSpeed on ml-100k (2 CPU cores), RecBole's settings (max_len 50, hidden 64, batch 2048, CE)\n")
    print("| model | impl | epochs | sec/epoch (median) | final valid NDCG@10 | train s to reach RecBole's final "
          "valid NDCG@10 | ratio |")
    print("|---|---|---|---|---|---|---|")
    for model in SPEED_SETTINGS:
        ours, peer = sp.get(f"gcf/{model}"), sp.get(f"recbole/{model}")
        target = peer["valid_history"][-1]["ndcg@10"] if peer else None
        peer_t = sum(peer["epoch_secs"]) if peer else None
        if peer:
            print(f"| {model} | recbole-1.2.1 | {len(peer['epoch_secs'])} | {statistics.median(peer['epoch_secs']):.2f} "
                  f"| {target:.4f} | {peer_t:.0f} | |")
        if ours:
            reach = time_to_reach(ours["epoch_secs"], ours["valid_ndcg10"], target) if target else None
            ratio = f"{peer_t / reach:.1f}x" if reach else ""
            best = max(v for v in ours["valid_ndcg10"] if v is not None)
            print(f"| {model} | gcf | {len(ours['epoch_secs'])} | {statistics.median(ours['epoch_secs']):.2f} | "
                  f"{best:.4f} (best) | {'%.1f' % reach if reach else 'not reached'} | {ratio} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accuracy", action="store_true")
    p.add_argument("--speed", action="store_true")
    p.add_argument("--models", default="pop,gru4rec,narm,caser,fpmc,transrec,sasrec,tisasrec,bert4rec")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--datasets", default="ml-100k", help="accuracy: comma-separated, e.g. ml-100k,ml-latest-small")
    p.add_argument("--jobs", type=int, default=2, help="accuracy: runs at a time (one torch thread each)")
    p.add_argument("--epochs", type=int, default=60, help="our epochs in the speed run")
    p.add_argument("--recbole-python", default=None)
    p.add_argument("--recbole-epochs", default="sasrec=20,gru4rec=30")
    p.add_argument("--out", default=str(HERE / "results" / "seq_ml-100k.json"))
    args = p.parse_args()
    data_dir = os.environ.get("GCF_DATA_DIR", str(HERE.parents[1] / "shared" / "data"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.exists() else {}

    def save():
        out.write_text(json.dumps(results, indent=2))

    if args.accuracy:
        accuracy(args.datasets.split(","), args.models.split(","), [int(s) for s in args.seeds.split(",")], data_dir,
                 results, save, args.jobs)
    if args.speed:
        rec_epochs = {k: int(v) for k, v in (kv.split("=") for kv in args.recbole_epochs.split(","))}
        speed(data_dir, args.recbole_python, rec_epochs, args.epochs, results, save)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
