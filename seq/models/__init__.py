"""Sequence models, registered in gcf's registry on import (family ``seq``:
``configs/family/seq.yaml``). One file per model."""
from __future__ import annotations

import importlib

from .base import SeqRecommender

# each module registers its model with @register_model(name, family="seq")
MODULES = ("gru4rec", "narm", "caser", "fpmc", "transrec", "sasrec", "tisasrec", "bert4rec")
for _m in MODULES:
    try:
        importlib.import_module(f"{__name__}.{_m}")
    except ModuleNotFoundError as e:  # a model file not written yet
        if e.name != f"{__name__}.{_m}":
            raise

__all__ = ["SeqRecommender", "MODULES"]
