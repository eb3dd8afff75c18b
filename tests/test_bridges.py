"""bridges: CF latents from the training part only, their cache (reused, and refused for another
split), and BiTVAE-Rec's latent slot (standardised latents in CARCA's attribute input, frozen
or fine-tuned)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import bridges.models  # noqa: F401  (registers bitvae_rec)
from bridges import latents as bl
from bridges.latents import standardise
from bridges.models.bitvae_rec import BiTVAERec
from gcf.data.split import Split, leave_one_out
from gcf.data.train_data import TrainData
from gcf.models import build_model

FAST = dict(dim=8, epochs=3)


@pytest.fixture(scope="module")
def loo(ml_small):
    return leave_one_out(ml_small.dedup())


def _with_other_test(split: Split) -> Split:
    """The same train and valid parts, every test item replaced by one item nobody trained on."""
    test = split.test
    unseen = np.setdiff1d(np.arange(split.n_items), np.concatenate([split.train.items, split.valid.items]))[0]
    keep = (test.items != unseen)
    moved = test.subset(keep)
    moved.items[:] = unseen
    return Split(split.train, split.valid, moved, "loo, test moved"), int(unseen)


def test_latents_come_from_the_training_part_only(loo):
    data = TrainData.from_split(loo)
    split = bl.training_split(data, 0.1, seed=3)
    n = data.n_items
    seen = np.unique(np.concatenate([split.train.users * n + split.train.items, split.valid.users * n + split.valid.items]))
    assert np.array_equal(seen, np.unique(data.interactions.users * n + data.interactions.items))
    assert len(split.test) == 0
    # another test part (every test interaction moved onto an item only the test part has) gives
    # bit-identical latents: the CF model never sees it
    other, unseen = _with_other_test(loo)
    a = bl.cf_latents("lightgcn", data, 3, **FAST, device="cpu")
    b = bl.cf_latents("lightgcn", TrainData.from_split(other), 3, **FAST, device="cpu")
    assert np.array_equal(a["item"], b["item"]) and np.array_equal(a["user"], b["user"])
    assert a["item"].shape == (n, 8) and a["user"].shape == (data.n_users, 8)


def test_cache_is_reused_and_refused_for_another_split(loo, tmp_path, monkeypatch):
    data = TrainData.from_split(loo)
    first = bl.cf_latents("lightgcn", data, 5, **FAST, cache_dir=tmp_path, device="cpu")
    assert first["path"] and first["path"].startswith(str(tmp_path))

    def no_training(self):
        raise AssertionError("trained again although the cache holds these latents")

    monkeypatch.setattr(bl.Trainer, "fit", no_training)
    again = bl.cf_latents("lightgcn", data, 5, **FAST, cache_dir=tmp_path, device="cpu")
    assert again["path"] == first["path"] and np.array_equal(again["item"], first["item"])
    # a split with another training part: a different cache entry, and the old file is refused
    shifted = Split(loo.train.subset(np.arange(len(loo.train)) % 7 != 0), loo.valid, loo.test, "loo minus rows")
    other = TrainData.from_split(shifted)
    assert other.fingerprint != data.fingerprint
    with pytest.raises(ValueError, match="written for split"):
        bl.read_latents(first["path"], other)
    with pytest.raises(AssertionError, match="trained again"):  # not found in the cache: it would train
        bl.cf_latents("lightgcn", other, 5, **FAST, cache_dir=tmp_path, device="cpu")


class _Stop(Exception):
    pass


def test_interrupted_latent_training_resumes_exactly(loo, tmp_path, monkeypatch):
    """A CF model stopped mid-training (a grid killed at the end of a session) resumes from its
    checkpoint in the cache's ``.run`` folder and gives the vectors of an uninterrupted run."""
    data = TrainData.from_split(loo)
    whole = bl.cf_latents("lightgcn", data, 4, dim=8, epochs=4, cache_dir=tmp_path / "a", device="cpu")
    save_last = bl.Trainer._save_last
    epochs_run = []

    def stop_after_two(self, state):
        save_last(self, state)
        epochs_run.append(state["epoch"])
        if state["epoch"] == 2:
            raise _Stop

    monkeypatch.setattr(bl.Trainer, "_save_last", stop_after_two)
    with pytest.raises(_Stop):
        bl.cf_latents("lightgcn", data, 4, dim=8, epochs=4, cache_dir=tmp_path / "b", device="cpu")
    runs = list((tmp_path / "b").glob("lightgcn-*.run"))
    assert len(runs) == 1 and (runs[0] / "last.pt").exists() and not list((tmp_path / "b").glob("*.npz"))
    resumed = bl.cf_latents("lightgcn", data, 4, dim=8, epochs=4, cache_dir=tmp_path / "b", device="cpu")
    assert epochs_run == [1, 2, 3, 4]  # epochs 3 and 4 only, after the stop
    assert np.array_equal(resumed["item"], whole["item"]) and np.array_equal(resumed["user"], whole["user"])
    assert not runs[0].exists()  # the checkpoints go once the vectors are saved


