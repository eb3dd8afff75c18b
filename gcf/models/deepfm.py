r"""DeepFM: an FM and a deep network sharing one embedding of the fields.

Guo, Tang, Ye, Li, He, "DeepFM: A Factorization-Machine based Neural Network for CTR
Prediction", IJCAI 2017.

.. math::
    \hat y = \sigma\big(y_{FM} + y_{DNN}\big), \qquad
    y_{FM} = w_0 + \sum_f w_f(x) + \sum_{f<g}\langle e_f, e_g\rangle, \qquad
    y_{DNN} = \mathrm{MLP}\big([e_1; \dots; e_F]\big)

where :math:`e_f` are the field embeddings (:mod:`gcf.models.fm`) shared by both parts: no
pre-training (unlike FNN) and no hand-made crosses (unlike Wide & Deep); trained end to end
with BCE.

Choices: no official code exists (``MODELS.md``). The FM part has the first-order term
(paper Eq. 2, RecBole, FuxiCTR and DeepCTR alike). The MLP is ``Linear -> ReLU [-> BatchNorm]
-> Dropout`` per layer, then ``Linear -> 1`` (FuxiCTR's order; RecBole's is ``Dropout ->
Linear -> ReLU``, a dropout on the input embeddings too), with RecBole 1.2.1's
``mlp_hidden_size [128, 128, 128]`` and dropout 0.2 (the paper 400-400-400 with dropout 0.5;
FuxiCTR's default [64, 64, 64] without). Xavier-normal tables and linear weights, zero biases,
Adam.

``embedding_regularizer`` (FuxiCTR's, :class:`gcf.models.feature.FeatureRecommender`) is
0.05 in ``configs/model/deepfm.yaml``, picked on the validation split of ml-100k CTR
(``benchmarks/bench_ctr.py --tune``, seeds 1-5, grid 0 / 1e-4 / 1e-3 / 0.01 / 0.03 / 0.05 / 0.1
and, around 0.03, weight decay, batch norm, dropout 0.4, a slower rate; at 0.05 the paper's
MLP 400-400-400 with dropout 0.5, worse; FuxiCTR's tuned BARS
MovielensLatest_x1 DeepFM uses 0.01): without it the MLP memorises the id embeddings within ~20
epochs (training loss 0.29 against validation LogLoss 0.42 by epoch 33) and DeepFM stays below
FM; RecBole has no such term. Class default 0 (none).

Shapes: ``x`` encoded rows -> ``e [B, F, d]`` -> ``y_DNN [B]`` from ``[B, F * d]``.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import TrainData
from .feature import MLP, FeatureRecommender, FieldEmbedding, fm_interaction


class DeepFM(FeatureRecommender):
    def __init__(self, data: TrainData, embedding_size: int = 16, mlp_hidden_size: list = (128, 128, 128),
                 dropout_prob: float = 0.2, batch_norm: bool = False, embedding_regularizer: float = 0.0,
                 neg_samples: int = 1):
        super().__init__(data, neg_samples, embedding_regularizer=embedding_regularizer)
        self.weights = FieldEmbedding(self.encoder, 1, pooling="sum")
        self.embedding = FieldEmbedding(self.encoder, embedding_size)
        # the global bias is the FM part's: no second one in the MLP's output layer
        self.mlp = MLP(self.n_fields * embedding_size, list(mlp_hidden_size), dropout_prob, batch_norm=batch_norm,
                       output_bias=False)
        self.weights.reset_parameters(nn.init.xavier_normal_)
        self.embedding.reset_parameters(nn.init.xavier_normal_)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.bias = nn.Parameter(torch.zeros(1))

    def logit(self, x: dict) -> torch.Tensor:
        e = self.embedding(x)  # [B, F, d]
        y_fm = self.bias + self.weights(x).sum((1, 2)) + fm_interaction(e)
        return y_fm + self.mlp(e.flatten(1)).squeeze(1)  # [B]
