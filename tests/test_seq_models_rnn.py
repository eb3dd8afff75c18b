"""GRU4Rec, NARM, Caser, FPMC and TransRec: their batch builders, GRU4Rec's losses against the
official formulas, each model's loss finite and decreasing, each learning on the embedded
ml-latest-small leave-one-out (beats Pop on full-ranking NDCG@10), and seed determinism."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import seq.models  # noqa: F401  (registers the models)
from gcf.data.interactions import Interactions
from gcf.data.split import leave_one_out
from gcf.data.train_data import TrainData
from gcf.models import build_model
from gcf.train import run
from seq.losses import bpr_max_loss, gru4rec_xe_loss
from seq.models.caser import CaserWindows
from seq.models.gru4rec import SessionParallelBatches, assign_slots

FAST = ["progress=false", "device=cpu", "eval_batch_size=1024"]
# NARM and Caser train on the 10-core (2.2k items): a 9.7k-way softmax per prefix is most of
# NARM's time on the full data, and Caser needs more epochs there
KCORE = ["item_k=10", "user_k=10"]
# short budgets that still learn on ml-latest-small (610 users, 9.7k items), leave-one-out
BUDGETS = {
    "gru4rec": ["epochs=3", "hidden_size=64", "n_sample=256", "batch_size=256", "max_session_len=50",
                "learning_rate=0.005"],
    "narm": [*KCORE, "epochs=2", "max_len=10", "embedding_size=32", "hidden_size=32", "batch_size=512",
             "learning_rate=0.01"],
    "caser": [*KCORE, "epochs=2", "batch_size=512", "learning_rate=0.005"],
    "fpmc": ["epochs=4", "learning_rate=0.005"],
    "transrec": ["epochs=4", "learning_rate=0.02"],
}
MODEL_NAMES = list(BUDGETS)


def hand_data(rows, n_users: int, n_items: int) -> TrainData:
    """TrainData of ``(user, item, time)`` rows, all in training."""
    users, items, times = (np.array([r[k] for r in rows]) for k in range(3))
    inter = Interactions(users, items, np.arange(n_users).astype(str), np.arange(n_items).astype(str),
                         timestamps=times.astype(np.float64), source="hand")
    return TrainData(n_users, n_items, inter.to_csr(), interactions=inter)


@pytest.fixture(scope="module")
def loo(ml_small):
    return leave_one_out(ml_small.dedup())


@pytest.fixture(scope="module")
def loo_data(loo):
    return TrainData.from_split(loo)


# ------------------------------------------------------------ GRU4Rec's session-parallel batches
def test_assign_slots_gives_each_free_slot_the_next_session_in_order():
    # 2 slots; sessions of 3, 1, 1, 2 steps: s0 -> slot 0 at 0; s1 -> slot 1 at 0; s2 -> slot 1 at 1;
    # s3 -> slot 1 at 2 (slot 0 frees at 3)
    start, slot = assign_slots(np.array([3, 1, 1, 2]), 2)
    assert start.tolist() == [0, 0, 1, 2] and slot.tolist() == [0, 1, 1, 1]


@pytest.mark.parametrize("max_session_len", [0, 50])
def test_session_parallel_visits_every_transition_once_and_resets_at_boundaries(loo_data, max_session_len):
    data, B = loo_data, 64
    builder = SessionParallelBatches(data, B, n_sample=16, max_session_len=max_session_len)
    seqs = data.sequences
    batches = list(builder.epoch(np.random.default_rng(0)))
    assert len(batches) == len(builder)
    pairs = np.concatenate([np.stack([b["items"].numpy(), b["targets"].numpy()], 1) for b in batches])
    lengths = seqs.lengths
    expected = np.concatenate([np.stack([seqs.of(u)[:-1], seqs.of(u)[1:]], 1) for u in np.flatnonzero(lengths >= 2)])
    assert len(pairs) == int(np.maximum(lengths - 1, 0).sum())  # every transition, once
    key = lambda p: np.sort(p[:, 0] * (data.n_items + 2) + p[:, 1])  # noqa: E731
    assert np.array_equal(key(pairs), key(expected + 1))
    # within a slot, a step either continues the session (input = the slot's previous target)
    # or starts a new one (reset); resets happen exactly once per session
    last_target = {}
    n_resets = 0
    for b in batches:
        slots = b["slots"].tolist()
        assert slots == sorted(set(slots)) and len(slots) <= B and b["negatives"].shape == (16,)
        for s, x, y, r in zip(slots, b["items"].tolist(), b["targets"].tolist(), b["reset"].tolist()):
            if not r:
                assert last_target[s] == x
            n_resets += r
            last_target[s] = y
    moves = np.maximum(lengths - 1, 0)
    n_sessions = int((-(-moves // (max_session_len - 1))).sum()) if max_session_len else int((moves > 0).sum())
    assert n_resets == n_sessions == len(builder.session_users)
    # the first step holds the B sessions that start first, in time order, all fresh
    first_b = batches[0]
    assert bool(first_b["reset"].all()) and first_b["slots"].tolist() == list(range(B))
    assert np.all(np.diff(seqs.times[builder.session_first]) >= 0)
    assert first_b["items"].tolist() == (seqs.items[builder.session_first[:B]] + 1).tolist()


@pytest.mark.parametrize("max_session_len", [0, 30])
def test_session_parallel_hidden_state_is_the_state_of_the_session_so_far(loo_data, max_session_len):
    """With dropout off, the carried state of each slot equals a fresh GRU run over the
    session's items so far: reset when a slot loads a new session, carried otherwise."""
    model = build_model("gru4rec", {"hidden_size": 16, "n_sample": 8, "max_len": 5000,
                                    "max_session_len": max_session_len}, loo_data, seed=0)
    builder = model.batches(loo_data, 32)
    seqs = loo_data.sequences
    model.start_epoch(0)
    current, k, checked = {}, 0, 0  # slot -> (user, index of its current input item)
    with torch.no_grad():
        for b, batch in enumerate(builder.epoch(np.random.default_rng(0))):
            model.loss(batch)
            for row, (s, r) in enumerate(zip(batch["slots"].tolist(), batch["reset"].tolist())):
                if r:  # sessions are loaded in order: the k-th reset is the k-th session
                    current[s], k = (int(builder.session_first[k]), 0), k + 1
                else:
                    current[s] = (current[s][0], current[s][1] + 1)
                first, j = current[s]
                assert int(batch["items"][row]) == seqs.items[first + j] + 1
                assert int(batch["targets"][row]) == seqs.items[first + j + 1] + 1
            if b in (0, 1, 40, 200, 700, len(builder) - 1):
                for s in batch["slots"].tolist()[:5]:
                    first, j = current[s]
                    fresh = model.encode(torch.from_numpy(seqs.items[first:first + j + 1] + 1)[None])[0]
                    assert torch.allclose(model.slot_hidden[-1, s], fresh, atol=1e-5), (b, s, first, j)
                    checked += 1
    assert k == len(builder.session_users) and checked >= 20
    model.start_epoch(1)
    assert model.slot_hidden.numel() == 0  # dropped between epochs


