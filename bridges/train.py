"""``python -m bridges.train MODEL [key=value ...]``: train one bridge model, write its results.

Examples::

    python -m bridges.train bitvae_rec                                   # embedded MovieLens latest-small
    python -m bridges.train bitvae_rec dataset=ml-100k data_dir=../shared/data latent_source=lightgcn
    python -m bridges.train bitvae_rec latent_source=none                # plain CARCA, same split

The same keys, outputs (``metrics.json``, ``config.yaml``, ``best.pt``/``last.pt``, ``train.log``),
early stopping, resume and errors as ``python -m seq.train`` (leave-one-out, HR/NDCG/MRR at
5/10/20, full ranking; ``sampled=uni100`` for the 100-negative protocol). Every sequence model
runs here too, on the same split.
"""
from __future__ import annotations

import sys

import bridges.models  # noqa: F401  (registers the bridge models)
import seq.models  # noqa: F401  (and the sequence models, for comparisons on the same split)
from gcf.train import main as gcf_main


def main(argv=None) -> int:
    return gcf_main(argv, family="seq", doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
