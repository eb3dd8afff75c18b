"""SASRec, TiSASRec, BERT4Rec and their shared pieces (seq/layers.py, seq/losses.py): causal
masking, padding invariance, the relative-interval attention against a naive version, the
GRU encoder against an unpadded GRU, the next-item losses against their formulas, each model
learning on the embedded ml-latest-small leave-one-out (beats Pop on full-ranking NDCG@10)
within a short budget, and seed determinism."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import seq.models  # noqa: F401  (registers the models)
from gcf.data.interactions import Interactions
from gcf.data.split import leave_one_out
from gcf.data.train_data import TrainData
from gcf.models import build_model
from gcf.train import run
from seq.layers import Block, GRUEncoder, MultiHeadAttention, RelativeTerms, causal_mask, padding_mask
from seq.losses import SharedNegatives, next_item_loss, softmax_ce

FAST = ["progress=false", "device=cpu", "eval_batch_size=1024"]
# short budgets that learn on ml-latest-small with 10-cores (610 users, ~2.2k items, long histories);
# full softmax (SASRec+) learns in far fewer steps than the paper's BCE; BERT4Rec needs sliding
# windows (one window per user is memorised) and still ~10x SASRec's steps
CORE = ["item_k=10", "user_k=10"]
BUDGETS = {
    "sasrec": ["epochs=6", "max_len=50", "learning_rate=0.005", "batch_size=64", "loss=ce"],
    "tisasrec": ["epochs=5", "max_len=30", "learning_rate=0.005", "batch_size=64", "loss=ce"],
    "bert4rec": ["epochs=10", "max_len=20", "learning_rate=0.002", "batch_size=64", "window_stride=0.5",
                 "eval_step=5"],
}
SMALL = {"max_len": 20, "hidden_size": 16, "n_layers": 2}


@pytest.fixture(scope="module")
def loo(ml_small):
    return leave_one_out(ml_small.dedup())


@pytest.fixture(scope="module")
def loo_data(loo):
    return TrainData.from_split(loo)


def hand_data(rows, n_users: int, n_items: int) -> TrainData:
    """TrainData of ``(user, item, time)`` rows, all in training."""
    users, items, times = (np.array([r[k] for r in rows]) for k in range(3))
    inter = Interactions(users, items, np.arange(n_users).astype(str), np.arange(n_items).astype(str),
                         timestamps=times.astype(np.float64), source="hand")
    return TrainData(n_users, n_items, inter.to_csr(), interactions=inter)


def first_batch(model, data, batch_size=16):
    return next(iter(model.batches(data, batch_size).epoch(np.random.default_rng(0))))


# ------------------------------------------------------------ masking
@pytest.mark.parametrize("name", ["sasrec", "tisasrec"])
def test_changing_a_future_item_never_changes_an_earlier_output(name, loo, loo_data):
    model = build_model(name, SMALL, loo, seed=0).eval()
    batch = first_batch(model, loo_data)
    items, times = batch["items"], batch["times"]
    j = 12
    real = items[:, j] > 0
    items2, times2 = items.clone(), times.clone()
    items2[real, j] = items[real, j] % model.n_items + 1  # another item at j, and later items later
    times2[real, j:] += 10 ** 6
    if name == "tisasrec":  # the user's time unit is the window's smallest gap: keep rows where it stays
        gaps = lambda t: torch.where((items[:, 1:] > 0) & (t[:, 1:] > t[:, :-1]),  # noqa: E731
                                     t[:, 1:] - t[:, :-1], torch.iinfo(t.dtype).max).amin(1)
        keep = gaps(times) == gaps(times2)
        assert keep.sum() >= 8
        items, times, items2, times2, real = items[keep], times[keep], items2[keep], times2[keep], real[keep]
    with torch.no_grad():
        h, h2 = model.hidden(items, times), model.hidden(items2, times2)
    assert real.any() and torch.equal(h[:, :j], h2[:, :j])
    assert (h[real, j:] - h2[real, j:]).abs().amax() > 1e-4  # and the change is seen from j on


def test_bert4rec_is_bidirectional(loo, loo_data):
    model = build_model("bert4rec", SMALL, loo, seed=0).eval()
    items = first_batch(model, loo_data)["items"]
    items2 = items.clone()
    items2[:, -1] = items2[:, -1] % model.n_items + 1
    with torch.no_grad():
        h, h2 = model.hidden(items), model.hidden(items2)
    real = items[:, 0] > 0
    assert (h[real, 0] - h2[real, 0]).abs().amax() > 1e-4


@pytest.mark.parametrize("name", ["sasrec", "tisasrec", "bert4rec"])
def test_left_padding_changes_nothing(name, loo):
    """The same history scored in a window of 20 or of 12 (padding cut away) gives the same
    scores: padding keys are masked and positions count from the right."""
    model = build_model(name, SMALL, loo, seed=0).eval()
    users = torch.arange(8)
    history = loo.history("valid")
    items, times = (torch.from_numpy(a) for a in history.padded(users.numpy(), 20))
    items[:, :10], times[:, :10] = 0, 0  # short histories: 10 real items, 10 padding
    with torch.no_grad():
        full = model.score_sequences(users, items, times)
        cut = model.score_sequences(users, items[:, 8:], times[:, 8:])
    torch.testing.assert_close(full, cut, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["sasrec", "tisasrec", "bert4rec"])
def test_ranking_in_length_sorted_cut_chunks_gives_the_same_scores(name, loo):
    """score() sorts the histories by length and cuts each chunk to its longest row: the same
    scores, row for row, as scoring the full-width batch."""
    model = build_model(name, {**SMALL, "max_len": 300}, loo, seed=0).eval()
    assert model.trim_padding
    history = loo.history("test")
    users = torch.arange(60)
    assert len(set(np.minimum(history.lengths[:60], model.max_len))) > 5  # mixed lengths
    model.trim_chunk = 7
    with torch.no_grad():
        cut = model.score(users, history)
        model.trim_padding = False
        full = model.score(users, history)
    torch.testing.assert_close(cut, full, rtol=1e-5, atol=1e-5)


def test_sasrec_init_options(loo):
    glorot = build_model("sasrec", {**SMALL, "init": "glorot"}, loo, seed=0)
    normal = build_model("sasrec", {**SMALL, "init": "normal", "initializer_range": 0.05}, loo, seed=0)
    w_g, w_n = glorot.encoder.blocks[0].attn.q.weight, normal.encoder.blocks[0].attn.q.weight
    assert abs(float(w_n.std()) - 0.05) < 0.01 and float(w_g.std()) > 0.1  # glorot on 16 x 16: std 0.25
    assert abs(float(normal.item_embedding.weight[1:].std()) - 0.05) < 0.01
    assert float(normal.item_embedding.weight[0].abs().sum()) == 0.0  # padding row stays zero
    # normal_mha (SASRec+ code): normal, but Q/K/V glorot-uniform over the stacked [3d, d] matrix
    mha = build_model("sasrec", {**SMALL, "init": "normal_mha", "initializer_range": 0.05}, loo, seed=0)
    attn, d = mha.encoder.blocks[0].attn, SMALL["hidden_size"]
    bound = (6.0 / (4 * d)) ** 0.5
    qkv = torch.cat([attn.q.weight, attn.k.weight, attn.v.weight])
    assert float(qkv.abs().max()) <= bound and float(qkv.std()) > 0.8 * bound / 3 ** 0.5  # U(-b, b): std b/sqrt(3)
    assert float(attn.q.bias.abs().sum()) == 0.0
    ffn = [p for n, p in mha.encoder.named_parameters() if p.dim() >= 2 and ".attn." not in n]
    assert ffn and all(abs(float(w.std()) - 0.05) < 0.015 for w in ffn)
    assert abs(float(mha.item_embedding.weight[1:].std()) - 0.05) < 0.01
    with pytest.raises(ValueError, match="init must be"):
        build_model("sasrec", {**SMALL, "init": "xavier"}, loo, seed=0)


@pytest.mark.parametrize("positions", ["right", "left"])
def test_sasrec_positions_option(positions, loo):
    """``left``: an item's position counts from the first real item, so its output does not change
    when later items arrive (causal attention); ``right`` (official): the newest item sits at
    ``L-1``, so the same item's output moves when one more item follows it."""
    model = build_model("sasrec", {**SMALL, "positions": positions}, loo, seed=0).eval()
    with torch.no_grad():
        alone = model.hidden(torch.tensor([[0, 0, 0, 5, 7]]))[0, 4]
        followed = model.hidden(torch.tensor([[0, 0, 5, 7, 9]]))[0, 3]
    assert torch.allclose(alone, followed, atol=1e-6) == (positions == "left")
    with pytest.raises(ValueError, match="positions='middle'"):
        build_model("sasrec", {**SMALL, "positions": "middle"}, loo, seed=0)


