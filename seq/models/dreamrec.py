r"""DreamRec (Yang, Wu, Wang, Zhang, He, "Generate What You Prefer: Reshaping Sequential
Recommendation via Guided Diffusion", NeurIPS 2023; arXiv 2310.20453).

The oracle next item's embedding is generated from noise, guided by the encoded history; no
negatives are used anywhere. With ``E`` the item table, :math:`c = \mathrm{Enc}(s_1..s_L)` (a
one-block SASRec, read at the newest position) and a learned null vector :math:`\varnothing`:

.. math::
    x_0 = E_{target},\quad x_t = \sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,\quad
    \mathcal L = \tfrac1d\big\| x_0 - f_\theta(x_t, \tilde c, t) \big\|^2,\quad
    \tilde c = \varnothing \text{ with probability } p_u \text{, else } c,

with :math:`f_\theta(x, c, t) = W[x \,\|\, c \,\|\, \mathrm{MLP}(\sin(t))] + b` (the official
``mlp1``). Sampling starts from :math:`x_T \sim \mathcal N(0, I)` and runs the DDPM reverse
process (:mod:`seq.diffusion`, posterior variance :math:`\tilde\beta_t`) with classifier-free
guidance :math:`\hat x_0 = (1 + w) f_\theta(x_t, c, t) - w f_\theta(x_t, \varnothing, t)`; the
items are ranked by inner product with the result.

As the official code (YangZhengyi98/DreamRec ``DreamRec.py``; ``MODELS.md``): the encoder is one
block with one head, ``y = LN(x); x = y + Attn(q=y, k=v=x); y = LN(x); x = y + FFN(y)``
(``norm="sasrec"`` in :mod:`seq.layers`), causal, FFN ``d -> d`` ReLU, learned positions over
``L = 10`` slots, embedding dropout, padding zeroed, a final LN; item table and null vector
``N(0, 1)``; the step MLP ``Linear(d, 2d)``-GELU-``Linear(2d, d)`` on the sinusoid of the raw
integer step; ``x_0`` prediction with an element-mean MSE; ``p_u = 0.1``. Defaults are the README's
Zhihu run: T = 500, linear betas 1e-4..0.02, ``w = 4``, lr 0.01, batch 256, d = 64, dropout 0.1.

Departures:

- **Dropout is off at evaluation** (the official code never calls ``model.eval()``, so the
  encoder's dropout stays on while sampling). ``eval_dropout=True`` gives the official behaviour.
- Sequences are right-aligned (the newest item in the last slot) where the official ones are
  left-aligned with the state read at ``len - 1``; positions are learned either way.
- The sinusoid is ``[cos, sin]`` with frequencies ``1e4^{-i/(d/2)}`` (gcf's
  :func:`~gcf.models.diffrec.timestep_embedding`) instead of ``[sin, cos]`` with
  ``1e4^{-i/(d/2-1)}``: a fixed re-parametrisation of the input of a learned MLP.
- One epoch is one shuffled pass over every (prefix, next item) of the training sequences
  (the official draws ``rows / B`` batches at random). As in the official data, the first item of
  each sequence is a target too, with an empty (all-padding) history: the encoder's state for
  it is then a learned constant (``empty_history``; 15% of Zhihu's training and test rows have
  no history; ``empty_history=False`` drops those training rows, and 19 more items are then
  never a target).
- **Items that are never a training target are not ranked** (``rank_untrained=False``). The
  x0-MSE is the only loss and it touches an item's row only when that item is a target, so the
  rows of the other items keep their N(0, 1) initialisation (norm ~sqrt(d) = 8) while the trained
  rows shrink (median norm ~0.24 on Zhihu after 100 epochs): under the inner product those
  untrained rows fill the top of every ranking. On DreamRec's Zhihu split 87 of the 4,838 items
  never occur in training and 7.2% of the test targets are among them, so the official ranking's
  HR@20 comes mostly from them (a ranking that puts them first in random order scores ~1.65%):
  ``benchmarks/bench_diffusion_seq.py`` reports both rankings and the split by target.
  ``rank_untrained=True`` gives the official ranking (every row scored).
- The pad row is not ranked; the official ranks all ``n + 1`` rows. Seen items are masked by
  the toolkit's default (``mask_seen``); the DreamRec protocol does not mask (the benchmark
  reports both).
- Sampling noise comes from a generator seeded by ``sample_seed`` and the batch's first user:
  scores are reproducible for a given ``eval_batch_size``.

Args:
    max_len: history length ``L`` (default 10). hidden_size: ``d`` (64). dropout: encoder dropout (0.1).
    steps: ``T`` (500). schedule: ``linear`` | ``exp`` | ``cosine`` | ``sqrt`` | ``trunc_lin`` (``linear``).
    beta_start, beta_end: the linear schedule's ends (1e-4, 0.02).
    w: guidance (personalisation) weight at sampling (4.0); 0 = the conditional model alone.
    p_uncond: probability of training with the null condition (0.1).
    denoiser: ``mlp1`` (one linear layer, official default) | ``mlp2`` (a 2d GELU hidden layer).
    eval_dropout: keep the encoder's dropout on when scoring (the official behaviour; False).
    sample_seed: seed of the reverse process at scoring time (0).
    rank_untrained: score the items that are never a training target too (the official behaviour;
        False: they score ``-inf``, see above).
    empty_history: train on each sequence's first item with an empty history too (official; True).

Shapes: ``items [B, L]`` seq ids (0 = padding, right-aligned), ``targets [B]`` -> scores ``[B, n_items]``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gcf.models.diffrec import timestep_embedding
from gcf.models.registry import register_model

from ..data import PrefixBatches, never_targets
from ..diffusion import GaussianDiffusion, batch_generator, beta_schedule, guided
from ..layers import TransformerEncoder, causal_mask
from .base import GenerativeSeqRecommender

DENOISERS = ("mlp1", "mlp2")


@register_model("dreamrec", family="seq")
class DreamRec(GenerativeSeqRecommender):
    """DreamRec (module docstring)."""

    def __init__(self, data, max_len: int = 10, hidden_size: int = 64, dropout: float = 0.1, steps: int = 500,
                 schedule: str = "linear", beta_start: float = 1e-4, beta_end: float = 0.02, w: float = 4.0,
                 p_uncond: float = 0.1, denoiser: str = "mlp1", eval_dropout: bool = False, sample_seed: int = 0,
                 rank_untrained: bool = False, empty_history: bool = True):
        super().__init__(data, max_len)
        if denoiser not in DENOISERS:
            raise ValueError(f"denoiser must be one of {', '.join(DENOISERS)}, got {denoiser!r}")
        if not 0 <= p_uncond < 1:
            raise ValueError(f"p_uncond must be in [0, 1), got {p_uncond}")
        d = self.d = int(hidden_size)
        self.w, self.p_uncond = float(w), float(p_uncond)
        self.eval_dropout, self.sample_seed = bool(eval_dropout), int(sample_seed)
        self.item_embedding = nn.Embedding(self.n_items + 1, d)  # N(0, 1), as official
        self.position_embedding = nn.Embedding(self.max_len, d)
        self.null = nn.Parameter(torch.randn(d))  # the unconditional "history"
        self.emb_dropout = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(1, d, final_norm=True, n_heads=1, inner_size=d, hidden_dropout=dropout,
                                          attn_dropout=dropout, activation="relu", norm="sasrec", out_proj=False,
                                          eps=1e-5)
        self.step_mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.denoiser = nn.Linear(3 * d, d) if denoiser == "mlp1" else \
            nn.Sequential(nn.Linear(3 * d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.diffusion = GaussianDiffusion(beta_schedule(schedule, steps, beta_start, beta_end))
        self.rank_untrained, self.empty_history = bool(rank_untrained), bool(empty_history)
        # items never a training target (with empty_history: the items absent from training): their
        # rows keep the N(0, 1) init, so they are left out of the ranking unless rank_untrained
        untrained = torch.zeros(self.n_items, dtype=torch.bool) if self._train_sequences is None else \
            torch.from_numpy(never_targets(self._train_sequences, first_target=self.empty_history))
        self.register_buffer("untrained", untrained, persistent=False)

    # ------------------------------------------------------------ network
    def encode(self, items: torch.Tensor, times=None) -> torch.Tensor:
        """``c [B, d]``: the encoder's state at the newest position of ``items [B, L]``."""
        L = items.shape[1]
        keep = (items > 0).unsqueeze(-1)
        x = self.emb_dropout(self.item_embedding(items) + self.position_embedding.weight[self.max_len - L:]) * keep
        # the newest slot: the last item, or (empty history) a padding slot that attends to itself only
        return self.encoder(x, causal_mask(items == 0))[:, -1]

    def denoise(self, x_t: torch.Tensor, c: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x0_hat [B, d]`` from ``x_t [B, d]``, the condition ``c [B, d]`` (or the null, broadcast) and ``t [B]``."""
        step = self.step_mlp(timestep_embedding(t, self.d))
        return self.denoiser(torch.cat([x_t, c.expand_as(x_t), step], dim=-1))

    # ------------------------------------------------------------ training
    def batches(self, data, batch_size: int):
        return PrefixBatches(data, batch_size, self.max_len, first_target=self.empty_history)

    def loss(self, batch: dict) -> torch.Tensor:
        items, targets = batch["items"], batch["targets"]
        c = self.encode(items)  # [B, d]
        drop = torch.rand(len(c), device=c.device) < self.p_uncond
        c = torch.where(drop[:, None], self.null.expand_as(c), c)
        x0 = self.item_embedding(targets)
        t = self.diffusion.sample_t(len(targets), x0.device)
        x_t = self.diffusion.q_sample(x0, t)
        return F.mse_loss(self.denoise(x_t, c, t), x0)

    # ------------------------------------------------------------- scoring
    def score_sequences(self, users, items, times=None) -> torch.Tensor:
        scores = super().score_sequences(users, items, times)
        if not self.rank_untrained:
            scores[:, self.untrained] = float("-inf")
        return scores

    @torch.no_grad()
    def generate(self, users: torch.Tensor, items: torch.Tensor, w: float | None = None) -> torch.Tensor:
        """The guided reverse process: ``x0 [B, d]`` for ``items [B, L]`` (``w`` default: ``self.w``)."""
        w = self.w if w is None else float(w)
        was = self.encoder.training
        if self.eval_dropout:  # the official code samples with the encoder's dropout on
            self.emb_dropout.train(True)
            self.encoder.train(True)
        c = self.encode(items)
        self.emb_dropout.train(was)
        self.encoder.train(was)
        g = batch_generator(self.sample_seed, users, items.device)

        def predict(x, t):
            return guided(self.denoise(x, c, t), self.denoise(x, self.null, t) if w else None, w)

        return self.diffusion.sample(predict, (len(items), self.d), g, items.device, "small")
