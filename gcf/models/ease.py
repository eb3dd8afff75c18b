r"""EASE^R: embarrassingly shallow autoencoder, fitted in closed form.

Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019 (arXiv 1905.03375).

.. math::
    \min_B \|X - XB\|_F^2 + \lambda \|B\|_F^2 \ \text{s.t. diag}(B) = 0
    \;\Rightarrow\; P = (X^\top X + \lambda I)^{-1}, \quad B_{ij} = -P_{ij} / P_{jj}, \ B_{jj} = 0

Scores are ``x_u B``. The Gram matrix and its inverse are computed in float64 (RecBole uses
float32; the paper's Algorithm 1 is precision-agnostic) and ``B`` is kept in float32. Memory
is O(I^2): fine to ~40k items.

Args:
    reg_weight: lambda (default: 250.0, RecBole's; the paper uses 200-1000 per dataset).
"""
from __future__ import annotations

import torch

from .base import Recommender, TrainData


class EASE(Recommender):
    batch_kind = None

    def __init__(self, data: TrainData, reg_weight: float = 250.0):
        super().__init__(data)
        self.reg_weight = reg_weight
        self.register_buffer("weights", torch.zeros(data.n_items, data.n_items))

    @torch.no_grad()
    def fit(self, data: TrainData) -> None:
        x = data.train.astype("float64")
        gram = torch.from_numpy((x.T @ x).toarray()).to(self.weights.device)  # [I, I], inverted on the model's device
        gram.diagonal().add_(self.reg_weight)
        p = torch.cholesky_inverse(torch.linalg.cholesky(gram))  # G + lambda I is SPD: ~2x faster than inv
        b = p / (-p.diagonal()).unsqueeze(0)  # column j divided by -P_jj
        b.fill_diagonal_(0.0)
        self.weights.copy_(b.to(self.weights.dtype))

    @torch.no_grad()
    def score(self, users: torch.Tensor, history=None) -> torch.Tensor:
        return self.history_rows(users) @ self.weights  # [B, I]
