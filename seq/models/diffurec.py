r"""DiffuRec (Li, Sun, Li, "DiffuRec: A Diffusion Model for Sequential Recommendation", ACM TOIS
42(3), 2023; arXiv 2304.00686).

The next item's embedding is diffused and recovered, conditioned on the history. With ``E`` the
item table and :math:`H = \mathrm{LN}(\mathrm{Drop}(E_{s_1..s_L}))` the history (no positions):

.. math::
    x_0 = E_{target},\quad t \sim U\{0..T-1\},\quad
    x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon,

.. math::
    \hat x_0 = f_\theta(x_t, t, H) = \mathrm{LN}\Big(\mathrm{Drop}\big(
        \mathrm{Transformer}(H + \lambda \odot (x_t + \mathrm{MLP}(\mathrm{sin}(t'))))\big)\Big)_{L},
    \qquad \lambda_{ij} \sim \mathcal N(\mu_\lambda, \sigma_\lambda^2),

(:math:`x_t + \text{step}` broadcast to every position, the output read at the newest position,
:math:`t' = 1000\,t/T`), trained with the cross-entropy of :math:`\mathrm{softmax}(\hat x_0 E^\top)`
against the target (every other item a negative). Inference runs the reverse process from
:math:`x_T \sim \mathcal N(0, I)` (:mod:`seq.diffusion`, ``variance="large"``) and ranks the items
by inner product with the result ("rounding").

As the official code (WHUIR/DiffuRec, ``src/diffurec.py``, ``src/model.py``; ``MODELS.md``):
``trunc_lin`` schedule with T = 32 steps; the step embedding ``[cos, sin]`` of ``1000 t / T``
through ``Linear(d, 4d)``-SiLU-``Linear(4d, d)``; :math:`\lambda` drawn element-wise with mean
and std 0.001 in training *and* at inference (so inference is stochastic twice over); 4 pre-LN
blocks (``x + Drop(f(LN x))``) with 4 heads, an attention output projection, FFN ``4d`` with GELU,
dropout 0.1 and one more dropout after each block; LN eps 1e-12; embedding dropout 0.3; item
table ``N(0, 1)``; one training sample per prefix of a training sequence (the previous <= 50
items predict the item); reverse-step variance :math:`\beta_t` (``FIXED_LARGE``); d = 128,
batch 512, Adam lr 1e-3.

Departures:

- **Attention mask.** The official mask blanks *query rows* of padding positions and no key
  columns, so the padding embedding is attended to as if it were an item. Here padding keys are
  masked (bidirectional attention over the real history: the input never holds the target).
  ``attend_padding=True`` lets every position attend to the padding keys, close to the official
  behaviour (its padding queries get uniform weights, ours attend normally).
- The cross-entropy is over the items only; the official softmax also has the padding row.
- GELU is PyTorch's exact form (the official tanh approximation differs by < 1e-3).
- The official StepLR(100 epochs, x0.1) is not applied: the trainer has no schedules, and early
  stopping ends CPU runs long before epoch 100.
- Sampling noise and :math:`\lambda` at inference come from a generator seeded by
  ``sample_seed`` and the batch's first user, so scores are reproducible (for a given
  ``eval_batch_size``); the spread over ``sample_seed`` is the sampling uncertainty.
- Training batches hold histories of similar length, cut to their longest row
  (``length_buckets``, :class:`seq.data.PrefixBatches`): with padding keys masked and no
  positions the output does not depend on the padding columns, so this changes only which rows
  share a batch; on Beauty (mean history ~5 of L = 50) it cuts the positions per epoch ~8x.
  ``length_buckets=false`` gives the official uniformly shuffled batches of full width. Ranking
  likewise runs length-sorted chunks cut to their longest row (``trim_padding``), each chunk's
  reverse process seeded by its first user.
- Evaluation follows the toolkit (seen items masked by default); the official code ranks all
  items, history included (``benchmarks/bench_diffusion_seq.py`` reports both).

Args:
    max_len: history length ``L`` (default 50). hidden_size: ``d`` (128).
    n_layers: blocks (4). n_heads: heads (4). hidden_dropout_prob: dropout in and after the blocks (0.1).
    emb_dropout: dropout on the history embeddings (0.3).
    steps: ``T`` (32). schedule: a :data:`seq.diffusion.BETA_SCHEDULES` name (``trunc_lin``).
    lambda_mean, lambda_std: the distribution of :math:`\lambda` (0.001, 0.001; std 0 = constant).
    rescale_timesteps: feed ``1000 t / T`` to the step sinusoid (True).
    reverse_variance: ``large`` (official, :math:`\beta_t`) | ``small`` (:math:`\tilde\beta_t`).
    attend_padding: attend to padding keys (the official behaviour, approximately; False).
    sample_seed: seed of the reverse process at scoring time (0).
    length_buckets: training batches of similar history length, cut to their longest row (True;
        needs ``attend_padding=False``).

Shapes: ``items [B, L]`` seq ids (0 = padding, right-aligned), ``targets [B]`` -> scores ``[B, n_items]``.
"""
from __future__ import annotations

import torch
from torch import nn

from gcf.models.diffrec import timestep_embedding
from gcf.models.registry import register_model

from ..data import PrefixBatches
from ..diffusion import GaussianDiffusion, batch_generator, beta_schedule
from ..layers import Block
from ..losses import next_item_loss
from .base import GenerativeSeqRecommender


