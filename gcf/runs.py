"""Finished runs: rebuild a trained model and its split from a run folder, and rank its test
part under a protocol it was not ranked under."""
from __future__ import annotations

import json
import os
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