# ------------------------------------------------------------ GRU4Rec's losses vs the official formulas
def _official_xe(O):
    X = torch.exp(O - O.max(dim=1, keepdim=True)[0])
    X = X / X.sum(dim=1, keepdim=True)
    return -torch.sum(torch.log(torch.diag(X) + 1e-24))


def _official_bpr_max(O, bpreg, elu_param):
    if elu_param > 0:
        O = torch.nn.functional.elu(O, elu_param)
    hm = 1.0 - torch.eye(*O.shape)
    X = O * hm
    e_x = torch.exp(X - X.max(dim=1, keepdim=True)[0]) * hm
    soft = e_x / e_x.sum(dim=1, keepdim=True)
    target = torch.diag(O).reshape(-1, 1)
    return torch.sum(-torch.log(torch.sum(torch.sigmoid(target - O) * soft, dim=1) + 1e-24)
                     + bpreg * torch.sum((O ** 2) * soft, dim=1))


def test_gru4rec_losses_match_the_official_formulas():
    torch.manual_seed(0)
    logits = torch.randn(6, 6 + 10) * 2
    assert torch.allclose(gru4rec_xe_loss(logits), _official_xe(logits), rtol=1e-5)
    for bpreg, elu in [(1.0, 0.5), (0.0, 0.0), (1.95, 1.0)]:
        assert torch.allclose(bpr_max_loss(logits, bpreg, elu), _official_bpr_max(logits, bpreg, elu), rtol=1e-5)
    # an accidental hit is no negative: masking a column = dropping it
    hits = torch.zeros(6, 16, dtype=torch.bool)
    hits[:, 10] = True
    keep = [c for c in range(16) if c != 10]
    assert torch.allclose(gru4rec_xe_loss(logits, hits=hits), gru4rec_xe_loss(logits[:, keep]), rtol=1e-5)
    assert torch.allclose(bpr_max_loss(logits, 1.0, 0.5, hits), bpr_max_loss(logits[:, keep], 1.0, 0.5), rtol=1e-5)
    # one slot, no samples: no negative, loss 0 and finite
    assert float(bpr_max_loss(logits[:1, :1], 1.0, 0.5)) == 0.0 and float(gru4rec_xe_loss(logits[:1, :1])) == 0.0


