"""Collaborative-filtering latents for the bridges, from the training part of a split only.

:func:`cf_latents` trains a gcf model (``bivae``, ``vaecf`` or ``lightgcn``, the sources of
:data:`SOURCES`) on the interactions a sequence model is allowed to see, its
:class:`gcf.data.train_data.TrainData`, and returns per-user and per-item vectors aligned to
that data's ids (row ``j`` = gcf item ``j``):

- BiVAE: the posterior means of the user and item factors;
- VAECF (Mult-VAE): the users' posterior means and the decoder's output weights per item;
- LightGCN: the final (layer-averaged) embeddings.

No validation or test interaction reaches the CF model: it never sees the split, only the
training part; its early stopping holds out ``holdout`` of each user's training interactions
(seeded, :func:`gcf.data.split.fixed`, the rule of the cornac wrappers' ``holdout_valid``). An
item with no training interaction keeps what the CF model gives an unseen item (its
initialisation or prior), whatever the later parts hold.

Cache: with ``cache_dir`` the vectors are saved as ``<source>-<key>.npz``, ``key`` a hash of the
source, the training part's fingerprint (:meth:`gcf.data.split.Split.fingerprint`), the seed
and the CF model's resolved config, so an ablation grid trains each latent source once per
seed. A file's recorded fingerprint is checked against the data on every load: a file
trained on another split (``latent_path=``) is refused, never silently reused. While the CF
model trains, its checkpoints sit in ``<source>-<key>.run/`` beside the file: an interrupted
training (a grid stopped mid-way) resumes from its last epoch, exactly; the folder is removed
once the vectors are saved.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from gcf.config import resolve_config
from gcf.data.split import fixed
from gcf.data.train_data import TrainData
from gcf.latents import export_latents, item_vectors_for, load_latents
from gcf.models import build_model
from gcf.trainer import Trainer

log = logging.getLogger("gcf")

# source -> the CF model's key that sets the latent dimension
SOURCES = {"bivae": "k", "vaecf": "hidden_dims", "lightgcn": "embedding_size"}


def latent_config(source: str, seed: int, dim: int | None = None, epochs: int | None = None,
                  device: str = "auto") -> tuple[dict, dict]:
    """The CF model's run config and constructor keys: its shipped defaults, with the latent
    dimension (VAECF: the decoder's hidden width, ``hidden_dims=[dim]``) and epochs set."""
    if source not in SOURCES:
        raise ValueError(f"latent_source must be one of {', '.join(SOURCES)} (or none), got {source!r}")
    over = {"seed": seed, "progress": False, "device": device}
    if dim is not None:
        over[SOURCES[source]] = [int(dim)] if source == "vaecf" else int(dim)
    if epochs is not None:
        over["epochs"] = int(epochs)
    return resolve_config(source, over)


def training_split(data: TrainData, holdout: float, seed: int):
    """The training interactions (repeats merged) as a split whose validation part is
    ``holdout`` of each user's rows and whose test part is empty."""
    if data.interactions is None:
        raise ValueError("CF latents need the training interactions (TrainData.interactions)")
    inter = data.interactions.dedup()
    return fixed(inter, inter.subset(np.zeros(len(inter), dtype=bool)), valid_ratio=float(holdout), seed=seed)


def cache_key(source: str, data: TrainData, seed: int, cfg: dict, kwargs: dict, holdout: float) -> str:
    train_keys = {k: cfg[k] for k in ("learning_rate", "batch_size", "epochs", "eval_step", "stopping_step",
                                      "valid_metric", "weight_decay") if k in cfg}
    blob = json.dumps({"source": source, "fingerprint": data.fingerprint, "seed": seed, "model": kwargs,
                       "train": train_keys, "holdout": holdout}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cf_latents(source: str, data: TrainData, seed: int, dim: int | None = None, epochs: int | None = None,
               holdout: float = 0.1, cache_dir: str | os.PathLike | None = None, device: str = "auto") -> dict:
    """``{"user": [n_users, k], "item": [n_items, k], "path": cache file or None}`` (float32,
    aligned to ``data``'s ids); trains the CF model unless the cache holds it."""
    cfg, kwargs = latent_config(source, seed, dim, epochs, device)
    path = run_dir = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{source}-{cache_key(source, data, seed, cfg, kwargs, holdout)}.npz"
        if path.exists():
            log.info("CF latents: %s from the cache %s", source, path)
            return {**read_latents(path, data), "path": str(path)}
        run_dir = path.with_name(path.stem + ".run")  # checkpoints: an interrupted training resumes
        cfg = {**cfg, "resume": True}
    split = training_split(data, holdout, seed)
    net = build_model(source, kwargs, split, seed)
    metrics = Trainer(net, split, cfg, out_dir=run_dir).fit()
    lat = export_latents(net, split)
    # the CF split's own training part is a subset of data's: the vectors come from data alone
    lat["split_fingerprint"] = np.asarray(data.fingerprint)
    lat["source"] = np.asarray(source)
    lat["config"] = np.asarray(json.dumps({"model": kwargs, "seed": seed, "holdout": holdout,
                                           "best_epoch": metrics["best_epoch"], "valid": metrics["valid"]},
                                          default=str))
    log.info("CF latents: %s trained on the training part (best epoch %d), user %s item %s", source,
             metrics["best_epoch"], lat["user"].shape, lat["item"].shape)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, **lat)
        tmp.replace(path)
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"user": lat["user"].astype(np.float32), "item": lat["item"].astype(np.float32),
            "path": None if path is None else str(path)}


