"""Sequence models, registered in gcf's registry on import (family ``seq``:
``configs/family/seq.yaml``). One file per model; each registers itself with
``@register_model(name, family="seq")``."""
from __future__ import annotations

from . import bert4rec, caser, fpmc, gru4rec, narm, sasrec, tisasrec, transrec  # noqa: F401  (registration)
from . import comirec, mind  # noqa: F401  (registration: multi-interest models)
from . import cl4srec, s3rec  # noqa: F401  (registration: CL4SRec, S3-Rec)
from . import carca  # noqa: F401  (registration: CARCA)
from .base import SeqRecommender

__all__ = ["SeqRecommender"]
