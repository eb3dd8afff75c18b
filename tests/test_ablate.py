"""The ablation runner (``python -m bridges.ablate``): grid expansion, config errors, resuming a
half-finished grid (finished runs not re-run, the interrupted one continued from its
checkpoint), the summary files (table, CSV, PNGs that open as images) and the paired statistics."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from scipy import stats

from bridges import ablate
from bridges.ablate import Ablation, Variant, expand_grid, load_ablation, paired_difference, run_ablation

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, spec: dict, name: str = "abl.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_expand_grid_is_the_cartesian_product():
    variants = expand_grid({"a": [1, 2], "b": ["x", "y", "z"], "c": 0.5})
    assert len(variants) == 6
    assert [v.name for v in variants[:3]] == ["a=1,b=x,c=0.5", "a=1,b=y,c=0.5", "a=1,b=z,c=0.5"]
    assert variants[4].overrides == {"a": 2, "b": "y", "c": 0.5}
    assert len({tuple(sorted(v.overrides.items())) for v in variants}) == 6
    assert expand_grid({"hidden_size_list": [[64, 64], [32]]})[0].name == "hidden_size_list=[64,64]"


def test_load_ablation_overrides_and_errors(tmp_path):
    spec = {"base": {"model": "lightgcn", "dataset": "ml-latest-small"}, "grid": {"n_layers": [0, 2]},
            "seeds": [1, 2], "baseline": "n_layers=2"}
    abl = load_ablation(_write(tmp_path, spec), ["seeds=[7]", "epochs=3", f"out_dir={tmp_path / 'o'}"])
    assert abl.seeds == [7] and abl.base["epochs"] == 3 and abl.out_dir == tmp_path / "o"
    assert abl.model == "lightgcn" and abl.varied == ["n_layers"] and abl.name == "abl"
    with pytest.raises(ValueError, match=r"abl.yaml: variant 'n_layer=0': unknown key.*'n_layer'"):  # a typo in a grid key
        load_ablation(_write(tmp_path, {**spec, "grid": {"n_layer": [0]}, "baseline": None}))
    with pytest.raises(ValueError, match="baseline 'nope'"):
        load_ablation(_write(tmp_path, {**spec, "baseline": "nope"}))
    with pytest.raises(ValueError, match="exactly one of 'grid'"):
        load_ablation(_write(tmp_path, {**spec, "variants": {"a": {}}}))
    with pytest.raises(ValueError, match=r"abl.yaml: unknown key\(s\) \['grids'\]"):
        load_ablation(_write(tmp_path, {"base": spec["base"], "grids": {}}))
    with pytest.raises(FileNotFoundError, match="no ablation file"):
        load_ablation(tmp_path / "missing.yaml")


def test_sequence_models_register_on_demand(tmp_path):
    """A seq model is found by importing seq.models only when a variant needs it; it gets the seq
    family's defaults (leave-one-out), as with ``python -m seq.train``."""
    spec = {"base": {"model": "sasrec"}, "variants": {"base": {}, "no-pos": {"max_len": 20}}, "seeds": [1]}
    abl = load_ablation(_write(tmp_path, spec))
    cfg, family = ablate.resolved_config(abl, abl.variants[1], 1)
    assert family == "seq" and cfg["split"] == "loo" and cfg["max_len"] == 20 and abl.varied == ["max_len"]


class Interrupted(BaseException):
    """Stands for Ctrl-C in the middle of a run (not an ``Exception``: the runner must not swallow it)."""


