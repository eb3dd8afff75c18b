r"""Mult-VAE^PR: variational autoencoder with a multinomial likelihood for implicit feedback.

Liang, Krishnan, Hoffman, Jebara, "Variational Autoencoders for Collaborative Filtering",
WWW 2018 (arXiv 1802.05814).

Each user's binary click row :math:`x_u \in \{0,1\}^I` is generated from a latent
:math:`z_u \sim \mathcal N(0, I_K)` through :math:`\pi(z_u) = \mathrm{softmax}(f_\theta(z_u))`,
:math:`x_u \sim \mathrm{Mult}(N_u, \pi(z_u))`. The encoder gives
:math:`q_\phi(z_u \mid x_u) = \mathcal N(\mu_\phi(x_u), \mathrm{diag}\,\sigma^2_\phi(x_u))`, and the
partially regularised ELBO (the KL term scaled by :math:`\beta`) is maximised:

.. math::
    \mathcal L_\beta(x_u) = \mathbb E_{q_\phi(z_u \mid x_u)}\Big[\sum_i x_{ui}
        \log \pi_i(z_u)\Big] - \beta\, \mathrm{KL}\big(q_\phi(z_u \mid x_u)\,\|\,\mathcal N(0, I)\big),
    \qquad
    \mathrm{KL} = \tfrac12 \sum_k \big(-\log\sigma^2_k + \sigma^2_k + \mu_k^2 - 1\big),

with one reparameterised sample :math:`z = \mu + \epsilon \odot \sigma` and the annealing
:math:`\beta = \min(\text{anneal\_cap},\ \text{updates} / \text{total\_anneal\_steps})`, where
``updates`` counts training batches (gradient steps), not epochs. The loss of a batch is the mean
over its users of :math:`-\mathcal L_\beta`. At evaluation :math:`z = \mu` and the score of
item :math:`i` is the logit :math:`f_\theta(\mu_\phi(x_u))_i` (monotone in :math:`\pi_i`).

Architecture (the official notebook, ``[I-600-200-600-I]``): the row is L2-normalised, then
dropout (keep 0.5, inverted), then ``tanh(Linear(I, 600))`` and ``Linear(600, 2*200)`` split into
:math:`\mu` and :math:`\log\sigma^2` (no activation); the decoder is ``tanh(Linear(200, 600))``,
``Linear(600, I)`` (no activation on the logits).

Choices (see ``MODELS.md`` section 5):

- We follow the official TF notebook (dawenl/vae_cf), not RecBole or cornac: we L2-normalise
  the input and apply dropout to it, use a full :math:`\mathcal N(0, 1)` reparameterisation noise
  (RecBole uses :math:`\mathcal N(0, 0.01^2)`) and a 200-d latent space (RecBole: 64), and
  we anneal :math:`\beta` per batch (cornac fixes :math:`\beta = 1`). Initialisation is the
  notebook's: Xavier-uniform weights, biases truncated-normal with std 0.001.
- The notebook's weight L2 (``lam``) is 0 for the VAE, so we add no weight penalty.
- The batch counter is the buffer ``update_count``: it is in the ``state_dict``, so a resumed
  run continues the same annealing schedule. It only advances for ``loss`` calls in training
  mode; :math:`\beta` for a batch uses the count *before* that batch, as the notebook does.
- Protocol: the notebook evaluates held-out users (strong generalisation). This toolkit trains
  and scores the same users (weak generalisation, as RecBole and cornac): ``score`` encodes
  each user's training row.
- ``likelihood`` ``'mult'`` is the paper's model. As in cornac's VAECF, ``'bern'``,
  ``'gaus'`` and ``'pois'`` are also offered. For those the decoder mean is
  :math:`\sigma(\text{logits})` and the log-likelihoods are
  :math:`x\log p + (1-x)\log(1-p)`, :math:`-(x-p)^2` and :math:`x\log p - p`.
- ``latents()``: users get the posterior mean :math:`\mu_\phi(x_u)` of their training row
  ``[U, latent_dim]``. Items get the rows of the decoder's output weight ``[I, hidden_dims[0]]``:
  the logit of item :math:`i` is :math:`\langle h(z_u), w_i\rangle + b_i`, where :math:`h` is the
  last hidden decoder layer, so :math:`w_i` is the item's vector in the space the scores are
  computed in. **The two sides have different widths** (200 and 600 by default); they are
  not meant for a shared dot product.

Args:
    hidden_dims: hidden widths of the encoder; the decoder mirrors them (default: ``[600]``).
        The item latents are ``[I, hidden_dims[0]]`` (``[I, latent_dim]`` when empty).
    latent_dim: K, the size of :math:`z` (default: 200).
    dropout: drop probability on the normalised input row (default: 0.5).
    anneal_cap: the largest :math:`\beta` (default: 0.2).
    total_anneal_steps: number of batches over which :math:`\beta` rises linearly from 0 to 1
        (capped at ``anneal_cap``); 0 means :math:`\beta = ` ``anneal_cap`` from the start
        (default: 200, so the cap 0.2 is reached after 40 batches; the notebook's 200000 is
        for ML-20M's 234 batches per epoch and would keep :math:`\beta` near 0 on small data).
    likelihood: ``'mult'``, ``'bern'``, ``'gaus'`` or ``'pois'`` (default: ``'mult'``).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import Recommender, TrainData

_EPS = 1e-10
LIKELIHOODS = ("mult", "bern", "gaus", "pois")


def _sparse_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout of the non-zeros of a sparse-valued dense ``x`` (zeros stay zeros, so
    this is ``F.dropout`` in distribution); drawing one number per non-zero instead of per entry
    makes it ~6x faster on interaction rows."""
    if not training or p == 0.0:
        return x
    r, c = x.nonzero(as_tuple=True)
    keep = torch.rand(r.shape[0], device=x.device) >= p
    r, c = r[keep], c[keep]
    out = torch.zeros_like(x)
    out[r, c] = x[r, c] / (1.0 - p)
    return out


