r"""``python -m bridges.ablate configs/ablation/<name>.yaml [key=value ...]``: an ablation grid.

Runs every variant of a base config over several seeds, each run exactly as ``python -m
gcf.train`` / ``python -m seq.train`` would (:func:`gcf.train.run`, in this process), then
summarises. The YAML::

    name: lightgcn_layers            # default: the file's stem
    description: ...                 # one line, copied into the table
    base: {model: lightgcn, dataset: ml-100k}   # any keys of the model (configs/model/<model>.yaml)
    grid: {n_layers: [0, 1, 2, 3, 4]}           # cartesian product of the lists, or instead:
    # variants: {NGCF: {}, NGCF-f: {feature_transform: false}}   # named variants, any keys
    seeds: [1, 2, 3]                 # every variant runs once per seed (the seed sets split and init)
    baseline: n_layers=3             # the variant the others are compared with (default: the first)
    report: [recall@20, ndcg@20]     # test metrics in the table and plots (default: all)
    family: null                     # defaults layer (configs/family/); default: the model's own
    out_dir: null                    # default: runs/ablation/<name>
    report_dir: null                 # also write the summary files here (e.g. benchmarks/results/...)

``key=value`` arguments set the runner keys above (``seeds=[1]``, ``out_dir=...``) or else a
key of ``base`` (``data_dir=../shared/data dataset=ml-100k epochs=50``); a variant's own keys
win over both. Every run's config is resolved before anything trains, so a wrong key fails at
once, naming the variant. Grid variants are named ``key=value`` (``n_layers=3``;
``a=1,b=2`` for several keys).

``--summary-only`` writes the summary of the runs finished so far and trains nothing.

Outputs under ``out_dir``: one folder per (variant, seed), ``<variant>/seed-<seed>/``, holding the
run's usual files (``config.yaml``, ``train.log``, ``best.pt``, ``last.pt``, ``metrics.json``) plus
``ablation.json`` (what the runner asked for) and ``console.log`` (the run's console output);
then ``results.csv`` (one row per run), ``table.md`` (mean +- sample standard deviation per
metric and the number of seeds; the paired comparison), ``paired.csv`` and the plots
``bars.png`` (means with +-1 sd error bars and each seed's value) and, when exactly one key
varies and its values are numbers, ``line.png``.

With ``report_dir``, the report accumulates: its ``results.csv`` rows made with the same
settings (the ``settings`` column) count as finished runs, since run folders stay on the machine
that trained them and the report is what travels with the repository; so a fresh clone adds
``seeds=[4]`` without re-training seeds 1-3, and the report keeps them. Rows of other settings are
re-trained (seeds this run asks for) or refused with an error (other seeds). A model option added
after a row was written is no difference while it sits at the model constructor's default (options
are added with the default that keeps the old behaviour): :func:`settings_differ`.

Runs go seed by seed (every variant at the first seed, then the next), so a grid stopped early
still has paired seeds, and the summary files are rewritten after every finished run. Resuming: a run folder with ``metrics.json`` is finished and is not run again; one without it
(interrupted) runs with ``resume=true``, so the trainer continues from its ``last.pt``. A folder
made with other settings than the YAML asks for now is an error, never silently reused.
``test_sampled`` (e.g. ``[uni100]``, a paper's sampled protocol next to full ranking) changes
only what is measured after training: a finished run folder without those metrics gets them from
its best model (:func:`gcf.runs.add_test_metrics`, nothing trains); a row known only from the
report keeps them empty (the table's n counts the seeds that have each metric).

Paired comparison: variant and baseline runs with the same seed share the split and the
initialisation seed, so the per-seed differences :math:`d_s` are paired. Over the :math:`n` seeds
both have, the table gives :math:`\bar d`, the 95% interval
:math:`\bar d \pm t_{0.975,\,n-1}\, s_d/\sqrt n` and the two-sided paired t-test p-value
(:math:`t = \bar d / (s_d/\sqrt n)`, :math:`n-1` degrees of freedom). With 3 seeds the interval
is wide (:math:`t_{0.975,2} = 4.30`): a difference whose interval covers 0 is within seed noise.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import itertools
import json
import logging
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from tqdm.auto import tqdm

from gcf.config import config_dir, parse_overrides, read_yaml, resolve_config
from gcf.models import MODELS, get_model_class, model_family
from gcf.metrics import monitor_score
from gcf.runs import add_test_metrics, missing_protocols
from gcf.trainer import test_protocols, valid_metric_name

RUNNER_KEYS = ("name", "description", "base", "grid", "variants", "seeds", "baseline", "report", "family",
               "out_dir", "report_dir")
# Packages that register models outside gcf, imported only when a run needs one of their models.
MODEL_MODULES = ("seq.models", "bridges.models")
# Keys that do not change a run's result: a finished run made with another value is still reused.
# (``test``: whether the trainer ranks the test split; an ablation always has it ranked.
# ``test_sampled``: extra test protocols, added to finished runs without training them again.)
NEUTRAL_KEYS = ("data_dir", "progress", "eval_batch_size", "test", "test_sampled")

log = logging.getLogger("bridges.ablate")


@dataclass
class Variant:
    name: str
    overrides: dict


@dataclass
class Ablation:
    name: str
    model: str
    base: dict                      # base keys (without ``model``)
    variants: list[Variant]
    seeds: list[int]
    baseline: str
    out_dir: Path
    report: list[str] | None = None
    family: str | None = None
    description: str = ""
    report_dir: Path | None = None
    source: str = ""
    varied: list[str] = field(default_factory=list)  # keys whose resolved value differs between variants


def format_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    return str(value)


def expand_grid(grid: dict) -> list[Variant]:
    """The cartesian product of ``grid``'s lists, first key slowest: ``{"a": [1, 2], "b": [3]}`` ->
    ``a=1,b=3``, ``a=2,b=3``."""
    keys = list(grid)
    values = [v if isinstance(v, list) else [v] for v in grid.values()]
    return [Variant(",".join(f"{k}={format_value(v)}" for k, v in zip(keys, combo)), dict(zip(keys, combo)))
            for combo in itertools.product(*values)]


def ensure_registered(model: str) -> None:
    """Import the package that registers ``model`` when gcf does not know it (``seq.models`` for
    the sequence models); an unknown name is the registry's error, listing the known ones."""
    for module in MODEL_MODULES:
        if model.lower() in MODELS:
            return
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
    get_model_class(model)