def test_resume_half_finished_grid(tmp_path, monkeypatch):
    spec = {"base": {"model": "bpr", "dataset": "ml-latest-small", "embedding_size": 8, "epochs": 2,
                     "learning_rate": 0.01, "topk": [20], "metrics": ["recall", "ndcg"]},
            "grid": {"reg_weight": [0.0, 0.01]}, "seeds": [1, 2], "report": ["recall@20", "ndcg@20"],
            "out_dir": str(tmp_path / "out")}
    abl = load_ablation(_write(tmp_path, spec))
    calls = []

    def counting(model, overrides, family, folder):
        calls.append(folder)
        return ablate.train_one(model, overrides, family, folder)

    # pass 1: the third run is interrupted after its first epoch's checkpoint
    from gcf.trainer import Trainer
    save_last = Trainer._save_last

    def interrupting(self, state):
        save_last(self, state)
        if len(calls) == 3 and state["epoch"] == 1:
            raise Interrupted()

    monkeypatch.setattr(Trainer, "_save_last", interrupting)
    with pytest.raises(Interrupted):
        run_ablation(abl, progress=False, train=counting)
    monkeypatch.setattr(Trainer, "_save_last", save_last)
    assert len(calls) == 3
    interrupted = ablate.run_dir(abl, abl.variants[0], 2)  # seed-major order: (v0, 1), (v1, 1), (v0, 2), (v1, 2)
    assert calls[2] == interrupted and (interrupted / "last.pt").exists()
    assert not (interrupted / "metrics.json").exists()
    assert sum(1 for _ in abl.out_dir.glob("*/seed-*/metrics.json")) == 2
    assert len(pd.read_csv(abl.out_dir / "results.csv")) == 2  # the report follows the grid as it runs

    # pass 2: only the interrupted run (continued from epoch 1) and the one never started
    calls.clear()
    results = run_ablation(abl, progress=False, train=counting)
    assert calls == [interrupted, ablate.run_dir(abl, abl.variants[1], 2)]
    assert "resumed from" in (interrupted / "train.log").read_text()
    assert "at epoch 1" in (interrupted / "train.log").read_text()
    with open(interrupted / "metrics.json") as f:
        m = json.load(f)
    assert m["epochs"] == 2 and [h["epoch"] for h in m["history"]] == [1, 2]
    assert len(results) == 4 and set(results.seed) == {1, 2}

    # pass 3: nothing left to run; the same table
    calls.clear()
    again = run_ablation(abl, progress=False, train=counting)
    assert calls == []
    pd.testing.assert_frame_equal(again, results)

    # the summary files
    out = abl.out_dir
    table = (out / "table.md").read_text()
    assert "| reg_weight=0.0 (baseline) | 0.0 | 2 |" in table and "+-" in table and "paired t" in table
    csv = pd.read_csv(out / "results.csv")
    assert len(csv) == 4 and {"variant", "seed", "reg_weight", "recall@20", "ndcg@20"} <= set(csv.columns)
    for png in ("bars.png", "line.png"):  # reg_weight is numeric: a line plot too
        with Image.open(out / png) as im:
            im.verify()
        import matplotlib.image
        img = matplotlib.image.imread(out / png)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert img.std() > 0.01  # not a blank canvas

    # a folder made with other settings is refused, not reused
    with pytest.raises(ValueError, match="embedding_size"):
        run_ablation(load_ablation(_write(tmp_path, spec), ["embedding_size=16"]), progress=False, train=counting)
    assert calls == []