def test_unknown_source_names_the_key(loo):
    with pytest.raises(ValueError, match="latent_source"):
        build_model("bitvae_rec", {"latent_source": "svd"}, loo, 1)


@pytest.mark.parametrize("finetune", [False, True])
def test_latent_slot_frozen_or_finetuned(loo, tmp_path, finetune):
    kw = dict(latent_source="lightgcn", latent_dim=8, latent_epochs=2, latent_cache=str(tmp_path),
              latent_device="cpu", finetune_latents=finetune, max_len=12, hidden_size=16, n_layers=1)
    model = build_model("bitvae_rec", kw, loo, 11)
    assert isinstance(model, BiTVAERec) and model.latent_width == 8
    cached = bl.read_latents(next(tmp_path.glob("lightgcn-*.npz")), TrainData.from_split(loo))
    slot = model.attributes.detach()[1:]  # row 0 is padding
    assert torch.allclose(slot, torch.from_numpy(standardise(cached["item"])), atol=1e-6)
    assert isinstance(model.attributes, torch.nn.Parameter) == finetune
    before = model.attributes.detach().clone()
    opt = torch.optim.Adam(model.param_groups(), lr=1e-2)
    batch = next(iter(model.batches(TrainData.from_split(loo), 32).epoch(np.random.default_rng(0))))
    model.loss(batch).backward()
    opt.step()
    assert torch.equal(model.attributes.detach(), before) != finetune
    # the same seed builds the same model (the latents' training does not move CARCA's init)
    again = build_model("bitvae_rec", kw, loo, 11)
    assert torch.equal(again.item_embedding.weight, build_model("bitvae_rec", kw, loo, 11).item_embedding.weight)


@pytest.mark.parametrize("join", ["add", "concat"])
def test_sasrec_cf_starts_as_sasrec_and_learns_to_use_the_latents(loo, tmp_path, join):
    kw = dict(max_len=12, hidden_size=16, n_layers=1, hidden_dropout_prob=0.0, attn_dropout_prob=0.0)
    cf = build_model("sasrec_cf", {**kw, "latent_source": "lightgcn", "latent_dim": 8, "latent_epochs": 2,
                                   "latent_cache": str(tmp_path), "latent_device": "cpu", "latent_join": join}, loo, 4)
    plain = build_model("sasrec", kw, loo, 4)
    items = torch.tensor([[0, 0, 5, 9, 17], [3, 4, 5, 6, 7]])
    assert torch.allclose(cf.hidden(items), plain.hidden(items), atol=1e-5)  # the join starts neutral
    data = TrainData.from_split(loo)
    opt = torch.optim.Adam(cf.param_groups(), lr=1e-2)
    batch = next(iter(cf.batches(data, 64).epoch(np.random.default_rng(0))))
    cf.loss(batch).backward()
    opt.step()
    assert not torch.allclose(cf.hidden(items), plain.hidden(items), atol=1e-5)  # and then uses the latents
    assert cf.join.weight.grad is not None and cf.join.weight.grad.abs().sum() > 0


def test_user_latent_joins_the_query_side(loo, tmp_path):
    kw = dict(latent_source="lightgcn", latent_dim=8, latent_epochs=2, latent_cache=str(tmp_path),
              latent_device="cpu", max_len=12, hidden_size=16, n_layers=1, dropout=0.0)
    with_user = build_model("bitvae_rec", {**kw, "user_latent": True}, loo, 7)
    items_only = build_model("bitvae_rec", kw, loo, 7)
    with_user.eval(), items_only.eval()
    users, hist = torch.tensor([0, 1]), torch.tensor([[0, 3, 4, 5], [6, 7, 8, 9]])
    times = torch.full((2, 4), 1.0e9).double() if with_user.context else None
    assert torch.allclose(with_user.score_sequences(users, hist, times), items_only.score_sequences(users, hist, times))
    with torch.no_grad():
        with_user.user_proj.weight.normal_()
    a = with_user.score_sequences(users, hist, times)
    b = with_user.score_sequences(users.flip(0), hist, times)  # the same histories, the other user's latent
    assert not torch.allclose(a, b)
    with_user.train()
    batch = next(iter(with_user.batches(TrainData.from_split(loo), 16).epoch(np.random.default_rng(0))))
    with_user.loss(batch).backward()
    assert with_user.user_proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="user_latent=true needs latents"):
        build_model("bitvae_rec", {"latent_source": "none", "user_latent": True}, loo, 1)
