"""User and item latents out of any trained gcf model, with their id maps.

``python -m gcf.train`` saves them as ``out_dir/latents.npz`` next to ``best.pt`` for every
model that has a latent space (``model.latents()``; Pop, EASE and DiffRec have none).
``bridges/`` reads them back with :func:`load_latents` or rebuilds the model with
:func:`load_trained`.

``latents.npz`` holds ``user [n_users, d_user]``, ``item [n_items, d_item]`` (float32) and
``user_ids`` / ``item_ids``: the raw ids of the source file, row ``u`` of ``user`` belonging
to ``user_ids[u]``. What the vectors are is model-specific and documented on each model's
``latents`` (LightGCN/NGCF: final propagated embeddings; BiVAE: posterior means; VAECF: user
posterior means and decoder item weights).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml


def export_latents(model, split) -> dict | None:
    """``{"user", "item", "user_ids", "item_ids"}`` as numpy arrays, or ``None`` when the model
    has no latent space."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            user, item = model.latents()
    except TypeError:
        return None
    finally:
        model.train(was_training)
    user, item = user.float().cpu().numpy(), item.float().cpu().numpy()
    if user.shape[0] != split.n_users or item.shape[0] != split.n_items:
        raise ValueError(f"{type(model).__name__}.latents(): got {user.shape[0]} users / {item.shape[0]} items, "
                         f"expected {split.n_users} / {split.n_items}")
    return {"user": user, "item": item, "user_ids": np.asarray(split.train.user_ids, dtype=str),
            "item_ids": np.asarray(split.train.item_ids, dtype=str)}


def save_latents(path: str | Path, latents: dict) -> Path:
    path = Path(path)
    np.savez(path, **latents)
    return path


def load_latents(path: str | Path) -> dict:
    """The arrays of a ``latents.npz`` (no pickled objects are allowed in it)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def load_trained(out_dir: str | Path, device: str = "cpu"):
    """Rebuild a finished run's model and split from ``out_dir/config.yaml`` + ``best.pt``."""
    from .config import resolve_config
    from .data.prepare import load_split
    from .train import build_model  # late: gcf.train imports this module

    out_dir = Path(out_dir)
    with open(out_dir / "config.yaml") as f:
        cfg = yaml.safe_load(f)["config"]
    split = load_split(cfg)
    _, kwargs = resolve_config(cfg["model"], {k: v for k, v in cfg.items() if k != "model"})
    model = build_model(cfg["model"], kwargs, split, int(cfg["seed"]))
    state = torch.load(out_dir / "best.pt", map_location=device, weights_only=True)["model"]
    model.load_state_dict(state)
    model.to(device).eval()
    return model, split
