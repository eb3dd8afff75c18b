"""Configs: YAML files in ``configs/`` plus ``key=value`` overrides, validated.

``resolve_config("lightgcn", ["dataset=ml-100k", "n_layers=2"])`` merges, lowest first,
``configs/base.yaml``, ``configs/data/<dataset>.yaml``, the ``train:`` section of
``configs/model/<model>.yaml``, the model's own keys (its ``model:`` section), and the
overrides. A key that none of these files defines is an error naming it and listing the
valid keys, never silently ignored.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml


def config_dir() -> Path:
    """``$GCF_CONFIG_DIR`` or the repository's ``configs/``."""
    env = os.environ.get("GCF_CONFIG_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "configs"


def read_yaml(path: Path) -> dict:
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of key: value, got {type(data).__name__}")
    return data


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


def resolve_config(model: str, overrides=()) -> tuple[dict, dict]:
    """``(config, model_kwargs)``: the full run config and the model's constructor keys."""
    overrides = parse_overrides(overrides)
    base = read_yaml(config_dir() / "base.yaml")
    model_keys, train_keys = model_yaml(model)
    dataset = overrides.get("dataset", train_keys.get("dataset", base["dataset"]))
    from .data.datasets import dataset_config  # late: the data package reads configs too

    data_keys = dataset_config(dataset)
    valid = set(base) | set(data_keys) | set(model_keys)
    for source, keys in ((f"configs/model/{model}.yaml train:", train_keys),):
        bad = set(keys) - valid
        if bad:
            raise ValueError(f"{source} unknown key(s) {sorted(bad)}")
    bad = sorted(set(overrides) - valid)
    if bad:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, bad))} for model {model!r}; valid keys: "
                         f"{', '.join(sorted(valid))}")
    cfg = {**base, **data_keys, **train_keys, **model_keys}
    cfg.update(overrides)
    cfg["model"] = model.lower()
    kwargs = {k: cfg[k] for k in model_keys}
    return cfg, kwargs
