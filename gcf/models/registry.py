"""The one model registry: name -> class (and the model's config family).

gcf's own models register in :mod:`gcf.models`; other packages (``seq``, ``bridges``) register
theirs when imported, with :func:`register_model`, so gcf never imports them::

    @register_model("sasrec", family="seq")
    class SASRec(SeqRecommender): ...

A model's keys and defaults are in ``configs/model/<name>.yaml``; ``family`` names an extra
layer of defaults, ``configs/family/<family>.yaml`` (see :mod:`gcf.config`). A finished run
records the class's module in its ``config.yaml``, so :func:`import_model_module` can bring
the registration back when the run is loaded in a fresh process.
"""
from __future__ import annotations

import importlib

from ..data.train_data import TrainData

MODELS: dict[str, type] = {}
FAMILIES: dict[str, str | None] = {}


def register_model(name: str, family: str | None = None):
    """Class decorator: ``MODELS[name] = cls``. Re-registering a name with another class is an
    error (two packages claiming one name)."""
    def deco(cls):
        key = name.lower()
        if key in MODELS and MODELS[key] is not cls and MODELS[key].__qualname__ != cls.__qualname__:
            raise ValueError(f"model name {key!r} is already registered by {MODELS[key].__module__}")
        MODELS[key] = cls
        FAMILIES[key] = family
        return cls
    return deco


def get_model_class(name: str) -> type:
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))} (sequence models "
                         f"register when seq is imported: python -m seq.train ...)") from None


def model_family(name: str) -> str | None:
    return FAMILIES.get(name.lower())


def import_model_module(module: str | None) -> None:
    """Import the module that registers a model (recorded in a run's ``config.yaml``)."""
    if module:
        importlib.import_module(module)


def build_model(name: str, kwargs: dict, data, seed: int):
    """Seed torch and numpy, then build ``name`` on ``data`` (a :class:`TrainData` or a split)
    through the class's ``from_config`` (the constructor unless the model reads files)."""
    import numpy as np
    import torch

    np.random.seed(seed)
    torch.manual_seed(seed)
    cls = get_model_class(name)
    if not isinstance(data, TrainData):
        data = TrainData.from_split(data)
    try:
        return cls.from_config(data, **kwargs)
    except TypeError as e:
        raise ValueError(f"model {name!r}: {e}") from None
