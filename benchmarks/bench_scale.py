"""How load time, memory, training and full-ranking evaluation grow with the data, on
**generated** power-law interaction logs (a simulation: no real dataset of 50M interactions is
at hand here).

The generator: ``n_users = N / 40``, ``n_items = N / 100``; each user's activity is drawn from
a Pareto (shape 1.2, at least 5 events, capped at 5,000) and rescaled to ``N`` events in
total; items from a Zipf-like popularity ``p(i) ~ (i + 10)^-1.0`` (a few items take a large
share, as in real logs); timestamps increase along each user's events. Written once as Parquet
``(user, item, timestamp)`` under ``--cache`` and then read by the toolkit's own loader
(:func:`gcf.data.loaders.load_table`).

Per size, in a fresh process (so peak RSS is that size's own), stage by stage:

1. load the Parquet file, merge repeated pairs and split leave-one-out (:func:`gcf.data.split.make_split`);
2. LightGCN (64 dims, 3 layers, batch 8,192): build the normalised graph, time ``--steps``
   training steps, seconds per epoch = seconds per step x batches per epoch (an estimate from
   the steps, labelled so);
3. SASRec with a sampled softmax over 1,000 shared negatives (max_len 50, batch 256): the same;
4. full-ranking evaluation of LightGCN on ``--eval-users`` test users (every item scored,
   seen items masked, top 20): the propagation (timed on one user) plus the per-user cost
   times all test users (an estimate, labelled so).

Peak RSS is read after each stage (``ru_maxrss``, so it is the running peak). Nothing in the
path builds a dense users x items matrix: training batches are index lists, the graph is
sparse, and ranking scores ``[batch, n_items]`` blocks.

    python benchmarks/bench_scale.py --sizes 1e6,1e7,5e7

Writes ``benchmarks/results/scale.json``, ``benchmarks/results/scale.png`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(n: int, path: Path, seed: int = 0) -> None:
    """A power-law log of about ``n`` events as Parquet; see the module docstring."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_users, n_items = max(10, n // 40), max(10, n // 100)
    act = np.minimum(5 + rng.pareto(1.2, n_users) * 10, 5000)
    counts = np.maximum(5, np.round(act * n / act.sum())).astype(np.int64)
    users = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    p = (np.arange(n_items) + 10.0) ** -1.0
    p /= p.sum()
    items = rng.choice(n_items, size=len(users), p=p).astype(np.int64)
    items = rng.permutation(n_items)[items]  # popular items are not the low ids
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    times = 1_500_000_000 + (np.arange(len(users)) - starts) * 60 + rng.integers(0, 60, len(users))
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"user": users, "item": items, "timestamp": times}).to_parquet(path, index=False)


def timed_steps(model, data, batch_size: int, steps: int) -> tuple[float, int]:
    """Seconds per training step over ``steps`` steps (after 2 warm-up steps) and the number
    of batches in an epoch."""
    import torch

    builder = model.batches(data, batch_size)
    opt = torch.optim.Adam(model.param_groups(), lr=1e-3)
    model.train()
    it = builder.epoch(np.random.default_rng(0))
    secs = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        batch = next(it)
        loss = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            secs.append(time.perf_counter() - t0)
    return float(np.median(secs)), len(builder)


