"""Model registry: name -> class. The CLI, trainer and cornac wrappers look models up here;
each model's hyper-parameters and defaults are in ``configs/model/<name>.yaml``."""
from __future__ import annotations

from .base import Recommender, TrainData
from .bivae import BiVAE
from .bpr import BPR
from .diffrec import DiffRec
from .ease import EASE
from .ldiffrec import LDiffRec
from .lightgcn import LightGCN
from .ngcf import NGCF
from .pop import Pop
from .vaecf import VAECF

MODELS: dict[str, type[Recommender]] = {
    "pop": Pop,
    "bpr": BPR,
    "ease": EASE,
    "ngcf": NGCF,
    "lightgcn": LightGCN,
    "vaecf": VAECF,
    "bivae": BiVAE,
    "diffrec": DiffRec,
    "ldiffrec": LDiffRec,
}


def get_model_class(name: str) -> type[Recommender]:
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(MODELS))}") from None


__all__ = ["MODELS", "Recommender", "TrainData", "get_model_class", *[c.__name__ for c in MODELS.values()]]
