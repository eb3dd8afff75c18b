"""The trainer and the CLI end to end on the embedded dataset: files written, config errors,
NaN detection, determinism, resume after a killed run, and every model beating Pop."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gcf.config import resolve_config
from gcf.models import MODELS
from gcf.train import run
from gcf.trainer import NonFiniteLossError

ROOT = Path(__file__).resolve().parents[1]
# a small, fast version of the embedded MovieLens latest-small (k-core keeps ~2.2k items)
FAST = ["item_k=10", "user_k=10", "progress=false", "device=cpu", "eval_batch_size=256"]


def test_cli_end_to_end(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "gcf.train", "lightgcn", "epochs=2", f"out_dir={out}", *FAST],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "recall" in proc.stdout and "ndcg" in proc.stdout and str(out / "metrics.json") in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"valid", "test", "sec_per_epoch", "eval_sec", "epochs"}
    assert metrics["epochs"] == 2 and 0 < metrics["test"]["recall@20"] <= 1
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["config"]["model"] == "lightgcn" and cfg["config"]["n_layers"] == 3
    assert len(cfg["data"]["sha256"]) == 64 and cfg["data"]["files"]
    assert "random_ratio" in cfg["split"]
    assert (out / "train.log").read_text().count("epoch") >= 2
    best = torch.load(out / "best.pt", weights_only=True)  # no pickled objects
    assert "user_embedding.weight" in best["model"]
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and "optimizer" in last

    # latents next to the checkpoint, and the trained model rebuilt from the run's files
    from gcf.evaluate import evaluate
    from gcf.latents import load_latents
    from gcf.runs import load_trained

    lat = load_latents(out / "latents.npz")
    model, split = load_trained(out)
    assert lat["user"].shape == (split.n_users, 64) and lat["item"].shape == (split.n_items, 64)
    assert list(lat["user_ids"]) == list(split.train.user_ids) and lat["item_ids"][0] == split.train.item_ids[0]
    u, i = model.latents()
    assert torch.allclose(u, torch.from_numpy(lat["user"]), atol=1e-6)
    again = evaluate(model, split, "test", ks=[10, 20])
    assert again["recall@20"] == pytest.approx(metrics["test"]["recall@20"], rel=1e-6)


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'n_layer'.*valid keys:.*n_layers"):
        resolve_config("lightgcn", ["n_layer=2"])
    proc = subprocess.run([sys.executable, "-m", "gcf.train", "lightgcn", "embeding_size=8"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "embeding_size" in proc.stderr


def test_unknown_model_and_dataset():
    with pytest.raises(ValueError, match="unknown model|no config"):
        resolve_config("lightgcm")
    with pytest.raises(ValueError, match="unknown dataset 'ml-5k'"):
        resolve_config("bpr", ["dataset=ml-5k"])


def test_overrides_are_typed():
    cfg, kwargs = resolve_config("ngcf", ["hidden_size_list=[32, 32]", "learning_rate=0.01", "resume=true"])
    assert kwargs["hidden_size_list"] == [32, 32] and cfg["learning_rate"] == 0.01 and cfg["resume"] is True


def test_nan_loss_stops_the_run(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = MODELS["bpr"].loss

    def loss(self, batch):
        calls["n"] += 1
        value = original(self, batch)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr(MODELS["bpr"], "loss", loss)
    with pytest.raises(NonFiniteLossError, match="epoch 1, batch 3"):
        run("bpr", [f"out_dir={tmp_path}", "epochs=2", "batch_size=512", *FAST], quiet=True)
    assert not (tmp_path / "metrics.json").exists()


def test_same_seed_same_result(tmp_path):
    a = run("bpr", [f"out_dir={tmp_path / 'a'}", "epochs=2", *FAST], quiet=True)
    b = run("bpr", [f"out_dir={tmp_path / 'b'}", "epochs=2", *FAST], quiet=True)
    assert a["test"] == b["test"]
    c = run("bpr", [f"out_dir={tmp_path / 'c'}", "epochs=2", "seed=7", *FAST], quiet=True)
    assert c["test"] != a["test"]


RESUME_CASES = {  # models whose state lives outside the parameters too (counters, loss history, samples)
    "ngcf": ["epochs=4", "batch_size=1024", "message_dropout=0.1"],  # dropout: the torch RNG matters
    "vaecf": ["epochs=4", "batch_size=128", "total_anneal_steps=50"],  # the anneal counter
    "diffrec": ["epochs=4", "batch_size=128"],  # the step-importance history
    "bivae": ["epochs=4", "batch_size=128", "k=8", "encoder_structure=[16]"],  # the pending samples
    "ldiffrec": ["epochs=4", "batch_size=128", "ae_dims=[32]", "dims_dnn=[16]", "anneal_steps=3"],  # epoch counter
    # a sequence model (its own batch builder, leave-one-out, dropout and sampled negatives)
    "sasrec": ["epochs=4", "batch_size=64", "max_len=20", "hidden_size=16", "hidden_dropout_prob=0.2"],
}


@pytest.mark.parametrize("model", sorted(RESUME_CASES))
def test_resume_after_kill_matches_uninterrupted(model, tmp_path, monkeypatch):
    import seq.models  # noqa: F401  (registers sasrec)

    args = [*RESUME_CASES[model], *FAST]
    full = run(model, [f"out_dir={tmp_path / 'full'}", *args], quiet=True)

    from gcf.data.prepare import load_split
    from gcf.models import TrainData, build_model

    cfg, kwargs = resolve_config(model, args)
    data = TrainData.from_split(load_split(cfg))
    per_epoch = len(build_model(model, kwargs, data, 0).batches(data, int(cfg["batch_size"])))
    calls = {"n": 0}
    original = MODELS[model].loss

    def killed(self, batch):
        calls["n"] += 1
        if calls["n"] > 2 * per_epoch + 1:  # dies inside the third epoch
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(MODELS[model], "loss", killed)
    with pytest.raises(KeyboardInterrupt):
        run(model, [f"out_dir={tmp_path / 'resumed'}", *args], quiet=True)
    monkeypatch.setattr(MODELS[model], "loss", original)
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["epoch"] == 2
    resumed = run(model, [f"out_dir={tmp_path / 'resumed'}", "resume=true", *args], quiet=True)
    assert resumed["epochs"] == 4
    assert resumed["test"] == pytest.approx(full["test"], rel=1e-6)
    assert [h["loss"] for h in resumed["history"]] == pytest.approx([h["loss"] for h in full["history"]], rel=1e-6)


def test_early_stopping_stops_and_tests_the_best_checkpoint(tmp_path, monkeypatch):
    """Validation improves for 2 epochs then never again: the run stops after stopping_step more
    validations, and the test metrics are those of best.pt (epoch 2), not of the last epoch."""
    from gcf import trainer as trainer_mod

    scores = iter([0.1, 0.2, 0.15, 0.12, 0.11, 0.05, 0.04, 0.03])
    real_evaluate = trainer_mod.Trainer.evaluate
    tested = {}

    def fake_evaluate(self, part):
        out = real_evaluate(self, part)
        if part == "valid":
            out["ndcg@20"] = next(scores)
        else:  # the weights that are tested: must be best.pt's
            best = torch.load(tmp_path / "best.pt", weights_only=True)
            tested["same_as_best"] = all(torch.equal(v.cpu(), best["model"][k].cpu())
                                         for k, v in self.model.state_dict().items())
            tested["best_epoch"] = best["epoch"]
        return out

    monkeypatch.setattr(trainer_mod.Trainer, "evaluate", fake_evaluate)
    m = run("bpr", [f"out_dir={tmp_path}", "epochs=8", "stopping_step=3", *FAST], quiet=True)
    assert m["epochs"] == 5 and m["best_epoch"] == 2  # 2 best, then 3 validations without improvement
    assert tested == {"same_as_best": True, "best_epoch": 2}
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["epoch"] == 5 and not all(torch.equal(v, torch.load(tmp_path / "best.pt", weights_only=True)[
        "model"][k]) for k, v in last["model"].items())


def test_closed_form_keeps_the_candidate_best_on_validation(tmp_path):
    """EASE's reg_grid: every lambda is fitted and validated, the best on valid_metric is the model
    (refitted at it when it was not the last candidate), and it is what the test ranks."""
    lams = (5.0, 50000.0)
    alone = {lam: run("ease", [f"reg_weight={lam}", f"out_dir={tmp_path / str(lam)}", *FAST],
                      quiet=True) for lam in lams}
    assert alone[lams[0]]["valid"]["ndcg@20"] != alone[lams[1]]["valid"]["ndcg@20"]
    best = max(lams, key=lambda lam: alone[lam]["valid"]["ndcg@20"])
    for order in (lams, lams[::-1]):  # the best candidate first (a refit) and last
        grid = "[" + ",".join(map(str, order)) + "]"
        m = run("ease", [f"reg_grid={grid}", f"out_dir={tmp_path / grid}", *FAST], quiet=True)
        assert m["selected"] == {"reg_weight": best}
        assert m["valid"] == pytest.approx(alone[best]["valid"]) and m["test"] == pytest.approx(alone[best]["test"])
    # a reg_weight given fixes lambda (no search, as the runs above); without a validation split
    # the grid's first value is the model
    assert all("selected" not in m for m in alone.values())
    novalid = ["split_ratios=[0.8,0.0,0.2]", *FAST]
    m = run("ease", ["reg_grid=[50000.0,5.0]", f"out_dir={tmp_path / 'nv'}", *novalid], quiet=True)
    ref = run("ease", ["reg_weight=50000.0", f"out_dir={tmp_path / 'nv-ref'}", *novalid], quiet=True)
    assert "selected" not in m and not m["valid"] and m["test"] == pytest.approx(ref["test"])


def test_monitor_terms_and_scores():
    """``valid_metric`` is maximised: a lone lower-is-better metric is negated, signed sums
    (FuxiCTR's ``auc-logloss``) add up, a sampled run labels every term, bad specs are errors."""
    from gcf.metrics import monitor_score, monitor_terms
    from gcf.trainer import valid_metric_name
    assert monitor_terms("ndcg@20") == [(1.0, "ndcg@20")]
    assert monitor_terms("logloss") == [(-1.0, "logloss")]
    assert monitor_terms("auc - logloss") == [(1.0, "auc"), (-1.0, "logloss")]
    assert monitor_terms("-logloss+auc") == [(-1.0, "logloss"), (1.0, "auc")]
    assert monitor_score({"auc": 0.8, "logloss": 0.3}, "auc-logloss") == pytest.approx(0.5)
    assert monitor_score({"auc": 0.8, "logloss": 0.3}, "logloss") == pytest.approx(-0.3)
    for bad in ("auc-", "auc--logloss", "+auc", ""):
        with pytest.raises(ValueError, match="valid_metric"):
            monitor_terms(bad)
    with pytest.raises(ValueError, match="'ndcg@10' not computed"):
        monitor_score({"ndcg@20": 0.1}, "ndcg@10")
    assert valid_metric_name({"valid_metric": "ndcg@20+recall@20", "sampled": "uni100"}) == \
        "ndcg@20[uni100]+recall@20[uni100]"
    assert valid_metric_name({"valid_metric": "ndcg@20", "sampled": None}) == "ndcg@20"


@pytest.mark.parametrize("metric, best", [("logloss", 4), ("auc-logloss", 3)])
def test_early_stopping_minimises_logloss_and_follows_signed_sums(tmp_path, monkeypatch, metric, best):
    """A lower-is-better ``valid_metric`` keeps the epoch of the lowest value (it used to keep
    the highest), and ``auc-logloss`` the best difference."""
    from gcf import trainer as trainer_mod

    values = iter([(0.50, 0.60), (0.60, 0.50), (0.80, 0.30), (0.70, 0.25), (0.90, 0.70), (0.1, 0.9)])
    real_evaluate = trainer_mod.Trainer.evaluate

    def fake_evaluate(self, part):
        out = real_evaluate(self, part)
        if part == "valid":
            out["auc"], out["logloss"] = next(values)
        return out

    monkeypatch.setattr(trainer_mod.Trainer, "evaluate", fake_evaluate)
    m = run("bpr", [f"out_dir={tmp_path}", "epochs=6", "stopping_step=2", f"valid_metric={metric}", *FAST],
            quiet=True)
    assert m["best_epoch"] == best and m["epochs"] == best + 2


def test_lr_decay_on_plateau_cuts_the_rate_after_each_bad_validation_and_resumes(tmp_path, monkeypatch):
    """``lr_decay=0.1``: each validation without improvement multiplies the learning rate by
    0.1 (down to ``min_lr``), and ``last.pt`` carries the decayed rate."""
    from gcf import trainer as trainer_mod

    scores = iter([0.1, 0.2, 0.15, 0.12, 0.3, 0.05])
    real_evaluate = trainer_mod.Trainer.evaluate
    seen_lr = []

    def fake_evaluate(self, part):
        out = real_evaluate(self, part)
        if part == "valid":
            seen_lr.append(self.optimizer.param_groups[0]["lr"])
            out["ndcg@20"] = next(scores)
        return out

    monkeypatch.setattr(trainer_mod.Trainer, "evaluate", fake_evaluate)
    run("bpr", [f"out_dir={tmp_path}", "epochs=6", "stopping_step=10", "learning_rate=0.01", "lr_decay=0.1",
                "min_lr=5e-5", *FAST], quiet=True)
    # the rate each validation saw: two bad ones (epochs 3, 4) cut it twice, the new best keeps it,
    # the last bad one would cut it to 1e-5 but min_lr holds it at 5e-5
    assert seen_lr == pytest.approx([0.01, 0.01, 0.01, 0.001, 1e-4, 1e-4])
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["optimizer"]["param_groups"][0]["lr"] == pytest.approx(5e-5)
    # lr_patience=2: only every second bad validation in a row cuts it
    scores, seen_lr[:] = iter([0.1, 0.05, 0.04, 0.03, 0.02, 0.01]), []
    run("bpr", [f"out_dir={tmp_path}/p2", "epochs=6", "stopping_step=10", "learning_rate=0.01", "lr_decay=0.1",
                "lr_patience=2", *FAST], quiet=True)
    assert seen_lr == pytest.approx([0.01, 0.01, 0.01, 0.001, 0.001, 1e-4])


def test_config_values_are_type_checked_naming_the_key():
    with pytest.raises(ValueError, match=r"key 'epochs' expects an integer.*got 'abc'"):
        resolve_config("pop", ["epochs=abc"])
    with pytest.raises(ValueError, match=r"key 'learning_rate' expects a number.*got 'fast'"):
        resolve_config("bpr", ["learning_rate=fast"])
    with pytest.raises(ValueError, match=r"key 'resume' expects true or false"):
        resolve_config("bpr", ["resume=1"])
    with pytest.raises(ValueError, match=r"key 'hidden_size_list' expects a list"):
        resolve_config("ngcf", ["hidden_size_list=64"])
    import seq.models  # noqa: F401  (carca: a tri-state key, default "auto", takes true/false or a string)
    assert resolve_config("carca", ["context=off"])[0]["context"] is False  # YAML reads off as false
    assert resolve_config("carca", ["context=auto"])[0]["context"] == "auto"
    with pytest.raises(ValueError, match=r"key 'loss' expects a string"):
        resolve_config("sasrec", ["loss=false"])  # other string keys do not
    cfg, _ = resolve_config("bpr", ["learning_rate=1"])  # an int is a valid float
    assert cfg["learning_rate"] == 1.0 and isinstance(cfg["learning_rate"], float)
    cfg, _ = resolve_config("bpr", ["learning_rate=1e-4", "min_lr=-2E-7"])  # YAML 1.1 reads these as strings
    assert cfg["learning_rate"] == 1e-4 and cfg["min_lr"] == -2e-7
    proc = subprocess.run([sys.executable, "-m", "gcf.train", "pop", "epochs=abc"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "'epochs'" in proc.stderr and "Traceback" not in proc.stderr


def test_sampled_run_validates_on_the_sampled_metric(tmp_path):
    m = run("bpr", [f"out_dir={tmp_path}", "epochs=1", "sampled=uni100", *FAST], quiet=True)
    assert "ndcg@20[uni100]" in m["valid"] and "ndcg@20[uni100]" in m["test"]
    assert "ndcg@20" not in m["valid"]  # validation follows the sampled protocol only
    # the test split is reported both ways; 100 negatives are easier than every item
    assert m["test"]["ndcg@20[uni100]"] > m["test"]["ndcg@20"] > 0


def test_test_sampled_adds_sampled_test_metrics_and_leaves_training_alone(tmp_path):
    full = run("bpr", [f"out_dir={tmp_path / 'a'}", "epochs=2", *FAST], quiet=True)
    both = run("bpr", [f"out_dir={tmp_path / 'b'}", "epochs=2", "test_sampled=[uni100,pop100]", *FAST], quiet=True)
    assert both["valid"] == full["valid"] and both["best_epoch"] == full["best_epoch"]  # validation unchanged
    assert {k: v for k, v in both["test"].items() if "[" not in k} == full["test"]
    assert both["test"]["ndcg@20[uni100]"] > both["test"]["ndcg@20"] > 0 and "hit@10[pop100]" in both["test"]
    # with sampled=uni100 the test already ranks uni100: nothing is added (or ranked twice)
    sampled = run("bpr", [f"out_dir={tmp_path / 'c'}", "epochs=2", "sampled=uni100", "test_sampled=uni100",
                          "valid_metric=ndcg@20", *FAST], quiet=True)
    assert not any("[pop100]" in k for k in sampled["test"]) and "ndcg@20[uni100]" in sampled["test"]
    with pytest.raises(ValueError, match="test_sampled"):
        run("bpr", [f"out_dir={tmp_path / 'd'}", "epochs=1", "test_sampled=[100]", *FAST], quiet=True)
    with pytest.raises(ValueError, match="uni<N>"):
        run("bpr", [f"out_dir={tmp_path / 'e'}", "epochs=1", "test_sampled=uniform", *FAST], quiet=True)
    # the same model ranked afterwards from its run folder (python -m gcf.runs RUN_DIR uni100): the same numbers
    from gcf.runs import main as runs_main
    assert runs_main([str(tmp_path / "a"), "uni100", "pop100"]) == 0
    later = json.loads((tmp_path / "a" / "metrics.json").read_text())["test"]
    assert {k: v for k, v in later.items() if "[" in k} == {k: v for k, v in both["test"].items() if "[" in k}
    assert runs_main([str(tmp_path / "a"), "uniform"]) == 2
    from gcf.trainer import test_protocols
    with pytest.raises(ValueError, match="task=ctr"):
        test_protocols({"task": "ctr", "test_sampled": "uni100", "seed": 1})


def test_cuda_requested_without_cuda_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        run("bpr", [f"out_dir={tmp_path}", "epochs=1", *FAST[:-2], "device=cuda"], quiet=True)


BUDGET = {  # a short budget per model, all on the same k-cored split of the embedded data
    "bpr": ["epochs=15", "learning_rate=0.005"],
    "lightgcn": ["epochs=15", "learning_rate=0.005"],
    "ngcf": ["epochs=10", "learning_rate=0.005"],
    "ease": [],
}


@pytest.fixture(scope="module")
def pop_metrics(tmp_path_factory):
    return run("pop", [f"out_dir={tmp_path_factory.mktemp('pop')}", *FAST], quiet=True)["test"]


@pytest.mark.parametrize("model", sorted(BUDGET))
def test_model_beats_pop(model, pop_metrics, tmp_path):
    test = run(model, [f"out_dir={tmp_path}", *BUDGET[model], *FAST], quiet=True)["test"]
    assert test["ndcg@20"] > 1.1 * pop_metrics["ndcg@20"], (model, test["ndcg@20"], pop_metrics["ndcg@20"])
    assert test["recall@20"] > 1.1 * pop_metrics["recall@20"]


def test_last_epoch_is_validated_when_eval_step_skips_it(tmp_path):
    metrics = run("bpr", [f"out_dir={tmp_path}", "epochs=2", "eval_step=5", *FAST], quiet=True)
    assert metrics["valid"] and (tmp_path / "best.pt").exists()
    assert [("valid" in h) for h in metrics["history"]] == [False, True]


def test_fit_restores_the_callers_determinism_setting(tmp_path):
    assert not torch.are_deterministic_algorithms_enabled()
    run("bpr", [f"out_dir={tmp_path}", "epochs=1", *FAST], quiet=True)
    assert not torch.are_deterministic_algorithms_enabled()


def test_mask_seen_key_reaches_the_evaluator(tmp_path):
    """``mask_seen=false`` lets the history's items rank (Pop then puts the user's own popular items
    first and loses hits); the default masks them."""
    from gcf.train import run
    on = run("pop", [f"out_dir={tmp_path / 'on'}", "progress=false"], quiet=True)["test"]
    off = run("pop", [f"out_dir={tmp_path / 'off'}", "progress=false", "mask_seen=false"], quiet=True)["test"]
    assert off["recall@20"] < on["recall@20"]


def test_ease_rating_weights_and_positive_only_follow_cornacs_formula():
    """``weighting=rating`` puts each pair's rating (the latest of a repeated pair) into X, for the
    Gram matrix and the scored rows; ``positive_only`` clips B at 0 (cornac's posB). Checked
    against the closed form written out in numpy, on ratings that vary, so binary differs."""
    from gcf.data.interactions import Interactions
    from gcf.models.base import TrainData
    from gcf.models.ease import EASE
    rng = np.random.default_rng(0)
    n_users, n_items, lam = 30, 12, 3.0
    users, items = rng.integers(0, n_users, 200), rng.integers(0, n_items, 200)
    ratings = rng.integers(1, 6, 200).astype(np.float32)
    times = np.arange(200, dtype=np.float64)
    inter = Interactions(users, items, np.arange(n_users).astype(str), np.arange(n_items).astype(str),
                         ratings=ratings, timestamps=times)
    data = TrainData(n_users, n_items, inter.dedup().to_csr(), interactions=inter)
    x = np.zeros((n_users, n_items))
    for u, i, r in zip(users, items, ratings):  # file order = time order: the latest rating wins
        x[u, i] = r
    p = np.linalg.inv(x.T @ x + lam * np.eye(n_items))
    b = p / -np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    everyone = torch.arange(n_users)
    for positive_only in (False, True):
        want = x @ (np.maximum(b, 0) if positive_only else b)
        m = EASE(data, reg_weight=lam, weighting="rating", positive_only=positive_only)
        m.fit(data)
        np.testing.assert_allclose(m.score(everyone).numpy(), want, rtol=1e-4, atol=1e-4)
    binary = EASE(data, reg_weight=lam)
    binary.fit(data)
    assert not np.allclose(binary.score(everyone).numpy(), x @ b, atol=1e-2)
    assert (binary.weights < 0).any()
    no_ratings = TrainData(n_users, n_items, data.train, interactions=Interactions(
        users, items, inter.user_ids, inter.item_ids))
    with pytest.raises(ValueError, match="weighting='rating' needs ratings"):
        EASE(no_ratings, weighting="rating")
    with pytest.raises(ValueError, match="weighting must be"):
        EASE(data, weighting="stars")


def test_test_false_leaves_the_test_split_to_the_caller(tmp_path):
    """``test=false``: training and validation as usual, the test split is not ranked (a benchmark
    ranks the best model itself, e.g. per sampling seed), and the printed table says so."""
    from gcf.train import format_table
    m = run("bpr", [f"out_dir={tmp_path}", "epochs=2", "test=false", *FAST], quiet=True)
    assert m["test"] == {} and m["valid"] and m["best_epoch"] >= 1
    assert "not ranked" in format_table(m)
    ranked = run("bpr", [f"out_dir={tmp_path / 'ranked'}", "epochs=2", *FAST], quiet=True)
    assert ranked["test"] and ranked["valid"] == pytest.approx(m["valid"])


def test_valid_users_validates_on_a_fixed_sample_and_tests_everyone(tmp_path, monkeypatch):
    """``valid_users=N``: every validation ranks the same seeded N validation users; the test part
    ranks them all; a count below 1 is an error naming the key."""
    import gcf.trainer as trainer_module
    calls = []
    real = trainer_module.evaluate

    def spy(model, split, part, **kw):
        calls.append((part, kw.get("users")))
        return real(model, split, part, **kw)

    monkeypatch.setattr(trainer_module, "evaluate", spy)
    run("bpr", [f"out_dir={tmp_path / 'a'}", *FAST, "epochs=2", "valid_users=40"], quiet=True)
    (p1, u1), (p2, u2), (p3, u3) = calls
    assert (p1, p2, p3) == ("valid", "valid", "test") and u3 is None
    assert len(u1) == 40 and len(np.unique(u1)) == 40 and np.array_equal(u1, u2)
    calls.clear()
    run("bpr", [f"out_dir={tmp_path / 'b'}", *FAST, "epochs=1", "valid_users=40", "seed=7"], quiet=True)
    assert len(calls[0][1]) == 40 and not np.array_equal(calls[0][1], u1)  # another seed, another sample
    with pytest.raises(ValueError, match="valid_users"):
        run("bpr", [f"out_dir={tmp_path / 'c'}", *FAST, "epochs=1", "valid_users=0"], quiet=True)


def test_save_every_keeps_a_snapshot_every_n_epochs(tmp_path):
    """``save_every=2`` copies ``last.pt`` to ``epoch-2.pt`` and ``epoch-4.pt``; each holds its epoch's
    weights (the snapshot of epoch 2 differs from the final weights)."""
    run("bpr", [f"out_dir={tmp_path}", *FAST, "epochs=5", "save_every=2", "stopping_step=100"], quiet=True)
    assert sorted(p.name for p in tmp_path.glob("epoch-*.pt")) == ["epoch-2.pt", "epoch-4.pt"]
    two = torch.load(tmp_path / "epoch-2.pt", weights_only=False)
    last = torch.load(tmp_path / "last.pt", weights_only=False)
    assert two["epoch"] == 2 and last["epoch"] == 5
    key = next(iter(last["model"]))
    assert not torch.equal(two["model"][key], last["model"][key])
