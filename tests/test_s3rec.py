"""S3-Rec: the pre-training rows (masks, negatives, segments), bidirectional pre-training and
causal fine-tuning, each of the four pre-training losses decreasing on the embedded
ml-latest-small with genres as attributes, fine-tuning loading exactly the weights of the file it
names (and refusing a missing or incompatible one), and the fine-tuned model learning (beats Pop)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import seq.models  # noqa: F401  (registers the models)
from gcf.config import resolve_config
from gcf.data.prepare import load_split
from gcf.data.train_data import TrainData
from gcf.models import build_model
from gcf.train import run

FAST = ["progress=false", "device=cpu", "eval_batch_size=1024", "item_k=10", "user_k=10"]
SMALL = {"max_len": 20, "hidden_size": 16}


@pytest.fixture(scope="module")
def split():
    cfg, _ = resolve_config("s3rec", FAST)
    return load_split(cfg)


@pytest.fixture(scope="module")
def data(split):
    return TrainData.from_split(split)


def pretrainer(split, **kw):
    return build_model("s3rec", {"stage": "pretrain", "attributes": "genres", **SMALL, **kw}, split, seed=0)


def test_pretraining_rows(split, data):
    model = pretrainer(split)
    b = next(iter(model.batches(data, 64).epoch(np.random.default_rng(0))))
    items, masked, M = b["items"], b["masked"], model.mask_token
    real = items > 0
    assert (masked[:, -1] == M).all()  # the newest item is always masked
    assert torch.equal(masked > 0, real) and torch.equal(masked[masked != M], items[masked != M])
    is_m = masked == M
    neg = b["mip_negatives"]
    assert (neg[is_m] >= 1).all() and (neg[is_m] <= model.n_items).all() and (neg[~is_m] == 0).all()
    train = data.train.tocsr()
    for r in range(len(items)):
        seen = set(train[int(b["users"][r])].indices + 1)
        assert not seen & set(neg[r][is_m[r]].tolist())  # negatives outside the user's training items
        n = int(real[r].sum())
        seg = b["segment_pos"][r] != M
        seg &= real[r]
        if n < 2:
            assert not b["has_segment"][r]
            continue
        k = int(seg.sum())
        assert 1 <= k <= n // 2
        idx = torch.nonzero(seg).flatten()
        assert int(idx[-1] - idx[0]) + 1 == k  # contiguous
        assert torch.equal(b["segment_pos"][r, seg], items[r, seg])
        assert (b["segment_context"][r, seg] == M).all()
        assert torch.equal(b["segment_context"][r, ~seg], items[r, ~seg])
        assert ((b["segment_neg"][r, seg] >= 1) & (b["segment_neg"][r, seg] <= model.n_items)).all()
        assert (b["segment_neg"][r, ~seg & real[r]] == M).all()


def test_pretraining_attends_both_ways_and_fine_tuning_is_causal(split, data):
    model = pretrainer(split).eval()
    items = next(iter(model.batches(data, 16).epoch(np.random.default_rng(0))))["items"]
    items2 = items.clone()
    items2[:, -1] = items[:, -1] % model.n_items + 1
    keep = items[:, -3] > 0
    with torch.no_grad():
        bi, bi2 = model.hidden(items, bidirectional=True), model.hidden(items2, bidirectional=True)
        ca, ca2 = model.hidden(items), model.hidden(items2)
    assert (bi[keep, -3] - bi2[keep, -3]).abs().amax() > 1e-4
    assert torch.equal(ca[:, :-1], ca2[:, :-1])


@pytest.mark.parametrize("samples, max_len", [("last", 300), ("prefixes", 20)])
def test_length_buckets_cut_batches_without_changing_the_losses(samples, max_len, split, data):
    """With ``length_buckets`` every row comes once per epoch, a batch is cut to its longest row,
    and the four losses of a cut batch equal those of the same rows padded back to ``max_len``."""
    model = pretrainer(split, hidden_dropout_prob=0.0, attn_dropout_prob=0.0, length_buckets=True,
                       pretrain_samples=samples, max_len=max_len).eval()
    builder = model.batches(data, 64)
    rows, b = 0, None
    for batch in builder.epoch(np.random.default_rng(5)):
        rows += len(batch["users"])
        assert batch["items"].shape[1] == int((batch["items"] > 0).sum(1).max())  # cut to its longest row
        if b is None or batch["items"].shape[1] < b["items"].shape[1]:
            b = batch
    assert rows == len(builder.users) and b["items"].shape[1] < max_len
    pad = model.max_len - b["items"].shape[1]
    full = {k: (torch.nn.functional.pad(v, (pad, 0)) if v.dim() == 2 else v) for k, v in b.items()}
    with torch.no_grad():
        cut, wide = model.pretrain_losses(b), model.pretrain_losses(full)
    for k in cut:
        assert torch.allclose(cut[k], wide[k], rtol=1e-4, atol=1e-4), (k, cut[k], wide[k])
    fine = build_model("s3rec", {**SMALL, "length_buckets": True}, split, seed=0)
    assert fine.batches(data, 64).length_buckets


@pytest.mark.parametrize("objective", ["aap", "mip", "map", "sp"])
def test_each_pretraining_loss_decreases(objective, split, data):
    """Trained on its objective alone (the others weighted 0), each loss falls on a fixed batch.
    (In the joint loss the summed AAP/MAP, ~100x larger, move first.)"""
    weights = {f"{k}_weight": float(k == objective) for k in ("aap", "mip", "map", "sp")}
    model = pretrainer(split, hidden_dropout_prob=0.0, attn_dropout_prob=0.0, **weights)
    fixed = next(iter(model.batches(data, 128).epoch(np.random.default_rng(123))))
    with torch.no_grad():
        before = float(model.pretrain_losses(fixed)[objective])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(3):
        for b in model.batches(data, 64).epoch(np.random.default_rng(epoch)):
            loss = model.loss(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        after = float(model.pretrain_losses(fixed)[objective])
    # MIP and SP are -log sigmoid(f+ - f-) with f = sigmoid(score) (the official double sigmoid):
    # from log 2 at the start they can only fall to -log sigmoid(1), and they move slowly
    drop = {"aap": 0.3, "map": 0.3, "mip": 0.03, "sp": 0.005}[objective]
    assert after < (1 - drop) * before, (objective, before, after)


def test_fine_tuning_loads_the_pretrained_weights_it_names(split, tmp_path):
    pre = run("s3rec", [f"out_dir={tmp_path / 'pre'}", *FAST, "stage=pretrain", "attributes=genres", "epochs=1",
                        "max_len=20", "hidden_size=16", "batch_size=128"], quiet=True)
    assert pre["epochs"] == 1
    path = tmp_path / "pre" / "last.pt"
    saved = torch.load(path, weights_only=True)["model"]
    assert any(k.startswith("heads.") for k in saved) and "attribute_embedding.weight" in saved
    tuned = build_model("s3rec", {**SMALL, "pretrained": str(path)}, split, seed=1)
    scratch = build_model("s3rec", SMALL, split, seed=1)
    own = tuned.state_dict()
    assert not any(k.startswith(("heads.", "attribute_embedding")) for k in own)
    assert all(torch.equal(own[k], saved[k]) for k in own)
    assert not torch.equal(own["item_embedding.weight"], scratch.state_dict()["item_embedding.weight"])
    # the CLI stage runs from it
    m = run("s3rec", [f"out_dir={tmp_path / 'ft'}", *FAST, f"pretrained={path}", "epochs=1", "max_len=20",
                      "hidden_size=16"], quiet=True)
    assert m["test"]["ndcg@10"] >= 0
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        build_model("s3rec", {**SMALL, "pretrained": str(tmp_path / "nowhere.pt")}, split, seed=0)
    with pytest.raises(ValueError, match="item_embedding.weight.*shape"):
        build_model("s3rec", {"max_len": 20, "hidden_size": 32, "pretrained": str(path)}, split, seed=0)
    run("sasrec", [f"out_dir={tmp_path / 'sas'}", *FAST, "epochs=1", "max_len=20", "hidden_size=16"], quiet=True)
    with pytest.raises(ValueError, match="not an S3-Rec weight|missing key"):
        build_model("s3rec", {**SMALL, "pretrained": str(tmp_path / "sas" / "last.pt")}, split, seed=0)
    with pytest.raises(ValueError, match="needs item attributes"):
        build_model("s3rec", {"stage": "pretrain"}, split, seed=0)


@pytest.fixture(scope="module")
def pop_ndcg(tmp_path_factory):
    return run("pop", [f"out_dir={tmp_path_factory.mktemp('pop')}", *FAST], quiet=True,
               family="seq")["test"]["ndcg@10"]


def test_fine_tuned_s3rec_learns_and_beats_pop(pop_ndcg, tmp_path):
    m = run("s3rec", [f"out_dir={tmp_path}", *FAST, "epochs=6", "learning_rate=0.005", "batch_size=64", "loss=ce",
                      "hidden_dropout_prob=0.2", "attn_dropout_prob=0.2"], quiet=True)
    assert m["test"]["ndcg@10"] > 1.5 * pop_ndcg, (m["test"]["ndcg@10"], pop_ndcg)
