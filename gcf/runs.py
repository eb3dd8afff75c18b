"""Finished runs: rebuild a trained model and its split from a run folder."""
from __future__ import annotations

from pathlib import Path

import torch
import yaml

from .config import resolve_config
from .data.prepare import load_split
from .models.registry import build_model, import_model_module


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
