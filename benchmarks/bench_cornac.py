"""One cornac Experiment on ml-100k: every gcf model wrapped by ``gcf.cornac`` at its DEFAULTS
next to cornac's own models, for seeds 123, 456, 789 (cornac's example protocol).

Protocol (../shared/benchmarks-peers.md): every rating one interaction for training,
``RatioSplit(test_size=0.2, rating_threshold=4.0, exclude_unknowns=True, seed=s)``, full
ranking minus training items, Recall@20 and NDCG@20, cornac's own timer around ``fit``.

- ours (``gcf-*``): ``Model(seed=s)`` and nothing else, as a new user would write it. The
  Experiment gives no ``val_set``, so each wrapper holds out 10% of every user's training
  interactions (``holdout_valid=0.1``) and early-stops on it (the CLI's ``epochs`` upper bound,
  ``eval_step``, ``stopping_step``), then trains again on all the training data for the best
  number of epochs (``refit=True``); EASE picks its lambda on the slice. The "epochs" column is
  how many the held-out run trained (best one in brackets). ``-r4`` rows add ``rating_threshold=4.0`` (train on ratings >= 4 only, the
  Mult-VAE paper's binarisation) to VAECF, BiVAE and EASE; ``EASE-rw500`` is EASE with cornac's
  EASE's choices (rating-valued X, negative weights clipped, lambda 500), ``EASE-rw`` the same
  with lambda picked on the held-out slice.
- cornac's: its examples' hyper-parameters where an example exists (VAECF, BiVAECF, BPR), its
  class defaults otherwise (MostPop, EASE, RecVAE). cornac's LightGCN and NGCF need DGL, which
  is not installed here: they are listed as skipped, not run. (cornac's ItemKNN predicts
  ratings, Recall@20 0.03 here: left out.)
- One torch thread by default (``--threads``; 0 = torch's default): on this 2-core machine
  shared with other jobs, two OpenMP threads made a LightGCN epoch 42 s instead of 1.0 s (and
  EASE's ``cholesky_inverse`` 4.3 s instead of 0.24 s). cornac's torch models run under the same
  setting; its BPR (Cython) uses its own threads.
- The first ``torch.use_deterministic_algorithms`` call of a process (gcf's trainer makes it)
  imports ``torch._inductor`` (1.5-4 s); that import is done before the Experiments, so it is
  not charged to the first gcf model's train time.

    python benchmarks/bench_cornac.py --data-dir ../shared/data [--seeds 123,456,789] [--models ...]

Each model is fitted in its own ``cornac.Experiment`` on the seed's split (progress on stderr);
``benchmarks/results/cornac_ml-100k.json`` (every per-seed number, epochs trained, wall time) is
written after every fit, and a re-run skips the (model, seed) pairs it holds (``--force``: all).
Prints a Markdown table (median over seeds, then each seed's value) and writes the ``.png``
(NDCG@20 against train time).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import cornac  # noqa: E402
from cornac.eval_methods import RatioSplit  # noqa: E402

import gcf.cornac as gc  # noqa: E402

# ours: every wrapper at its defaults (only the seed is set), plus two rating_threshold=4 rows
OURS = {cls.__name__: (lambda cls: lambda s: cls(seed=s))(cls) for cls in gc.WRAPPERS.values()}
OURS["VAECF-r4"] = lambda s: gc.VAECF(name="gcf-VAECF-r4", rating_threshold=4.0, seed=s)
OURS["BiVAE-r4"] = lambda s: gc.BiVAE(name="gcf-BiVAE-r4", rating_threshold=4.0, seed=s)
OURS["EASE-r4"] = lambda s: gc.EASE(name="gcf-EASE-r4", rating_threshold=4.0, seed=s)
# EASE with cornac's EASE's input and sign choices (rating-valued X, negative weights clipped):
# at cornac's lambda (500) it is cornac's model; "-rw" picks lambda on the held-out slice as gcf-EASE does
OURS["EASE-rw500"] = lambda s: gc.EASE(name="gcf-EASE-rw500", weighting="rating", positive_only=True,
                                       reg_weight=500.0, seed=s)
OURS["EASE-rw"] = lambda s: gc.EASE(name="gcf-EASE-rw", weighting="rating", positive_only=True, seed=s)

# left out of the default list: at their defaults one fit of each ran over 25 minutes here (the
# ranking task scores every user x item row through the MLP); ``--models gcf:AFN`` runs one
SLOW = ("AFN", "AFNPlus")

CORNAC = {
    "MostPop": lambda s: cornac.models.MostPop(),
    "BPR": lambda s: cornac.models.BPR(k=10, max_iter=200, learning_rate=0.001, lambda_reg=0.01, seed=s),
    "EASE": lambda s: cornac.models.EASE(name="EASE", verbose=False, seed=s),
    "VAECF": lambda s: cornac.models.VAECF(k=10, autoencoder_structure=[20], act_fn="tanh", likelihood="mult",
                                           n_epochs=100, batch_size=100, learning_rate=0.001, beta=1.0, seed=s,
                                           use_gpu=False),
    "BiVAECF": lambda s: cornac.models.BiVAECF(k=50, encoder_structure=[100], act_fn="tanh", likelihood="pois",
                                               n_epochs=500, batch_size=128, learning_rate=0.001, seed=s,
                                               use_gpu=False),
    "RecVAE": lambda s: cornac.models.RecVAE(name="RecVAE", seed=s, use_gpu=False),
}
PROTOCOL = ("ml-100k, RatioSplit(test_size=0.2, rating_threshold=4.0, exclude_unknowns=True, seed=s), "
            "Recall@20/NDCG@20 full ranking; gcf wrappers at their defaults (holdout_valid=0.1 early "
            "stopping); cornac's models with its examples' settings or class defaults")
CORNAC_SKIPPED = {"LightGCN": "needs dgl (not installed)", "NGCF": "needs dgl (not installed)"}


def load_ml100k(data_dir: Path):
    rows = []
    with open(data_dir / "ml-100k" / "ml-100k.inter") as f:
        next(f)
        for line in f:
            u, i, r, _ = line.rstrip("\n").split("\t")
            rows.append((u, i, float(r)))
    return rows


def plot(results: dict, path: Path) -> Path:
    """NDCG@20 against train time per fit (log scale), medians with the seeds' min-max as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.2))
    for name, r in results.items():
        y, t = np.array(r["ndcg@20"]), np.maximum(np.array(r["train_sec"]), 1e-3)
        ym, tm = np.median(y), np.median(t)
        ours = name.startswith("gcf-")
        ax.errorbar(tm, ym, yerr=[[ym - y.min()], [y.max() - ym]], xerr=[[tm - t.min()], [t.max() - tm]],
                    fmt="o" if ours else "s", color="tab:blue" if ours else "tab:red", capsize=3)
        ax.annotate(name, (tm, ym), textcoords="offset points", xytext=(6, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("train seconds per fit (log scale)")
    ax.set_ylabel("NDCG@20 (median of seeds, min-max bars)")
    ax.set_title("ml-100k, cornac RatioSplit(0.2, rating_threshold=4): gcf at defaults (blue) vs cornac (red)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def table(results: dict, seeds: list[int]) -> str:
    per = lambda xs, f: " / ".join(f.format(x) for x in xs)  # noqa: E731
    lines = [f"| model | Recall@20 median ({'/'.join(map(str, seeds))}) | NDCG@20 median (per seed) | "
             "train s median (per seed) | epochs trained (best) per seed |", "|---|---|---|---|---|"]
    for name, r in results.items():
        ep = per([f"{e} ({b})" for e, b in zip(r["epochs"], r["best_epoch"])], "{}") if r.get("epochs") else "-"
        lines.append(f"| {name} | {np.median(r['recall@20']):.4f} ({per(r['recall@20'], '{:.4f}')}) | "
                     f"{np.median(r['ndcg@20']):.4f} ({per(r['ndcg@20'], '{:.4f}')}) | "
                     f"{np.median(r['train_sec']):.1f} ({per(r['train_sec'], '{:.1f}')}) | {ep} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("GCF_DATA_DIR", str(HERE.parents[1] / "shared" / "data")))
    p.add_argument("--seeds", default="123,456,789")
    p.add_argument("--models", default=",".join([f"cornac:{m}" for m in CORNAC]
                                                + [f"gcf:{m}" for m in OURS if m not in SLOW]),
                   help=f"comma list of cornac:NAME / gcf:NAME (default: all but {', '.join(SLOW)})")
    p.add_argument("--out", default=str(HERE / "results" / "cornac_ml-100k.json"))
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--force", action="store_true", help="re-run every (model, seed), ignoring --out")
    p.add_argument("--plot-only", action="store_true", help="redraw the plot from --out's JSON")
    args = p.parse_args()
    if args.plot_only:
        results = json.loads(Path(args.out).read_text())["results"]
        return print(f"wrote {plot(results, Path(args.out).with_suffix('.png'))}")
    import torch
    import torch._inductor.config  # noqa: F401  (the one-off import, see the module docstring)

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    data = load_ml100k(Path(args.data_dir))
    seeds = [int(s) for s in args.seeds.split(",")]
    specs = [spec.split(":") for spec in args.models.split(",")]
    out = Path(args.out)
    # resumable: a (model, seed) already in --out (written after every fit) is not re-run
    done = json.loads(out.read_text()) if out.exists() and not args.force else {}
    if done.get("protocol") != PROTOCOL:
        done = {}
    results: dict[str, dict[str, list]] = done.get("results", {})
    wall = done.get("wall_sec", 0.0)
    for seed in seeds:
        split = RatioSplit(data, test_size=0.2, rating_threshold=4.0, exclude_unknowns=True, seed=seed,
                           verbose=False)
        for impl, name in specs:
            model = (CORNAC if impl == "cornac" else OURS)[name](seed)
            if seed in results.get(model.name, {}).get("seeds", []):
                continue
            t0 = time.time()
            # one Experiment per model: the same split object, so every model sees the same data
            exp = cornac.Experiment(split, [model], [cornac.metrics.Recall(20), cornac.metrics.NDCG(20)],
                                    verbose=False, save_dir=None)
            exp.run()
            r = exp.result[0]
            row = results.setdefault(r.model_name, {"seeds": [], "recall@20": [], "ndcg@20": [], "train_sec": [],
                                                    "test_sec": [], "epochs": [], "best_epoch": []})
            row["seeds"].append(seed)
            row["recall@20"].append(r.metric_avg_results["Recall@20"])
            row["ndcg@20"].append(r.metric_avg_results["NDCG@20"])
            row["train_sec"].append(r.metric_avg_results["Train (s)"])
            row["test_sec"].append(r.metric_avg_results["Test (s)"])
            tm = getattr(model, "trainer_metrics", None)
            if tm is not None:
                row["epochs"].append(int(tm["epochs"]))
                row["best_epoch"].append(int(tm["best_epoch"]))
            wall += time.time() - t0
            print(f"seed {seed} {r.model_name}: {r.metric_avg_results}"
                  + (f" epochs {tm['epochs']} (best {tm['best_epoch']})" if tm else ""), file=sys.stderr, flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({
                "protocol": PROTOCOL, "seeds": seeds, "cornac_version": cornac.__version__,
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "torch_threads": torch.get_num_threads(),
                "wall_sec": wall, "skipped": CORNAC_SKIPPED, "results": results}, indent=2))
    print(f"\nml-100k, RatioSplit(test_size=0.2, rating_threshold=4.0, exclude_unknowns=True), seeds {args.seeds}; "
          f"gcf models at their defaults (early stopping on a 10% held-out slice); {wall / 60:.1f} min of fits in all\n")
    print(table(results, seeds))
    if CORNAC_SKIPPED:
        print("\nnot run: " + "; ".join(f"cornac {k} ({v})" for k, v in CORNAC_SKIPPED.items()))
    print(f"\nwrote {args.out} and {plot(results, Path(args.out).with_suffix('.png'))}")


if __name__ == "__main__":
    main()
