r"""FM: factorization machine over the declared fields.

Rendle, "Factorization Machines", ICDM 2010.

.. math::
    \hat y(x) = \sigma\Big(w_0 + \sum_f w_f(x) + \sum_{f<g}\langle v_f(x), v_g(x)\rangle\Big),
    \quad \sum_{f<g}\langle v_f, v_g\rangle
      = \tfrac12\sum_{k=1}^{d}\Big[\big(\textstyle\sum_f v_{fk}\big)^2 - \sum_f v_{fk}^2\Big]

with one active feature per field (field-wise CTR form: the feature vector :math:`v_f(x)` is
the field's embedding, of a categorical field the category's row, of a sequence field the
mean of its values' rows, of a numeric field its row times the normalised value), the
pairwise term computed in :math:`O(Fd)` (the paper's Lemma 3.1), the first-order term as
:mod:`gcf.models.lr`.

Choices: the paper trains squared or logit loss with SGD and L2; as RecBole's ``FM`` and
FuxiCTR's (``MODELS.md``) this is BCE with Adam, Xavier-normal tables and zero bias.
``embedding_regularizer`` (FuxiCTR's L2 on the tables, :class:`gcf.models.feature.FeatureRecommender`)
is 1e-4 in ``configs/model/fm.yaml``, picked on ml-100k CTR validation in the same search as
DeepFM's (``benchmarks/bench_ctr.py --tune``); RecBole has none (class default 0). A sequence field enters the pairwise term once, mean-pooled
(RecBole's default), and the first-order term as a sum (multi-hot).
"""
from __future__ import annotations

import torch
from torch import nn

from .base import TrainData
from .feature import FeatureRecommender, FieldEmbedding, fm_interaction


class FM(FeatureRecommender):
    def __init__(self, data: TrainData, embedding_size: int = 16, neg_samples: int = 1,
                 embedding_regularizer: float = 0.0):
        super().__init__(data, neg_samples, embedding_regularizer=embedding_regularizer)
        self.weights = FieldEmbedding(self.encoder, 1, pooling="sum")
        self.embedding = FieldEmbedding(self.encoder, embedding_size)
        self.weights.reset_parameters(nn.init.xavier_normal_)
        self.embedding.reset_parameters(nn.init.xavier_normal_)
        self.bias = nn.Parameter(torch.zeros(1))

    def logit(self, x: dict) -> torch.Tensor:
        v = self.embedding(x)  # [B, F, d]
        return self.bias + self.weights(x).sum((1, 2)) + fm_interaction(v)  # [B]