# ------------------------------------------------------------ Caser's windows
def test_caser_windows_slide_and_left_pad():
    # user 0: items 0..5 (6 items); user 1: items 6, 7 (2 items); L=3, T=2 -> window 5
    rows = [(0, i, i) for i in range(6)] + [(1, 6, 0), (1, 7, 1)]
    data = hand_data(rows, 2, 9)
    w = CaserWindows(data, 10, L=3, T=2, n_negatives=2)
    batch = next(w.epoch(np.random.default_rng(0)))
    got = {(int(u), tuple(x.tolist()), tuple(y.tolist())) for u, x, y in
           zip(batch["users"], batch["items"], batch["targets"])}
    assert got == {(0, (1, 2, 3), (4, 5)), (0, (2, 3, 4), (5, 6)), (1, (0, 0, 0), (7, 8))}
    neg = batch["negatives"].numpy() - 1
    assert neg.shape == (3, 4) and not any(n in range(6) for n in neg[batch["users"].numpy() == 0].ravel())
    assert not np.isin(neg[batch["users"].numpy() == 1], [6, 7]).any()


# ------------------------------------------------------------ every model: loss, learning, determinism
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_loss_is_finite_and_decreases_on_a_fixed_batch(name, loo_data):
    torch.manual_seed(0)
    kwargs = {"gru4rec": {"n_sample": 64}, "narm": {"max_len": 20}}.get(name, {})
    model = build_model(name, kwargs, loo_data, seed=0)
    batch = next(iter(model.batches(loo_data, 128).epoch(np.random.default_rng(0))))
    opt = torch.optim.Adam(model.param_groups(), lr=0.01)
    model.train()
    losses = []
    for _ in range(15):
        model.start_epoch(0)  # GRU4Rec: the first step again from fresh slots
        loss = model.loss(batch)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.fixture(scope="module")
def pop_ndcg(tmp_path_factory):
    """Pop's test NDCG@10 on the same data (full or 10-core), computed once per data setting."""
    cache = {}

    def get(kcore: bool) -> float:
        if kcore not in cache:
            out = tmp_path_factory.mktemp("pop")
            cache[kcore] = run("pop", [f"out_dir={out}", *FAST, *(KCORE if kcore else [])], quiet=True,
                               family="seq")["test"]["ndcg@10"]
        return cache[kcore]

    return get


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_learns_and_beats_pop(name, pop_ndcg, tmp_path):
    m = run(name, [f"out_dir={tmp_path}", *FAST, *BUDGETS[name]], quiet=True)
    pop = pop_ndcg(KCORE[0] in BUDGETS[name])
    assert m["test"]["ndcg@10"] > 1.1 * pop, (name, m["test"]["ndcg@10"], pop)
    assert all(np.isfinite(h["loss"]) for h in m["history"])


@pytest.mark.parametrize("name", ["gru4rec", "transrec"])  # carried state; in-place renormalisation
def test_same_seed_same_result(name, tmp_path):
    args = [*FAST, *[a for a in BUDGETS[name] if not a.startswith(("epochs=", "item_k=", "user_k="))],
            "epochs=1", *KCORE]
    a = run(name, [f"out_dir={tmp_path / 'a'}", *args], quiet=True)
    b = run(name, [f"out_dir={tmp_path / 'b'}", *args], quiet=True)
    assert a["test"] == b["test"] and a["history"][0]["loss"] == b["history"][0]["loss"]


def test_gru4rec_options_run(loo_data):
    """bpr-max, one-hot and separate embeddings, logq, two layers, the official duplicates and
    the RecBole-style ce: each gives a finite loss and full-ranking scores."""
    users = torch.arange(8)
    history = loo_data.sequences
    for kwargs in [{"loss": "bpr-max"}, {"constrained_embedding": False, "embedding_size": 0},
                   {"constrained_embedding": False, "embedding_size": 24, "dropout_p_embed": 0.2},
                   {"logq": 1.0, "num_layers": 2, "dropout_p_hidden": 0.1}, {"remove_accidental_hits": False},
                   {"loss": "ce", "max_len": 10}]:
        model = build_model("gru4rec", {"hidden_size": 16, "n_sample": 32, **kwargs}, loo_data, seed=0)
        batch = next(iter(model.batches(loo_data, 64).epoch(np.random.default_rng(0))))
        loss = model.loss(batch)
        assert torch.isfinite(loss), kwargs
        loss.backward()
        model.eval()
        scores = model.score(users, history)
        assert scores.shape == (8, loo_data.n_items) and torch.isfinite(scores).all(), kwargs