@register_model("diffurec", family="seq")
class DiffuRec(GenerativeSeqRecommender):
    """DiffuRec (module docstring)."""

    def __init__(self, data, max_len: int = 50, hidden_size: int = 128, n_layers: int = 4, n_heads: int = 4,
                 hidden_dropout_prob: float = 0.1, emb_dropout: float = 0.3, steps: int = 32,
                 schedule: str = "trunc_lin", lambda_mean: float = 0.001, lambda_std: float = 0.001,
                 rescale_timesteps: bool = True, reverse_variance: str = "large", attend_padding: bool = False,
                 sample_seed: int = 0, length_buckets: bool = True):
        super().__init__(data, max_len)
        if attend_padding and length_buckets:
            raise ValueError("attend_padding=true needs length_buckets=false: with padding keys attended, the "
                             "output depends on how many padding columns a batch keeps")
        if reverse_variance not in ("small", "large"):
            raise ValueError(f"reverse_variance must be 'small' or 'large', got {reverse_variance!r}")
        if lambda_std < 0:
            raise ValueError(f"lambda_std must be >= 0, got {lambda_std}")
        d = self.d = int(hidden_size)
        self.lambda_mean, self.lambda_std = float(lambda_mean), float(lambda_std)
        self.rescale_timesteps, self.reverse_variance = bool(rescale_timesteps), reverse_variance
        self.attend_padding, self.sample_seed = bool(attend_padding), int(sample_seed)
        self.length_buckets = bool(length_buckets)
        # the output ignores padding columns unless they are attended: rank length-sorted chunks cut
        # to their longest row (SeqRecommender.score; each chunk draws from its own seeded generator)
        self.trim_padding = not self.attend_padding
        self.item_embedding = nn.Embedding(self.n_items + 1, d)  # N(0, 1), no padding_idx: as official
        self.emb_dropout = nn.Dropout(emb_dropout)
        self.input_norm = nn.LayerNorm(d, eps=1e-12)
        self.step_mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.SiLU(), nn.Linear(4 * d, d))
        self.blocks = nn.ModuleList(
            Block(d, n_heads, inner_size=4 * d, hidden_dropout=hidden_dropout_prob, attn_dropout=hidden_dropout_prob,
                  activation="gelu", norm="pre", out_proj=True, eps=1e-12) for _ in range(int(n_layers)))
        self.drop = nn.Dropout(hidden_dropout_prob)
        self.output_norm = nn.LayerNorm(d, eps=1e-12)
        for blk in self.blocks:  # the official xavier-normal layers
            for layer in (blk.attn.out, blk.ffn.w1, blk.ffn.w2):
                nn.init.xavier_normal_(layer.weight)
        self.diffusion = GaussianDiffusion(beta_schedule(schedule, steps))

    # ------------------------------------------------------------ network
    def history(self, items: torch.Tensor) -> torch.Tensor:
        """``H [B, L, d]`` = LN(Drop(E[items]))."""
        return self.input_norm(self.emb_dropout(self.item_embedding(items)))

    def _mask(self, items: torch.Tensor) -> torch.Tensor:
        """``[B, 1, L, L]``: every query sees the real keys (all keys with ``attend_padding``) and itself."""
        B, L = items.shape
        eye = torch.eye(L, dtype=torch.bool, device=items.device)
        if self.attend_padding:
            return torch.ones(B, 1, L, L, dtype=torch.bool, device=items.device)
        return (items > 0)[:, None, None, :] | eye

    def _lambda(self, shape, generator: torch.Generator | None, device) -> torch.Tensor:
        if self.lambda_std == 0:
            return torch.full(shape, self.lambda_mean, device=device)
        z = torch.randn(shape, generator=generator, device=device)
        return self.lambda_mean + self.lambda_std * z

    def approximator(self, h: torch.Tensor, mask: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                     lam: torch.Tensor) -> torch.Tensor:
        """``x0_hat [B, d]`` from the history ``h [B, L, d]``, ``x_t [B, d]``, ``t [B]``, ``lam [B, L, d]``."""
        steps = t.float() * (1000.0 / self.diffusion.steps) if self.rescale_timesteps else t.float()
        step = self.step_mlp(timestep_embedding(steps, self.d))  # [B, d]
        x = h + lam * (x_t + step)[:, None, :]  # [B, L, d]
        for blk in self.blocks:
            x = self.drop(blk(x, mask))
        return self.output_norm(self.drop(x))[:, -1]

    # ------------------------------------------------------------ training
    def batches(self, data, batch_size: int):
        return PrefixBatches(data, batch_size, self.max_len, length_buckets=self.length_buckets)

    def loss(self, batch: dict) -> torch.Tensor:
        items, targets = batch["items"], batch["targets"]  # [B, L], [B]
        h = self.history(items)
        x0 = self.item_embedding(targets)  # [B, d]
        t = self.diffusion.sample_t(len(targets), x0.device)
        x_t = self.diffusion.q_sample(x0, t)
        x0_hat = self.approximator(h, self._mask(items), x_t, t, self._lambda(h.shape, None, h.device))
        return next_item_loss("ce", x0_hat, targets, self.item_embedding.weight)

    # ------------------------------------------------------------- scoring
    @torch.no_grad()
    def generate(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The reverse process: ``x0 [B, d]`` for the right-aligned histories ``items [B, L]``."""
        g = batch_generator(self.sample_seed, users, items.device)
        h, mask = self.history(items), self._mask(items)
        return self.diffusion.sample(lambda x, t: self.approximator(h, mask, x, t, self._lambda(h.shape, g, h.device)),
                                     (len(items), self.d), g, items.device, self.reverse_variance)