def read_latents(path: str | os.PathLike, data: TrainData) -> dict:
    """User and item vectors of a latents file in ``data``'s order; refused (an error naming the
    file) when it was trained on another split's training part."""
    item = item_vectors_for(path, data)  # checks the fingerprint and matches items by raw id
    lat = load_latents(path)
    user = None
    if "user" in lat and "user_ids" in lat and data.user_ids is not None:
        row = {str(raw): u for u, raw in enumerate(lat["user_ids"])}
        missing = [str(u) for u in data.user_ids if str(u) not in row]
        if missing:
            raise ValueError(f"{path}: {len(missing)} of this data's users have no vector there (e.g. {missing[:3]})")
        user = lat["user"][[row[str(u)] for u in data.user_ids]].astype(np.float32)
    return {"user": user, "item": item.astype(np.float32)}


def standardise(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per column (columns without spread are only centred): the CF
    models' scales differ by orders of magnitude, and the layers that take the vectors are
    initialised for unit-scale inputs."""
    x = np.asarray(x, dtype=np.float32)
    std = x.std(0, keepdims=True)
    return (x - x.mean(0, keepdims=True)) / np.where(std > 0, std, 1.0)


def item_latents(data: TrainData, source: str, seed: int, dim: int | None = None, epochs: int | None = None,
                 holdout: float = 0.1, cache_dir=None, path: str | None = None, device: str = "auto",
                 with_users: bool = False):
    """The bridge models' input: standardised ``[n_items, k]`` item latents of ``source`` trained
    on ``data`` (or read from ``path``, a ``latents.npz``); ``None`` for ``source="none"``. With
    ``with_users``, ``(items, users [n_users, k'])``."""
    if path:
        lat = read_latents(path, data)
        if with_users and lat["user"] is None:
            raise ValueError(f"{path}: no user vectors (user_latent needs them)")
    elif source == "none":
        return (None, None) if with_users else None
    elif source not in SOURCES:
        raise ValueError(f"latent_source must be none or one of {', '.join(SOURCES)}, got {source!r}")
    else:
        lat = cf_latents(source, data, seed, dim, epochs, holdout, cache_dir, device)
    items = standardise(lat["item"])
    return (items, standardise(lat["user"])) if with_users else items
