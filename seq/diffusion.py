r"""Gaussian diffusion over vectors: noise schedules, the forward process, the DDPM posterior and
the reverse loop with optional classifier-free guidance. Shared by DiffuRec and DreamRec.

With :math:`\beta_1..\beta_T` (index ``t = 0..T-1`` in code), :math:`\alpha_t = 1-\beta_t` and
:math:`\bar\alpha_t = \prod_{s\le t}\alpha_s` (Ho et al., NeurIPS 2020):

.. math::
    q(x_t \mid x_0) = \mathcal N\big(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t) I\big),\qquad
    q(x_{t-1} \mid x_t, x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I),

.. math::
    \tilde\mu_t = \frac{\beta_t\sqrt{\bar\alpha_{t-1}}}{1-\bar\alpha_t}\,x_0
        + \frac{(1-\bar\alpha_{t-1})\sqrt{\alpha_t}}{1-\bar\alpha_t}\,x_t,\qquad
    \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\,\beta_t,\quad \bar\alpha_{-1} = 1.

Both models predict :math:`x_0`. The reverse loop starts from :math:`x_T \sim \mathcal N(0, I)`
and, for ``t = T-1 .. 0``, replaces :math:`x_0` by the prediction, takes :math:`\tilde\mu_t` and
adds :math:`\sigma_t z` except at ``t = 0``. ``variance="small"`` is :math:`\sigma_t^2 =
\tilde\beta_t` (DDPM, DreamRec); ``"large"`` is :math:`\sigma_t^2 = \beta_t` with
:math:`\tilde\beta_1` in place of :math:`\beta_0` (improved DDPM's ``FIXED_LARGE``, DiffuRec).
With a guidance weight ``w`` the prediction is :math:`(1+w)\,f(x_t, c, t) - w\,f(x_t, \varnothing, t)`
(Ho & Salimans 2022, as DreamRec writes it); ``w = 0`` calls the conditional model only.

All randomness of the reverse loop comes from a ``torch.Generator`` the caller seeds, so sampling
is reproducible and leaves the global RNG (the trainer's stream) alone.

The linear schedule is gcf's (:func:`gcf.models.diffrec.schedule_betas`); gcf's DiffRec keeps its
own buffers because gcf may not import this package.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from gcf.models.diffrec import schedule_betas

__all__ = ["beta_schedule", "BETA_SCHEDULES", "GaussianDiffusion", "guided"]

BETA_SCHEDULES = ("linear", "trunc_lin", "cosine", "exp", "sqrt")


def _betas_for_alpha_bar(steps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999) -> np.ndarray:
    """:math:`\\beta_i = \\min(1 - \\bar\\alpha((i+1)/T) / \\bar\\alpha(i/T), \\text{max\\_beta})`."""
    t = np.arange(steps + 1, dtype=np.float64) / steps
    ab = np.array([alpha_bar(x) for x in t])
    return np.minimum(1.0 - ab[1:] / ab[:-1], max_beta)


def beta_schedule(name: str, steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """The ``[steps]`` float64 schedule :math:`\\beta_t`.

    - ``linear``: ``linspace(beta_start, beta_end)`` (DDPM; DreamRec's ``linear``).
    - ``trunc_lin`` (DiffuRec's default): with ``s = 1000 / T``, ``linspace(s*1e-4 + 0.01, s*0.02 + 0.01)``
      (``s*1e-3 + 0.01`` as the end when that exceeds 1, as the official code).
    - ``cosine``: Nichol & Dhariwal's :math:`\\bar\\alpha(t) = \\cos^2(\\frac{t + 0.008}{1.008}\\frac\\pi2)`,
      clipped to ``[1e-4, 0.9999]`` (DreamRec).
    - ``exp`` (DreamRec): :math:`\\beta_i = 1 - \\exp(-0.1/T - x_i (10 - 0.1) / (2T^2))`, ``x = linspace(1, 2T+1, T)``.
    - ``sqrt``: :math:`\\bar\\alpha(t) = 1 - \\sqrt{t + 10^{-4}}` (Li et al., Diffusion-LM).
    """
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if name == "linear":
        betas = schedule_betas("linear", steps, 1.0, beta_start, beta_end, beta_fixed=False)
    elif name == "trunc_lin":
        s = 1000.0 / steps
        end = s * 0.02 + 0.01
        betas = np.linspace(s * 1e-4 + 0.01, end if end <= 1 else s * 1e-3 + 0.01, steps, dtype=np.float64)
    elif name == "cosine":
        ab = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        t = np.arange(steps + 1, dtype=np.float64) / steps
        abar = np.array([ab(x) for x in t])
        betas = np.clip(1.0 - abar[1:] / abar[:-1], 1e-4, 0.9999)
    elif name == "exp":
        x = np.linspace(1, 2 * steps + 1, steps, dtype=np.float64)
        betas = 1.0 - np.exp(-0.1 / steps - x * 0.5 * (10.0 - 0.1) / (steps * steps))
    elif name == "sqrt":
        betas = _betas_for_alpha_bar(steps, lambda t: 1.0 - math.sqrt(t + 1e-4))
    else:
        raise ValueError(f"schedule must be one of {', '.join(BETA_SCHEDULES)}, got {name!r}")
    if (betas <= 0).any() or (betas >= 1).any():
        raise ValueError(f"schedule {name!r} with {steps} steps gives betas outside (0, 1): {betas.min()}..{betas.max()}")
    return betas


def guided(cond: torch.Tensor, uncond: torch.Tensor | None, w: float) -> torch.Tensor:
    """Classifier-free guidance ``(1 + w) cond - w uncond`` (``cond`` itself when ``w == 0``)."""
    return cond if w == 0 else (1.0 + w) * cond - w * uncond


class GaussianDiffusion(nn.Module):
    """The per-step constants of a schedule as float64 buffers ``[T]`` (non-persistent: rebuilt
    from the config, never stored in checkpoints) and the operations on them.

    Shapes: ``x0``, ``x_t`` ``[B, d]``; ``t`` ``[B]`` long in ``[0, T)``.
    """

    def __init__(self, betas: np.ndarray):
        super().__init__()
        betas = np.asarray(betas, dtype=np.float64)
        self.steps = len(betas)
        alphas = 1.0 - betas
        ac = np.cumprod(alphas)
        ac_prev = np.append(1.0, ac[:-1])
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
        large = np.append(post_var[1], betas[1:]) if self.steps > 1 else post_var
        consts = {
            "betas": betas, "alphas_cumprod": ac, "alphas_cumprod_prev": ac_prev,
            "sqrt_alphas_cumprod": np.sqrt(ac), "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac),
            "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1.0 - ac),
            "posterior_mean_coef2": (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
            "posterior_variance": post_var, "large_variance": large,
        }
        for name, value in consts.items():
            self.register_buffer(name, torch.from_numpy(np.asarray(value, dtype=np.float64)), persistent=False)

    @staticmethod
    def _at(arr: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``arr[t]`` ``[B, 1]`` in ``like``'s dtype."""
        return arr[t].to(like.dtype)[:, None]

    def sample_t(self, n: int, device) -> torch.Tensor:
        """``[n]`` steps uniform over ``0..T-1`` (torch's global RNG: the trainer's stream)."""
        return torch.randint(0, self.steps, (n,), device=device)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """:math:`x_t = \\sqrt{\\bar\\alpha_t}x_0 + \\sqrt{1-\\bar\\alpha_t}\\,\\epsilon`."""
        noise = torch.randn_like(x0) if noise is None else noise
        return self._at(self.sqrt_alphas_cumprod, t, x0) * x0 + self._at(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean [B, d], variance [B, 1])`` of :math:`q(x_{t-1} \\mid x_t, x_0)`."""
        mean = self._at(self.posterior_mean_coef1, t, x0) * x0 + self._at(self.posterior_mean_coef2, t, x0) * x_t
        return mean, self._at(self.posterior_variance, t, x0)

    @torch.no_grad()
    def sample(self, predict_x0: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape: tuple[int, int],
               generator: torch.Generator, device, variance: str = "small") -> torch.Tensor:
        """The reverse loop (module docstring) from :math:`x_T \\sim \\mathcal N(0, I)` of ``shape``;
        ``predict_x0(x_t [B, d], t [B]) -> x0_hat [B, d]`` (guidance, if any, inside it)."""
        if variance not in ("small", "large"):
            raise ValueError(f"variance must be 'small' or 'large', got {variance!r}")
        var = self.posterior_variance if variance == "small" else self.large_variance
        x = torch.randn(shape, generator=generator, device=device)
        for i in reversed(range(self.steps)):
            t = torch.full((shape[0],), i, device=device, dtype=torch.long)
            mean, _ = self.q_posterior(predict_x0(x, t), x, t)
            if i == 0:
                x = mean
            else:
                z = torch.randn(shape, generator=generator, device=device)
                x = mean + self._at(var, t, mean).sqrt() * z
        return x


def batch_generator(seed: int, users: torch.Tensor, device) -> torch.Generator:
    """A generator for one scoring batch, seeded by ``seed`` and the batch's first user id, so a
    model's stochastic scores are reproducible for a given seed and evaluation batch size."""
    g = torch.Generator(device=device)
    first = int(users[0]) if len(users) else 0
    g.manual_seed((int(seed) * 1_000_003 + first) % (2 ** 63))
    return g