def load_ablation(path: str | Path, overrides=()) -> Ablation:
    """Read an ablation YAML (``key=value`` overrides applied); every error names the file and key."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no ablation file {path}")
    spec = read_yaml(path)
    unknown = sorted(set(spec) - set(RUNNER_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; expected {', '.join(RUNNER_KEYS)}")
    base = dict(spec.get("base") or {})
    if not isinstance(spec.get("base"), dict) or "model" not in base:
        raise ValueError(f"{path}: 'base' must be a mapping with a 'model' key (e.g. base: {{model: lightgcn}})")
    for key, value in parse_overrides(overrides).items():
        if key in RUNNER_KEYS and key != "base":
            spec[key] = value
        else:
            base[key] = value
    if ("grid" in spec) == ("variants" in spec):
        raise ValueError(f"{path}: give exactly one of 'grid' (lists of values) or 'variants' (named overrides)")
    if "grid" in spec:
        if not isinstance(spec["grid"], dict) or not spec["grid"]:
            raise ValueError(f"{path}: 'grid' must map keys to lists of values, e.g. grid: {{n_layers: [1, 2, 3]}}")
        variants = expand_grid(spec["grid"])
    else:
        named = spec["variants"]
        if not isinstance(named, dict) or not named:
            raise ValueError(f"{path}: 'variants' must map names to overrides, e.g. variants: {{base: {{}}, "
                             f"no-dropout: {{message_dropout: 0.0}}}}")
        for name, ov in named.items():
            if ov is not None and not isinstance(ov, dict):
                raise ValueError(f"{path}: variant {name!r} must be a mapping of key: value, got {ov!r}")
        variants = [Variant(str(name), dict(ov or {})) for name, ov in named.items()]
    seeds = spec.get("seeds", [base.get("seed", 2020)])
    seeds = [seeds] if isinstance(seeds, int) else seeds
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"{path}: 'seeds' must be a list of integers, got {seeds!r}")
    names = [v.name for v in variants]
    baseline = str(spec.get("baseline") or names[0])
    if baseline not in names:
        raise ValueError(f"{path}: baseline {baseline!r} is not a variant; variants: {', '.join(names)}")
    report = spec.get("report")
    if report is not None and (not isinstance(report, list) or not report):
        raise ValueError(f"{path}: 'report' must be a list of metric names like [recall@20, ndcg@20]")
    name = str(spec.get("name") or path.stem)
    abl = Ablation(name=name, model=str(base.pop("model")), base=base, variants=variants, seeds=list(seeds),
                   baseline=baseline, out_dir=Path(spec.get("out_dir") or f"runs/ablation/{name}"), report=report,
                   family=spec.get("family"), description=str(spec.get("description") or "").strip(),
                   report_dir=Path(spec["report_dir"]) if spec.get("report_dir") else None, source=str(path))
    configs = [resolved_config(abl, v, abl.seeds[0])[0] for v in variants]  # fails now on a bad key
    abl.varied = sorted({k for c in configs for k in c if k not in ("out_dir", "seed")
                         and len({json.dumps(cc.get(k), sort_keys=True, default=str) for cc in configs}) > 1},
                        key=lambda k: next((i for i, v in enumerate(variants) if k in v.overrides), 99))
    return abl


def run_overrides(abl: Ablation, variant: Variant, seed: int) -> tuple[str, dict]:
    """``(model, overrides)`` of one run (without its output folder)."""
    ov = {**abl.base, **variant.overrides}
    model = str(ov.pop("model", abl.model))
    ov["seed"] = seed
    ov["test"] = True  # the report is made of test metrics
    return model, ov


def resolved_config(abl: Ablation, variant: Variant, seed: int) -> tuple[dict, str | None]:
    model, ov = run_overrides(abl, variant, seed)
    try:
        ensure_registered(model)
        family = model_family(model) if abl.family is None else abl.family
        cfg, _ = resolve_config(model, ov, family=family)
    except ValueError as e:
        raise ValueError(f"{abl.source}: variant {variant.name!r}: {e}") from None
    return cfg, family


def run_dir(abl: Ablation, variant: Variant, seed: int) -> Path:
    return abl.out_dir / re.sub(r"[^A-Za-z0-9._=,+-]+", "_", variant.name) / f"seed-{seed}"


def _request(abl: Ablation, variant: Variant, seed: int) -> dict:
    model, ov = run_overrides(abl, variant, seed)
    return {"ablation": abl.name, "variant": variant.name, "model": model, "seed": seed, "family": abl.family,
            "overrides": {k: v for k, v in sorted(ov.items()) if k not in NEUTRAL_KEYS}}


def _check_folder(folder: Path, request: dict) -> None:
    path = folder / "ablation.json"
    if not path.exists():
        return
    with open(path) as f:
        before = json.load(f)
    before["overrides"] = {k: v for k, v in before.get("overrides", {}).items() if k not in NEUTRAL_KEYS}
    if json.loads(json.dumps(request)) != before:
        old, new = before.get("overrides", {}), request["overrides"]
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ValueError(f"{path}: this run folder was made with other settings (differing: "
                         f"{', '.join(diff) or 'variant/model/seed'}); remove the folder or use another out_dir")


def run_settings(abl: Ablation, variant: Variant, seed: int) -> str:
    """One run's resolved config (every key that can change its result: the shipped defaults as well
    as the YAML's overrides) as a JSON string: the ``settings`` column of ``results.csv``, so a row
    can be matched to the configs on another machine."""
    cfg, _ = resolved_config(abl, variant, seed)
    return _settings(cfg)


def _settings(cfg: dict) -> str:
    return json.dumps({k: v for k, v in cfg.items() if k not in NEUTRAL_KEYS and k != "out_dir"},
                      sort_keys=True, default=str)


@functools.lru_cache(maxsize=1)
def _off_by_default() -> frozenset:
    """The trainer keys of ``configs/base.yaml`` whose default is ``null`` (off), read once."""
    return frozenset(k for k, v in read_yaml(config_dir() / "base.yaml").items() if v is None)


def settings_differ(abl: Ablation, variant: Variant, seed: int, recorded: str) -> list[str]:
    """The keys whose value differs between a report row's ``settings`` and what the run resolves
    to now. A model key on one side only counts as the same when its value is the model
    constructor's default: an option added later with a default that keeps the old behaviour
    (e.g. CARCA's ``length_buckets=false``) does not make the finished rows stale. So does a
    trainer key of ``configs/base.yaml`` whose default is ``null`` (off, e.g. ``valid_users``)
    while it is ``null``; other trainer keys (``learning_rate``) must be on both sides."""
    cfg, _ = resolved_config(abl, variant, seed)
    now, old = json.loads(_settings(cfg)), json.loads(recorded)
    params = {}  # the constructor's keyword defaults, through **kwargs passed on to a base class
    for klass in get_model_class(cfg["model"]).__mro__:
        sig = inspect.signature(klass.__init__).parameters if "__init__" in vars(klass) else {}
        for name, p in sig.items():
            params.setdefault(name, p)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.values()) and sig:
            break
    unset = object()
    off_by_default = _off_by_default()

    def default_of(key):
        p = params.get(key)
        if p is None:
            return None if key in off_by_default else unset
        return unset if p.default is inspect.Parameter.empty else json.loads(json.dumps(p.default))

    return [key for key in sorted(set(now) | set(old))  # a side without the key holds the default
            if now.get(key, default_of(key)) != old.get(key, default_of(key))]


def reported_results(abl: Ablation) -> pd.DataFrame:
    """The rows of ``report_dir/results.csv`` made with this ablation's settings.

    Run folders stay on the machine that trained them (``runs/`` is not in git); the report
    travels. Its rows count as finished runs, so a fresh clone adds ``seeds=[4]`` without training
    seeds 1-3 again and the report keeps them. A row of a seed this run asks for whose settings
    differ (a changed YAML or default) is dropped and trains again; a row of another seed with other
    or unrecorded settings is an error (the report would mix settings); rows of variants the YAML
    no longer has are dropped with a warning."""
    path = abl.report_dir / "results.csv" if abl.report_dir else None
    if path is None or not path.exists():
        return pd.DataFrame()
    old = pd.read_csv(path)
    if old.empty:
        return old
    variants = {v.name: v for v in abl.variants}
    keep, stale = [], []
    for i, row in old.iterrows():
        name, seed = row["variant"], int(row["seed"])
        if name not in variants:
            log.warning("%s: variant %r is not in %s any more; its rows are dropped", path, name, abl.source)
            continue
        recorded = row.get("settings")
        if isinstance(recorded, str) and not settings_differ(abl, variants[name], seed, recorded):
            keep.append(i)
        elif seed not in abl.seeds:
            stale.append(f"{name} seed {seed}")
    if stale:
        raise ValueError(f"{path}: rows made with other (or unrecorded) settings than {abl.source} asks for now: "
                         f"{', '.join(stale)}; re-run those seeds too (seeds=[...]) or write the report elsewhere "
                         f"(report_dir=...)")
    return old.loc[keep].reset_index(drop=True)


def train_one(model: str, overrides: dict, family: str | None, folder: Path) -> dict:
    """One run through :func:`gcf.train.run`; its console output goes to ``folder/console.log``
    (``train.log`` has the full log), so the runner's progress bar stays readable."""
    from gcf.train import run, setup_logging

    folder.mkdir(parents=True, exist_ok=True)
    f = open(folder / "console.log", "a")
    try:
        with contextlib.redirect_stderr(f):
            return run(model, {**overrides, "out_dir": str(folder), "resume": True}, family=family)
    finally:
        setup_logging(None)  # close the run's train.log; gcf's log back to the console, warnings only
        logging.getLogger("gcf").setLevel(logging.WARNING)
        f.close()


def run_ablation(abl: Ablation, progress: bool = True, train=train_one) -> pd.DataFrame:
    """Run every unfinished (variant, seed), write the summary files; returns the results table.
    ``train(model, overrides, family, folder) -> metrics`` is :func:`train_one` (tests count calls)."""
    abl.out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(v, s) for s in abl.seeds for v in abl.variants]  # seed-major: a stopped grid still has paired seeds
    for v, s in jobs:  # a stale folder fails before anything trains
        _check_folder(run_dir(abl, v, s), _request(abl, v, s))
    reported = reported_results(abl)
    elsewhere = set(zip(reported.variant, reported.seed.astype(int))) if not reported.empty else set()
    todo = [(v, s) for v, s in jobs
            if not (run_dir(abl, v, s) / "metrics.json").exists() and (v.name, s) not in elsewhere]
    say = tqdm.write if progress else print
    from_report = sum((v.name, s) in elsewhere and not (run_dir(abl, v, s) / "metrics.json").exists() for v, s in jobs)
    say(f"{abl.name}: {len(jobs)} runs ({len(abl.variants)} variants x {len(abl.seeds)} seeds), "
        f"{len(jobs) - len(todo)} finished{f' ({from_report} in {abl.report_dir}/results.csv)' if from_report else ''}, "
        f"{len(todo)} to run; {abl.out_dir}")
    add_missing_protocols(abl, jobs, say)  # finished runs: the test protocols asked for since
    start = time.perf_counter()
    failed = []
    bar = tqdm(todo, total=len(todo), disable=not progress, dynamic_ncols=True, unit="run")
    for i, (variant, seed) in enumerate(bar):
        folder = run_dir(abl, variant, seed)
        bar.set_description(f"{variant.name} seed {seed}")
        bar.set_postfix(left=len(todo) - i)
        folder.mkdir(parents=True, exist_ok=True)
        request = _request(abl, variant, seed)
        with open(folder / "ablation.json", "w") as f:
            json.dump(request, f, indent=2)
        cfg, family = resolved_config(abl, variant, seed)
        t0 = time.perf_counter()
        resumed = (folder / "last.pt").exists()
        try:
            metrics = train(request["model"], run_overrides(abl, variant, seed)[1], family, folder)
        except Exception as e:  # noqa: BLE001  (one failed run must not lose the others; re-run resumes it)
            failed.append(f"{variant.name} seed {seed}: {type(e).__name__}: {e}")
            say(f"[{i + 1}/{len(todo)}] {variant.name} seed {seed} FAILED: {type(e).__name__}: {e}")
            continue
        metric = valid_metric_name(cfg)
        score = valid_score(metrics, metric)
        say(f"[{i + 1}/{len(todo)}] {variant.name} seed {seed}{' (resumed)' if resumed else ''}: valid {metric} "
            f"{score:.4f}, {metrics.get('epochs')} epochs, {time.perf_counter() - t0:.0f} s; "
            f"{len(todo) - i - 1} left, elapsed {time.perf_counter() - start:.0f} s")
        if i + 1 < len(todo):  # the tables and plots follow the grid: a grid stopped mid-way has its report
            write_summary(abl, collect_results(abl))
    bar.set_postfix(left=0)
    bar.close()
    results = collect_results(abl)
    write_summary(abl, results)
    if failed:
        say("failed runs (re-run the same command to retry them):\n  " + "\n  ".join(failed))
    return results


