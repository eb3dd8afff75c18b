"""Where the YAML configs live and how one is read (no other gcf import: the config and data
layers both read YAML through here, so neither imports the other for it)."""
from __future__ import annotations

import os
from pathlib import Path

import yaml


def config_dir() -> Path:
    """``$GCF_CONFIG_DIR`` or the repository's ``configs/``."""
    env = os.environ.get("GCF_CONFIG_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "configs"


def read_yaml(path: Path) -> dict:
    """A YAML mapping; an error naming the file when it is not valid YAML or not a mapping."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of key: value, got {type(data).__name__}")
    return data
