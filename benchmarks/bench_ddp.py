"""1 process against N torchrun ranks (DistributedDataParallel, gloo on CPU / nccl on GPU), same
global batch, same epochs: seconds per epoch, the speed-up, and the final test metrics.

Each job is the CLI itself (``python -m gcf.train`` / ``-m seq.train``), one at a time, so
the numbers are what a user gets. The single process uses all ``--threads`` cores; each of the
N ranks gets ``threads / N`` (on 2 cores: 2 threads against 2 ranks x 1 thread). The global batch
is the same on both sides (a rank's ``batch_size`` is ``global / N``), so an epoch is the
same pass over the data and the metrics should agree up to float rounding (and the per-rank
dropout streams of models with dropout).

    GCF_DATA_DIR=../shared/data python benchmarks/bench_ddp.py --dataset ml-100k --ranks 2
    python benchmarks/bench_ddp.py --device cuda --ranks 2      # on a machine with 2 GPUs: nccl

Writes ``benchmarks/results/ddp_<dataset>_<device>.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# model -> (cli module, global batch, keys): LightGCN at RecBole's settings; SASRec with a
# sampled softmax over 1000 shared negatives (the scale-out setting of the issue)
JOBS = {
    "lightgcn": ("gcf.train", 2048, ["n_layers=3", "embedding_size=64"]),
    "sasrec": ("seq.train", 256, ["loss=sampled_ce", "n_negatives=1000"]),
}


def run_job(model: str, dataset: str, ranks: int, epochs: int, device: str, threads: int, out: Path) -> dict:
    module, global_batch, keys = JOBS[model]
    per_rank = threads if ranks == 1 else max(1, threads // ranks)
    env = {**os.environ, "OMP_NUM_THREADS": str(per_rank), "MKL_NUM_THREADS": str(per_rank)}
    args = [f"dataset={dataset}", f"epochs={epochs}", f"batch_size={global_batch // ranks}", f"device={device}",
            "progress=false", f"eval_step={10 ** 9}", f"out_dir={out}", *keys]
    if ranks == 1:
        cmd = [sys.executable, "-m", module, model, *args]
    else:
        torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
        cmd = [torchrun, f"--nproc_per_node={ranks}", "--rdzv_backend=c10d", "--rdzv_endpoint=localhost:0",
               "-m", module, model, *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    m = json.loads((out / "metrics.json").read_text())
    secs = [h["sec"] for h in m["history"]]
    return {"model": model, "ranks": ranks, "threads_per_rank": per_rank, "global_batch": global_batch,
            "epochs": len(secs), "sec_per_epoch": m["sec_per_epoch"], "epoch_secs": secs, "wall_sec": wall,
            "eval_sec": m["eval_sec"], "test": m["test"], "command": " ".join(cmd[1:] if ranks == 1 else cmd)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--models", default="lightgcn,sasrec")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in a.models.split(","):
            for ranks in (1, a.ranks):
                r = run_job(model, a.dataset, ranks, a.epochs, a.device, a.threads, Path(tmp) / f"{model}-{ranks}")
                rows.append(r)
                print(f"{model} ranks={ranks}: {r['sec_per_epoch']:.2f} s/epoch", file=sys.stderr, flush=True)
    metric = {"lightgcn": "ndcg@20", "sasrec": "ndcg@10"}
    lines = [f"| model | ranks x threads | s/epoch | speed-up | wall s ({a.epochs} epochs + eval) | test metric |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        base = next(x for x in rows if x["model"] == r["model"] and x["ranks"] == 1)
        key = metric.get(r["model"], next(iter(r["test"])))
        lines.append(f"| {r['model']} | {r['ranks']} x {r['threads_per_rank']} | {r['sec_per_epoch']:.2f} | "
                     f"{base['sec_per_epoch'] / r['sec_per_epoch']:.2f}x | {r['wall_sec']:.1f} | "
                     f"{key} {r['test'][key]:.4f} |")
    print("\n".join(lines))
    out = Path(a.out or HERE / "results" / f"ddp_{a.dataset}_{a.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"dataset": a.dataset, "device": a.device, "threads": a.threads, "rows": rows},
                              indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
