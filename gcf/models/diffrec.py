r"""DiffRec: a Gaussian diffusion model over each user's interaction vector.

Wang, Xu, Feng, Lin, He, Chua, "Diffusion Recommender Model", SIGIR 2023 (arXiv 2304.04971).

Forward process on the binary row :math:`x_0 \in \{0,1\}^I` of a user, with :math:`T` =
``steps`` small noise steps:

.. math::
    q(x_t \mid x_0) = \mathcal N\big(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I\big), \qquad
    \bar\alpha_t = \prod_{s \le t} (1 - \beta_s).

The ``'linear-var'`` schedule makes the variance :math:`1-\bar\alpha_t` a linear ramp from
``noise_scale * noise_min`` to ``noise_scale * noise_max``. Then
:math:`\beta_t = \min(1 - \bar\alpha_t/\bar\alpha_{t-1},\ 0.999)`, and the first step is
fixed, :math:`\beta_1 = 10^{-5}`. ``'linear'`` instead ramps :math:`\beta_t` itself linearly.
The reverse step uses the DDPM posterior
:math:`q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t(x_t, x_0), \tilde\beta_t I)`,

.. math::
    \tilde\mu_t = \frac{\beta_t\sqrt{\bar\alpha_{t-1}}}{1-\bar\alpha_t}\,x_0
        + \frac{(1-\bar\alpha_{t-1})\sqrt{1-\beta_t}}{1-\bar\alpha_t}\,x_t,

with :math:`x_0` replaced by the network's prediction :math:`\hat x_\theta(x_t, t)`
(``mean_type='x0'``). Training minimises, per user,

.. math::
    \mathcal L = \mathbb E_{t \sim p_t}\Big[\frac{w_t}{p_t\,T}\,
        \frac1I\,\|x_0 - \hat x_\theta(x_t, t)\|^2\Big],
    \qquad w_t = \mathrm{SNR}(t-1) - \mathrm{SNR}(t),\ w_0 = 1,\quad
    \mathrm{SNR}(t) = \frac{\bar\alpha_t}{1-\bar\alpha_t},

(``reweight``; otherwise :math:`w_t = 1`). With importance sampling, :math:`t` is uniform
(:math:`p_t = 1/T`) until every step has 10 recorded losses. After that
:math:`p_t \propto \sqrt{\mathrm{mean}(L_t^2)}` over the last 10 weighted losses of step
:math:`t`, mixed with 0.1% uniform. Inference starts from :math:`x_0` = the training row,
noised to step ``sampling_steps - 1`` (not noised when ``sampling_steps = 0``). It then runs
all ``steps`` reverse steps with the posterior mean only, no sampling noise. The final
vector is the score.

Denoiser (the official ``DNN``): sinusoidal time embedding of size ``emb_size`` (max period
1e4) then ``Linear(emb_size, emb_size)``. The row goes through ``Dropout(0.5)`` and is
concatenated with the embedding. In-layers ``[I + emb -> dims reversed]`` with tanh after
each, out-layers ``[dims -> I]`` with tanh between them and none on the output. For
``dims_dnn = [1000]`` that is ``Linear(I+10, 1000) -> tanh -> Linear(1000, I)``.

Choices (see ``MODELS.md`` section 7):

- We follow the official code (YiyanXu/DiffRec): the ``'linear-var'`` schedule with
  :math:`\beta_1` fixed to 1e-5, the importance sampling of steps and the reweighting.
  RecBole uses ``'linear'``, Xavier init and no importance sampling. The init is the
  official one: weights :math:`\mathcal N(0, 2/(\text{fan\_in}+\text{fan\_out}))`, biases
  :math:`\mathcal N(0, 0.001^2)`. The official AdamW with weight decay 0 is the trainer's Adam.
- The loss history (``Lt_history`` ``[T, 10]``, ``Lt_count`` ``[T]``) is a pair of registered
  buffers, so checkpoints and ``resume`` keep it. It is only updated by ``loss`` in training
  mode. The official per-sample Python loop is vectorised per step with the same result: each
  step keeps its last 10 weighted losses in batch order.
- ``mean_type='x0'`` is the paper's. ``'eps'`` (predict the noise) is also implemented as in
  the official code (its own weight and a :math:`t=0` likelihood term).
- ``reweight=False`` uses :math:`w_t = 1`. This fixes the official code's NameError for x0 and
  matches RecBole. With ``noise_scale = 0`` there is no diffusion: the row is fed as is,
  reweighting is off, and inference applies the network ``steps`` times, as in the official code.
- Defaults are for small data (ML-100k). From the released small-noise configurations
  (amazon-book) and RecBole we take 5 steps and ``noise_min``/``noise_max`` 5e-4 / 5e-3.
  From RecBole we take a ``[300]`` denoiser (the official ``[1000]`` scored lower on
  ML-100k). ``noise_scale`` 1e-2 (RecBole and amazon-book: 1e-3 and 1e-4) and learning
  rate 5e-4 were picked on ML-100k validation NDCG@20 (``configs/model/diffrec.yaml``).
- DiffRec has no user/item latent factors: ``latents()`` raises ``TypeError``.

Args:
    dims_dnn: hidden widths of the denoiser's decoder half (default: ``[300]``).
    emb_size: size of the time embedding (default: 10).
    steps: T, the number of diffusion steps (default: 5).
    noise_schedule: ``'linear-var'`` or ``'linear'`` (default: ``'linear-var'``).
    noise_scale: multiplier of ``noise_min``/``noise_max``; 0 disables the diffusion (default: 1e-2).
    noise_min: start of the ramp before scaling (default: 5e-4).
    noise_max: end of the ramp before scaling (default: 5e-3).
    sampling_steps: noise level inference starts from, 0 = the clean row (default: 0).
    reweight: weight the loss by the SNR difference (default: True).
    mean_type: ``'x0'`` or ``'eps'`` (default: ``'x0'``).
    dropout: dropout on the denoiser's input row (default: 0.5).
    beta_fixed: set :math:`\beta_1 = 10^{-5}` (default: True).
    history_num_per_term: losses remembered per step for importance sampling (default: 10).
    width: size of the diffused vector (default: ``n_items``; set by L-DiffRec, not a config key).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .base import Recommender, TrainData

SCHEDULES = ("linear-var", "linear")
MEAN_TYPES = ("x0", "eps")
_UNIFORM_PROB = 0.001


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[B, dim]`` of integer steps ``[B]`` (cos half, then sin half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # [B, half]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class Denoiser(nn.Module):
    """The official DNN: ``(x_t [B, I], t [B]) -> prediction [B, I]``."""

    def __init__(self, n_items: int, dims: list[int], emb_size: int, dropout: float):
        super().__init__()
        out_dims = [*dims, n_items]
        in_dims = out_dims[::-1]
        self.emb_size = emb_size
        self.emb_layer = nn.Linear(emb_size, emb_size)
        in_full = [in_dims[0] + emb_size, *in_dims[1:]]
        self.in_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(in_full[:-1], in_full[1:]))
        self.out_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(out_dims[:-1], out_dims[1:]))
        self.drop = nn.Dropout(dropout)
        for layer in [self.emb_layer, *self.in_layers, *self.out_layers]:
            fan_out, fan_in = layer.weight.shape
            nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / (fan_in + fan_out)))
            nn.init.normal_(layer.bias, 0.0, 0.001)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.emb_layer(timestep_embedding(t, self.emb_size))  # [B, emb]
        h = torch.cat([self.drop(x), emb], dim=-1)  # [B, I + emb]
        for layer in self.in_layers:
            h = torch.tanh(layer(h))
        for j, layer in enumerate(self.out_layers):
            h = layer(h)
            if j != len(self.out_layers) - 1:
                h = torch.tanh(h)
        return h  # [B, I]


def schedule_betas(schedule: str, steps: int, scale: float, low: float, high: float,
                   beta_fixed: bool = True, max_beta: float = 0.999) -> np.ndarray:
    """The ``[steps]`` float64 noise schedule :math:`\\beta_t`."""
    start, end = scale * low, scale * high
    if schedule == "linear":
        betas = np.linspace(start, end, steps, dtype=np.float64)
    elif schedule == "linear-var":
        alpha_bar = 1.0 - np.linspace(start, end, steps, dtype=np.float64)
        betas = np.empty(steps)
        betas[0] = 1.0 - alpha_bar[0]
        betas[1:] = np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)
    else:
        raise ValueError(f"noise_schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if beta_fixed:
        betas[0] = 1e-5
    if (betas <= 0).any() or (betas > 1).any():
        raise ValueError(f"noise schedule gives betas outside (0, 1]: {betas} (check noise_min < noise_max)")
    return betas


class DiffRec(Recommender):
    batch_kind = "user_rows"

    def __init__(self, data: TrainData, dims_dnn=(300,), emb_size: int = 10, steps: int = 5,
                 noise_schedule: str = "linear-var", noise_scale: float = 1e-2, noise_min: float = 5e-4,
                 noise_max: float = 5e-3, sampling_steps: int = 0, reweight: bool = True, mean_type: str = "x0",
                 dropout: float = 0.5, beta_fixed: bool = True, history_num_per_term: int = 10,
                 width: int | None = None):
        super().__init__(data)
        if mean_type not in MEAN_TYPES:
            raise ValueError(f"mean_type must be one of {', '.join(MEAN_TYPES)}, got {mean_type!r}")
        steps, sampling_steps = int(steps), int(sampling_steps)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if not 0 <= sampling_steps <= steps:
            raise ValueError(f"sampling_steps must be in [0, steps={steps}], got {sampling_steps}")
        self.steps = steps
        self.sampling_steps = sampling_steps
        self.noise_scale = float(noise_scale)
        self.mean_type = mean_type
        self.reweight = bool(reweight) and self.noise_scale != 0.0
        self.history_num = int(history_num_per_term)
        # the diffused vector: the interaction row (n_items), or L-DiffRec's latent (``width``)
        self.net = Denoiser(int(width or data.n_items), [int(d) for d in dims_dnn], int(emb_size), float(dropout))
        self.register_buffer("Lt_history", torch.zeros(steps, self.history_num, dtype=torch.float64))
        self.register_buffer("Lt_count", torch.zeros(steps, dtype=torch.long))
        if noise_schedule not in SCHEDULES:
            raise ValueError(f"noise_schedule must be one of {', '.join(SCHEDULES)}, got {noise_schedule!r}")
        if self.noise_scale != 0.0:
            self._register_schedule(schedule_betas(noise_schedule, steps, self.noise_scale, float(noise_min),
                                                   float(noise_max), beta_fixed))

    def _register_schedule(self, betas: np.ndarray) -> None:
        """Every per-step constant as a non-persistent float64 buffer ``[T]``."""
        alphas = 1.0 - betas
        ac = np.cumprod(alphas)
        ac_prev = np.append(1.0, ac[:-1])
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
        consts = {
            "betas": betas,
            "alphas_cumprod": ac,
            "alphas_cumprod_prev": ac_prev,
            "sqrt_alphas_cumprod": np.sqrt(ac),
            "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac),
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ac),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ac - 1.0),
            "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1.0 - ac),
            "posterior_mean_coef2": (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
            "posterior_variance": post_var,
        }
        for name, value in consts.items():
            self.register_buffer(name, torch.from_numpy(np.asarray(value, dtype=np.float64)), persistent=False)

    @staticmethod
    def _at(arr: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``arr[t]`` as float32 ``[B, 1]`` to broadcast over items."""
        return arr[t].float()[:, None]

    # ------------------------------------------------------------ diffusion
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        noise = torch.randn_like(x0) if noise is None else noise
        return self._at(self.sqrt_alphas_cumprod, t) * x0 + self._at(self.sqrt_one_minus_alphas_cumprod, t) * noise

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        ac = self.alphas_cumprod[t]
        return ac / (1.0 - ac)

    def _predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if self.mean_type == "x0":
            return out
        return self._at(self.sqrt_recip_alphas_cumprod, t) * x_t - self._at(self.sqrt_recipm1_alphas_cumprod, t) * out

    def p_mean(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Posterior mean of ``x_{t-1}`` given ``x_t`` and the predicted ``x_0``."""
        x0_hat = self._predict_x0(x_t, t, self.net(x_t, t))
        return self._at(self.posterior_mean_coef1, t) * x0_hat + self._at(self.posterior_mean_coef2, t) * x_t

    def sample_steps(self, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(t [n], p_t * T [n])``: uniform until the loss history is full, then importance."""
        if not bool((self.Lt_count == self.history_num).all()):
            return torch.randint(0, self.steps, (n,), device=device), torch.ones(n, device=device)
        lt = torch.sqrt((self.Lt_history ** 2).mean(-1))  # [T]
        p = lt / lt.sum() * (1 - _UNIFORM_PROB) + _UNIFORM_PROB / self.steps
        t = torch.multinomial(p, n, replacement=True)
        return t, (p[t] * self.steps).float()

    @torch.no_grad()
    def _record(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Append each step's new losses (batch order) to its last-``history_num`` window."""
        losses = losses.detach().double()
        for s in torch.unique(t).tolist():
            new = losses[t == s]
            count = int(self.Lt_count[s])
            window = torch.cat([self.Lt_history[s, :count], new])[-self.history_num:]
            self.Lt_history[s, : len(window)] = window
            self.Lt_count[s] = len(window)

    def diffusion_loss(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss [B], predicted x0 [B, d])`` of clean vectors ``x0 [B, d]``: the per-row loss
        is already divided by ``p_t * T`` (importance sampling), so its mean is the objective."""
        n = x0.shape[0]
        if self.noise_scale == 0.0:
            t = torch.randint(0, self.steps, (n,), device=x0.device)
            out = self.net(x0, t)
            return ((x0 - out) ** 2).mean(1), out
        t, pt = self.sample_steps(n, x0.device)  # [B], [B]
        noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        out = self.net(x_t, t)  # [B, d]
        target = x0 if self.mean_type == "x0" else noise
        mse = ((target - out) ** 2).mean(1)  # [B]
        x0_hat = self._predict_x0(x_t, t, out)
        if not self.reweight:
            loss = mse
        elif self.mean_type == "x0":
            weight = torch.where(t == 0, torch.ones_like(self.betas[t]), self.snr(t - 1) - self.snr(t))
            loss = weight.float() * mse
        else:
            weight = (1 - self.alphas_cumprod[t]) / ((1 - self.alphas_cumprod_prev[t]) ** 2 * (1 - self.betas[t]))
            weight = torch.where(t == 0, torch.ones_like(weight), weight).float()
            likelihood = ((x0 - x0_hat) ** 2 / 2.0).mean(1)
            loss = weight * torch.where(t == 0, likelihood, mse)
        if self.training:
            self._record(t, loss)
        return loss / pt, x0_hat

    # ------------------------------------------------------------ contract
    def loss(self, batch) -> torch.Tensor:
        _, x0 = batch
        return self.diffusion_loss((x0 > 0).float())[0].mean()

    @torch.no_grad()
    def denoise(self, x0: torch.Tensor) -> torch.Tensor:
        """Reverse process from the (optionally noised) ``x0 [B, d]``; the denoised ``[B, d]``
        (DiffRec's scores when ``x0`` is the interaction row)."""
        n = x0.shape[0]
        if self.noise_scale == 0.0:
            x = x0
            for i in reversed(range(self.steps)):
                x = self.net(x, torch.full((n,), i, device=x0.device, dtype=torch.long))
            return x
        if self.sampling_steps == 0:
            x = x0
        else:
            x = self.q_sample(x0, torch.full((n,), self.sampling_steps - 1, device=x0.device, dtype=torch.long))
        for i in reversed(range(self.steps)):
            x = self.p_mean(x, torch.full((n,), i, device=x0.device, dtype=torch.long))
        return x

    @torch.no_grad()
    def score(self, users: torch.Tensor, history=None) -> torch.Tensor:
        return self.denoise((self.history_rows(users) > 0).float())  # [B, I]
