r"""AFN and AFN+: adaptive-order feature interactions through a logarithmic transformation layer.

Cheng, Shen, Huang, "Adaptive Factorization Network: Learning Adaptive-Order Feature
Interactions", AAAI 2020 (arXiv 1909.03276); official code WeiyuCheng/AFN-AAAI-20 (TF).

Each of the :math:`O` logarithmic neurons learns one cross feature of arbitrary, learned
orders :math:`w_{fj}` (Eq. 4-5), per embedding dimension :math:`k`:

.. math::
    y_{jk} = \exp\Big(\sum_{f=1}^{F} w_{fj}\,\ln |e_{fk}|\Big) = \prod_f |e_{fk}|^{w_{fj}},
    \qquad \hat y_{AFN} = \mathrm{MLP}\big([y_{1\cdot}; \dots; y_{O\cdot}]\big)

AFN+ (Section 3.4) adds a DNN over its own embedding of the fields and ensembles the two:

.. math::
    \hat y = w_1\,\hat y_{DNN} + w_2\,\hat y_{AFN} + b,\qquad
    \mathcal L = \mathrm{BCE}(\hat y) + \mathrm{BCE}(\hat y_{DNN}) + \mathrm{BCE}(\hat y_{AFN})

Choices, as the official code (``MODELS.md``) unless said:

- ``|e|`` is clamped below at ``1e-4`` before the log (DeepCTR-Torch 1e-7, FuxiCTR 1e-5); a
  sequence field's embedding is the mean of its values' rows, a numeric field's its row
  times the value, before the absolute value.
- Batch norm on the log-embeddings per field (statistics over the batch and the embedding
  dimensions; the official ``bn_log`` over the field axis), and on the neurons' outputs per
  neuron; PyTorch ``momentum=0.1`` is TF's ``decay=0.9``.
- Log-layer weights :math:`\mathcal N(0, 0.1^2)`, bias 0; no first-order term (the official
  code defines one and never uses it; DeepCTR-Torch adds it). MLP: ``Linear -> ReLU ->
  BatchNorm`` per layer (official order; FuxiCTR puts the norm before the activation) when
  ``batch_norm``, then ``Linear -> 1``. Embeddings Glorot-normal; AFN+'s DNN table
  :math:`\mathcal N(0, 0.1^2)`, its MLP as the AFN branch's.
- Gradients clipped by value to ``[-clip_grad_value, clip_grad_value]`` (official: 1; 0 turns
  it off), through parameter hooks, so the shared trainer stays untouched.
- AFN+'s ensemble (``ensemble``): ``official`` stops the gradient of both branches at the
  ensemble weights (:math:`w_1 = w_2 = 0.5`, :math:`b = 0` at the start), each branch learning
  from its own BCE term; ``joint`` is FuxiCTR's ``Linear(2 -> 1)`` trained through one loss.
- ``embedding_regularizer`` (FuxiCTR's, :class:`gcf.models.feature.FeatureRecommender`): L2 on
  the embedding tables; the official code has none.
- Defaults (``configs/model/afn.yaml``), picked on the validation split of ml-100k CTR
  (``benchmarks/bench_ctr.py --tune``; the numbers in ``benchmarks/README.md``), departing
  from the official code where it overfits 58k training rows of 7 fields: ``log_neurons`` 100
  (official 800 for MovieLens: 3 fields, 2M rows), one hidden layer of 400 instead of
  400-400-400, **no batch norm in the MLP** (``batch_norm``; the log layer keeps both of its
  norms), dropout 0.4 (official none) and ``embedding_regularizer`` 0.2 (0.001 / 0.01 / 0.03 / 0.05 /
  0.1 / 0.2 gave validation AUC 0.857 / 0.861 / 0.863 / 0.864 / 0.865 / 0.864, LogLoss 0.406 /
  0.389 / 0.385 / 0.380 / 0.378 / 0.376, the last four over 5 seeds; picked by AUC - LogLoss,
  FuxiCTR's monitor; AFN+ keeps the first choice, 0.03): FuxiCTR's tuned
  BARS MovielensLatest_x1 AFN is of the same shape (one hidden layer [200], no batch norm,
  dropout 0.4, embedding regularizer 0.001). With the official MLP (batch norm after each
  ReLU, no L2; dropout 0.5) the validation LogLoss sat at 0.43-0.46 while the AUC rose to
  0.837 (seed 1, 6 epochs; FM is at 0.43 by AUC 0.829 and ends at 0.39), and early stopping on
  AUC kept such an epoch: the test LogLoss 0.49 of the first benchmark. The official MLP is
  ``afn_hidden_size=[400,400,400] batch_norm=true dropout_prob=0 embedding_regularizer=0``.

Shapes: ``e [B, F, K]`` -> ``ln|e|`` ``[B, F, K]`` -> ``y [B, O, K]`` -> ``[B, O * K]`` -> ``[B]``.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from .base import TrainData
from .feature import MLP, FeatureRecommender, FieldEmbedding


def _clamp_grad(grad: torch.Tensor, limit: float) -> torch.Tensor:
    return grad.clamp(-limit, limit)


class LogTransformLayer(nn.Module):
    """``[B, F, K]`` field embeddings -> ``[B, O, K]`` cross features (the equations above)."""

    def __init__(self, n_fields: int, n_neurons: int, eps: float = 1e-4):
        super().__init__()
        self.eps = eps
        self.bn_log = nn.BatchNorm1d(n_fields)  # per field
        self.weight = nn.Parameter(torch.randn(n_fields, n_neurons) * 0.1)  # [F, O]
        self.bias = nn.Parameter(torch.zeros(n_neurons, 1))
        self.bn_exp = nn.BatchNorm1d(n_neurons)  # per neuron

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        log_e = self.bn_log(torch.log(e.abs().clamp(min=self.eps)))  # [B, F, K]
        z = torch.einsum("bfk,fo->bok", log_e, self.weight) + self.bias  # [B, O, K]
        return self.bn_exp(torch.exp(z))


class AFN(FeatureRecommender):
    def __init__(self, data: TrainData, embedding_size: int = 16, log_neurons: int = 200,
                 afn_hidden_size: list = (400, 400, 400), dropout_prob: float = 0.0, clip_grad_value: float = 1.0,
                 batch_norm: bool = True, embedding_regularizer: float = 0.0, neg_samples: int = 1):
        super().__init__(data, neg_samples, embedding_regularizer=embedding_regularizer)
        self.embedding = FieldEmbedding(self.encoder, embedding_size)
        self.embedding.reset_parameters(nn.init.xavier_normal_)
        self.log_layer = LogTransformLayer(self.n_fields, log_neurons)
        self.afn_mlp = MLP(log_neurons * embedding_size, list(afn_hidden_size), dropout_prob, batch_norm=batch_norm)
        self.clip_grad_value = clip_grad_value
        self._clipped: set = set()
        self._clip_gradients()

    def _clip_gradients(self) -> None:
        """A clamping hook on every parameter that has none yet (a subclass calls it again
        after adding its own)."""
        if not self.clip_grad_value:
            return
        for p in self.parameters():
            if id(p) not in self._clipped:
                p.register_hook(partial(_clamp_grad, limit=float(self.clip_grad_value)))
                self._clipped.add(id(p))

    def afn_logit(self, x: dict) -> torch.Tensor:
        y = self.log_layer(self.embedding(x))  # [B, O, K]
        return self.afn_mlp(y.flatten(1)).squeeze(1)  # [B]

    def logit(self, x: dict) -> torch.Tensor:
        return self.afn_logit(x)


class AFNPlus(AFN):
    def __init__(self, data: TrainData, embedding_size: int = 16, log_neurons: int = 200,
                 afn_hidden_size: list = (400, 400, 400), dnn_hidden_size: list = (400, 400, 400),
                 dropout_prob: float = 0.0, ensemble: str = "official", clip_grad_value: float = 1.0,
                 batch_norm: bool = True, embedding_regularizer: float = 0.0, neg_samples: int = 1):
        super().__init__(data, embedding_size, log_neurons, afn_hidden_size, dropout_prob, clip_grad_value,
                         batch_norm, embedding_regularizer, neg_samples)
        if ensemble not in ("official", "joint"):
            raise ValueError(f"ensemble must be 'official' or 'joint', got {ensemble!r}")
        self.ensemble = ensemble
        self.dnn_embedding = FieldEmbedding(self.encoder, embedding_size)
        self.dnn_embedding.reset_parameters(partial(nn.init.normal_, std=0.1))
        self.dnn_mlp = MLP(self.n_fields * embedding_size, list(dnn_hidden_size), dropout_prob, batch_norm=batch_norm)
        self.ensemble_weight = nn.Parameter(torch.full((2,), 0.5))  # (w_DNN, w_AFN)
        self.ensemble_bias = nn.Parameter(torch.zeros(1))
        self._clip_gradients()

    def branches(self, x: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(y, y_DNN, y_AFN)`` logits ``[B]`` each."""
        y_afn = self.afn_logit(x)
        y_dnn = self.dnn_mlp(self.dnn_embedding(x).flatten(1)).squeeze(1)
        both = torch.stack([y_dnn, y_afn], 1)  # [B, 2]
        if self.ensemble == "official":
            both = both.detach()  # each branch learns from its own loss term
        return both @ self.ensemble_weight + self.ensemble_bias, y_dnn, y_afn

    def logit(self, x: dict) -> torch.Tensor:
        return self.branches(x)[0]

    def loss(self, batch) -> torch.Tensor:
        y, y_dnn, y_afn = self.branches(self.encoder(batch["users"], batch["items"], batch["context"]))
        label = batch["label"]
        loss = F.binary_cross_entropy_with_logits(y, label)
        if self.ensemble == "official":
            loss = loss + F.binary_cross_entropy_with_logits(y_dnn, label) + \
                F.binary_cross_entropy_with_logits(y_afn, label)
        return loss
