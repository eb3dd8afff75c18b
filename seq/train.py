"""``python -m seq.train MODEL [key=value ...]``: train one sequence model, write its results.

Examples::

    python -m seq.train sasrec                                    # embedded MovieLens latest-small
    python -m seq.train sasrec dataset=ml-1m data_dir=../shared/data loss=ce
    python -m seq.train gru4rec dataset=ml-100k data_dir=../shared/data
    python -m seq.train pop dataset=ml-100k data_dir=../shared/data   # popularity, same split

The same keys, outputs (``metrics.json``, ``config.yaml``, ``best.pt``/``last.pt``,
``train.log``, ``latents.npz``), early stopping, resume and errors as ``python -m gcf.train``,
with the sequence defaults of ``configs/family/seq.yaml`` (leave-one-out, HR/NDCG/MRR at
5/10/20, full ranking; ``sampled=uni100`` for the 100-negative protocol). Any gcf model runs
here too, on the same split and metrics.
"""
from __future__ import annotations

import sys

import seq.models  # noqa: F401  (registers the sequence models)
from gcf.train import main as gcf_main


def main(argv=None) -> int:
    return gcf_main(argv, family="seq", doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