def test_report_travels_to_a_fresh_machine(tmp_path):
    """Run folders stay where they were trained; the report (report_dir) is what a clone has. A fresh
    machine adding a seed trains only that seed and the report keeps the earlier ones; a row made
    with other settings is trained again (its seed is asked for) or refused (it is not)."""
    spec = {"base": {"model": "bpr", "dataset": "ml-latest-small"}, "grid": {"reg_weight": [0.0, 0.01]},
            "seeds": [1, 2], "report": ["ndcg@20"]}
    path = _write(tmp_path, spec)
    calls = []

    def fake(model, overrides, family, folder):  # metrics that depend on the variant and the seed
        calls.append((overrides["reg_weight"], overrides["seed"]))
        m = {"test": {"ndcg@20": 0.1 * overrides["seed"] + overrides["reg_weight"]}, "epochs": 3, "best_epoch": 2,
             "sec_per_epoch": 0.5, "train_sec": 1.5, "valid": {"ndcg@20": 0.2}}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps(m))
        return m

    report = tmp_path / "report"
    first = load_ablation(path, [f"out_dir={tmp_path / 'machine-a'}", f"report_dir={report}"])
    run_ablation(first, progress=False, train=fake)
    assert len(calls) == 4 and len(pd.read_csv(report / "results.csv")) == 4

    # machine B: no run folders, the report only; seed 3 added
    calls.clear()
    second = load_ablation(path, [f"out_dir={tmp_path / 'machine-b'}", f"report_dir={report}", "seeds=[3]"])
    results = run_ablation(second, progress=False, train=fake)
    assert calls == [(0.0, 3), (0.01, 3)]
    csv = pd.read_csv(report / "results.csv")
    assert sorted(zip(csv.variant, csv.seed)) == sorted((v, s) for v in ("reg_weight=0.0", "reg_weight=0.01")
                                                         for s in (1, 2, 3))
    assert list(results.seed) == [1, 2, 3, 1, 2, 3]  # variant by variant, seeds in order
    assert csv.set_index(["variant", "seed"]).loc[("reg_weight=0.01", 2), "ndcg@20"] == pytest.approx(0.21)
    assert "seeds [1, 2, 3]" in (report / "table.md").read_text()
    assert "| reg_weight=0.01 | ndcg@20 | 3 |" in (report / "table.md").read_text()

    # machine C, the default seeds: nothing to train, the same report
    calls.clear()
    run_ablation(load_ablation(path, [f"out_dir={tmp_path / 'machine-c'}", f"report_dir={report}"]),
                 progress=False, train=fake)
    assert calls == [] and len(pd.read_csv(report / "results.csv")) == 6

    # the settings changed: the seeds asked for train again; other seeds' old rows are refused
    calls.clear()
    changed = load_ablation(path, [f"out_dir={tmp_path / 'machine-d'}", f"report_dir={report}", "embedding_size=16",
                                   "seeds=[1,2,3]"])
    run_ablation(changed, progress=False, train=fake)
    assert len(calls) == 6
    assert all('"embedding_size": 16' in x for x in pd.read_csv(report / "results.csv").settings)
    with pytest.raises(ValueError, match=r"results.csv: rows made with other .*reg_weight=0.0 seed 1"):
        run_ablation(load_ablation(path, [f"out_dir={tmp_path / 'machine-e'}", f"report_dir={report}", "seeds=[4]"]),
                     progress=False, train=fake)


def test_a_key_added_later_at_its_constructor_default_keeps_finished_rows(tmp_path):
    """A report row recorded before a model option existed stays valid while the option sits at the
    constructor's default (the old behaviour); at another value, or for a key with no constructor
    default (a trainer key), the row is stale."""
    path = _write(tmp_path, {"base": {"model": "bpr", "dataset": "ml-latest-small"}, "variants": {"BPR": {}},
                             "seeds": [1]})
    abl = load_ablation(path)
    v = abl.variants[0]
    recorded = json.loads(ablate.run_settings(abl, v, 1))
    assert recorded["embedding_size"] == 64  # BPR's constructor default
    older = json.dumps({k: x for k, x in recorded.items() if k != "embedding_size"})
    assert ablate.settings_differ(abl, v, 1, older) == []
    wider = load_ablation(path, ["embedding_size=16"])
    assert ablate.settings_differ(wider, wider.variants[0], 1, older) == ["embedding_size"]
    no_lr = json.dumps({k: x for k, x in recorded.items() if k != "learning_rate"})
    assert ablate.settings_differ(abl, v, 1, no_lr) == ["learning_rate"]
    # a trainer key added later to configs/base.yaml with null (off) as its default
    assert recorded["valid_users"] is None
    before_key = json.dumps({k: x for k, x in recorded.items() if k != "valid_users"})
    assert ablate.settings_differ(abl, v, 1, before_key) == []
    sampled = load_ablation(path, ["valid_users=100"])
    assert ablate.settings_differ(sampled, sampled.variants[0], 1, before_key) == ["valid_users"]


