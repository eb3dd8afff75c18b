"""Retrieval and multi-interest models, two parts (each prints a Markdown table and writes JSON
to ``benchmarks/results/``):

``ann``: recall of approximate faiss indexes (IVF, HNSW; inner product) against exact search,
and their speed, on the largest catalogues we have: Gowalla (40,981 items) and Beauty in
BERT4Rec form (54,542 items). The item and user vectors come from BPR trained for a few
epochs (``python -m gcf.train bpr``; the vectors' quality does not matter for recall against
exact search, their distribution does). Every user is a query; recall@k = |ANN top-k ∩ exact
top-k| / k; queries/s on one thread (torch and faiss), search only (no seen-item filtering).

``comirec``: MIND, ComiRec-DR, ComiRec-SA next to SASRec, GRU4Rec and Pop on ML-1M (or
``--dataset beauty-bert4rec``) under ComiRec's protocol (:mod:`seq.protocols`: users split
8:1:1, evaluation users infer from the first 80% of their behaviours, full ranking,
Recall/HitRate/NDCG@20/50), each model with a bounded number of epochs (early stopping on
validation recall@50; ``--extra`` adds overrides to every model's). Rows are merged into
``multi_interest_<dataset>.json``: a model run again replaces its row, the others stay.

    GCF_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_retrieval.py ann
    GCF_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_retrieval.py comirec
    GCF_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python benchmarks/bench_retrieval.py comirec \
        --dataset beauty-bert4rec --models mind --extra epochs=5
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import seq.models  # noqa: E402,F401  (registers the sequence models)
from gcf.latents import load_latents  # noqa: E402
from gcf.train import run  # noqa: E402
from seq.protocols import run_comirec  # noqa: E402
from seq.retrieval import ItemIndex  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
ANN_DATASETS = {"gowalla": ["epochs=3", "eval_step=3"], "beauty-bert4rec": ["epochs=3", "eval_step=3"]}
IVF_PROBES = (1, 4, 16, 64)
HNSW_EF = (16, 64, 256)
K = 50


def _timed_search(index: ItemIndex, queries: torch.Tensor, k: int, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = index.search(queries, k)
        best = min(best, time.perf_counter() - t0)
    return out, best


def ann(data_dir: str, out_root: Path, max_queries: int) -> list[dict]:
    import faiss

    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    rows = []
    for dataset, extra in ANN_DATASETS.items():
        out = out_root / f"bpr-{dataset}"
        t0 = time.perf_counter()
        m = run("bpr", [f"dataset={dataset}", f"data_dir={data_dir}", f"out_dir={out}", "progress=false",
                        "device=cpu", *extra], quiet=True)
        train_sec = time.perf_counter() - t0
        lat = load_latents(out / "latents.npz")
        users, items = torch.from_numpy(lat["user"]), torch.from_numpy(lat["item"])
        q = users[torch.randperm(len(users), generator=torch.Generator().manual_seed(0))[:max_queries]]
        base = {"dataset": dataset, "n_items": int(len(items)), "n_queries": int(len(q)), "dim": int(items.shape[1]),
                "model": f"bpr ({m['epochs']} epochs, test recall@20 {m['test'].get('recall@20', float('nan')):.4f})",
                "model_train_sec": round(train_sec, 1)}
        exact = ItemIndex(items, "exact")
        (ref_s, ref_i), exact_sec = _timed_search(exact, q, K, repeat=2)
        rows.append({**base, "index": "exact (torch matmul + topk)", "param": "", "build_sec": 0.0,
                     "recall@50": 1.0, "qps": len(q) / exact_sec, "speedup": 1.0})
        configs = [("flat", {}, "")] + [("ivf", {"nprobe": p}, f"nprobe={p}") for p in IVF_PROBES] + \
                  [("hnsw", {"ef_search": e}, f"efSearch={e}") for e in HNSW_EF]
        built = {}
        for kind, opts, label in configs:
            if kind not in built:
                t0 = time.perf_counter()
                built[kind] = ItemIndex(items, kind, **opts)
                build = time.perf_counter() - t0
            else:
                build = None
            index = built[kind]
            if kind == "ivf":
                index.index.nprobe = opts["nprobe"]
            if kind == "hnsw":
                index.index.hnsw.efSearch = opts["ef_search"]
            (s, i), sec = _timed_search(index, q, K, repeat=2)
            recall = float(np.mean([len(np.intersect1d(a, b)) / K for a, b in zip(i, ref_i)]))
            name = ("faiss IndexFlatIP" if kind == "flat" else "faiss HNSWFlat (M=32) IP" if kind == "hnsw"
                    else f"faiss IVFFlat (nlist={index.index.nlist}) IP")
            rows.append({**base, "index": name, "param": label, "build_sec": None if build is None else round(build, 2),
                         "recall@50": recall, "qps": len(q) / sec, "speedup": exact_sec / sec})
            print(f"{dataset} {name} {label}: recall@50 {recall:.4f}, {len(q) / sec:.0f} q/s", flush=True)
    return rows


COMIREC_MODELS = {
    # name: overrides (bounded: epochs; early stopping on validation recall@50 with patience 5);
    # lr 0.005 for all three multi-interest models (ComiRec-DR's README value; 1e-3 barely moved MIND in 4 epochs)
    "pop": [],
    "mind": ["max_len=50", "samples_per_user=10", "epochs=15", "learning_rate=0.005"],
    "comirec_dr": ["max_len=50", "samples_per_user=10", "epochs=15"],
    "comirec_sa": ["max_len=50", "samples_per_user=10", "epochs=15", "learning_rate=0.005"],
    "sasrec": ["max_len=50", "loss=ce", "epochs=30"],
    "gru4rec": ["epochs=10"],  # ~150 s/epoch on ML-1M on a shared core: the slowest here
}


def comirec(data_dir: str, out_root: Path, dataset: str, models: list[str], save, extra=()) -> list[dict]:
    rows = []
    for name in models:
        t0 = time.perf_counter()
        m = run_comirec(name, [f"dataset={dataset}", f"data_dir={data_dir}", f"out_dir={out_root / (name + '-' + dataset)}",
                               "progress=false", "device=cpu", "stopping_step=5", "seed=2020",
                               *COMIREC_MODELS[name], *extra], quiet=True)
        row = {"model": name, "dataset": dataset, "overrides": [*COMIREC_MODELS[name], *extra], **m["test"],
               "best_epoch": m["best_epoch"], "epochs": m["epochs"], "sec_per_epoch": m["sec_per_epoch"],
               "wall_sec": time.perf_counter() - t0, "users": m["users"]}
        rows.append(row)
        save(rows)  # after every model: a time-bounded run keeps what it finished
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    return rows


def _table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        return f"{v:.4f}" if isinstance(v, float) and abs(v) < 10 else f"{v:,.0f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["ann", "comirec"])
    p.add_argument("--data-dir", default=os.environ.get("GCF_DATA_DIR", "../shared/data"))
    p.add_argument("--out", default="runs/bench_retrieval")
    p.add_argument("--max-queries", type=int, default=20000)
    p.add_argument("--dataset", default="ml-1m")
    p.add_argument("--models", default=",".join(COMIREC_MODELS))
    p.add_argument("--extra", default="", help="comirec: key=value overrides after each model's own, comma-separated")
    a = p.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d")}
    if a.part == "ann":
        rows = ann(a.data_dir, Path(a.out), a.max_queries)
        with open(RESULTS / "retrieval_ann.json", "w") as f:
            json.dump({"env": env, "k": K, "rows": rows}, f, indent=2)
        print(_table(rows, ["dataset", "n_items", "n_queries", "index", "param", "build_sec", "recall@50", "qps",
                            "speedup"]))
    else:
        out = RESULTS / f"multi_interest_{a.dataset}.json"
        earlier = json.loads(out.read_text()) if out.exists() else {}

        def save(rows):  # merged: this run's models replace their earlier rows, the other rows stay
            mine = {r["model"] for r in rows}
            kept = [{**r, "env": r.get("env", earlier.get("env"))} for r in earlier.get("rows", [])
                    if r["model"] not in mine]
            with open(out, "w") as f:
                json.dump({"env": env, "protocol": "comirec (seq/protocols.py)",
                           "rows": kept + [{**r, "env": env} for r in rows]}, f, indent=2)

        rows = comirec(a.data_dir, Path(a.out), a.dataset, a.models.split(","), save, [e for e in a.extra.split(",") if e])
        print(_table(rows, ["model", "recall@20", "recall@50", "hit@20", "hit@50", "ndcg@20", "ndcg@50",
                            "best_epoch", "epochs", "sec_per_epoch"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
