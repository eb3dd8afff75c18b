"""Bridge models, registered in gcf's registry on import (family ``seq``: leave-one-out and the
sequence metrics, as ``python -m seq.train``)."""
from __future__ import annotations

from . import bitvae_rec, sasrec_cf  # noqa: F401  (registration)