def test_test_sampled_added_to_finished_runs_without_training(tmp_path):
    """A grid that asks for a paper's sampled protocol (``test_sampled``) after its runs finished:
    the finished folders get the labelled test metrics from their best models (the numbers of a run
    trained with ``test_sampled`` from the start) and nothing trains again; a row known only from
    the report has no such metric, and the table says over how many seeds each cell is."""
    fast = {"model": "bpr", "dataset": "ml-latest-small", "epochs": 2, "item_k": 10, "user_k": 10, "device": "cpu"}
    path = _write(tmp_path, {"base": fast, "variants": {"BPR": {}, "BPR-reg": {"reg_weight": 0.01}}, "seeds": [1],
                             "report": ["ndcg@10"]})
    report = tmp_path / "report"
    run_ablation(load_ablation(path, [f"out_dir={tmp_path / 'a'}", f"report_dir={report}"]), progress=False)
    calls = []

    def counted(model, overrides, family, folder):
        calls.append((overrides.get("reg_weight"), overrides["seed"]))
        return ablate.train_one(model, overrides, family, folder)

    asked = [f"report_dir={report}", "test_sampled=[uni100]", 'report=["ndcg@10","ndcg@10[uni100]"]']
    # the report alone, before any run has the new metric: its columns are empty, not an error
    only_report = load_ablation(path, [*asked, f"out_dir={tmp_path / 'c'}"])
    ablate.write_summary(only_report, ablate.collect_results(only_report))
    assert "| - |" in (report / "table.md").read_text()
    typo = load_ablation(path, [*asked[:2], 'report=["ndcg@10","ndgc@10"]', f"out_dir={tmp_path / 'c'}"])
    with pytest.raises(ValueError, match="ndgc@10"):
        ablate.write_summary(typo, ablate.collect_results(typo))
    # machine b (the report only) adds seed 2: seed 1's rows come from the report, without uni100
    results = run_ablation(load_ablation(path, [*asked, f"out_dir={tmp_path / 'b'}", "seeds=[1,2]"]),
                           progress=False, train=counted)
    assert calls == [(None, 2), (0.01, 2)]
    assert results.loc[results.seed == 1, "ndcg@10[uni100]"].isna().all()
    assert results.loc[results.seed == 2, "ndcg@10[uni100]"].notna().all()
    assert " (n=1) |" in (report / "table.md").read_text()
    # machine a has seed 1's folders: their test is ranked under uni100 from the best models
    calls.clear()
    results = run_ablation(load_ablation(path, [*asked, f"out_dir={tmp_path / 'a'}"]), progress=False, train=counted)
    assert calls == []
    assert results["ndcg@10[uni100]"].notna().all() and " (n=1) |" not in (report / "table.md").read_text()
    fresh = ablate.train_one("bpr", {**{k: v for k, v in fast.items() if k != "model"}, "seed": 1, "test": True,
                                     "test_sampled": ["uni100"]}, None, tmp_path / "fresh")
    row = results[(results.variant == "BPR") & (results.seed == 1)].iloc[0]
    assert row["ndcg@10[uni100]"] == pytest.approx(fresh["test"]["ndcg@10[uni100]"], abs=1e-12)
    assert row["ndcg@10"] == pytest.approx(fresh["test"]["ndcg@10"], abs=1e-12)


def test_summary_on_known_numbers(tmp_path):
    """The table's mean +- sd and the paired rows on hand-made results; named boolean variants
    get bars and no line plot."""
    abl = Ablation(name="t", model="ngcf", base={"dataset": "ml-100k"}, baseline="full", seeds=[1, 2, 3],
                   variants=[Variant("full", {}), Variant("no-f", {"feature_transform": False})],
                   out_dir=tmp_path / "o", report=["ndcg@20"], varied=["feature_transform"],
                   report_dir=tmp_path / "r")
    rows = [{"variant": v, "seed": s, "feature_transform": v == "full", "dataset": "ml-100k", "epochs": 10,
             "sec_per_epoch": 1.0, "ndcg@20": x, "run_dir": "x"}
            for v, xs in (("full", [0.1, 0.2, 0.3]), ("no-f", [0.2, 0.25, 0.45])) for s, x in zip([1, 2, 3], xs)]
    files = ablate.write_summary(abl, pd.DataFrame(rows))
    table = files["table.md"].read_text()
    assert "| full (baseline) | true | 3 | 0.2000 +- 0.1000 |" in table
    # differences 0.1, 0.05, 0.15: mean 0.1, sd 0.05, se 0.05/sqrt(3); t = 3.4641, df 2
    assert "| no-f | ndcg@20 | 3 | +0.1000 | [-0.0242, +0.2242] | 0.074 | no |" in table
    assert "line.png" not in files and (tmp_path / "r" / "bars.png").exists()
    assert "run_dir" not in pd.read_csv(tmp_path / "r" / "results.csv").columns  # no local paths in reports
    with Image.open(files["bars.png"]) as im:
        assert im.format == "PNG" and im.size[0] > 200


