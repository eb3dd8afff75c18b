r"""EASE^R: embarrassingly shallow autoencoder, fitted in closed form.

Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019 (arXiv 1905.03375).

.. math::
    \min_B \|X - XB\|_F^2 + \lambda \|B\|_F^2 \ \text{s.t. diag}(B) = 0
    \;\Rightarrow\; P = (X^\top X + \lambda I)^{-1}, \quad B_{ij} = -P_{ij} / P_{jj}, \ B_{jj} = 0

Scores are ``x_u B``. The Gram matrix and its inverse are computed in float64 (RecBole uses
float32; the paper's Algorithm 1 is precision-agnostic) and ``B`` is kept in float32. Memory
is O(I^2): fine to ~40k items.

lambda is chosen on validation by default: with a validation split each value of
``reg_grid`` is fitted (one Cholesky inverse each, the Gram matrix shared) and the trainer
keeps the best on ``valid_metric``, as the paper tunes lambda per dataset (200-1000). On
ml-100k (RecBole's protocol, split seeds 1-5) validation picks 250 or 500; in cornac's ml-100k
harness (every rating a training interaction, a held-out 10%) it picks 500 at seed 123 (Recall@20
0.2997 against 0.2744 at a fixed 250; cornac's own EASE, rating-weighted: 0.3125;
``benchmarks/README.md``).

Input weights and the sign of ``B``. The paper's ``X`` is binary (RecBole's, ours by default).
``weighting="rating"`` fills ``X`` with the training ratings instead (cornac's EASE reads its
rating matrix this way, RecTools' EASE its weight column): with explicit feedback a 1-star
rating's entry is a fifth of a 5-star one's, in the Gram matrix and in the scored rows alike.
``positive_only=True`` sets negative weights of ``B`` to 0 after the solve (cornac's ``posB``,
its default; the paper keeps them). In cornac's ml-100k harness, where every rating trains but
only ratings >= 4 are test positives, ``EASE(weighting="rating", positive_only=True,
reg_weight=500)`` is cornac's EASE (Recall@20 / NDCG@20 equal to four decimals over three
seeds) and lambda picked on a held-out slice lifts it from 0.3125 / 0.2584 to 0.3525 / 0.3030
(median of 3 seeds); on RecBole's ml-100k protocol, where every rating is a test positive, the
paper's binary form is better (split seeds 1-3: Recall@20 0.392-0.397 against 0.366-0.375 with
both options on; ``benchmarks/README.md``).

Args:
    reg_weight: lambda; ``null`` (default): chosen on validation among ``reg_grid`` (without a
        validation split: ``reg_grid``'s first value). A number fixes it (RecBole's default is 250).
    reg_grid: the lambdas tried on validation (default: 250, 500, 1000, 2000, 4000).
    weighting: ``binary`` (default) or ``rating``: what the entries of ``X`` hold.
    positive_only: clip ``B``'s negative weights to 0 (cornac's ``posB``; default false).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ..data.sampler import dense_rows
from .base import Recommender, TrainData


REG_GRID = (250.0, 500.0, 1000.0, 2000.0, 4000.0)


class EASE(Recommender):
    batch_kind = None

    def __init__(self, data: TrainData, reg_weight: float | None = None, reg_grid: list | tuple = REG_GRID,
                 weighting: str = "binary", positive_only: bool = False):
        super().__init__(data)
        if weighting not in ("binary", "rating"):
            raise ValueError(f"weighting must be 'binary' or 'rating', got {weighting!r}")
        self.weighting, self.positive_only = weighting, bool(positive_only)
        self._input = self._x(data)  # the rows scored
        values = list(reg_grid) + ([] if reg_weight is None else [reg_weight])
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0]
        if bad or not values:
            raise ValueError(f"reg_weight (a number, or null to pick among reg_grid) and reg_grid must hold positive "
                             f"numbers, got reg_weight={reg_weight!r}, reg_grid={list(reg_grid)!r}")
        self.reg_grid = [float(v) for v in dict.fromkeys(reg_grid)]
        self.reg_weight = float(reg_weight) if reg_weight is not None else self.reg_grid[0]
        self.search = self.uses_validation({"reg_weight": reg_weight, "reg_grid": reg_grid})
        self.register_buffer("weights", torch.zeros(data.n_items, data.n_items))

    @classmethod
    def uses_validation(cls, kwargs: dict) -> bool:
        return kwargs.get("reg_weight") is None and len(set(kwargs.get("reg_grid", REG_GRID))) > 1

    def _x(self, data: TrainData):
        return data.train if self.weighting == "binary" else rating_matrix(data)

    def _gram(self, data: TrainData) -> torch.Tensor:
        x = self._x(data).astype("float64")
        return torch.from_numpy((x.T @ x).toarray()).to(self.weights.device)  # [I, I], inverted on the model's device

    @torch.no_grad()
    def _solve(self, gram: torch.Tensor, reg_weight: float) -> None:
        gram.diagonal().add_(reg_weight)  # in place, undone below (exact for integer lambdas)
        try:
            p = torch.cholesky_inverse(torch.linalg.cholesky(gram))  # G + lambda I is SPD: ~2x faster than inv
        finally:
            gram.diagonal().sub_(reg_weight)
        b = p / (-p.diagonal()).unsqueeze(0)  # column j divided by -P_jj
        b.fill_diagonal_(0.0)
        if self.positive_only:
            b.clamp_(min=0.0)
        self.weights.copy_(b.to(self.weights.dtype))

    @torch.no_grad()
    def fit(self, data: TrainData, reg_weight: float | None = None) -> None:
        self._solve(self._gram(data), self.reg_weight if reg_weight is None else float(reg_weight))

    def fit_path(self, data: TrainData):
        if not self.search:
            yield from super().fit_path(data)
            return
        gram = self._gram(data)
        for lam in self.reg_grid:
            self._solve(gram, lam)
            yield {"reg_weight": lam}

    @torch.no_grad()
    def score(self, users: torch.Tensor, history=None) -> torch.Tensor:
        return dense_rows(self._input, users.cpu().numpy()).to(self.weights.device) @ self.weights  # [B, I]


def rating_matrix(data: TrainData):
    """The training matrix with each pair's rating in place of 1 (a repeated pair: the rating of the row
    :meth:`Interactions.dedup` keeps, the latest by timestamp)."""
    inter = data.interactions
    if inter is None or inter.ratings is None:
        raise ValueError("EASE weighting='rating' needs ratings in the training data; this dataset has none "
                         "(use weighting='binary')")
    inter = inter.dedup()
    r = np.asarray(inter.ratings, dtype=np.float64)
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError("EASE weighting='rating' needs finite, non-negative ratings")
    return sp.csr_matrix((r, (inter.users, inter.items)), shape=(data.n_users, data.n_items))
