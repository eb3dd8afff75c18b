"""User and item latents out of any trained gcf model, with their id maps.

``python -m gcf.train`` saves them as ``out_dir/latents.npz`` next to ``best.pt`` for every
model that has a latent space (``model.latents()``; Pop, EASE and DiffRec have none).
``bridges/`` reads them back with :func:`load_latents` (or rebuilds the model with
:func:`gcf.runs.load_trained`); :func:`item_vectors_for` aligns a file's item vectors to a
dataset's items and refuses a file trained on another split.

``latents.npz`` holds ``user [n_users, d_user]``, ``item [n_items, d_item]`` (float32) and
``user_ids`` / ``item_ids``: the raw ids of the source file, row ``u`` of ``user`` belonging
to ``user_ids[u]``; ``split_fingerprint``: :meth:`gcf.data.split.Split.fingerprint` of the
split whose training part the model saw. What the vectors are is model-specific and documented on each model's
``latents`` (LightGCN/NGCF: final propagated embeddings; BiVAE: posterior means; VAECF: user
posterior means and decoder item weights).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


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
    user, item = user.detach().float().cpu().numpy(), item.detach().float().cpu().numpy()
    if user.shape[0] != split.n_users or item.shape[0] != split.n_items:
        raise ValueError(f"{type(model).__name__}.latents(): got {user.shape[0]} users / {item.shape[0]} items, "
                         f"expected {split.n_users} / {split.n_items}")
    return {"user": user, "item": item, "user_ids": np.asarray(split.train.user_ids, dtype=str),
            "item_ids": np.asarray(split.train.item_ids, dtype=str),
            "split_fingerprint": np.asarray(split.fingerprint())}


def save_latents(path: str | Path, latents: dict) -> Path:
    path = Path(path)
    np.savez(path, **latents)
    return path


def load_latents(path: str | Path) -> dict:
    """The arrays of a ``latents.npz`` (no pickled objects are allowed in it)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def item_vectors_for(path: str | Path, data) -> np.ndarray:
    """The item vectors of ``latents.npz`` at ``path`` in the order of ``data``'s items
    (a :class:`gcf.data.train_data.TrainData`), matched by raw id. A file written for another
    split (its ``split_fingerprint`` differs from ``data.fingerprint``) is refused: its model
    may have trained on this split's validation or test interactions."""
    lat = load_latents(path)
    if "item" not in lat or "item_ids" not in lat:
        raise ValueError(f"{path}: no 'item'/'item_ids' arrays (expected a gcf latents.npz)")
    theirs = str(lat["split_fingerprint"]) if "split_fingerprint" in lat else None
    if data.fingerprint is not None and theirs != data.fingerprint:
        raise ValueError(f"{path}: written for split {theirs or '(none recorded)'}, but this run's split is "
                         f"{data.fingerprint}: its model trained on another training part (which may hold this "
                         f"split's validation or test interactions); train it on this split (same dataset, split "
                         f"and seed)")
    if data.item_ids is None:
        raise ValueError(f"{path}: matching items needs their raw ids, which this data does not carry")
    row = {str(raw): j for j, raw in enumerate(lat["item_ids"])}
    missing = [str(i) for i in data.item_ids if str(i) not in row]
    if missing:
        raise ValueError(f"{path}: {len(missing)} of this data's {len(data.item_ids)} items have no vector there "
                         f"(e.g. {missing[:3]}); train it on the same dataset")
    return lat["item"][[row[str(i)] for i in data.item_ids]]
