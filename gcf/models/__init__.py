"""gcf's models, registered in :mod:`gcf.models.registry` (``seq`` and ``bridges`` add theirs
there when imported). Each model's hyper-parameters and defaults are in
``configs/model/<name>.yaml``."""
from __future__ import annotations

from .afn import AFN, AFNPlus
from .base import Recommender, TrainData
from .bivae import BiVAE
from .bpr import BPR
from .deepfm import DeepFM
from .diffrec import DiffRec
from .ease import EASE
from .feature import FeatureRecommender
from .fm import FM
from .ldiffrec import LDiffRec
from .lightgcn import LightGCN
from .lr import LR
from .ngcf import NGCF
from .pop import Pop
from .registry import MODELS, build_model, get_model_class, model_family, register_model
from .vaecf import VAECF

for _name, _cls in {"pop": Pop, "bpr": BPR, "ease": EASE, "ngcf": NGCF, "lightgcn": LightGCN, "vaecf": VAECF,
                    "bivae": BiVAE, "diffrec": DiffRec, "ldiffrec": LDiffRec,
                    "lr": LR, "fm": FM, "deepfm": DeepFM, "afn": AFN, "afnplus": AFNPlus}.items():
    register_model(_name)(_cls)

GCF_MODELS = tuple(MODELS)  # gcf's own, in registration order (others may be added later)

__all__ = ["MODELS", "GCF_MODELS", "Recommender", "FeatureRecommender", "TrainData", "build_model", "get_model_class",
           "model_family", "register_model", "AFN", "AFNPlus", "BiVAE", "BPR", "DeepFM", "DiffRec", "EASE", "FM",
           "LDiffRec", "LightGCN", "LR", "NGCF", "Pop", "VAECF"]