def test_paired_statistics_known_numbers():
    base = [1.0, 2.0, 3.0, 4.0]
    variant = [1.5, 2.1, 3.9, 4.2]  # differences 0.5, 0.1, 0.9, 0.2: mean 0.425, sd 0.359398
    r = paired_difference(variant, base)
    assert r["n"] == 4
    assert r["mean_diff"] == pytest.approx(0.425)
    se = 0.3593976442 / 2
    assert r["t"] == pytest.approx(0.425 / se, rel=1e-6)  # 2.36507
    half = 3.182446305 * se  # t_{0.975, 3} from the tables
    assert (r["ci_low"], r["ci_high"]) == (pytest.approx(0.425 - half, rel=1e-6), pytest.approx(0.425 + half, rel=1e-6))
    assert r["p"] == pytest.approx(stats.ttest_rel(variant, base).pvalue, rel=1e-9)
    assert 0.098 < r["p"] < 0.100
    assert math.isnan(paired_difference([1.0], [0.5])["ci_low"]) and paired_difference([1.0], [0.5])["n"] == 1
    same = paired_difference([0.3, 0.4], [0.3, 0.4])
    assert same["p"] == 1.0 and same["ci_low"] == same["ci_high"] == 0.0
    shifted = paired_difference([0.75, 0.5], [0.5, 0.25])  # exactly 0.25 apart in binary
    assert shifted["p"] == 0.0 and shifted["mean_diff"] == pytest.approx(0.25)


def test_shipped_ablations_resolve():
    """The shipped YAMLs name valid keys for every variant (no training here)."""
    layers = load_ablation(ROOT / "configs/ablation/lightgcn_layers.yaml")
    assert [v.overrides["n_layers"] for v in layers.variants] == [0, 1, 2, 3, 4] and layers.seeds == [1, 2, 3]
    assert layers.baseline == "n_layers=3"
    ngcf = load_ablation(ROOT / "configs/ablation/ngcf_components.yaml")
    assert [v.name for v in ngcf.variants] == ["NGCF", "NGCF-f", "NGCF-n", "NGCF-fn", "NGCF-b"]
    assert set(ngcf.varied) == {"feature_transform", "nonlinearity", "bi_interaction"}
    beauty = load_ablation(ROOT / "configs/ablation/bitvae_rec_beauty.yaml")
    assert beauty.baseline == "CARCA (attributes)" and len(beauty.variants) == 6
    cfg, _ = ablate.resolved_config(beauty, beauty.variants[1], 1)
    assert (cfg["dataset"], cfg["eval_step"], cfg["length_buckets"], cfg["latent_source"]) == \
        ("beauty", 2, True, "bivae")


@pytest.mark.parametrize("name", ["lightgcn_layers", "ngcf_components", "bitvae_rec", "bitvae_rec_beauty"])
def test_shipped_reports_match_the_settings_their_yaml_resolves_to(name):
    """Every row of a shipped report (``benchmarks/results/ablation/<name>``) carries the settings its
    YAML resolves to today. A new config key or a changed default that would change a result makes
    ``python -m bridges.ablate`` retrain (or refuse) the report's rows: this names such a change
    before it lands (make the key neutral, or re-run the report)."""
    report = ROOT / "benchmarks/results/ablation" / name
    abl = load_ablation(ROOT / "configs/ablation" / f"{name}.yaml", [f"report_dir={report}"])
    rows = pd.read_csv(report / "results.csv")
    variants = {v.name: v for v in abl.variants}
    if name == "bitvae_rec_beauty":  # a grid still under way: the rows so far
        assert set(rows["variant"]) <= set(variants) and len(rows) >= 1
    else:
        assert set(rows["variant"]) == set(variants) and len(rows) >= len(variants)
    stale = []
    for _, row in rows.iterrows():
        diff = ablate.settings_differ(abl, variants[row["variant"]], int(row["seed"]), row["settings"])
        if diff:
            stale.append(f"{row['variant']} seed {row['seed']}: {diff}")
    assert not stale, "\n".join(stale)
    assert len(ablate.reported_results(abl)) == len(rows)
