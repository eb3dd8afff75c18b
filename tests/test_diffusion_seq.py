"""The diffusion sequence models (DiffuRec, DreamRec) and their shared pieces: the schedules and
the posterior against their closed forms, the guided reverse process with w = 0 against the
conditional model alone, seeded sampling, learning on tiny synthetic sequences (beats Pop), the
dropout switch at evaluation, and the DreamRec row datasets (sequences rebuilt from sliding
windows, each evaluation row ranked from its own history)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import seq.models  # noqa: F401  (registers the models)
from gcf.data.interactions import Interactions
from gcf.data.split import leave_one_out
from gcf.data.train_data import TrainData
from gcf.models import build_model
from seq.diffusion import BETA_SCHEDULES, GaussianDiffusion, beta_schedule, guided
from seq.rows import _sequences_from_rows, fit_rows, load_row_split

FAST = ["progress=false", "device=cpu"]


@pytest.fixture(scope="module")
def cycles():
    """200 users walking a cycle of 40 items from random starts: the next item is the current + 1,
    which popularity cannot know."""
    rng = np.random.default_rng(0)
    n_users, n_items, L = 200, 40, 15
    items = (rng.integers(0, n_items, n_users)[:, None] + np.arange(L)[None]) % n_items
    inter = Interactions(np.repeat(np.arange(n_users), L), items.ravel(), np.arange(n_users).astype(str),
                         np.arange(n_items).astype(str), timestamps=np.tile(np.arange(L), n_users).astype(float),
                         source="cycles")
    return leave_one_out(inter)


SMALL = {"diffurec": dict(hidden_size=16, n_layers=1, n_heads=2, max_len=10),
         "dreamrec": dict(hidden_size=16, steps=20, max_len=10)}


# ------------------------------------------------------------ schedules and closed forms
@pytest.mark.parametrize("name", BETA_SCHEDULES)
def test_schedules_give_valid_betas_and_alpha_bar_is_their_product(name):
    betas = beta_schedule(name, 50)
    assert betas.shape == (50,) and (betas > 0).all() and (betas < 1).all()
    diff = GaussianDiffusion(betas)
    expected = np.array([math.prod(1 - b for b in betas[: t + 1]) for t in range(50)])
    np.testing.assert_allclose(diff.alphas_cumprod.numpy(), expected, rtol=1e-12)


def test_named_schedules_match_the_official_formulas():
    # DiffuRec trunc_lin, T = 32: linear from 1000/32*1e-4 + 0.01 to 1000/32*0.02 + 0.01
    b = beta_schedule("trunc_lin", 32)
    assert b[0] == pytest.approx(0.013125) and b[-1] == pytest.approx(0.635)
    assert np.allclose(np.diff(b), np.diff(b)[0])
    np.testing.assert_allclose(beta_schedule("linear", 500), np.linspace(1e-4, 0.02, 500))
    T = 200  # DreamRec exp
    x = np.linspace(1, 2 * T + 1, T)
    np.testing.assert_allclose(beta_schedule("exp", T), 1 - np.exp(-0.1 / T - x * 0.5 * 9.9 / T ** 2))
    with pytest.raises(ValueError, match="schedule must be one of"):
        beta_schedule("quadratic", 10)


def test_q_sample_and_posterior_equal_their_closed_forms():
    torch.manual_seed(0)
    betas = beta_schedule("trunc_lin", 32)
    diff = GaussianDiffusion(betas).double()
    x0, noise, x_t = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64), \
        torch.randn(6, 4, dtype=torch.float64)
    t = torch.tensor([0, 1, 5, 17, 30, 31])
    ab = np.cumprod(1 - betas)
    for i, s in enumerate(t.tolist()):
        expected = math.sqrt(ab[s]) * x0[i] + math.sqrt(1 - ab[s]) * noise[i]
        torch.testing.assert_close(diff.q_sample(x0, t, noise)[i], expected)
    mean, var = diff.q_posterior(x0, x_t, t)
    for i, s in enumerate(t.tolist()):
        ab_prev = ab[s - 1] if s > 0 else 1.0
        beta = betas[s]
        # the Gaussian q(x_{t-1} | x_t, x_0) from Bayes' rule: precision-weighted combination
        prec = 1 / (1 - ab_prev) + (1 - beta) / beta if s > 0 else None
        exp_var = beta * (1 - ab_prev) / (1 - ab[s])
        exp_mean = (math.sqrt(ab_prev) * beta * x0[i] + math.sqrt(1 - beta) * (1 - ab_prev) * x_t[i]) / (1 - ab[s])
        if prec is not None:
            assert exp_var == pytest.approx(1 / prec)
        assert float(var[i]) == pytest.approx(exp_var, rel=1e-10)
        torch.testing.assert_close(mean[i], exp_mean)
    assert float(var[0]) == 0.0  # t = 0: x_{-1} is x_0
    large = diff.large_variance.numpy()
    assert large[0] == pytest.approx(diff.posterior_variance[1].item()) and np.allclose(large[1:], betas[1:])


def test_reverse_process_without_noise_steps_recovers_a_perfect_prediction():
    diff = GaussianDiffusion(beta_schedule("linear", 30))
    target = torch.randn(5, 3)
    out = diff.sample(lambda x, t: target, (5, 3), torch.Generator().manual_seed(0), "cpu")
    torch.testing.assert_close(out, target)  # the last step (t = 0) returns the predicted x0


def test_guidance_zero_is_the_conditional_model_and_w_mixes_both(cycles):
    model = build_model("dreamrec", SMALL["dreamrec"], cycles, 0).eval()
    users = torch.arange(8)
    items = torch.from_numpy(cycles.history("test").padded(users.numpy(), 10)[0])
    calls = []
    original = model.denoise

    def spy(x, c, t):
        calls.append(c is model.null)
        return original(x, c, t)

    model.denoise = spy
    model.w = 0.0
    x_guided = model.generate(users, items)
    assert calls and not any(calls)  # w = 0 never evaluates the unconditional branch
    c = model.encode(items)
    g = torch.Generator().manual_seed(model.sample_seed * 1_000_003 + 0)
    x_cond = model.diffusion.sample(lambda x, t: original(x, c, t), (8, model.d), g, "cpu")
    torch.testing.assert_close(x_guided, x_cond, rtol=0, atol=0)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(guided(a, b, 2.0), 3 * a - 2 * b)
    calls.clear()
    model.generate(users, items, w=2.0)
    assert any(calls) and not all(calls)


# ------------------------------------------------------------ the two models
@pytest.mark.parametrize("name", ["diffurec", "dreamrec"])
def test_sampling_is_deterministic_with_a_seed_and_varies_across_seeds(name, cycles):
    model = build_model(name, SMALL[name], cycles, 0).eval()
    hist = cycles.history("test")
    users = torch.arange(16)
    a, b = model.score(users, hist), model.score(users, hist)
    assert torch.equal(a, b)
    model.sample_seed = 1
    assert not torch.equal(a, model.score(users, hist))
    assert torch.isfinite(a).all() and a.shape == (16, cycles.n_items)


def test_dreamrec_dropout_is_off_at_evaluation_unless_asked(cycles):
    items = torch.from_numpy(cycles.history("test").padded(np.arange(16), 10)[0])
    model = build_model("dreamrec", {**SMALL["dreamrec"], "dropout": 0.5}, cycles, 0).eval()
    torch.manual_seed(1)
    c1 = model.encode(items)
    torch.manual_seed(2)
    assert torch.equal(c1, model.encode(items))
    model.eval_dropout = True
    users = torch.arange(16)
    torch.manual_seed(1)
    x1 = model.generate(users, items)
    torch.manual_seed(2)
    assert not torch.equal(x1, model.generate(users, items))  # the official behaviour: dropout while sampling
    assert not model.training and not model.encoder.training


def test_dreamrec_leaves_items_never_a_training_target_out_of_the_ranking_unless_asked():
    n_users, L = 30, 8
    seqs = np.array([[(u + k) % 10 for k in range(L)] for u in range(n_users)])
    seqs[0, 0] = 10  # in training only as a user's first item: never a target
    seqs[1, -1] = 11  # only a test target
    inter = Interactions(np.repeat(np.arange(n_users), L), seqs.ravel(), np.arange(n_users).astype(str),
                         np.arange(12).astype(str), timestamps=np.tile(np.arange(L), n_users).astype(float),
                         source="untrained")
    split = leave_one_out(inter)
    assert build_model("dreamrec", SMALL["dreamrec"], split, 0).untrained.nonzero().ravel().tolist() == [11]
    model = build_model("dreamrec", {**SMALL["dreamrec"], "empty_history": False}, split, 0).eval()
    assert model.untrained.nonzero().ravel().tolist() == [10, 11]  # item 10 is then never a target
    users, hist = torch.arange(6), split.history("test")
    scores = model.score(users, hist)
    assert torch.isneginf(scores[:, 10:]).all() and torch.isfinite(scores[:, :10]).all()
    model.rank_untrained = True  # the official ranking: every row scored
    official = model.score(users, hist)
    assert torch.isfinite(official).all()
    torch.testing.assert_close(official[:, :10], scores[:, :10])
    # why: the x0 loss never reaches the row of an item that is never a target
    batch = next(iter(model.batches(TrainData.from_split(split), 64).epoch(np.random.default_rng(0))))
    model.train()
    model.loss(batch).backward()
    assert model.item_embedding.weight.grad[12].abs().sum() == 0  # seq id of item 11
    assert model.item_embedding.weight.grad[1:11].abs().sum(1).gt(0).all()


def test_diffurec_history_ignores_padding_keys_unless_official_mask(cycles):
    model = build_model("diffurec", SMALL["diffurec"], cycles, 0).eval()
    items = torch.tensor([[0, 0, 0, 5, 6, 7, 8, 9, 10, 11]])
    other_pad = model.item_embedding.weight.detach().clone()
    h, mask = model.history(items), model._mask(items)
    x_t, t, lam = torch.randn(1, model.d), torch.tensor([3]), torch.full((1, 10, model.d), 0.001)
    out = model.approximator(h, mask, x_t, t, lam)
    with torch.no_grad():
        model.item_embedding.weight[0] += 3.0  # a different padding embedding
    torch.testing.assert_close(model.approximator(model.history(items), mask, x_t, t, lam), out)
    model.attend_padding = True
    changed = model.approximator(model.history(items), model._mask(items), x_t, t, lam)
    assert not torch.allclose(changed, out)
    with torch.no_grad():
        model.item_embedding.weight.copy_(other_pad)


def test_diffurec_output_does_not_depend_on_padding_columns_so_length_buckets_are_exact(cycles):
    model = build_model("diffurec", SMALL["diffurec"], cycles, 0).eval()
    full = torch.tensor([[0, 0, 0, 0, 0, 0, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0, 0, 0, 3, 4]])
    cut = full[:, 6:]  # what PrefixBatches(length_buckets=True) feeds: the batch cut to its longest row
    x_t, t = torch.randn(2, model.d), torch.tensor([3, 17])
    lam = lambda x: torch.full((2, x.shape[1], model.d), 0.001)  # noqa: E731
    out_full = model.approximator(model.history(full), model._mask(full), x_t, t, lam(full))
    out_cut = model.approximator(model.history(cut), model._mask(cut), x_t, t, lam(cut))
    torch.testing.assert_close(out_cut, out_full)
    assert model.batches(TrainData.from_split(cycles), 8).length_buckets and model.trim_padding
    official = build_model("diffurec", {**SMALL["diffurec"], "attend_padding": True, "length_buckets": False},
                           cycles, 0)
    assert not official.trim_padding and not official.batches(TrainData.from_split(cycles), 8).length_buckets
    with pytest.raises(ValueError, match="attend_padding=true needs length_buckets=false"):
        build_model("diffurec", {**SMALL["diffurec"], "attend_padding": True}, cycles, 0)


@pytest.mark.parametrize("name,budget", [
    ("diffurec", ["epochs=5", "eval_step=5", "hidden_size=32", "n_layers=1", "n_heads=2", "batch_size=64", "max_len=10"]),
    ("dreamrec", ["epochs=20", "eval_step=20", "steps=50", "hidden_size=32", "batch_size=64"]),
])
def test_model_learns_and_beats_pop(name, budget, cycles):
    pop = fit_rows("pop", cycles, FAST)["test"]["ndcg@10"]
    m = fit_rows(name, cycles, FAST + budget)
    assert m["test"]["ndcg@10"] > 2 * pop, (name, m["test"]["ndcg@10"], pop)


# ------------------------------------------------------------ DreamRec row datasets
def _write_rows(tmp_path, rows_by_part, n_items=9):
    pad = n_items
    for part, rows in rows_by_part.items():
        df = pd.DataFrame({"seq": [list(h) + [pad] * (3 - len(h)) for h, _ in rows],
                           "len_seq": [max(1, len(h)) for h, _ in rows], "tgt": [t for _, t in rows]})
        df.to_pickle(tmp_path / part)
    pd.DataFrame({"seq_size": [3], "item_num": [n_items]}).to_pickle(tmp_path / "data_statis.df")


def test_row_split_rebuilds_train_sequences_and_ranks_each_row_from_its_own_history(tmp_path):
    train = [((), 1), ((1,), 2), ((1, 2), 3), ((1, 2, 3), 4), ((2, 3, 4), 5),  # one sequence 1..5
             ((), 7), ((7,), 8)]  # another: 7, 8
    valid = [((), 4), ((4,), 6)]
    test = [((3, 1), 2)]
    _write_rows(tmp_path, {"train_data.df": train, "val_data.df": valid, "test_data.df": test})
    split = load_row_split(tmp_path)
    seqs = TrainData.from_split(split).sequences
    assert [list(seqs.of(u)) for u in range(2)] == [[1, 2, 3, 4, 5], [7, 8]]
    assert split.n_users == 2 + 2 + 1 and len(split.valid) == 2 and len(split.test) == 1
    hv, ht = split.history("valid"), split.history("test")
    assert list(hv.of(2)) == [] and list(hv.of(3)) == [4] and list(ht.of(4)) == [3, 1]
    assert hv.lengths[:2].sum() == 0  # training sequences are not a validation history
    # every training row is one (prefix, next item) of the rebuilt sequences, histories cut to 3
    h = np.array([list(r) + [-1] * (3 - len(r)) for r, _ in train])
    users, items = _sequences_from_rows(h, np.array([t for _, t in train]))
    assert list(users) == [0] * 5 + [1] * 2 and list(items) == [1, 2, 3, 4, 5, 7, 8]


def test_row_split_errors_name_the_file(tmp_path):
    _write_rows(tmp_path, {"train_data.df": [((), 1)], "val_data.df": [((), 12)], "test_data.df": [((), 1)]})
    with pytest.raises(ValueError, match="val_data.df: row 0"):
        load_row_split(tmp_path)
    with pytest.raises(FileNotFoundError, match="data_statis.df"):
        load_row_split(tmp_path / "missing")