def add_missing_protocols(abl: Ablation, jobs, say=print) -> None:
    """Rank the test part of finished runs under the ``test_sampled`` protocols they lack (runs
    finished before the YAML asked for them), from their best models; nothing trains."""
    for variant, seed in jobs:
        folder = run_dir(abl, variant, seed)
        if not (folder / "metrics.json").exists() or not (folder / "best.pt").exists():
            continue
        with open(folder / "metrics.json") as f:
            test = json.load(f).get("test", {})
        cfg, _ = resolved_config(abl, variant, seed)
        missing = missing_protocols(test, test_protocols(cfg))
        if missing:
            t0 = time.perf_counter()
            add_test_metrics(folder, missing)
            say(f"{variant.name} seed {seed}: test ranked under {', '.join(missing)} from its best model "
                f"({time.perf_counter() - t0:.0f} s)")


def valid_score(metrics: dict, metric: str) -> float:
    """The run's best validation score on ``valid_metric`` (a signed sum such as ``auc-logloss``
    too), NaN when the run kept no validation."""
    try:
        return monitor_score(metrics.get("valid", {}), metric)
    except ValueError:
        return float("nan")


def collect_results(abl: Ablation) -> pd.DataFrame:
    """One row per finished run: variant, seed, the varied keys, run facts and every test metric."""
    rows = []
    for variant in abl.variants:
        for seed in abl.seeds:
            folder = run_dir(abl, variant, seed)
            if not (folder / "metrics.json").exists():
                continue
            with open(folder / "metrics.json") as f:
                m = json.load(f)
            cfg, _ = resolved_config(abl, variant, seed)
            metric = valid_metric_name(cfg)
            row = {"variant": variant.name, "seed": seed}
            row.update({k: format_value(cfg.get(k)) if isinstance(cfg.get(k), (list, tuple)) else cfg.get(k)
                        for k in abl.varied})
            row.update({"model": cfg["model"], "dataset": cfg["dataset"], "best_epoch": m.get("best_epoch"),
                        "epochs": m.get("epochs"), "sec_per_epoch": m.get("sec_per_epoch"),
                        "train_sec": m.get("train_sec"), f"valid {metric}": valid_score(m, metric)})
            row.update(m.get("test", {}))
            row["settings"] = run_settings(abl, variant, seed)
            row["run_dir"] = str(folder)
            rows.append(row)
    results = pd.DataFrame(rows)
    reported = reported_results(abl)
    if reported.empty:
        return results
    here = set(zip(results.variant, results.seed)) if not results.empty else set()
    reported = reported[[(v, int(s)) not in here for v, s in zip(reported.variant, reported.seed)]]
    order = {v.name: i for i, v in enumerate(abl.variants)}
    results = pd.concat([results, reported], ignore_index=True)
    results["seed"] = results.seed.astype(int)
    return results.sort_values(["variant", "seed"], key=lambda c: c.map(order) if c.name == "variant" else c,
                               kind="stable").reset_index(drop=True)