def one_size(n: int, cache: Path, steps: int, eval_users: int) -> dict:
    import torch

    import seq.models  # noqa: F401  (registers sasrec)
    from gcf.data.loaders import load_table
    from gcf.data.split import make_split
    from gcf.data.train_data import TrainData
    from gcf.evaluate import evaluate
    from gcf.models import build_model

    path = cache / f"powerlaw-{n}.parquet"
    out = {"target_interactions": n, "file_mb": path.stat().st_size / 2 ** 20}
    t0 = time.perf_counter()
    inter = load_table(path, "user", "item", time_col="timestamp")
    out["read_sec"] = time.perf_counter() - t0
    split = make_split(inter, "loo", seed=2020)
    del inter
    out["load_sec"] = time.perf_counter() - t0
    out.update(users=split.n_users, items=split.n_items, train=len(split.train), rss_load_mb=rss_mb())
    data = TrainData.from_split(split)

    t0 = time.perf_counter()
    lgcn = build_model("lightgcn", {"embedding_size": 64, "n_layers": 3}, split, 2020)
    out["lightgcn_build_sec"] = time.perf_counter() - t0
    step, n_batches = timed_steps(lgcn, data, 8192, steps)
    out.update(lightgcn_sec_per_step=step, lightgcn_batches=n_batches, lightgcn_sec_per_epoch_est=step * n_batches,
               rss_lightgcn_mb=rss_mb())
    held = np.flatnonzero(np.diff(split.csr("test").indptr) > 0)
    sample = np.random.default_rng(0).choice(held, size=min(eval_users, len(held)), replace=False)
    def timed(users):
        t0 = time.perf_counter()
        out = evaluate(lgcn, split, "test", ks=(20,), metrics=("recall", "ndcg"), users=users)
        return time.perf_counter() - t0, out

    # one user: the propagation every evaluation does once (the faster of two); the sample: that
    # plus its users' scoring, masking and top-k
    fixed = min(timed(sample[:1])[0], timed(sample[:1])[0])
    sec, m = timed(sample)
    per_user = max(0.0, sec - fixed) / len(sample)
    out.update(eval_users=len(sample), eval_fixed_sec=fixed, eval_sec_per_1k_users=1000 * per_user,
               eval_sec_all_est=fixed + per_user * len(held),
               test_users=len(held), rss_eval_mb=rss_mb(), lightgcn_untrained_recall20=m["recall@20"])
    del lgcn

    sas = build_model("sasrec", {"max_len": 50, "hidden_size": 64, "loss": "sampled_ce", "n_negatives": 1000},
                      split, 2020)
    step, n_batches = timed_steps(sas, data, 256, steps)
    out.update(sasrec_sec_per_step=step, sasrec_batches=n_batches, sasrec_sec_per_epoch_est=step * n_batches,
               rss_sasrec_mb=rss_mb(), torch_threads=torch.get_num_threads())
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["train"] for r in rows]
    panels = [("load + split (s)", ["load_sec"]), ("peak RSS (MB)", ["rss_load_mb", "rss_lightgcn_mb", "rss_sasrec_mb"]),
              ("s / epoch (estimated from steps)", ["lightgcn_sec_per_epoch_est", "sasrec_sec_per_epoch_est"]),
              ("full-ranking eval, all test users (s, est.)", ["eval_sec_all_est"])]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    for ax, (title, keys) in zip(axes, panels):
        for k in keys:
            ax.plot(x, [r[k] for r in rows], marker="o", label=k)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training interactions")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    fig.suptitle("Generated power-law logs (a simulation), 2-core CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1e6,1e7,5e7")
    ap.add_argument("--cache", default="/tmp/gcf-scale")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--eval-users", type=int, default=5000)
    ap.add_argument("--out", default=str(HERE / "results" / "scale.json"))
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one size
    a = ap.parse_args(argv)
    cache = Path(a.cache)
    if a.one:
        print(json.dumps(one_size(a.one, cache, a.steps, a.eval_users)))
        return 0
    rows = []
    for n in (int(float(s)) for s in a.sizes.split(",")):
        path = cache / f"powerlaw-{n}.parquet"
        if not path.exists():
            t0 = time.perf_counter()
            generate(n, path)
            print(f"generated {path} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, __file__, "--one", str(n), "--cache", str(cache), "--steps",
                               str(a.steps), "--eval-users", str(a.eval_users)], capture_output=True, text=True,
                              cwd=ROOT, env={**os.environ})
        if proc.returncode != 0:
            raise RuntimeError(f"size {n} failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"size {n}: {rows[-1]}", file=sys.stderr, flush=True)
    lines = ["| train interactions | users | items | load+split s | peak RSS MB (load / LightGCN / SASRec) | "
             "LightGCN s/epoch (est.) | SASRec s/epoch (est.) | eval all test users s (est.) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['train']:,} | {r['users']:,} | {r['items']:,} | {r['load_sec']:.1f} | "
                     f"{r['rss_load_mb']:.0f} / {r['rss_lightgcn_mb']:.0f} / {r['rss_sasrec_mb']:.0f} | "
                     f"{r['lightgcn_sec_per_epoch_est']:.0f} | {r['sasrec_sec_per_epoch_est']:.0f} | "
                     f"{r['eval_sec_all_est']:.0f} |")
    print("\n".join(lines))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"simulation": True, "rows": rows}, indent=2))
    plot(rows, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
