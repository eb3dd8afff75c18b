r"""LR: logistic regression over the declared fields, the baseline of every CTR table.

.. math::
    \hat y(x) = \sigma\Big(w_0 + \sum_{f} w_f(x)\Big), \qquad
    \mathcal L = \mathrm{BCE}(\hat y, y)

:math:`w_f(x)` is the weight of the row's category in field :math:`f`, the sum of the weights
of a sequence field's values (a multi-hot input), or a numeric field's weight times its
normalised value.

Choices: as RecBole's ``LR`` (its context benchmark's baseline): Xavier-normal weights, zero
bias, Adam, plain BCE, no L2 (``weight_decay`` adds one). RecBole pools a token sequence in
its first-order layer too; here the sum over values is the multi-hot logistic regression.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import TrainData
from .feature import FeatureRecommender, FieldEmbedding


class LR(FeatureRecommender):
    def __init__(self, data: TrainData, neg_samples: int = 1, embedding_regularizer: float = 0.0):
        super().__init__(data, neg_samples, embedding_regularizer=embedding_regularizer)
        self.weights = FieldEmbedding(self.encoder, 1, pooling="sum")
        self.weights.reset_parameters(nn.init.xavier_normal_)
        self.bias = nn.Parameter(torch.zeros(1))

    def logit(self, x: dict) -> torch.Tensor:
        return self.weights(x).sum((1, 2)) + self.bias  # [B]
