"""gcf's models, registered in :mod:`gcf.models.registry` (``seq`` and ``bridges`` add theirs
there when imported). Each model's hyper-parameters and defaults are in
``configs/model/<name>.yaml``."""
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
from .registry import MODELS, build_model, get_model_class, model_family, register_model
from .vaecf import VAECF

for _name, _cls in {"pop": Pop, "bpr": BPR, "ease": EASE, "ngcf": NGCF, "lightgcn": LightGCN, "vaecf": VAECF,
                    "bivae": BiVAE, "diffrec": DiffRec, "ldiffrec": LDiffRec}.items():
    register_model(_name)(_cls)

GCF_MODELS = tuple(MODELS)  # gcf's own, in registration order (others may be added later)

__all__ = ["MODELS", "GCF_MODELS", "Recommender", "TrainData", "build_model", "get_model_class", "model_family",
           "register_model", "BiVAE", "BPR", "DiffRec", "EASE", "LDiffRec", "LightGCN", "NGCF", "Pop", "VAECF"]
