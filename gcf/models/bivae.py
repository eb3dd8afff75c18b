r"""BiVAE: bilateral variational autoencoder for collaborative filtering.

Truong, Salah, Lauw, "Bilateral Variational Autoencoder for Collaborative Filtering",
WSDM 2021 (DOI 10.1145/3437963.3441759).

Users and items are treated symmetrically. A user :math:`u` has a latent
:math:`\theta_u \in \mathbb R^k` with prior :math:`\mathcal N(\mu^{prior}_u, I)` and an encoder
:math:`q(\theta_u \mid r_{u*}) = \mathcal N(\mu_\phi(r_{u*}), \mathrm{diag}\,\sigma^2_\phi(r_{u*}))`
that reads the user's row of the interaction matrix. An item :math:`i` has
:math:`\beta_i` with prior :math:`\mathcal N(\mu^{prior}_i, I)` and an encoder
:math:`q(\beta_i \mid r_{*i})` that reads the item's column. Every entry is generated from an
exponential-family likelihood with mean :math:`\hat r_{ui} = \sigma(\theta_u^\top \beta_i)`.
The ELBO is optimised block-wise (Gauss-Seidel). For the user block, with the items'
latents held fixed at their current samples :math:`\tilde\beta`,

.. math::
    \mathcal L_u = \mathbb E_{q(\theta_u \mid r_{u*})}\Big[\sum_i \log p(r_{ui} \mid
        \sigma(\theta_u^\top \tilde\beta_i))\Big]
        - \beta_{kl}\,\mathrm{KL}\big(q(\theta_u \mid r_{u*})\,\|\,\mathcal N(\mu^{prior}_u, I)\big),
    \qquad
    \mathrm{KL} = -\tfrac12 \sum_k \big(1 + \log\sigma_k^2 - (\mu_k - \mu^{prior}_k)^2
        - \sigma_k^2\big).

The item block is the same with the roles swapped. The loss of a batch of rows is
:math:`\mathrm{mean}_{rows}(\beta_{kl}\mathrm{KL} - \sum_j \log p)`, with one sample
:math:`\theta = \mu + \epsilon \odot \sigma`. The log-likelihoods, up to constants, are
Poisson :math:`r\log(\hat r + 10^{-10}) - \hat r`, Bernoulli
:math:`r\log(\hat r + 10^{-10}) + (1-r)\log(1-\hat r+10^{-10})` and Gaussian :math:`-(r-\hat r)^2`.

Architecture (cornac ``bivaecf``, the official code): each encoder is
``[input -> encoder_structure...]`` with the activation after every hidden layer, then a head
:math:`\mu = \mathrm{Linear}(h)` and a head :math:`\sigma = \mathrm{sigmoid}(\mathrm{Linear}(h))`
(a standard deviation in (0, 1)). The decoder is :math:`\sigma(\theta\beta^\top)` for every
likelihood; there is no exponential link for Poisson, so the rate is at most 1.
Buffers: ``theta`` ``[U, k]`` and ``beta`` ``[I, k]`` hold the latest *samples*, which the
other side decodes against (no gradient flows between the sides). ``mu_theta`` and
``mu_beta`` hold the posterior means. Scores are
:math:`\mu_\theta[u]\,\mu_\beta^\top` (posterior means, without the sigmoid, which does not
change the ranking).

Training loop (cornac's ``learn``) mapped onto the toolkit's one trainer: the
``"item_user_rows"`` batches are all item batches in id order, then all user batches in id
order (not shuffled, as in cornac). For each batch we encode, sample, decode against the other
side's stored samples and return the loss; the trainer steps one Adam over all parameters. A
parameter without a gradient is skipped by Adam, and no parameter gets gradients from both
sides, so this is the same as cornac's two per-side Adams.

Choices (see ``MODELS.md`` section 6):

- **Storing the samples after the step.** Cornac re-encodes each batch *after* its optimizer
  step and stores that sample in ``beta``/``theta`` (and its mean in ``mu_beta``/``mu_theta``).
  ``loss`` cannot see the step, so it remembers the batch. At the start of the next ``loss``
  call (the parameters have been stepped by then) it re-encodes that batch and stores the
  result. ``state_dict()`` does the same first, so the checkpoint written at the end of an
  epoch already holds the last batch's stored sample and a resumed run matches an uninterrupted
  one. The values stored are the official ones; only the draw order of the random numbers differs.
- **Final means.** Cornac finishes with one extra pass that re-encodes all items and then all
  users to get ``mu_beta``/``mu_theta`` for scoring. Here ``score``/``latents`` do that pass
  once per evaluation (cached; recomputed whenever the model switches mode or is reloaded).
  They re-encode every user's training row and every item's training column with the current
  parameters and also write the result into the ``mu_theta``/``mu_beta`` buffers.
- **Initialisation** as cornac: ``theta`` is Kaiming-uniform (:math:`a=\sqrt5`, the
  ``randn*0.01`` it overwrites is dropped), ``beta`` is ``randn*0.01``, and the layers keep the
  PyTorch defaults. In the first epoch the item step decodes against this random ``theta``, as
  in cornac.
- **CAP priors** (``cap_priors=True``): :math:`\mu^{prior} = \mathrm{Linear}(f)` of a side
  feature vector :math:`f`, trained with that side's encoder (as in cornac). The paper's
  features are the posterior means of separate VAEs on review text (users) and on an
  item-context graph (items); building those is outside this model. Features come from
  ``prior_features={"user": array [U, f_u], "item": array [I, f_i]}`` when that is given
  (programmatic use). Otherwise they are derived from ``TrainData.user_features`` /
  ``item_features``: numeric arrays become columns, and token or token-list columns with at
  most 100 distinct tokens (genre, gender, occupation, ...) become multi-hot columns. Missing
  values are zeros, and entities without side data get the zero vector, as in bi-vae. A side
  without usable features keeps the zero prior. It is an error if neither side has any.
- The input is binarised; no weight decay (cornac has none).

Args:
    k: latent dimension (default: 50, the recommenders ML-100k tutorial; cornac's default is 10).
    encoder_structure: hidden widths of both encoders (default: ``[100]``).
    act_fn: ``'tanh'``, ``'sigmoid'``, ``'relu'``, ``'relu6'`` or ``'elu'`` (default: ``'tanh'``).
    likelihood: ``'pois'``, ``'bern'`` or ``'gaus'`` (default: ``'pois'``).
    beta_kl: weight of the KL terms (default: 1.0).
    cap_priors: use feature-based prior means, see above (default: False).
    prior_features: optional ``{"user": [U, f], "item": [I, f]}`` arrays for the CAP priors
        (default: None, derived from the data's side features).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .base import Recommender, TrainData

_EPS = 1e-10
ACTIVATIONS = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU, "relu6": nn.ReLU6, "elu": nn.ELU}
LIKELIHOODS = ("pois", "bern", "gaus")
MAX_TOKENS = 100  # token features with more distinct values are not used for CAP priors


class _Encoder(nn.Module):
    """``rows [B, n_in] -> (mu [B, k], sigma [B, k])``: hidden layers with ``act`` after each."""

    def __init__(self, n_in: int, structure: list[int], k: int, act: type[nn.Module]):
        super().__init__()
        dims = [n_in, *structure]
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), act()]
        self.hidden = nn.Sequential(*layers)
        self.mu = nn.Linear(dims[-1], k)
        self.std = nn.Linear(dims[-1], k)

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(rows)
        return self.mu(h), torch.sigmoid(self.std(h))


def feature_matrix(features: dict | None, n: int) -> np.ndarray | None:
    """Numeric ``[n, f]`` matrix of side features for CAP priors, or None when none is usable.

    Numeric arrays of length ``n`` (1-D or 2-D) become columns (NaN -> 0). Columns of tokens
    or token lists with at most :data:`MAX_TOKENS` distinct tokens become multi-hot columns.
    """
    cols = []
    for name in sorted(features or {}):
        values = features[name]
        if isinstance(values, np.ndarray) and values.dtype.kind in "biuf" and len(values) == n:
            arr = values.astype(np.float32).reshape(n, -1)
            cols.append(np.nan_to_num(arr, nan=0.0))
            continue
        if len(values) != n:
            continue
        rows = [[] if v is None else ([v] if isinstance(v, str) else list(v)) for v in values]
        if any(not isinstance(t, str) for r in rows for t in r):
            continue
        vocab = sorted({t for r in rows for t in r})
        if not vocab or len(vocab) > MAX_TOKENS:
            continue
        index = {t: j for j, t in enumerate(vocab)}
        arr = np.zeros((n, len(vocab)), dtype=np.float32)
        for i, r in enumerate(rows):
            arr[i, [index[t] for t in r]] = 1.0
        cols.append(arr)
    return np.concatenate(cols, axis=1) if cols else None


class BiVAE(Recommender):
    batch_kind = "item_user_rows"
    score_is_dot = True  # score = mu_theta[u] . mu_beta[i] (cornac ANN can serve it)

    def __init__(self, data: TrainData, k: int = 50, encoder_structure=(100,), act_fn: str = "tanh",
                 likelihood: str = "pois", beta_kl: float = 1.0, cap_priors: bool = False,
                 prior_features: dict | None = None):
        super().__init__(data)
        if act_fn not in ACTIVATIONS:
            raise ValueError(f"act_fn must be one of {', '.join(ACTIVATIONS)}, got {act_fn!r}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {likelihood!r}")
        self.k = int(k)
        self.likelihood = likelihood
        self.beta_kl = float(beta_kl)
        structure = [int(h) for h in encoder_structure]
        act = ACTIVATIONS[act_fn]
        self.user_encoder = _Encoder(data.n_items, structure, self.k, act)
        self.item_encoder = _Encoder(data.n_users, structure, self.k, act)

        theta = torch.empty(data.n_users, self.k)
        nn.init.kaiming_uniform_(theta, a=math.sqrt(5))
        self.register_buffer("theta", theta)  # [U, k] latest user samples
        self.register_buffer("beta", torch.randn(data.n_items, self.k) * 0.01)  # [I, k] latest item samples
        self.register_buffer("mu_theta", torch.zeros(data.n_users, self.k))  # [U, k]
        self.register_buffer("mu_beta", torch.zeros(data.n_items, self.k))  # [I, k]

        self.user_prior = self.item_prior = None
        if cap_priors:
            feats = prior_features or {}
            user_f = feats.get("user") if "user" in feats else feature_matrix(data.user_features, data.n_users)
            item_f = feats.get("item") if "item" in feats else feature_matrix(data.item_features, data.n_items)
            if user_f is None and item_f is None:
                raise ValueError("cap_priors=True but no usable user or item features were found "
                                 "(pass prior_features={'user': [U, f], 'item': [I, f]})")
            for side, f, n in (("user", user_f, data.n_users), ("item", item_f, data.n_items)):
                if f is None:
                    continue
                f = torch.as_tensor(np.asarray(f, dtype=np.float32))
                if f.ndim != 2 or f.shape[0] != n:
                    raise ValueError(f"{side} prior features must have shape [{n}, f], got {tuple(f.shape)}")
                self.register_buffer(f"{side}_prior_features", f, persistent=False)
                setattr(self, f"{side}_prior", nn.Linear(f.shape[1], self.k))
        self._pending: tuple | None = None  # (side, ids, rows) of the last batch, stored on the next call
        self._item_matrix = data.train.T.tocsr()

    # ------------------------------------------------------------ pieces
    def _side(self, side: str):
        """``(encoder, own samples, own means, other side's samples, prior, prior features)``."""
        if side == "user":
            return (self.user_encoder, self.theta, self.mu_theta, self.beta, self.user_prior,
                    getattr(self, "user_prior_features", None))
        if side == "item":
            return (self.item_encoder, self.beta, self.mu_beta, self.theta, self.item_prior,
                    getattr(self, "item_prior_features", None))
        raise ValueError(f"BiVAE batch side must be 'user' or 'item', got {side!r}")

    def _log_likelihood(self, rows: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        """Per-row log-likelihood ``[B]`` of binary rows given the decoded means ``rec``."""
        if self.likelihood == "pois":
            ll = rows * torch.log(rec + _EPS) - rec
        elif self.likelihood == "bern":
            ll = rows * torch.log(rec + _EPS) + (1 - rows) * torch.log(1 - rec + _EPS)
        else:  # gaus
            ll = -(rows - rec) ** 2
        return ll.sum(1)

    @torch.no_grad()
    def _flush(self) -> None:
        """Re-encode the remembered batch with the current (stepped) parameters and store its
        sample and mean, as cornac does right after each optimizer step."""
        if self._pending is None:
            return
        side, ids, rows = self._pending
        self._pending = None
        encoder, samples, means, *_ = self._side(side)
        mu, std = encoder(rows)
        samples[ids] = mu + torch.randn_like(mu) * std
        means[ids] = mu

    # ------------------------------------------------------------ contract
    def loss(self, batch) -> torch.Tensor:
        side, ids, rows = batch
        self._flush()
        rows = (rows > 0).float()  # [B, n_other]
        encoder, _, _, other, prior, prior_features = self._side(side)
        mu, std = encoder(rows)  # [B, k]
        z = mu + torch.randn_like(mu) * std  # [B, k]
        rec = torch.sigmoid(z @ other.T)  # [B, n_other]; other is a constant buffer
        mu_prior = prior(prior_features[ids]) if prior is not None else 0.0
        kl = -0.5 * (1 + 2.0 * torch.log(std) - (mu - mu_prior) ** 2 - std ** 2)  # [B, k]
        loss = (self.beta_kl * kl.sum(1) - self._log_likelihood(rows, rec)).mean()
        if self.training:
            self._pending = (side, ids, rows)
        return loss

    def state_dict(self, *args, **kwargs):
        self._flush()  # the last batch's sample belongs in the checkpoint
        return super().state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._pending = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @torch.no_grad()
    def _encode_all(self, encoder: _Encoder, matrix, batch_size: int = 1024) -> torch.Tensor:
        from ..data.sampler import dense_rows

        out = []
        for start in range(0, matrix.shape[0], batch_size):
            rows = dense_rows(matrix, np.arange(start, min(start + batch_size, matrix.shape[0])))
            out.append(encoder((rows > 0).float().to(self.device))[0])
        return torch.cat(out)

    @torch.no_grad()
    def _means(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior means of all users ``[U, k]`` and items ``[I, k]`` from the current parameters."""
        self._flush()
        self.mu_beta.copy_(self._encode_all(self.item_encoder, self._item_matrix))
        self.mu_theta.copy_(self._encode_all(self.user_encoder, self._train_matrix))
        return self.mu_theta.clone(), self.mu_beta.clone()

    @torch.no_grad()
    def score(self, users: torch.Tensor, history=None) -> torch.Tensor:
        mu_theta, mu_beta = self.cached("means", self._means)
        return mu_theta[users] @ mu_beta.T  # [B, I]

    @torch.no_grad()
    def latents(self):
        """``(mu_theta [U, k], mu_beta [I, k])``: the posterior means, compared by dot product."""
        return self.cached("means", self._means)
