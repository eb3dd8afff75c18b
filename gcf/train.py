"""``python -m gcf.train MODEL [key=value ...]``: train one model, write its results.

Examples::

    python -m gcf.train lightgcn                       # embedded MovieLens latest-small
    python -m gcf.train lightgcn dataset=ml-100k data_dir=../shared/data n_layers=2
    python -m gcf.train ease dataset=ml-100k reg_weight=500 device=cpu
    python -m gcf.train deepfm dataset=ml-100k data_dir=../shared/data task=ctr   # AUC and LogLoss

A run writes to ``out_dir`` (default ``runs/<model>-<dataset>``): ``config.yaml`` (the
resolved config, the split and a hash of the input files), ``train.log``, ``best.pt`` /
``last.pt`` and ``metrics.json``.

Under torchrun, unchanged: ``torchrun --nproc_per_node=2 -m gcf.train lightgcn`` trains with
DistributedDataParallel (``gloo`` on CPU, ``nccl`` on GPU); rank 0 writes the files
(:mod:`gcf.distributed`).
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from . import distributed
from .config import resolve_config
from .data.prepare import hash_files, load_split, source_files
from .latents import export_latents, save_latents
from .models import build_model, get_model_class, model_family
from .trainer import Trainer

log = logging.getLogger("gcf")


def setup_logging(out_dir: Path | None) -> None:
    log.setLevel(logging.INFO)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(fmt)
    log.addHandler(stream)
    if out_dir:
        fh = logging.FileHandler(out_dir / "train.log")
        fh.setFormatter(fmt)
        log.addHandler(fh)
    log.propagate = False


def run(model: str, overrides=(), quiet: bool = False, family: str | None = None) -> dict:
    """Resolve the config, train, evaluate and write the run's files; returns the metrics.
    ``family`` picks the defaults layer (``configs/family/<family>.yaml``; default: the model's
    registered family, e.g. ``seq`` for the sequence models; ``python -m seq.train pop`` runs
    gcf's Pop with ``family="seq"``)."""
    family = model_family(model) if family is None else family
    cfg, kwargs = resolve_config(model, overrides, family=family)
    distributed.init(str(cfg["device"]))  # joins torchrun's process group; a no-op otherwise
    main = distributed.is_main()
    out_dir = Path(cfg["out_dir"] or f"runs/{cfg['model']}-{cfg['dataset']}")
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    cfg["out_dir"] = str(out_dir)
    setup_logging(out_dir if main else None)
    if quiet or not main:
        log.setLevel(logging.WARNING)
    t0 = time.perf_counter()
    split = load_split(cfg)
    files = source_files(split.train)
    record = {"config": cfg, "family": family, "model_module": get_model_class(cfg["model"]).__module__,
              "split": split.summary(), "split_fingerprint": split.fingerprint(),
              "data": {"files": [str(p) for p in files], "sha256": hash_files(files)},
              "torch": str(torch.__version__)}
    if distributed.world() > 1:
        record["distributed"] = {"world_size": distributed.world(), "backend": str(torch.distributed.get_backend())}
    if main:
        with open(out_dir / "config.yaml", "w") as f:
            yaml.safe_dump(record, f, sort_keys=False)
    log.info("data: %s (%.1fs)", split.summary(), time.perf_counter() - t0)
    net = build_model(cfg["model"], kwargs, split, int(cfg["seed"]))
    n_params = sum(p.numel() for p in net.parameters())
    log.info("model %s: %s, %d parameters, device %s", cfg["model"], kwargs, n_params, cfg["device"])
    trainer = Trainer(net, split, cfg, out_dir)
    metrics = trainer.fit()
    metrics["history"] = trainer.history
    metrics["model"], metrics["dataset"], metrics["out_dir"] = cfg["model"], cfg["dataset"], str(out_dir)
    if distributed.world() > 1:
        metrics["world_size"] = distributed.world()
    if main:
        latents = export_latents(net, split)
        if latents is not None:  # for bridges/: user and item vectors with their raw ids
            save_latents(out_dir / "latents.npz", latents)
        with open(out_dir / "metrics.json", "w") as f:
            json.dump(metrics, f, indent=2)
    distributed.barrier()  # the files exist when any rank returns
    return metrics


def format_table(metrics: dict) -> str:
    """The test metrics as a Markdown table, one row per metric, one column per cut-off."""
    test = metrics["test"]
    if not test:
        return "(the test split was not ranked: test=false)"
    if not any("@" in k for k in test):  # task=ctr: auc, logloss
        return "\n".join(["| metric | value |", "|---|---|"] + [f"| {k} | {v:.4f} |" for k, v in test.items()])
    names = list(dict.fromkeys(k.split("@")[0] for k in test))
    cutoffs = sorted({k.split("@")[1] for k in test}, key=lambda s: int(s.split("[")[0]))
    lines = ["| metric | " + " | ".join(f"@{c}" for c in cutoffs) + " |",
             "|---|" + "---|" * len(cutoffs)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{test.get(f'{n}@{c}', float('nan')):.4f}" for c in cutoffs) + " |")
    return "\n".join(lines)


def main(argv=None, family: str | None = None, doc: str | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(doc or __doc__)
        return 0 if argv else 2
    try:
        metrics = run(argv[0], argv[1:], family=family)
        main = distributed.is_main()
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        distributed.close()
    if not main:  # under torchrun rank 0 prints
        return 0
    print(f"\n{metrics['model']} on {metrics['dataset']}: test metrics (best epoch {metrics['best_epoch']} "
          f"of {metrics['epochs']}, {metrics['sec_per_epoch']:.2f} s/epoch, test evaluation {metrics['eval_sec']:.2f} s)")
    print(format_table(metrics))
    out = Path(metrics["out_dir"])
    files = ["metrics.json", "config.yaml", "train.log", "best.pt", "latents.npz"]
    print("files: " + ", ".join(str(out / f) for f in files if (out / f).exists()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