def _mlp(dims: list[int]) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))


class VAECF(Recommender):
    batch_kind = "user_rows"

    def __init__(self, data: TrainData, hidden_dims=(600,), latent_dim: int = 200, dropout: float = 0.5,
                 anneal_cap: float = 0.2, total_anneal_steps: int = 200, likelihood: str = "mult"):
        super().__init__(data)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {likelihood!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        hidden = [int(h) for h in hidden_dims]
        self.latent_dim = int(latent_dim)
        self.anneal_cap = float(anneal_cap)
        self.total_anneal_steps = int(total_anneal_steps)
        self.likelihood = likelihood
        self.drop = nn.Dropout(float(dropout))
        self.encoder = _mlp([data.n_items, *hidden, 2 * self.latent_dim])  # last layer: [mu, logvar]
        self.decoder = _mlp([self.latent_dim, *hidden[::-1], data.n_items])
        self.register_buffer("update_count", torch.zeros((), dtype=torch.long))
        for layer in [*self.encoder, *self.decoder]:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.trunc_normal_(layer.bias, std=0.001, a=-0.002, b=0.002)

    # ------------------------------------------------------------ network
    def encode(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each ``[B, K]``, of binary rows ``[B, I]``."""
        h = _sparse_dropout(F.normalize(rows, dim=1), self.drop.p, self.drop.training)  # [B, I]
        for layer in self.encoder[:-1]:
            h = torch.tanh(layer(h))
        out = self.encoder[-1](h)  # [B, 2K]
        return out[:, : self.latent_dim], out[:, self.latent_dim:]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, I]`` of latents ``[B, K]``."""
        h = z
        for layer in self.decoder[:-1]:
            h = torch.tanh(layer(h))
        return self.decoder[-1](h)

    @property
    def beta(self) -> float:
        """The KL weight of the next training batch."""
        if self.total_anneal_steps <= 0:
            return self.anneal_cap
        return min(self.anneal_cap, float(self.update_count) / self.total_anneal_steps)

    def _log_likelihood(self, rows: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Per-row log-likelihood ``[B]``."""
        if self.likelihood == "mult":
            return (F.log_softmax(logits, dim=1) * rows).sum(1)
        p = torch.sigmoid(logits)
        if self.likelihood == "bern":
            ll = rows * torch.log(p + _EPS) + (1 - rows) * torch.log(1 - p + _EPS)
        elif self.likelihood == "gaus":
            ll = -(rows - p) ** 2
        else:  # pois
            ll = rows * torch.log(p + _EPS) - p
        return ll.sum(1)

    # ------------------------------------------------------------ contract
    def loss(self, batch) -> torch.Tensor:
        _, rows = batch
        rows = (rows > 0).float()  # [B, I]
        mu, logvar = self.encode(rows)  # [B, K]
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        nll = -self._log_likelihood(rows, self.decode(z)).mean()
        kl = (0.5 * (-logvar + logvar.exp() + mu.pow(2) - 1)).sum(1).mean()
        beta = self.beta
        if self.training:
            self.update_count += 1
        return nll + beta * kl

    @torch.no_grad()
    def score(self, users: torch.Tensor, history=None) -> torch.Tensor:
        mu, _ = self.encode(self.history_rows(users))
        return self.decode(mu)  # [B, I]

    @torch.no_grad()
    def _user_means(self) -> torch.Tensor:
        was_training = self.training
        self.drop.eval()  # posterior means of the clean rows, whatever the mode
        out = self.over_all_users(lambda users: self.encode(self.history_rows(users))[0])
        self.drop.train(was_training)
        return out  # [U, K]

    @torch.no_grad()
    def latents(self):
        """``(mu [U, latent_dim], decoder output weight [I, hidden_dims[0]])``."""
        users = self.cached("user_means", self._user_means)
        return users.detach(), self.decoder[-1].weight.detach()
