"""CL4SRec and its pieces (seq/augment.py): crop/mask/reorder keep what they promise (lengths,
multisets, contiguity), never write the input, repeat under a seed; NT-Xent equals its formula;
CL4SRec with lambda = 0 is SASRec; CL4SRec learns on the embedded ml-latest-small (beats Pop on
full-ranking NDCG@10) and is deterministic."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import seq.models  # noqa: F401  (registers the models)
from gcf.data.split import leave_one_out
from gcf.data.train_data import TrainData
from gcf.models import build_model
from gcf.train import run
from seq.augment import augment_views, crop, mask, nt_xent, reorder

FAST = ["progress=false", "device=cpu", "eval_batch_size=1024", "item_k=10", "user_k=10"]
MASK = 999


def batch(B: int = 64, L: int = 12, seed: int = 0) -> torch.Tensor:
    """Right-aligned rows of every length 0..L, items 1..50 (repeats allowed)."""
    g = torch.Generator().manual_seed(seed)
    n = torch.arange(B) % (L + 1)
    items = torch.randint(1, 51, (B, L), generator=g)
    return torch.where(torch.arange(L)[None, :] >= (L - n)[:, None], items, torch.zeros_like(items))


def real(row: torch.Tensor) -> list[int]:
    return row[row > 0].tolist()


def test_crop_keeps_a_contiguous_run_of_floor_eta_n_items():
    x = batch()
    for eta in (0.2, 0.6, 1.0):
        y = crop(x, eta, torch.Generator().manual_seed(1))
        for r in range(len(x)):
            src, out = real(x[r]), real(y[r])
            n = len(src)
            assert len(out) == (max(1, math.floor(eta * n)) if n else 0)
            assert (y[r, :len(y[r]) - len(out)] == 0).all()  # right-aligned
            assert any(src[s:s + len(out)] == out for s in range(n - len(out) + 1))


def test_mask_replaces_floor_gamma_n_real_positions_and_nothing_else():
    x = batch()
    y = mask(x, 0.3, MASK, torch.Generator().manual_seed(2))
    for r in range(len(x)):
        n = int((x[r] > 0).sum())
        hit = y[r] == MASK
        assert int(hit.sum()) == math.floor(0.3 * n)
        assert (x[r, hit] > 0).all()  # only real positions
        assert torch.equal(y[r, ~hit], x[r, ~hit])


def test_reorder_shuffles_one_window_and_keeps_the_multiset():
    x = batch()
    y = reorder(x, 0.6, torch.Generator().manual_seed(3))
    changed_rows = 0
    for r in range(len(x)):
        n = int((x[r] > 0).sum())
        assert sorted(real(y[r])) == sorted(real(x[r])) and torch.equal(y[r] > 0, x[r] > 0)
        diff = torch.nonzero(y[r] != x[r]).flatten()
        if len(diff):
            changed_rows += 1
            assert int(diff[-1] - diff[0]) + 1 <= math.floor(0.6 * n)  # inside one window of floor(beta n)
    assert changed_rows > len(x) // 3


def test_augmentations_copy_the_input_and_repeat_under_a_seed():
    x = batch()
    before = x.clone()
    outs = [crop(x, 0.6, torch.Generator().manual_seed(5)), mask(x, 0.3, MASK, torch.Generator().manual_seed(5)),
            reorder(x, 0.6, torch.Generator().manual_seed(5)),
            *augment_views(x, 0.6, 0.3, 0.6, MASK, generator=torch.Generator().manual_seed(5))]
    assert torch.equal(x, before)
    for y in outs:
        assert y.data_ptr() != x.data_ptr()
        y.fill_(7)  # writing a view must not reach the input
    assert torch.equal(x, before)
    a = augment_views(x, 0.6, 0.3, 0.6, MASK, generator=torch.Generator().manual_seed(9))
    b = augment_views(x, 0.6, 0.3, 0.6, MASK, generator=torch.Generator().manual_seed(9))
    c = augment_views(x, 0.6, 0.3, 0.6, MASK, generator=torch.Generator().manual_seed(10))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not (torch.equal(a[0], c[0]) and torch.equal(a[1], c[1]))


def test_two_views_use_two_different_operations():
    """With crop and reorder only, a row of >= 4 items gets exactly one shorter view (the crop);
    allowing repeats, some rows get two crops or two reorders."""
    x = batch(B=200, L=12)
    long_rows = (x > 0).sum(1) >= 4
    a, b = augment_views(x, 0.5, 0.3, 0.5, MASK, ("crop", "reorder"), distinct=True,
                         generator=torch.Generator().manual_seed(0))
    shorter = torch.stack([(a > 0).sum(1) < (x > 0).sum(1), (b > 0).sum(1) < (x > 0).sum(1)])
    assert (shorter[:, long_rows].sum(0) == 1).all()
    a, b = augment_views(x, 0.5, 0.3, 0.5, MASK, ("crop", "reorder"), distinct=False,
                         generator=torch.Generator().manual_seed(0))
    shorter = torch.stack([(a > 0).sum(1) < (x > 0).sum(1), (b > 0).sum(1) < (x > 0).sum(1)])
    assert (shorter[:, long_rows].sum(0) != 1).any()
    with pytest.raises(ValueError, match="augmentations"):
        augment_views(x, 0.5, 0.3, 0.5, MASK, ("shuffle",))


@pytest.mark.parametrize("similarity", ["dot", "cos"])
def test_nt_xent_equals_its_formula(similarity):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    tau = 0.5
    z = torch.cat([z1, z2])
    if similarity == "cos":
        z = z / z.norm(dim=1, keepdim=True)
    total = 0.0
    for i in range(10):
        partner = (i + 5) % 10
        s = [float(z[i] @ z[j]) / tau for j in range(10)]
        total += -(s[partner] - math.log(sum(math.exp(s[j]) for j in range(10) if j != i)))
    assert nt_xent(z1, z2, tau, similarity).item() == pytest.approx(total / 10, rel=1e-5)


@pytest.fixture(scope="module")
def loo(ml_small):
    return leave_one_out(ml_small.dedup())


def test_lambda_zero_is_sasrec_and_the_batch_is_left_alone(loo):
    data = TrainData.from_split(loo)
    kw = {"max_len": 20, "hidden_size": 16, "loss": "ce", "hidden_dropout_prob": 0.0, "attn_dropout_prob": 0.0}
    cl = build_model("cl4srec", {**kw, "cl_weight": 0.0}, loo, seed=0)
    sas = build_model("sasrec", kw, loo, seed=0)
    b = next(iter(cl.batches(data, 32).epoch(np.random.default_rng(0))))
    assert torch.allclose(cl.loss(b), sas.loss(b))
    cl.cl_weight = 0.1
    items = b["items"].clone()
    with_cl = cl.loss(b)
    assert torch.equal(b["items"], items)  # the views were copies
    assert torch.isfinite(with_cl) and with_cl.item() > sas.loss(b).item()  # NT-Xent > 0


def test_length_buckets_reach_the_batches_and_views_fit_cut_batches(loo):
    data = TrainData.from_split(loo)
    cl = build_model("cl4srec", {"max_len": 50, "hidden_size": 16, "length_buckets": True}, loo, seed=0)
    builder = cl.batches(data, 32)
    assert builder.length_buckets
    widths = []
    for b in builder.epoch(np.random.default_rng(0)):
        widths.append(b["items"].shape[1])
        if b["items"].shape[1] < 50:  # a cut batch: both views keep its width, the loss is finite
            a, v = cl.views(b["items"])
            assert a.shape == v.shape == b["items"].shape and torch.isfinite(cl.loss(b))
            break
    assert min(widths) < 50


def test_mask_token_has_its_own_input_vector_and_is_never_scored(loo):
    model = build_model("cl4srec", {"max_len": 20, "hidden_size": 16}, loo, seed=0).eval()
    items = torch.tensor([[0] * 17 + [3, model.mask_token, 5]])
    e = model.embed_items(items)
    assert torch.allclose(e[0, -2], model.mask_embedding * math.sqrt(16))
    with torch.no_grad():
        assert model.score_sequences(torch.tensor([0]), items, None).shape == (1, model.n_items)


@pytest.fixture(scope="module")
def pop_ndcg(tmp_path_factory):
    return run("pop", [f"out_dir={tmp_path_factory.mktemp('pop')}", *FAST], quiet=True,
               family="seq")["test"]["ndcg@10"]


def test_cl4srec_learns_and_beats_pop(pop_ndcg, tmp_path):
    # cosine similarity at tau 0.5: the default dot product at tau 1 (RecBole-DA) has logits of ~d
    # at the start and learns this small dataset ~2x slower (NDCG@10 0.037 after 8 epochs, 0.052 here)
    m = run("cl4srec", [f"out_dir={tmp_path}", *FAST, "epochs=6", "learning_rate=0.005", "batch_size=64",
                        "similarity=cos", "temperature=0.5"], quiet=True)
    assert m["test"]["ndcg@10"] > 1.5 * pop_ndcg, (m["test"]["ndcg@10"], pop_ndcg)


def test_same_seed_same_model(tmp_path):
    args = [*FAST, "epochs=1", "max_len=20", "hidden_size=16"]
    a = run("cl4srec", [f"out_dir={tmp_path / 'a'}", *args], quiet=True)
    b = run("cl4srec", [f"out_dir={tmp_path / 'b'}", *args], quiet=True)
    assert a["test"] == b["test"] and a["history"][0]["loss"] == b["history"][0]["loss"]
