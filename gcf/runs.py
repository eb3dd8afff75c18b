"""Finished runs: rebuild a trained model and its split from a run folder, and rank its test
part under a protocol it was not ranked under::

    python -m gcf.runs runs/sasrec-ml-1m uni100        # adds ndcg@10[uni100], ... to metrics.json
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import yaml

from .config import resolve_config
from .data.prepare import load_split
from .models.registry import build_model, import_model_module
from .trainer import evaluate_part, test_protocols


def load_trained(out_dir: str | Path, device: str = "cpu"):
    """``(model, split)`` of a finished run, from ``out_dir/config.yaml`` and ``best.pt``. A model
    registered outside gcf (``seq``, ``bridges``) is found through the module recorded in the
    config."""
    out_dir = Path(out_dir)
    with open(out_dir / "config.yaml") as f:
        record = yaml.safe_load(f)
    cfg = record["config"]
    import_model_module(record.get("model_module"))
    split = load_split(cfg)
    _, kwargs = resolve_config(cfg["model"], {k: v for k, v in cfg.items() if k != "model"},
                               family=record.get("family"))
    model = build_model(cfg["model"], kwargs, split, int(cfg["seed"]))
    state = torch.load(out_dir / "best.pt", map_location=device, weights_only=True)["model"]
    model.load_state_dict(state)
    model.to(device).eval()
    return model, split


def missing_protocols(test: dict, protocols) -> list[str]:
    """The sampled ``protocols`` (``uni100``) no metric of ``test`` is labelled with (``ndcg@10[uni100]``)."""
    return [p for p in protocols if not any(k.endswith(f"[{p}]") for k in test)]


def add_test_metrics(out_dir: str | Path, protocols, device: str = "cpu") -> dict:
    """Rank a finished run's test part under sampled ``protocols`` (``["uni100"]``) with its best
    model, as the trainer's ``test_sampled`` would have at the end of training (the same seeded
    negatives), and merge the labelled metrics into ``metrics.json``; returns the metrics. Nothing
    trains: an ablation grid asked for a paper's protocol after some runs finished gets them
    without re-running those."""
    out_dir = Path(out_dir)
    with open(out_dir / "metrics.json") as f:
        metrics = json.load(f)
    if not protocols:
        return metrics
    with open(out_dir / "config.yaml") as f:
        cfg = yaml.safe_load(f)["config"]
    model, split = load_trained(out_dir, device)
    for p in test_protocols({**cfg, "test_sampled": list(protocols), "sampled": None}):
        metrics["test"].update(evaluate_part(model, split, cfg, "test", p, device))
    tmp = out_dir / "metrics.json.tmp"
    with open(tmp, "w") as f:
        json.dump(metrics, f, indent=2)
    os.replace(tmp, out_dir / "metrics.json")
    return metrics


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[0] in ("-h", "--help"):
        print("usage: python -m gcf.runs RUN_DIR PROTOCOL [PROTOCOL ...]   (e.g. uni100 pop100)\n"
              "ranks a finished run's test split under sampled negatives with its best model and adds the "
              "labelled metrics to RUN_DIR/metrics.json")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    from .train import format_table  # the CLI's table; not needed by the functions above

    try:
        metrics = add_test_metrics(argv[0], argv[1:])
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table({"test": {k: v for k, v in metrics["test"].items()
                                 if any(k.endswith(f"[{p}]") for p in argv[1:])}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
