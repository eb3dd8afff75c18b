"""Sequence models, registered in gcf's registry on import (family ``seq``:
``configs/family/seq.yaml``). One file per model; each registers itself with
``@register_model(name, family="seq")``."""
from __future__ import annotations

from . import bert4rec, caser, fpmc, gru4rec, narm, sasrec, tisasrec, transrec  # noqa: F401  (registration)
from . import carca, cl4srec, s3rec  # noqa: F401  (part 2: attributes and context, contrastive, self-supervised)
from . import diffurec, dreamrec  # noqa: F401  (diffusion)
from . import comirec, mind  # noqa: F401  (multi-interest)
from .base import SeqRecommender

__all__ = ["SeqRecommender"]
