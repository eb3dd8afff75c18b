"""Feature models and the CTR task: declared fields (vocabulary fitted on training rows,
out-of-vocabulary index, pooled multi-valued fields, numeric and time fields, the vocabulary
saved with the weights), click labels and the global random split, AUC and LogLoss equal to
scikit-learn's, every feature model learns on the embedded data, bad field configs are errors
naming the culprit."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gcf.config import resolve_config
from gcf.data.fields import FieldBatches, FieldEncoder, parse_fields, time_parts
from gcf.data.interactions import Interactions
from gcf.data.prepare import load_split
from gcf.data.split import global_random
from gcf.metrics import labelled_metrics, log_loss, roc_auc
from gcf.models import TrainData, build_model
from gcf.models.feature import FieldEmbedding
from gcf.runs import load_trained
from gcf.train import run
from gcf.trainer import Trainer

FAST = ["task=ctr", "progress=false", "device=cpu"]


# ------------------------------------------------------------------ metrics
def test_auc_and_logloss_equal_scikit_learn():
    import sklearn.metrics as sk  # the dev extra installs it: never skipped
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000).astype(np.float32)
    scores = np.round(rng.normal(size=5000) + y, 1)  # rounded: many ties
    probs = 1 / (1 + np.exp(-scores))
    probs[:3] = [0.0, 1.0, 1e-20]  # clipped as scikit-learn clips
    assert roc_auc(y, scores) == pytest.approx(sk.roc_auc_score(y, scores), abs=1e-12)
    assert log_loss(y, probs) == pytest.approx(sk.log_loss(y, probs), abs=1e-12)
    m = labelled_metrics(y, scores)
    assert m["auc"] == pytest.approx(sk.roc_auc_score(y, scores), abs=1e-12)
    assert m["logloss"] == pytest.approx(sk.log_loss(y, 1 / (1 + np.exp(-scores))), abs=1e-12)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0 and roc_auc([0, 1], [0.5, 0.5]) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.2, 0.3])


# ------------------------------------------------------------ labels, split
def test_click_labels_drop_the_threes_and_split_all_rows_at_random(ml_small):
    lab = ml_small.labelled(4.0, [3.0, 3.0])
    assert len(lab) == int((ml_small.ratings != 3.0).sum())
    assert np.array_equal(lab.labels, (lab.ratings >= 4).astype(np.float32))
    split = global_random(lab, (0.8, 0.1, 0.1), seed=1)
    n = len(lab)
    assert (len(split.valid), len(split.test)) == (int(0.1 * n), int(0.1 * n))  # RecBole's floor counts
    assert len(split.train) + len(split.valid) + len(split.test) == n
    assert split.test.labels is not None and set(np.unique(split.test.labels)) == {0.0, 1.0}


# -------------------------------------------------------------------- fields
def small_data(fields, train_rows, timestamps=None):
    """Three users (occupation, age, zip), four items (genres, year); ``train_rows`` the
    (user, item) pairs of the training part."""
    users, items = np.array(train_rows).T
    inter = Interactions(users, items, np.array(["u0", "u1", "u2"]), np.array(["i0", "i1", "i2", "i3"]),
                         ratings=np.full(len(users), 5.0, dtype=np.float32),
                         timestamps=None if timestamps is None else np.asarray(timestamps, dtype=np.float64),
                         source="hand")
    inter.user_features = {"occupation": ["doctor", "writer", "pilot"], "age": np.array([20.0, 40.0, np.nan]),
                           "zip_code": ["02139", "02140", "94110"]}
    inter.item_features = {"genres": [["Drama", "War"], ["Comedy"], [], ["Drama", "Horror", "Comedy"]],
                           "year": np.array([1995.0, 1995.0, 2001.0, 1977.0])}
    data = TrainData(3, 4, inter.to_csr(), inter.item_features, inter.user_features, inter.item_ids,
                     inter.user_ids, inter, fields=fields)
    return data


def test_unseen_and_rare_categories_map_to_the_out_of_vocabulary_index():
    fields = [{"name": "user_id", "source": "user"}, {"name": "occupation", "source": "user"},
              {"name": "zip3", "source": "user", "column": "zip_code", "pattern": r"^(\d{3})"},
              {"name": "year", "source": "item", "min_count": 2}]
    enc = FieldEncoder(fields, small_data(fields, [(0, 0), (0, 1), (1, 1)]))  # user 2 never trained on
    assert enc.vocab["occupation"] == ["doctor", "writer"] and enc.vocab["zip3"] == ["021"]
    assert enc.vocab["year"] == ["1995"]  # 2001 and 1977 are seen in < 2 training rows
    x = enc(torch.tensor([0, 2]), torch.tensor([0, 3]), torch.zeros(2, 0, dtype=torch.long))
    off = enc.offset
    assert x["cat"][1].tolist() == [off["user_id"], off["occupation"], off["zip3"], off["year"]]  # all OOV
    assert x["cat"][0].tolist() == [off["user_id"] + 1, off["occupation"] + 1, off["zip3"] + 1, off["year"] + 1]
    assert enc.encode_values("occupation", ["writer", "astronaut", None]).tolist() == [
        off["occupation"] + 2, off["occupation"], off["occupation"]]


def test_multi_valued_fields_are_padded_and_pooled():
    fields = [{"name": "genres", "source": "item", "type": "sequence", "max_len": 2}]
    enc = FieldEncoder(fields, small_data(fields, [(0, 0), (1, 1), (2, 3)]))
    assert enc.vocab["genres"] == ["Comedy", "Drama", "Horror", "War"]
    x = enc(torch.tensor([0, 0, 0]), torch.tensor([0, 2, 3]), torch.zeros(3, 0, dtype=torch.long))
    g = enc.offset["genres"]
    assert x["seq"][:, 0].tolist() == [[g + 2, g + 4], [0, 0], [g + 2, g + 3]]  # max_len 2 keeps the first two
    emb = FieldEmbedding(enc, 3)
    v = emb(x)  # [B, F, d]
    table = emb.table.weight
    assert torch.allclose(v[0, 0], (table[g + 2] + table[g + 4]) / 2) and torch.all(v[1, 0] == 0)
    total = FieldEmbedding(enc, 1, pooling="sum")
    assert torch.allclose(total(x)[2, 0], total.table.weight[g + 2] + total.table.weight[g + 3])


def test_numeric_fields_are_normalised_or_bucketised_and_time_fields_read_the_timestamp():
    fields = [{"name": "age", "source": "user", "type": "numeric"},
              {"name": "age_bucket", "source": "user", "type": "numeric", "column": "age", "buckets": [30]},
              {"name": "hour", "source": "context", "time": "hour"},
              {"name": "weekday", "source": "context", "time": "weekday"},
              {"name": "month", "source": "context", "time": "month"}]
    # 1970-01-01 00:00 UTC was a Thursday; 1970-02-01 05:00 a Sunday
    times = [0, 31 * 86400 + 5 * 3600, 0]
    parts = time_parts(parse_fields(fields), np.array(times + [np.nan]), 4)
    assert parts.tolist() == [[0, 3, 0], [5, 6, 1], [0, 3, 0], [-1, -1, -1]]
    enc = FieldEncoder(fields, small_data(fields, [(0, 0), (0, 1), (1, 1)], times))
    assert enc.stats["age"] == pytest.approx([80 / 3, np.sqrt(800 / 9)])  # over the 3 training rows
    x = enc(torch.tensor([0, 1, 2]), torch.tensor([0, 0, 0]), torch.from_numpy(parts[[0, 1, 3]]))
    assert x["num"][:, 0].tolist() == pytest.approx([-1 / np.sqrt(2), np.sqrt(2), 0.0], abs=1e-6)  # missing: mean
    b, h = enc.offset["age_bucket"], enc.offset["hour"]
    assert x["cat"][:, 0].tolist() == [b + 1, b + 2, b]  # bucket 0, bucket 1, missing -> OOV
    assert x["cat"][:, 1].tolist() == [h + 1, h + 2, h]  # hours "0", "5", no timestamp -> OOV


def test_saved_vocabulary_is_reused_at_load_time(tmp_path):
    cfg, kwargs = resolve_config("fm", FAST + ["epochs=1", f"out_dir={tmp_path}"])
    split = load_split(cfg)
    model = build_model("fm", kwargs, split, 0)
    Trainer(model, split, cfg, tmp_path).fit()
    model.eval()
    scores = model.score_rows(split.test)
    state = torch.load(tmp_path / "best.pt", weights_only=True)["model"]
    assert state["encoder._extra_state"]["vocab"] == model.encoder.vocab  # saved with the weights
    import yaml

    with open(tmp_path / "config.yaml", "w") as f:
        yaml.safe_dump({"config": cfg, "model_module": "gcf.models.fm"}, f)
    reloaded, _ = load_trained(tmp_path)
    assert torch.equal(reloaded.score_rows(split.test), scores)
    # an encoder refitted on other rows has another vocabulary until the saved one is loaded
    fields = TrainData.from_split(split).fields
    other = TrainData.from_split(split)
    other.interactions = split.train.subset(np.arange(len(split.train)) % 5 == 0)
    refit = FieldEncoder(fields, other)
    assert refit.vocab != model.encoder.vocab
    refit.load_state_dict(model.encoder.state_dict())
    rows = (torch.from_numpy(split.test.users), torch.from_numpy(split.test.items),
            torch.from_numpy(time_parts(refit.specs, split.test.timestamps, len(split.test))))
    assert all(torch.equal(a, b) for a, b in zip(refit(*rows).values(), model.encoder(*rows).values()))


# ------------------------------------------------------------------- errors
@pytest.mark.parametrize("field, message", [
    ({"name": "age", "source": "user", "typ": "numeric"}, "unknown key.*'typ'"),
    ({"name": "age", "source": "user", "type": "float"}, "unknown type 'float'"),
    ({"name": "age", "source": "users"}, "unknown source 'users'"),
    ({"name": "hour", "source": "context"}, "needs time"),
    ({"name": "genres", "source": "item", "max_len": 3}, "max_len"),
    ({"source": "user"}, "missing key 'name'"),
])
def test_a_bad_field_declaration_is_an_error_naming_it(field, message):
    with pytest.raises(ValueError, match=message):
        parse_fields([field])


def test_an_unknown_column_is_an_error_naming_it_and_the_columns_there():
    fields = [{"name": "occupation", "source": "user", "column": "job"}]
    with pytest.raises(ValueError, match=r"field 'occupation': unknown user column 'job'.*occupation"):
        FieldEncoder(fields, small_data(fields, [(0, 0)]))
    with pytest.raises(ValueError, match="unknown type 'float'"):  # at load time, through the CLI's config
        run("fm", FAST + ["fields=[{name: year, source: item, type: float}]"], quiet=True)


# ------------------------------------------------------------- batches
def test_batches_hold_labelled_rows_or_positives_with_sampled_negatives(ml_small_split):
    data = TrainData.from_split(ml_small_split)  # implicit: task=ranking
    batches = FieldBatches(data, 512, neg_samples=2)
    seen = data.train
    total = 0
    for batch in batches.epoch(np.random.default_rng(0)):
        b = int(batch["label"].sum())
        assert len(batch["label"]) == 3 * b
        users, items = batch["users"].numpy(), batch["items"].numpy()
        assert np.all(seen[users[:b], items[:b]] == 1) and np.all(seen[users[b:], items[b:]] == 0)
        total += b
    assert total == len(ml_small_split.train) and len(batches) == -(-total // 512)


# ------------------------------------------------------- embedding regularizer
def test_embedding_regularizer_is_fuxictr_l2_on_the_tables(tmp_path):
    """Adam's weight decay on the tables' group takes the same step as FuxiCTR's loss term
    lambda/2 * ||E||^2 over every embedding table; the other parameters are not decayed."""
    from gcf.models.deepfm import DeepFM
    fields = [{"name": "user_id", "source": "user"}, {"name": "item_id", "source": "item"},
              {"name": "genres", "source": "item", "type": "sequence"}]
    data = small_data(fields, [(0, 0), (0, 1), (1, 1), (1, 3), (2, 2)])
    lam = 0.05
    torch.manual_seed(0)
    ours = DeepFM(data, embedding_size=4, mlp_hidden_size=[8], dropout_prob=0.0, embedding_regularizer=lam)
    ref = DeepFM(data, embedding_size=4, mlp_hidden_size=[8], dropout_prob=0.0)
    ref.load_state_dict(ours.state_dict())
    groups = ours.param_groups()
    tables = [ours.weights.table.weight, ours.embedding.table.weight]
    assert [id(p) for p in groups[0]["params"]] == [id(p) for p in tables] and groups[0]["weight_decay"] == lam
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in ours.parameters()}
    assert sum(len(g["params"]) for g in groups) == len(list(ours.parameters()))
    batch = next(iter(FieldBatches(data, 16, neg_samples=1).epoch(np.random.default_rng(0))))
    opt_ours = torch.optim.Adam(groups, lr=0.01)
    opt_ref = torch.optim.Adam(ref.param_groups(), lr=0.01)
    for _ in range(3):
        opt_ours.zero_grad(), opt_ref.zero_grad()
        ours.loss(batch).backward()
        (ref.loss(batch) + lam / 2 * sum(t.pow(2).sum() for t in (ref.weights.table.weight,
                                                                   ref.embedding.table.weight))).backward()
        opt_ours.step(), opt_ref.step()
    for (name, a), b in zip(ours.named_parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
    plain = DeepFM(data, embedding_size=4, mlp_hidden_size=[8], dropout_prob=0.0)
    plain.load_state_dict(ref.state_dict())
    assert len(plain.param_groups()) == 1  # no regularizer: one group, the config's weight_decay
    with pytest.raises(ValueError, match="embedding_regularizer must be >= 0"):
        DeepFM(data, embedding_regularizer=-1.0)


# ------------------------------------------------------------- models learn
BUDGET = {  # a short budget each on the embedded ml-latest-small, task=ctr
    "lr": ["epochs=3", "learning_rate=0.01"],
    "fm": ["epochs=3"],
    "deepfm": ["epochs=2"],
    "afn": ["epochs=2", "log_neurons=32", "afn_hidden_size=[64]", "dropout_prob=0"],
    "afnplus": ["epochs=2", "log_neurons=32", "afn_hidden_size=[64]", "dnn_hidden_size=[64]", "dropout_prob=0"],
}


@pytest.mark.parametrize("model", sorted(BUDGET))
def test_each_feature_model_learns_the_clicks(model, tmp_path):
    metrics = run(model, FAST + BUDGET[model] + [f"out_dir={tmp_path}"], quiet=True)
    assert metrics["test"]["auc"] > 0.7, metrics["test"]
    assert metrics["test"]["logloss"] < 0.67  # a constant at the click rate scores ~0.67
    assert set(metrics["valid"]) == {"auc", "logloss"}


def test_a_feature_model_ranks_all_items_with_task_ranking_and_beats_pop(tmp_path):
    keys = ["progress=false", "item_k=10", "user_k=10", "epochs=2", "learning_rate=0.01"]
    pop = run("pop", keys + [f"out_dir={tmp_path / 'pop'}"], quiet=True)["test"]
    fm = run("fm", keys + [f"out_dir={tmp_path / 'fm'}"], quiet=True)["test"]
    assert fm["ndcg@20"] > 1.1 * pop["ndcg@20"] and fm["recall@20"] > 1.1 * pop["recall@20"]


def test_the_task_picks_its_keys_and_an_unknown_task_is_an_error():
    cfg, _ = resolve_config("fm", ["task=ctr", "label_threshold=4.5"])
    assert cfg["valid_metric"] == "auc" and cfg["split"] == "global_random" and cfg["label_threshold"] == 4.5
    assert resolve_config("fm", [])[0]["valid_metric"] == "ndcg@20"  # task=ranking: the base keys
    with pytest.raises(ValueError, match="unknown key.*'label_threshold'"):  # a ctr key outside task=ctr
        resolve_config("fm", ["label_threshold=4"])
    with pytest.raises(ValueError, match="unknown task 'click'.*ctr"):
        resolve_config("fm", ["task=click"])
