"""Configs: YAML files in ``configs/`` plus ``key=value`` overrides, validated.

``resolve_config("lightgcn", ["dataset=ml-100k", "n_layers=2"])`` merges, lowest first,
``configs/base.yaml``, ``configs/data/<dataset>.yaml``, the task's ``configs/task/<task>.yaml``
(``task=ranking``, the default, or ``task=ctr``: click labels from ratings, AUC and LogLoss),
the model family's ``configs/family/<family>.yaml`` (``seq`` for the sequence models:
leave-one-out, HR/NDCG at 5/10/20), the ``train:`` section of ``configs/model/<model>.yaml``,
the model's own keys (its ``model:`` section), and the overrides. A key that none of these
files defines is an error naming it and listing the valid keys, never silently ignored; a
value whose type differs from its default's (``epochs=abc``) is an error naming the key and
the expected type.
"""
from __future__ import annotations

import re

import yaml

from .data.datasets import dataset_config
from .yamlfiles import config_dir, read_yaml

__all__ = ["resolve_config", "model_yaml", "parse_overrides", "check_types", "config_dir", "read_yaml"]


def model_yaml(model: str) -> tuple[dict, dict]:
    """``(model keys, train overrides)`` of ``configs/model/<model>.yaml``."""
    path = config_dir() / "model" / f"{model.lower()}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))
        raise ValueError(f"no config {path} for model {model!r}; known models: {', '.join(known)}")
    data = read_yaml(path)
    extra = set(data) - {"model", "train"}
    if extra:
        raise ValueError(f"{path}: unknown section(s) {sorted(extra)}; expected 'model' and 'train'")
    return dict(data.get("model") or {}), dict(data.get("train") or {})


def family_yaml(family: str | None) -> dict:
    """The keys of ``configs/family/<family>.yaml`` (``{}`` for no family)."""
    if not family:
        return {}
    path = config_dir() / "family" / f"{family}.yaml"
    if not path.exists():
        raise ValueError(f"no family config {path}")
    return read_yaml(path)


def task_yaml(task: str | None) -> dict:
    """The keys of ``configs/task/<task>.yaml`` (``{}`` for the default task, ranking, when it
    has no file)."""
    folder = config_dir() / "task"
    path = folder / f"{task}.yaml"
    if path.exists():
        return read_yaml(path)
    if task in (None, "ranking"):
        return {}
    known = sorted({"ranking", *(p.stem for p in folder.glob("*.yaml"))})
    raise ValueError(f"unknown task {task!r} (no {path}); known tasks: {', '.join(known)}")


def parse_overrides(args) -> dict:
    """``["a=1", "b=[1, 2]"]`` -> ``{"a": 1, "b": [1, 2]}`` (values parsed as YAML)."""
    if isinstance(args, dict):
        return dict(args)
    out = {}
    for arg in args:
        if "=" not in arg:
            raise ValueError(f"argument {arg!r}: expected key=value")
        key, value = arg.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value) if value != "" else None
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _type_name(default) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, (list, tuple)):
        return "a list"
    if isinstance(default, dict):
        return "a mapping"
    return "a string"


def _same_type(value, default) -> bool:
    if value is None or default is None:  # null resets a key; a null default takes anything
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    if isinstance(default, dict):
        return isinstance(value, dict)
    if isinstance(default, str):  # a tri-state key (default "auto") also takes true / false
        return isinstance(value, str) or (default == "auto" and isinstance(value, bool))
    return True


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def check_types(values: dict, defaults: dict, where: str) -> dict:
    """Each ``values[key]`` must have the type of ``defaults[key]`` (an int is a valid float);
    returns ``values`` with ints given for float keys turned into floats."""
    out = dict(values)
    for key, value in values.items():
        default = defaults.get(key)
        if isinstance(default, float) and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
            value = out[key] = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        if not _same_type(value, default):
            raise ValueError(f"{where}: key {key!r} expects {_type_name(default)} (like its default "
                             f"{default!r}), got {value!r}")
        if isinstance(default, float) and isinstance(value, int):
            out[key] = float(value)
    return out


def resolve_config(model: str, overrides=(), family: str | None = None) -> tuple[dict, dict]:
    """``(config, model_kwargs)``: the full run config and the model's constructor keys.

    ``family`` names ``configs/family/<family>.yaml`` (the model's registry entry supplies it
    when not given)."""
    overrides = parse_overrides(overrides)
    base = read_yaml(config_dir() / "base.yaml")
    model_keys, train_keys = model_yaml(model)
    if family is None:
        from .models.registry import model_family  # late: the registry imports the models

        family = model_family(model)
    fam = family_yaml(family)
    dataset = overrides.get("dataset", train_keys.get("dataset", fam.get("dataset", base["dataset"])))
    data_keys = dataset_config(dataset)
    task = overrides.get("task", train_keys.get("task", fam.get("task", data_keys.get("task", base.get("task")))))
    task_keys = task_yaml(task)
    valid = set(base) | set(data_keys) | set(task_keys) | set(fam) | set(model_keys)
    for source, keys in ((f"configs/task/{task}.yaml", task_keys), (f"configs/family/{family}.yaml", fam),
                         (f"configs/model/{model}.yaml train:", train_keys)):
        bad = set(keys) - valid
        if bad:
            raise ValueError(f"{source} unknown key(s) {sorted(bad)}")
    bad = sorted(set(overrides) - valid)
    if bad:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, bad))} for model {model!r}; valid keys: "
                         f"{', '.join(sorted(valid))}")
    defaults = {**base, **data_keys, **task_keys, **fam, **train_keys, **model_keys}
    cfg = dict(defaults)
    cfg.update(check_types(overrides, defaults, f"model {model!r}"))
    cfg["model"] = model.lower()
    kwargs = {k: cfg[k] for k in model_keys}
    return cfg, kwargs