def paired_difference(variant, baseline, confidence: float = 0.95) -> dict:
    """Paired comparison of per-seed values (same order): ``n``, mean difference ``variant -
    baseline``, its ``confidence`` interval from the t distribution with ``n-1`` degrees of
    freedom, ``t`` and the two-sided p-value. ``n < 2``: no interval (nan). All differences
    equal: interval of width 0, p = 1 when they are 0, else 0."""
    d = np.asarray(variant, dtype=float) - np.asarray(baseline, dtype=float)
    d = d[~np.isnan(d)]  # a seed without the metric on either side (a row known only from the report)
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    out = {"n": n, "mean_diff": mean, "ci_low": float("nan"), "ci_high": float("nan"), "t": float("nan"),
           "p": float("nan")}
    if n < 2:
        return out
    se = float(d.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
    if se == 0:
        t, p = (0.0, 1.0) if mean == 0 else (math.copysign(math.inf, mean), 0.0)
    else:
        t = mean / se
        p = float(2 * stats.t.sf(abs(t), n - 1))
    out.update(ci_low=mean - half, ci_high=mean + half, t=t, p=p)
    return out


def report_metrics(abl: Ablation, results: pd.DataFrame) -> list[str]:
    """The metrics of the table and plots: ``report``, or every test metric. A ``report`` metric no
    row has is an error (a typo), unless it carries a ``test_sampled`` protocol's label: rows from
    before the protocol was asked for lack it (shown as ``-``)."""
    if abl.report:
        later = {f"[{p}]" for p in test_protocols(resolved_config(abl, abl.variants[0], abl.seeds[0])[0])}
        missing = [m for m in abl.report if not results.empty and m not in results.columns
                   and not any(m.endswith(label) for label in later)]
        if missing:
            known = [c for c in results.columns if "@" in c or c in ("auc", "logloss")]
            raise ValueError(f"{abl.source}: report metric(s) {missing} not in the test metrics: {', '.join(known)}")
        return list(abl.report)
    return [c for c in results.columns if "@" in c and not c.startswith("valid ")] or \
        [c for c in ("auc", "logloss") if c in results.columns]


def paired_table(abl: Ablation, results: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    rows = []
    base = results[results.variant == abl.baseline].set_index("seed")
    for variant in abl.variants:
        if variant.name == abl.baseline:
            continue
        other = results[results.variant == variant.name].set_index("seed")
        seeds = sorted(set(base.index) & set(other.index))
        for m in metrics:
            r = paired_difference(other.loc[seeds, m].to_numpy(), base.loc[seeds, m].to_numpy())
            if r["n"] == 0:  # no seed with the metric on both sides yet (a grid still running)
                continue
            rows.append({"variant": variant.name, "baseline": abl.baseline, "metric": m, **r})
    return pd.DataFrame(rows)


def _mean_sd(values: np.ndarray) -> str:
    """``mean +- sd`` of the non-missing values, with ``(n=k)`` when some seeds lack the metric."""
    have = values[~np.isnan(values)]
    if len(have) == 0:
        return "-"
    sd = f"{np.std(have, ddof=1):.4f}" if len(have) > 1 else "n/a"
    return f"{np.mean(have):.4f} +- {sd}" + (f" (n={len(have)})" if len(have) < len(values) else "")


def markdown(abl: Ablation, results: pd.DataFrame, paired: pd.DataFrame, metrics: list[str]) -> str:
    first = results.iloc[0] if not results.empty else {}
    sampled = [m for m in metrics if "[" in m]
    protocol = ("full ranking" if not sampled else "sampled negatives as labelled" if len(sampled) == len(metrics)
                else "full ranking, and sampled negatives where labelled (e.g. `" + sampled[0] + "`)")
    lines = [f"## Ablation `{abl.name}`: {abl.model} on {first.get('dataset', abl.base.get('dataset', '?'))}", ""]
    if abl.description:
        lines += [abl.description, ""]
    base_keys = ", ".join(f"{k}={format_value(v)}" for k, v in abl.base.items() if k not in NEUTRAL_KEYS)
    seeds = sorted({int(x) for x in results.seed}) if not results.empty else abl.seeds
    lines += [f"Source: `{abl.source}`{f' (base: {base_keys})' if base_keys else ''}; seeds {seeds}. "
              f"Test metrics, {protocol}, best validation "
              f"epoch (early stopping on validation); mean +- sample sd over the seeds (n).", ""]
    head = ["variant", *abl.varied, "n", *metrics, "epochs (median)", "s/epoch (median)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant in abl.variants:
        rows = results[results.variant == variant.name] if not results.empty else results
        if rows.empty:
            lines.append("| " + " | ".join([variant.name] + ["-"] * (len(head) - 1)) + " |")
            continue
        cells = [variant.name + (" (baseline)" if variant.name == abl.baseline else "")]
        cells += [format_value(rows.iloc[0][k]) for k in abl.varied]
        cells += [str(len(rows))] + [_mean_sd(rows[m].to_numpy(dtype=float)) for m in metrics]
        cells += [f"{rows.epochs.median():.0f}", f"{rows.sec_per_epoch.median():.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if not paired.empty:
        lines += ["", f"Paired difference against `{abl.baseline}` over the seeds both have (n): mean of "
                  f"(variant - baseline), 95% interval from the t distribution with n-1 degrees of freedom, "
                  f"two-sided paired t-test p-value.", "",
                  "| variant | metric | n | mean difference | 95% CI | p (paired t) | CI excludes 0 |",
                  "|---|---|---|---|---|---|---|"]
        for r in paired.itertuples():
            ci = "n/a" if math.isnan(r.ci_low) else f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}]"
            p = "n/a" if math.isnan(r.p) else f"{r.p:.3f}"
            excl = "n/a" if math.isnan(r.ci_low) else ("yes" if r.ci_low > 0 or r.ci_high < 0 else "no")
            lines.append(f"| {r.variant} | {r.metric} | {r.n} | {r.mean_diff:+.4f} | {ci} | {p} | {excl} |")
    return "\n".join(lines) + "\n"


def _numeric_key(abl: Ablation, results: pd.DataFrame) -> str | None:
    if len(abl.varied) != 1 or results.empty:
        return None
    key = abl.varied[0]
    values = results[key].tolist()
    ok = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
             for v in values)
    return key if ok else None


def plot_bars(abl: Ablation, results: pd.DataFrame, metrics: list[str], path: Path) -> None:
    """One panel per metric: per-variant means with +-1 sd error bars, each seed as a dot."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, nothing global

    names = [v.name for v in abl.variants if (results.variant == v.name).any()]
    fig = Figure(figsize=(max(4.0, 0.9 * len(names) + 1.5) * len(metrics), 4.2), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    x = np.arange(len(names))
    for ax, m in zip(axes, metrics):
        groups = [results.loc[results.variant == n, m].to_numpy(dtype=float) for n in names]
        groups = [g[~np.isnan(g)] for g in groups]  # seeds without the metric (rows from the report)
        means = [g.mean() if len(g) else np.nan for g in groups]
        sds = [g.std(ddof=1) if len(g) > 1 else 0.0 for g in groups]
        colors = ["tab:orange" if n == abl.baseline else "tab:blue" for n in names]
        ax.bar(x, means, yerr=sds, capsize=4, color=colors, alpha=0.8)
        for i, g in enumerate(groups):
            ax.plot(np.full(len(g), x[i]) + np.linspace(-0.15, 0.15, len(g)), g, "k.", ms=4)
        have = [(mu, sd, g) for mu, sd, g in zip(means, sds, groups) if len(g)]
        lo = min((g.min() for _, _, g in have), default=0.0)
        hi = max((max(mu + sd, g.max()) for mu, sd, g in have), default=1.0)
        ax.set_ylim(max(0.0, lo - 0.25 * (hi - lo) - 1e-3), hi + 0.1 * (hi - lo) + 1e-3)
        ax.set_xticks(x, names, rotation=30 if max(map(len, names)) > 8 else 0, ha="right" if
                      max(map(len, names)) > 8 else "center")
        ax.set_title(m)
        ax.grid(axis="y", alpha=0.3)
    n = results.groupby("variant").size()
    fig.suptitle(f"{abl.name}: test mean +- sd over {n.min()}-{n.max()} seeds (orange: baseline)"
                 if n.min() != n.max() else f"{abl.name}: test mean +- sd over {n.min()} seeds (orange: baseline)")
    fig.savefig(path, dpi=110)


def plot_line(abl: Ablation, results: pd.DataFrame, metrics: list[str], key: str, path: Path) -> None:
    """One panel per metric: mean +- sd against the numeric varied key."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(metrics), 3.8), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    g = results.groupby(key)
    xs = np.array(sorted(g.groups), dtype=float)
    for ax, m in zip(axes, metrics):
        means = np.array([g.get_group(v)[m].mean() for v in sorted(g.groups)])
        sds = np.array([g.get_group(v)[m].std(ddof=1) if len(g.get_group(v)) > 1 else 0.0 for v in sorted(g.groups)])
        ax.errorbar(xs, means, yerr=sds, marker="o", capsize=4)
        ax.fill_between(xs, means - sds, means + sds, alpha=0.15)
        ax.set_xlabel(key)
        ax.set_title(m)
        if np.allclose(xs, np.round(xs)):
            ax.set_xticks(xs)
        ax.grid(alpha=0.3)
    n = results.groupby("variant").size()
    fig.suptitle(f"{abl.name}: test mean +- sd over {n.min()}" + (f"-{n.max()}" if n.max() != n.min() else "") + " seeds")
    fig.savefig(path, dpi=110)


def write_summary(abl: Ablation, results: pd.DataFrame) -> dict:
    """``results.csv``, ``table.md``, ``paired.csv``, ``bars.png`` (and ``line.png``) under
    ``out_dir`` and, when set, ``report_dir``; returns ``{name: path}`` of the files in ``out_dir``."""
    folders = [abl.out_dir] + ([abl.report_dir] if abl.report_dir else [])
    if results.empty:
        log.warning("%s: no finished runs, nothing to summarise", abl.name)
        return {}
    metrics = report_metrics(abl, results)
    results = results.assign(**{m: np.nan for m in metrics if m not in results.columns})
    paired = paired_table(abl, results, metrics)
    text = markdown(abl, results, paired, metrics)
    key = _numeric_key(abl, results)
    written = {}
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        table = results if folder == abl.out_dir else results.drop(columns=["run_dir"], errors="ignore")  # no local paths
        table.to_csv(folder / "results.csv", index=False)
        paired.to_csv(folder / "paired.csv", index=False)
        (folder / "table.md").write_text(text)
        plot_bars(abl, results, metrics, folder / "bars.png")
        if key:
            plot_line(abl, results, metrics, key, folder / "line.png")
        if folder == abl.out_dir:
            written = {n: folder / n for n in ("results.csv", "paired.csv", "table.md", "bars.png", "line.png")
                       if (folder / n).exists()}
    return written


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    summary_only = "--summary-only" in argv
    argv = [a for a in argv if a != "--summary-only"]
    try:
        abl = load_ablation(argv[0], argv[1:])
        if summary_only:  # tables and plots of the runs finished so far; nothing trains
            results = collect_results(abl)
            write_summary(abl, results)
        else:
            results = run_ablation(abl)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if results.empty:
        return 1
    print()
    print((abl.out_dir / "table.md").read_text())
    print("files: " + ", ".join(str(abl.out_dir / n) for n in ("results.csv", "table.md", "paired.csv", "bars.png",
                                                               "line.png") if (abl.out_dir / n).exists()))
    done = set(zip(results.variant, results.seed.astype(int)))
    return 0 if all((v.name, s) in done for v in abl.variants for s in abl.seeds) else 1


if __name__ == "__main__":
    sys.exit(main())