def test_causal_mask_lets_a_padding_query_see_itself_only():
    pad = torch.tensor([[True, True, False, False]])
    m = causal_mask(pad)[0, 0]
    assert m.tolist() == [[True, False, False, False], [False, True, False, False],
                          [False, False, True, False], [False, False, True, True]]
    assert padding_mask(pad)[0, 0, 0].tolist() == [False, False, True, True]


# ------------------------------------------------------------ layers
def test_relative_attention_matches_the_naive_pairwise_formula():
    """TiSASRec's e_ij = Q_i (K_j + R^K_{r_ij}) / sqrt(d_h), z_i = sum_j a_ij (V_j + R^V_{r_ij}),
    computed with [B, L, L, d] tensors, equals the gather/scatter version; with zero tables it
    equals scaled_dot_product_attention."""
    torch.manual_seed(0)
    B, L, d, h, R = 3, 6, 8, 2, 5
    att = MultiHeadAttention(d, h).eval()
    x = torch.randn(B, L, d)
    pad = torch.zeros(B, L, dtype=torch.bool)
    pad[0, :2] = True
    mask = causal_mask(pad)
    index = torch.randint(0, R, (B, L, L))
    rk, rv = torch.randn(R, d), torch.randn(R, d)
    pk = torch.randn(1, L, d)
    got = att(x, x, mask, RelativeTerms(key_add=pk, index=index, key_table=rk, value_table=rv))

    q, k, v = att.q(x), att.k(x) + pk, att.v(x)
    split = lambda t: t.view(*t.shape[:-1], h, d // h)  # noqa: E731
    qh, kh, vh = split(q), split(k), split(v)  # [B, L, h, dh]
    kr, vr = split(rk[index]), split(rv[index])  # [B, L, L, h, dh]
    logits = torch.einsum("bihc,bjhc->bhij", qh, kh) + torch.einsum("bihc,bijhc->bhij", qh, kr)
    a = torch.softmax((logits / math.sqrt(d // h)).masked_fill(~mask, float("-inf")), -1)
    z = torch.einsum("bhij,bjhc->bihc", a, vh) + torch.einsum("bhij,bijhc->bihc", a, vr)
    torch.testing.assert_close(got, att.out(z.reshape(B, L, d)), rtol=1e-5, atol=1e-5)

    zeros = torch.zeros(R, d)
    plain = att(x, x, mask)
    torch.testing.assert_close(att(x, x, mask, RelativeTerms(index=index, key_table=zeros, value_table=zeros)),
                               plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm", ["pre", "post", "sasrec"])
def test_block_keeps_shapes_and_real_positions_ignore_padding(norm):
    torch.manual_seed(0)
    block = Block(8, 2, 16, norm=norm).eval()
    x = torch.randn(2, 5, 8)
    pad = torch.tensor([[True, True, False, False, False]] * 2)
    y = block(x, causal_mask(pad))
    x2 = x.clone()
    x2[:, :2] = torch.randn(2, 2, 8)  # whatever sits at padding
    assert y.shape == x.shape and torch.allclose(y[:, 2:], block(x2, causal_mask(pad))[:, 2:], atol=1e-6)


def test_gru_encoder_runs_each_sequence_from_its_first_real_item():
    torch.manual_seed(0)
    enc = GRUEncoder(4, 6, n_layers=2).eval()
    lengths = torch.tensor([5, 2, 0, 3])
    L = 5
    emb = torch.randn(4, L, 4)
    pad = torch.arange(L)[None, :] < (L - lengths)[:, None]  # right-aligned
    emb = emb * ~pad[:, :, None]
    outputs, last = enc(emb, pad)
    assert outputs.shape == (4, L, 6) and last.shape == (4, 6)
    for b, n in enumerate(lengths.tolist()):
        if n == 0:
            assert torch.all(last[b] == 0) and torch.all(outputs[b] == 0)
            continue
        alone, _ = enc.gru(emb[b:b + 1, L - n:])  # the real items only, no padding
        torch.testing.assert_close(outputs[b, L - n:], alone[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(last[b], alone[0, -1], rtol=1e-5, atol=1e-6)
        assert torch.all(outputs[b, :L - n] == 0)
    out2, last2 = enc(emb, lengths=lengths)
    assert torch.equal(out2, outputs) and torch.equal(last2, last)


# ------------------------------------------------------------ losses
def test_next_item_losses_match_their_formulas():
    torch.manual_seed(0)
    n_items, d, N = 7, 4, 5
    W = torch.randn(n_items + 2, d)  # rows: padding, items 1..7, [mask]
    bias = torch.randn(n_items + 2)
    h = torch.randn(N, d)
    t = torch.tensor([1, 3, 7, 2, 0])  # the last row has no target
    neg = torch.tensor([[2, 4], [5, 6], [1, 2], [3, 3], [1, 1]])
    ht, tt, nt = h[:4], t[:4], neg[:4]

    pos = (ht * W[tt]).sum(-1)
    negs = torch.einsum("nd,nkd->nk", ht, W[nt])
    want = (-F.logsigmoid(pos) - F.logsigmoid(-negs).sum(-1)).mean()
    torch.testing.assert_close(next_item_loss("bce", h, t, W, neg), want)

    logits = ht @ W[1:n_items + 1].T + bias[1:n_items + 1]
    want = F.cross_entropy(logits, tt - 1)
    torch.testing.assert_close(next_item_loss("ce", h, t, W, bias=bias, n_items=n_items), want)
    W2 = W.clone()
    W2[0], W2[-1] = 100.0, 100.0  # padding and [mask] rows are never candidates
    torch.testing.assert_close(next_item_loss("ce", h, t, W2, bias=bias, n_items=n_items), want)

    shared = torch.tensor([2, 5, 6])
    log_q = torch.randn(n_items + 2)
    s_pos = (ht * W[tt]).sum(-1) - log_q[tt]
    s_neg = ht @ W[shared].T - log_q[shared]
    s_neg = s_neg.masked_fill(shared[None, :] == tt[:, None], float("-inf"))  # row 3's target 2 is a negative
    want = -torch.log_softmax(torch.cat([s_pos[:, None], s_neg], 1), 1)[:, 0].mean()
    torch.testing.assert_close(next_item_loss("sampled_ce", h, t, W, shared, log_q=log_q), want)


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("rows", [3, 1000])  # several chunks, and one
def test_fused_softmax_ce_matches_autograd_cross_entropy(with_bias, rows):
    torch.manual_seed(0)
    h = torch.randn(50, 6, requires_grad=True)
    W = torch.randn(11, 6, requires_grad=True)
    b = torch.randn(11, requires_grad=True) if with_bias else None
    t = torch.randint(0, 11, (50,))
    params = [h, W] + ([b] if with_bias else [])
    got = softmax_ce(h, W, t, b, rows=rows)
    g_got = torch.autograd.grad(got * 2.5, params)  # a non-unit upstream gradient
    want = F.cross_entropy(h @ W.T + (b if with_bias else 0.0), t)
    g_want = torch.autograd.grad(want * 2.5, params)
    torch.testing.assert_close(got, want)
    for a, c in zip(g_got, g_want):
        torch.testing.assert_close(a, c)
    with torch.no_grad():  # evaluation of the loss alone: no gradient work, same value
        torch.testing.assert_close(softmax_ce(h, W, t, b, rows=rows), want.detach())
    loss = softmax_ce(h, W, t, b, rows=rows)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward"):
        loss.backward()


def test_losses_ignore_padding_and_reject_unknown_kinds():
    W, h = torch.randn(5, 3), torch.randn(3, 3)
    assert next_item_loss("ce", h, torch.zeros(3, dtype=torch.long), W) == 0
    assert next_item_loss("sampled_ce", h, torch.tensor([2, 2, 2]), W, torch.tensor([2, 2])) == 0  # only hits
    with pytest.raises(ValueError, match="loss must be one of"):
        next_item_loss("bpr", h, torch.tensor([1, 2, 3]), W)
    with pytest.raises(ValueError, match="needs negatives"):
        next_item_loss("bce", h, torch.tensor([1, 2, 3]), W)


def test_shared_negatives_follow_popularity_and_carry_log_q(loo_data):
    torch.manual_seed(0)
    uni = SharedNegatives(loo_data, 4000)
    ids, log_q = uni("cpu")
    assert log_q is None and ids.min() >= 1 and ids.max() <= loo_data.n_items
    pop = SharedNegatives(loo_data, 4000, "popularity")
    ids, log_q = pop("cpu")
    counts = np.asarray(loo_data.train.sum(0)).ravel()
    assert counts[ids.numpy() - 1].mean() > 3 * counts.mean()  # popular items drawn more often
    assert log_q.shape == (loo_data.n_items + 1,) and torch.isclose(log_q[1:].exp().sum(), torch.tensor(1.0))


# ------------------------------------------------------------ training
@pytest.mark.parametrize("name,kwargs", [("sasrec", {}), ("sasrec", {"loss": "ce"}),
                                         ("sasrec", {"loss": "sampled_ce", "n_negatives": 64}),
                                         ("sasrec", {"norm": "pre"}), ("sasrec", {"norm": "post"}),
                                         ("tisasrec", {}), ("bert4rec", {}),
                                         ("bert4rec", {"loss": "sampled_ce", "n_negatives": 64})])
def test_loss_is_finite_and_decreases_on_a_fixed_batch(name, kwargs, loo, loo_data):
    model = build_model(name, {**SMALL, **kwargs}, loo, seed=0)
    batch = first_batch(model, loo_data, 32)
    opt = torch.optim.Adam(model.param_groups(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = model.loss(batch)
        assert loss.dim() == 0 and torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_bert4rec_scores_from_a_mask_appended_after_the_history(loo):
    model = build_model("bert4rec", SMALL, loo, seed=0).eval()
    users = torch.arange(4)
    items, _ = loo.history("valid").padded(users.numpy(), SMALL["max_len"])
    items = torch.from_numpy(items)
    with torch.no_grad():
        scores = model.score_sequences(users, items, None)
        window = torch.cat([items[:, 1:], torch.full((4, 1), model.n_items + 1)], 1)
        h = model.head(model.hidden(window)[:, -1])
        want = h @ model.item_embedding.weight[1:model.n_items + 1].T + model.output_bias[1:]
    assert scores.shape == (4, loo.n_items)
    torch.testing.assert_close(scores, want)


def test_cloze_windows_slide_over_long_sequences_and_can_mask_only_the_last_item():
    from seq.data import ClozeBatches

    # user 0: items 0..11 (12 items), user 1: 3 items; windows of 5, stride 0.4 * 5 = 2
    rows = [(0, i, 10 * i) for i in range(12)] + [(1, i, i) for i in range(3)]
    data = hand_data(rows, 2, 12)
    b = ClozeBatches(data, 100, 5, mask_prob=0.3, window_stride=0.4)
    assert b.users.tolist() == [0, 0, 0, 0, 0, 1] and b.drop.tolist() == [0, 2, 4, 6, 7, 0]
    assert len(ClozeBatches(data, 100, 5, 0.3).users) == 2  # no stride: the last window only
    batch = next(iter(b.epoch(np.random.default_rng(0))))
    items, labels, mask = batch["items"], batch["labels"], data.n_items + 1
    original = torch.where(labels > 0, labels, items)
    windows = {tuple(r) for r in original.tolist()}
    assert {(8, 9, 10, 11, 12), (6, 7, 8, 9, 10), (4, 5, 6, 7, 8), (2, 3, 4, 5, 6), (1, 2, 3, 4, 5),
            (0, 0, 1, 2, 3)} == windows
    assert ((labels > 0) == (items == mask)).all() and (labels > 0).any(1).all()

    last = ClozeBatches(data, 100, 5, mask_prob=0.3, window_stride=0.4, last_item_ratio=1.0)
    batch = next(iter(last.epoch(np.random.default_rng(0))))
    assert (batch["items"][:, -1] == mask).all() and (batch["labels"][:, :-1] == 0).all()
    assert (batch["items"][:, :-1] != mask).all()


@pytest.fixture(scope="module")
def pop_ndcg(tmp_path_factory):
    return run("pop", [f"out_dir={tmp_path_factory.mktemp('pop')}", *FAST, *CORE], quiet=True,
               family="seq")["test"]["ndcg@10"]


@pytest.mark.parametrize("name", list(BUDGETS))
def test_model_learns_and_beats_pop(name, pop_ndcg, tmp_path):
    m = run(name, [f"out_dir={tmp_path}", *FAST, *CORE, *BUDGETS[name]], quiet=True)
    assert m["test"]["ndcg@10"] > 1.5 * pop_ndcg, (name, m["test"]["ndcg@10"], pop_ndcg)


@pytest.mark.parametrize("name", list(BUDGETS))
def test_same_seed_same_model(name, tmp_path):
    args = [*FAST, *CORE, "epochs=1", "max_len=20", "hidden_size=16"]
    args += ["window_stride=0.0"] if name == "bert4rec" else []  # one window per user: a shorter epoch
    a = run(name, [f"out_dir={tmp_path / 'a'}", *args], quiet=True)
    b = run(name, [f"out_dir={tmp_path / 'b'}", *args], quiet=True)
    assert a["test"] == b["test"] and a["history"][0]["loss"] == b["history"][0]["loss"]
    wa = torch.load(tmp_path / "a" / "best.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "b" / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
