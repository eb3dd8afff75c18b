"""SASRec-CF: SASRec (:mod:`seq.models.sasrec`) whose input item vectors carry a CF latent.

The bridge of BiTVAE-Rec (:mod:`bridges.models.bitvae_rec`) without CARCA, so the question "do
CF latents help a sequence encoder?" is not tied to one encoder. Each profile item enters as

.. math::
    x_t = \\sqrt{d}\\,E_{s_t} + P\\,\\mu_{s_t} + p_t \\quad (\\texttt{latent\\_join=add}), \\qquad
    x_t = W\\,[\\sqrt{d}\\,E_{s_t} \\,\\|\\, \\mu_{s_t}] + p_t \\quad (\\texttt{concat})

with ``mu_i`` the item's standardised CF latent (:func:`bridges.latents.item_latents`: BiVAE,
VAECF or LightGCN trained on the run's training part only), ``P: k -> d`` (initialised at
zero, so training starts from plain SASRec) or ``W: d + k -> d`` (initialised as
``[I | 0]``, the same start). Everything else, including the output item table ``E`` the
next-item loss and the ranking use, is SASRec's. ``finetune_latents=true`` trains ``mu`` too.
"""
from __future__ import annotations

import torch
from torch import nn

from gcf.models.registry import register_model
from seq.models.sasrec import SASRec

from ..latents import item_latents


@register_model("sasrec_cf", family="seq")
class SASRecCF(SASRec):
    """SASRec-CF (module docstring).

    Args (beyond SASRec's): latent_source (``bivae`` | ``vaecf`` | ``lightgcn``), latent_dim,
    latent_epochs, latent_holdout, latent_cache, latent_path, latent_device: as BiTVAE-Rec's;
    latent_join: ``add`` | ``concat``; finetune_latents: train the latents (False).
    """

    def __init__(self, data, latent_source: str = "bivae", latent_dim: int | None = None,
                 latent_epochs: int | None = None, latent_holdout: float = 0.1,
                 latent_cache: str | None = "runs/latent-cache", latent_path: str | None = None,
                 latent_join: str = "add", finetune_latents: bool = False, latent_device: str = "auto", **sasrec):
        if latent_join not in ("add", "concat"):
            raise ValueError(f"latent_join must be 'add' or 'concat', got {latent_join!r}")
        if latent_source == "none" and not latent_path:
            raise ValueError("sasrec_cf needs latents (latent_source bivae|vaecf|lightgcn or latent_path); "
                             "plain SASRec is the model 'sasrec'")
        seed = torch.initial_seed()
        latents = torch.from_numpy(item_latents(data, latent_source, seed, latent_dim, latent_epochs, latent_holdout,
                                                latent_cache, latent_path, latent_device))
        torch.manual_seed(seed)  # SASRec's initialisation does not depend on the latents' training
        super().__init__(data, **sasrec)
        table = torch.cat([latents.new_zeros(1, latents.shape[1]), latents])  # row 0: padding
        if finetune_latents:
            self.cf_latents = nn.Parameter(table)
        else:
            self.register_buffer("cf_latents", table)
        d, k = self.d, latents.shape[1]
        self.latent_join = latent_join
        self.join = nn.Linear(k, d, bias=False) if latent_join == "add" else nn.Linear(d + k, d, bias=False)
        with torch.no_grad():  # start from plain SASRec
            self.join.weight.zero_()
            if latent_join == "concat":
                self.join.weight[:, :d] = torch.eye(d)

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        e = super().embed_items(items)  # sqrt(d) E[items]
        mu = self.cf_latents[items]
        return e + self.join(mu) if self.latent_join == "add" else self.join(torch.cat([e, mu], -1))
