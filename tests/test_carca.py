"""CARCA (seq/models/carca.py) and its inputs (seq/attributes.py): attribute loaders aligned to
gcf item ids (S3-Rec json, ml-100k .item, MovieLens movies/tags, dense latent files and their
errors), the time-context features against pandas, candidate attributes reaching the scores,
no leak from future profile items (and the official attention leaking), the fast all-item
scoring equal to the direct one, and learning: beats Pop on the embedded ml-latest-small and on
a synthetic task only attributes explain."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import seq.models  # noqa: F401  (registers the models)
from gcf.data.interactions import Interactions
from gcf.data.loaders import load_atomic, load_movielens
from gcf.data.split import leave_one_out
from gcf.data.train_data import TrainData
from gcf.evaluate import evaluate
from gcf.train import run
from seq.attributes import (item_attribute_lists, item_feature_matrix, load_item2attributes,
                            load_item_latents, time_context)
from seq.models.carca import CARCA

EMBEDDED = Path(__file__).resolve().parents[1] / "gcf" / "data" / "ml-latest-small" / "ratings.csv"
FAST = ["progress=false", "device=cpu", "eval_batch_size=1024"]
SMALL = dict(max_len=12, hidden_size=16, n_layers=2, dropout=0.0)


def inter_data(users, items, times, item_ids=None, source="hand", n_items=None) -> TrainData:
    n_items = n_items or int(max(items)) + 1
    ids = np.arange(n_items).astype(str) if item_ids is None else np.asarray(item_ids)
    inter = Interactions(np.asarray(users), np.asarray(items), np.arange(int(max(users)) + 1).astype(str), ids,
                         timestamps=np.asarray(times, dtype=np.float64), source=source)
    return TrainData(inter.n_users, inter.n_items, inter.to_csr(), item_ids=ids, interactions=inter)


# ------------------------------------------------------------------ attribute loaders
def test_s3rec_json_is_aligned_by_raw_id(tmp_path):
    path = tmp_path / "Toy_item2attributes.json"
    path.write_text(json.dumps({"10": [1, 3], "7": [2], "99": [5]}))
    attrs = load_item2attributes(path, np.array(["7", "10", "8"]))  # gcf item 0 = raw 7, ...
    assert attrs.n_attributes == 5  # the largest id in the file, also when no item here has it
    assert attrs.of(0).tolist() == [2] and attrs.of(1).tolist() == [1, 3] and attrs.of(2).tolist() == []
    hot = attrs.multi_hot()
    assert hot.shape == (3, 5) and hot[1].tolist() == [1, 0, 1, 0, 0] and hot[2].sum() == 0
    assert attrs.padded().tolist() == [[2, 0], [1, 3], [0, 0]]
    # found beside the data file by S3-Rec's naming (Toy.txt -> Toy_item2attributes.json)
    (tmp_path / "Toy.txt").write_text("1 7 10\n")
    data = inter_data([0, 0, 0], [0, 1, 2], [0, 1, 2], ["7", "10", "8"], source=str(tmp_path / "Toy.txt"))
    assert item_attribute_lists(data).of(1).tolist() == [1, 3]
    assert item_feature_matrix(data, "attributes").shape == (3, 5)


@pytest.mark.parametrize("content, message", [('{"7": [0]}', "attribute ids >= 1"), ('{"7": "x"}', "item '7'"),
                                              ("[1, 2]", "expected an object"), ("{", "not valid JSON"),
                                              ('{"1000": [1]}', "none of the dataset")])
def test_s3rec_json_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as e:
        load_item2attributes(path, np.array(["7"]))
    assert "bad.json" in str(e.value)
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        load_item2attributes(tmp_path / "nothere.json", np.array(["7"]))


def test_ml100k_item_file_gives_genres_and_year(tmp_path):
    (tmp_path / "m.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                      "1\t2\t5\t881250949\n1\t1\t3\t881250950\n2\t3\t4\t881250951\n")
    (tmp_path / "m.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                                     "1\tToy Story\t1995\tAnimation Comedy\n2\tGoldenEye\t1975\tAction\n"
                                     "3\tNoYear\t\tComedy\n")
    inter = load_atomic(tmp_path / "m")
    data = TrainData(inter.n_users, inter.n_items, inter.to_csr(), inter.item_features, item_ids=inter.item_ids,
                     interactions=inter)
    m = item_feature_matrix(data, "genres+year")
    # genres sorted: Action, Animation, Comedy; then year scaled over known items, then "unknown"
    assert m.tolist() == [[0, 1, 1, 1, 0], [1, 0, 0, 0, 0], [0, 0, 1, 0, 1]]
    assert CARCA.auto_features(data) == "genres+year"
    with pytest.raises(ValueError, match="no item column 'tags'"):
        item_feature_matrix(data, "tags")
    with pytest.raises(ValueError, match="unknown part 'colour'"):
        item_feature_matrix(data, "genres+colour")


def test_embedded_movielens_gives_genres_year_and_tags():
    inter = load_movielens(EMBEDDED)
    data = TrainData(inter.n_users, inter.n_items, inter.to_csr(), inter.item_features, item_ids=inter.item_ids,
                     interactions=inter)
    genres = item_feature_matrix(data, "genres")
    year = item_feature_matrix(data, "year")
    tags = item_feature_matrix(data, "tags", tag_min_items=2)
    toy = list(inter.item_ids).index("1")  # Toy Story (1995): Adventure|Animation|Children|Comedy|Fantasy
    assert genres[toy].sum() == 5 and genres.shape[0] == inter.n_items
    assert 0 < year[toy, 0] < 1 and year[toy, 1] == 0
    assert tags.shape[1] > 0 and tags[toy].sum() >= 1 and (tags.sum(0) >= 2).all()
    assert item_feature_matrix(data, "genres+year+tags").shape == (inter.n_items, genres.shape[1] + 2 + tags.shape[1])
    assert item_feature_matrix(data, "none").shape == (inter.n_items, 0)


def test_latent_files_are_matched_by_raw_id_and_errors_are_clear(tmp_path):
    data = inter_data([0, 0, 1], [0, 1, 2], [0, 1, 2], ["a", "b", "c"])
    np.savez(tmp_path / "ok.npz", ids=np.array(["c", "a", "b", "z"]), vectors=np.arange(8.0).reshape(4, 2))
    assert load_item_latents(tmp_path / "ok.npz", data).tolist() == [[2, 3], [4, 5], [0, 1]]
    np.savez(tmp_path / "missing.npz", ids=np.array(["a", "b"]), vectors=np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"missing.npz: 1 of the data's 3 items have no vector \(e.g. item 'c'\)"):
        load_item_latents(tmp_path / "missing.npz", data)
    np.save(tmp_path / "rows.npy", np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"rows.npy: expected an array \[n_items=3, d\]"):
        load_item_latents(tmp_path / "rows.npy", data)
    np.save(tmp_path / "nan.npy", np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="nan.npy: the item vectors hold NaN"):
        load_item_latents(tmp_path / "nan.npy", data)
    np.savez(tmp_path / "keys.npz", foo=np.zeros(2))
    with pytest.raises(ValueError, match="keys.npz: expected arrays 'item' \\+ 'item_ids'"):
        load_item_latents(tmp_path / "keys.npz", data)
    with pytest.raises(ValueError, match="'latent' needs a file"):
        item_feature_matrix(data, "latent")
    # a gcf latents.npz written for another split is refused
    np.savez(tmp_path / "gcf.npz", item=np.zeros((3, 2)), item_ids=np.array(["a", "b", "c"]),
             split_fingerprint=np.asarray("other"))
    data.fingerprint = "this"
    with pytest.raises(ValueError, match="written for split other"):
        item_feature_matrix(data, "latent:" + str(tmp_path / "gcf.npz"))
    both = item_feature_matrix(TrainData(3, 3, data.train, item_ids=data.item_ids,
                                         interactions=data.interactions), f"latent:{tmp_path / 'ok.npz'}")
    assert both.shape == (3, 2)


def test_time_context_matches_pandas():
    t = np.random.default_rng(0).integers(0, 2_000_000_000, 5000)
    ts = pd.to_datetime(t, unit="s")
    want = np.stack([(ts.year - 1970) / 60, ts.month / 12, ts.day / 31, ts.day_of_week / 7, ts.day_of_year / 365,
                     ts.isocalendar().week.to_numpy().astype(float) / 4], 1)
    got = time_context(torch.from_numpy(t), 1970, 2030, week_scale=4).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)


# ------------------------------------------------------------------ the model
@pytest.fixture(scope="module")
def hand():
    """40 users over 30 items with unix times and 4 random attributes per item."""
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(40), 10)
    items = np.concatenate([rng.choice(30, 10, replace=False) for _ in range(40)])
    times = 1.6e9 + np.arange(len(users)) * 3600 * 7.0
    data = inter_data(users, items, times, n_items=30)
    return data, rng.random((30, 4)).astype(np.float32)


def model_on(hand, **kw) -> CARCA:
    data, attrs = hand
    torch.manual_seed(0)
    return CARCA(data, item_attribute_matrix=attrs, **{**SMALL, **kw}).eval()


def profile_batch(data, users=(0, 1, 2)):
    items, times = data.sequences.padded(np.array(users), 12)
    return torch.from_numpy(items), torch.from_numpy(times)


@pytest.mark.parametrize("cross", [True, False])
def test_a_candidates_attributes_change_its_score_only(hand, cross):
    model = model_on(hand, cross_attention=cross)
    items, times = profile_batch(hand[0])
    users = torch.arange(3)
    j = int(np.setdiff1d(np.arange(30), items.numpy() - 1)[0])  # a gcf item in none of the profiles
    before = model.score_sequences(users, items, times)
    with torch.no_grad():
        model.attributes[j + 1] += 1.0  # it gets other attributes (seq id j + 1)
    after = model.score_sequences(users, items, times)
    changed = (after - before).abs() > 1e-6
    assert changed[:, j].all() and not changed[:, np.r_[0:j, j + 1:30]].any()


def test_ranking_keeps_the_candidate_table_until_a_weight_changes(hand):
    model = model_on(hand)
    items, times = profile_batch(hand[0])
    u = torch.arange(3)
    with torch.no_grad():
        first = model.candidate_base()
        assert model.candidate_base() is first  # kept between chunks of users
        before = model.score_sequences(u, items, times)
        model.combine.weight.mul_(1.5)  # in place, as an optimiser step
        assert model.candidate_base() is not first
        after = model.score_sequences(u, items, times)
        kept = model.candidate_base()
        model.attributes[1] += 1.0  # a buffer changed in place: item 0's attributes
        assert not torch.equal(model.candidate_base()[0], kept[0])
    fresh = model.score_sequences(u, items, times)  # grad on: never cached
    assert (after - before).abs().max() > 1e-4 and (fresh - after).abs()[:, 0].max() > 1e-6
    model.train()
    with torch.no_grad():
        assert model.candidate_base() is not model.candidate_base()  # training mode: never kept


@pytest.mark.parametrize("cross,positions,context", [(True, "none", "on"), (False, "none", "on"),
                                                      (True, "right", "on"), (True, "none", "off")])
def test_all_item_scoring_equals_the_step_logits_of_the_last_position(hand, cross, positions, context):
    # context off: every user shares the candidates (CARCA.shared_cross_logits, no [B, Q, d] output)
    model = model_on(hand, cross_attention=cross, positions=positions, context=context)
    items, times = profile_batch(hand[0])
    fast = model.score_sequences(torch.arange(3), items, times)  # [3, 30]
    cands = torch.arange(1, 31).expand(3, 12, 30)
    direct = model.step_logits(items, times, cands, times[:, -1:].expand(3, 12))[:, -1]  # the newest time
    torch.testing.assert_close(fast, direct, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positions", ["none", "right"])
def test_future_profile_items_never_change_an_earlier_steps_logits(hand, positions):
    t = 6
    for official, leaks in ((False, False), (True, True)):
        model = model_on(hand, official_attention=official, positions=positions)
        items, times = profile_batch(hand[0])
        cands = torch.randint(1, 31, (3, 12, 4), generator=torch.Generator().manual_seed(1))
        before = model.step_logits(items, times, cands, times)
        future = items.clone()
        future[:, t + 1:] = (future[:, t + 1:] % 30) + 1  # other items after step t
        after = model.step_logits(future, times, cands, times)
        moved = (after[:, :t + 1] - before[:, :t + 1]).abs().max().item()
        assert (moved > 1e-4) == leaks, (official, moved)
        assert (after[:, t + 1:] - before[:, t + 1:]).abs().max() > 1e-4  # later steps do see them


@pytest.mark.parametrize("positions", ["none", "right"])
def test_length_buckets_are_exact_the_loss_ignores_cut_padding_columns(hand, positions):
    data = hand[0]
    model = model_on(hand, positions=positions, length_buckets=True)
    assert model.batches(data, 8).length_buckets
    full = next(iter(model_on(hand).batches(data, 40).epoch(np.random.default_rng(0))))  # all users, width 12
    assert (full["items"][:, :3] == 0).all()  # 10 items a user: inputs fill the last 9 columns
    cut = {k: v[:, 3:] if v.dim() > 1 else v for k, v in full.items()}
    torch.testing.assert_close(model.loss(cut), model.loss(full))


@pytest.mark.parametrize("cross,positions,context", [(True, "none", "on"), (False, "right", "on"),
                                                      (True, "right", "off"), (True, "none", "off")])
def test_ranking_in_length_sorted_cut_chunks_equals_the_full_width_scores(cross, positions, context):
    rng = np.random.default_rng(3)
    lengths = rng.integers(2, 15, 30)  # histories shorter and longer than max_len 12
    users = np.repeat(np.arange(30), lengths)
    items = np.concatenate([rng.choice(25, n, replace=False) for n in lengths])
    data = inter_data(users, items, 1.6e9 + np.arange(len(users)) * 3600.0, n_items=25)
    torch.manual_seed(0)
    model = CARCA(data, item_attribute_matrix=rng.random((25, 3)).astype(np.float32), cross_attention=cross,
                  positions=positions, context=context, **SMALL).eval()
    model.trim_chunk = 7  # several chunks of different widths
    u = torch.arange(30)
    padded, times = data.sequences.padded(u.numpy(), 12)
    want = model.score_sequences(u, torch.from_numpy(padded), torch.from_numpy(times))
    torch.testing.assert_close(model.score(u), want, atol=1e-5, rtol=1e-5)


def test_context_reaches_scores_and_positions_are_refused_as_calendar(hand):
    model = model_on(hand)
    items, times = profile_batch(hand[0])
    a = model.score_sequences(torch.arange(3), items, times)
    b = model.score_sequences(torch.arange(3), items, times + 86400 * 200)  # 200 days later
    assert not torch.allclose(a, b)
    data = inter_data([0, 0, 1], [0, 1, 2], [0, 1, 0])  # sequence positions, not unix seconds
    assert CARCA(data, item_features="none", **SMALL).context is False
    with pytest.raises(ValueError, match="context=on needs timestamps in unix seconds"):
        CARCA(data, item_features="none", context="on", **SMALL)


def test_loss_decreases_on_a_fixed_batch(hand):
    data, attrs = hand
    torch.manual_seed(0)
    model = CARCA(data, item_attribute_matrix=attrs, **SMALL)
    batch = next(iter(model.batches(data, 40).epoch(np.random.default_rng(0))))
    assert (batch["target_times"] > 0).sum() == (batch["targets"] > 0).sum()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]


# ------------------------------------------------------------------ learning
def test_learns_a_task_only_attributes_explain(tmp_path):
    """Users stay within one of 8 categories (items random inside it, uniform popularity): Pop is
    at chance, CARCA must find the category of the history among the candidates' attributes."""
    rng = np.random.default_rng(0)
    n_items, n_cat = 200, 8
    cat = rng.integers(0, n_cat, n_items)
    users, items, times = [], [], []
    for u in range(300):
        pool = np.flatnonzero(cat == rng.integers(n_cat))
        seq = rng.choice(pool, 12, replace=False)
        users += [u] * 12
        items += seq.tolist()
        times += (1.6e9 + u * 1e5 + np.arange(12) * 3600.0).tolist()
    inter = Interactions(np.array(users), np.array(items), np.arange(300).astype(str),
                         np.arange(n_items).astype(str), timestamps=np.array(times), source="synthetic")
    split = leave_one_out(inter)
    data = TrainData.from_split(split)

    torch.manual_seed(0)
    model = CARCA(data, item_attribute_matrix=np.eye(n_cat, dtype=np.float32)[cat], max_len=12, hidden_size=16,
                  n_layers=1, dropout=0.0, n_negatives=4, context="off")
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    builder = model.batches(data, 32)
    model.train()
    for epoch in range(6):
        for batch in builder.epoch(np.random.default_rng(epoch)):
            opt.zero_grad()
            model.loss(batch).backward()
            opt.step()
    hit = evaluate(model, split, "test", ks=(10,), metrics=("hit",))["hit@10"]
    # ~14 unseen items in the user's category: knowing it gives hit@10 ~0.7; Pop and chance ~0.05
    assert hit > 0.3, hit


@pytest.fixture(scope="module")
def pop_ndcg(tmp_path_factory):
    return run("pop", [f"out_dir={tmp_path_factory.mktemp('pop')}", *FAST, "item_k=10", "user_k=10"], quiet=True,
               family="seq")["test"]["ndcg@10"]


def test_learns_on_the_embedded_data_and_beats_pop(pop_ndcg, tmp_path):
    m = run("carca", [f"out_dir={tmp_path}", *FAST, "item_k=10", "user_k=10", *EMBEDDED_BUDGET], quiet=True)
    assert m["test"]["ndcg@10"] > 1.3 * pop_ndcg, (m["test"]["ndcg@10"], pop_ndcg)


# the dot-product head ("w/o CA") learns in this budget; the cross-attention head needs far more
# steps on MovieLens (benchmarks/README.md) and is checked on the synthetic task above
EMBEDDED_BUDGET = ["epochs=6", "max_len=30", "hidden_size=32", "n_layers=1", "batch_size=32", "n_negatives=16",
                   "learning_rate=0.005", "dropout=0.1", "cross_attention=false"]
