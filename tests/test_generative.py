"""Generative CF models (Mult-VAE, BiVAE, DiffRec, L-DiffRec): they learn on real data, and keep the contract.

Each model trains for a few epochs on the embedded MovieLens latest-small (5/10-core, random
8:1:1, seed 2020) and must beat Pop on test NDCG@20 and Recall@20. The budgets are small,
so the whole file runs in well under a minute on two CPU cores.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gcf.config import config_dir, model_yaml, read_yaml
from gcf.data import loaders
from gcf.data.interactions import Interactions
from gcf.data.split import random_ratio
from gcf.models import BiVAE, DiffRec, LDiffRec, Pop, TrainData, VAECF, get_model_class
from gcf.models.ldiffrec import kmeans
from gcf.trainer import Trainer

RATINGS = Path(loaders.__file__).resolve().parent / "ml-latest-small" / "ratings.csv"

# name -> train overrides of the short run: (epochs, batch_size, learning_rate)
BUDGETS = {
    "vaecf": (10, 64, 1e-3),
    "bivae": (20, 64, 3e-3),
    "diffrec": (5, 100, 1e-3),
    "ldiffrec": (40, 64, 1e-3),
}


@pytest.fixture(scope="module")
def split():
    df = pd.read_csv(RATINGS)
    inter = Interactions.from_raw(df.userId, df.movieId, df.rating, df.timestamp).k_core(5, 10)
    return random_ratio(inter, (0.8, 0.1, 0.1), 2020)


@pytest.fixture(scope="module")
def data(split):
    return TrainData.from_split(split)


def _cfg(**over) -> dict:
    base = read_yaml(config_dir() / "base.yaml")
    return {**base, "progress": False, "device": "cpu", "metrics": ["recall", "ndcg"], "topk": [20], **over}


@pytest.fixture(scope="module")
def pop_test(split):
    return Trainer(Pop(TrainData.from_split(split)), split, _cfg()).fit()["test"]


@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_beats_pop(name, split, pop_test):
    epochs, batch_size, lr = BUDGETS[name]
    kwargs, train = model_yaml(name)
    torch.manual_seed(0)
    model = get_model_class(name).from_config(TrainData.from_split(split), **kwargs)
    cfg = _cfg(**{**train, "epochs": epochs, "batch_size": batch_size, "learning_rate": lr,
                  "eval_step": epochs, "stopping_step": 10})  # validate once, at the end
    test = Trainer(model, split, cfg).fit()["test"]
    assert test["ndcg@20"] > pop_test["ndcg@20"] * 1.05, (name, test, pop_test)
    assert test["recall@20"] > pop_test["recall@20"], (name, test, pop_test)


# ------------------------------------------------------------------ contract details
def test_vaecf_latents_and_anneal_counter(data):
    torch.manual_seed(0)
    model = VAECF(data, hidden_dims=[32], latent_dim=8, total_anneal_steps=100)
    assert "update_count" in model.state_dict()
    model.train()
    rows = model.history_rows(torch.arange(16))
    assert model.beta == 0.0
    for _ in range(3):
        model.loss((torch.arange(16), rows))
    assert int(model.state_dict()["update_count"]) == 3 and model.beta == pytest.approx(0.03)
    model.eval()
    model.loss((torch.arange(16), rows))  # evaluation does not advance the schedule
    assert int(model.update_count) == 3
    user, item = model.latents()
    assert user.shape == (data.n_users, 8) and item.shape == (data.n_items, 32)
    scores = model.score(torch.arange(5))
    assert scores.shape == (5, data.n_items) and torch.isfinite(scores).all()
    # a reloaded model resumes the schedule
    other = VAECF(data, hidden_dims=[32], latent_dim=8, total_anneal_steps=100)
    other.load_state_dict(model.state_dict())
    assert int(other.update_count) == 3


def test_bivae_latents_and_stored_samples(data):
    torch.manual_seed(0)
    model = BiVAE(data, k=6, encoder_structure=[16])
    assert {"theta", "beta", "mu_theta", "mu_beta"} <= set(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    items = torch.arange(10)
    rows = torch.from_numpy(model._item_matrix[:10].toarray()).float()
    before = model.beta[items].clone()
    loss = model.loss(("item", items, rows))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    assert all(p.grad is None for p in model.user_encoder.parameters())  # no gradient across sides
    opt.step()
    # the batch is stored after the step, from the stepped parameters (as cornac does)
    model.state_dict()
    with torch.no_grad():
        mu, _ = model.item_encoder(rows)
    assert torch.allclose(model.mu_beta[items], mu) and not torch.equal(model.beta[items], before)
    model.eval()
    user, item = model.latents()
    assert user.shape == (data.n_users, 6) and item.shape == (data.n_items, 6)
    scores = model.score(torch.arange(4))
    assert torch.allclose(scores, user[:4] @ item.T)


def test_bivae_cap_priors(data):
    n = data.n_users
    feats = {"user": np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32)}
    model = BiVAE(data, k=4, encoder_structure=[8], cap_priors=True, prior_features=feats)
    assert model.user_prior is not None and model.item_prior is None
    model.train()
    rows = model.history_rows(torch.arange(8))
    model.loss(("user", torch.arange(8), rows)).backward()
    assert model.user_prior.weight.grad is not None


def test_diffrec_has_no_latents_and_keeps_history(data):
    torch.manual_seed(0)
    model = DiffRec(data, dims_dnn=[32], steps=3)
    with pytest.raises(TypeError, match="latent"):
        model.latents()
    assert {"Lt_history", "Lt_count"} <= set(model.state_dict())
    model.train()
    rows = model.history_rows(torch.arange(64))
    for _ in range(3):
        model.loss((torch.arange(64), rows))
    assert (model.Lt_count == 10).all()  # history full: importance sampling from now on
    t, pt = model.sample_steps(1000, "cpu")
    assert t.min() >= 0 and t.max() < 3 and torch.isfinite(pt).all()
    model.eval()
    scores = model.score(torch.arange(5))
    assert scores.shape == (5, data.n_items) and torch.isfinite(scores).all()


def test_configs_build_registered_models(data):
    for name, cls in (("vaecf", VAECF), ("bivae", BiVAE), ("diffrec", DiffRec), ("ldiffrec", LDiffRec)):
        kwargs, _ = model_yaml(name)
        assert get_model_class(name) is cls
        assert isinstance(cls.from_config(data, **kwargs), cls)


def test_kmeans_finds_separated_clusters():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (30, 2)), rng.normal(-5, 0.1, (20, 2))])
    labels = kmeans(x, 3, seed=0)
    assert sorted(np.bincount(labels)) == [20, 30, 50]
    assert len(set(labels[:50])) == len(set(labels[50:80])) == len(set(labels[80:])) == 1
    assert (kmeans(x, 3, seed=0) == labels).all()


def test_ldiffrec_clusters_latents_and_schedules(data, tmp_path):
    torch.manual_seed(0)
    model = LDiffRec(data, n_cate=3, ae_dims=[40], dims_dnn=[16], steps=3, anneal_steps=10, lamda=0.05,
                     anneal_cap=0.01, vae_anneal_steps=4)
    assert sum(model.cluster_sizes) == data.n_items and len(model.cluster_sizes) == 3
    assert sum(model.cluster_dims) == 40 and "item_cluster" in model.state_dict()
    # one Adam group for the autoencoder at its own learning rate, one for the denoiser
    groups = model.param_groups()
    assert groups[0]["lr"] == 5e-4 and "lr" not in groups[1]  # the class default
    n_params = sum(p.numel() for g in groups for p in g["params"])
    assert n_params == sum(p.numel() for p in model.parameters())
    model.train()
    rows = model.history_rows(torch.arange(32))
    assert model.kl_weight == 0.0 and model.diffusion_weight == pytest.approx(0.05)
    model.loss((torch.arange(32), rows)).backward()
    assert model.kl_weight == pytest.approx(0.25)  # 1 batch / 4
    model.loss((torch.arange(32), rows)).backward()
    assert model.kl_weight == pytest.approx(0.3)  # capped
    model.start_epoch(8)
    assert model.diffusion_weight == pytest.approx(0.01)  # max((1 - 8/10) * 0.05, 0.01)
    model.eval()
    user, item = model.latents()
    assert user.shape == (data.n_users, 40) and item.shape == (data.n_items, 40)
    scores = model.score(torch.arange(5))
    assert scores.shape == (5, data.n_items) and torch.isfinite(scores).all()

    # clustering on a gcf latents.npz, matched by raw item id (here: shuffled rows)
    from gcf.latents import save_latents

    vecs = np.random.default_rng(0).normal(size=(data.n_items, 4)).astype(np.float32)
    perm = np.random.default_rng(1).permutation(data.n_items)
    path = save_latents(tmp_path / "latents.npz", {"item": vecs[perm], "item_ids": data.item_ids[perm],
                                                    "user": np.zeros((1, 4), np.float32),
                                                    "split_fingerprint": np.asarray(data.fingerprint)})
    a = LDiffRec.from_config(data, n_cate=2, ae_dims=[20], dims_dnn=[8], item_latents=str(path))
    assert (a.item_cluster.numpy() == kmeans(vecs, 2, seed=0)).all()
    # a checkpoint brings its clustering along: same cluster sizes, other items -> the loaded ones
    b = LDiffRec(data, n_cate=2, ae_dims=[20], dims_dnn=[8], item_vectors=vecs)
    state = a.state_dict()
    state["item_cluster"] = torch.from_numpy(np.roll(state["item_cluster"].numpy(), 1))
    b.load_state_dict(state)
    assert (b.item_cluster[b.item_order].diff() >= 0).all()  # item_order follows the loaded clusters
    b.eval()
    assert torch.isfinite(b.score(torch.arange(3))).all()
    path = save_latents(tmp_path / "few.npz", {"item": vecs[:10], "item_ids": data.item_ids[:10],
                                               "split_fingerprint": np.asarray(data.fingerprint)})
    with pytest.raises(ValueError, match="have no vector there"):
        LDiffRec.from_config(data, n_cate=2, item_latents=str(path))
    # latents of another split (another training part) are refused, naming both fingerprints
    path = save_latents(tmp_path / "other.npz", {"item": vecs[perm], "item_ids": data.item_ids[perm],
                                                 "split_fingerprint": np.asarray("0" * 32)})
    with pytest.raises(ValueError, match="written for split 0+, but this run's split is"):
        LDiffRec.from_config(data, n_cate=2, item_latents=str(path))
