"""BiTVAE-Rec: CARCA whose item-attribute input holds collaborative-filtering latents.

The question (``../shared/BITVAE-REC.md``, a thesis plan): do the user/item factors of a CF model,
which condense how similar users and items are, help a sequence model that already knows the
order and the context of what a user consumed? The bridge feeds them to CARCA (Rashed et al.,
RecSys 2022, :mod:`seq.models.carca`) through the slot the paper fills with image features:

.. math::
    z(i, c) = W_2\\,[\\sqrt{d}\\,E_i \\,\\|\\, W_1 [\\,\\mu_i \\,\\|\\, a_i \\,\\|\\, c\\,] + b_1] + b_2

with ``mu_i`` the item's CF latent (BiVAE posterior mean by default; VAECF decoder weights or
LightGCN embeddings as options, :mod:`bridges.latents`), ``a_i`` the item's real attributes
when ``with_attributes`` (CARCA's ``item_features``), and ``c`` CARCA's 6 time features of the
interaction. Everything else is CARCA: causal self-attention over the profile, cross-attention
from the candidates (carrying their latents, attributes and the target's context) to it,
sigmoid scores, BCE with sampled negatives.

The latents come from a CF model trained on the run's **training part only**
(:func:`bridges.latents.cf_latents`; its early stopping holds out 10% of each user's training
rows), so nothing of the validation or test items leaks in; the vectors are standardised per
dimension (zero mean, unit variance over items: the CF models' scales differ by orders of
magnitude, and ``W_1`` is initialised for unit-scale inputs). ``finetune_latents=true`` makes
the slot a trainable parameter initialised with them (frozen by default: the CF signal stays
what the CF model learned). ``latent_path=`` reads a ``latents.npz`` written by ``python -m
gcf.train`` instead (refused when trained on another split). ``latent_source=none`` is plain
CARCA on the same split, the ablation's baseline.

``user_latent=true`` lets the user's CF latent join the query side, as the plan suggests: every
candidate vector of user ``u`` gets ``+ U \theta_u`` (``theta_u`` the user's standardised
latent, ``U: k -> d`` initialised at zero so training starts from the item-only model), through
CARCA's :meth:`~seq.models.carca.CARCA.candidate_offset`. A user's latent comes from the same
training part; a user with no training interaction gets what the CF model gives an unseen user.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gcf.models.registry import register_model
from seq.attributes import item_feature_matrix
from seq.models.carca import CARCA

from ..latents import item_latents


@register_model("bitvae_rec", family="seq")
class BiTVAERec(CARCA):
    """BiTVAE-Rec (module docstring).

    Args (beyond CARCA's, which keep their meaning):
        latent_source: ``bivae`` (default) | ``vaecf`` | ``lightgcn`` | ``none`` (plain CARCA).
        latent_dim: the CF model's dimension (BiVAE ``k``, LightGCN ``embedding_size``, VAECF's
            decoder width); ``None`` keeps its shipped default.
        latent_epochs: cap on the CF model's epochs (``None``: its default, early stopping decides).
        latent_holdout: share of each user's training rows the CF model early-stops on (0.1).
        latent_cache: folder of cached latents (``runs/latent-cache``; ``None``: no cache).
        latent_path: a ``latents.npz`` of ``python -m gcf.train`` to use instead of training one.
        with_attributes: join the real item attributes (CARCA's ``item_features``) to the latents.
        finetune_latents: train the attribute slot (the latents, and the attributes joined to
            them) with the model (False: frozen).
        latent_device: where the CF model trains (``auto``).
        user_latent: add the user's CF latent to the candidates (query side; False).
    """

    def __init__(self, data, latent_source: str = "bivae", latent_dim: int | None = None,
                 latent_epochs: int | None = None, latent_holdout: float = 0.1,
                 latent_cache: str | None = "runs/latent-cache", latent_path: str | None = None,
                 with_attributes: bool = False, finetune_latents: bool = False, latent_device: str = "auto",
                 user_latent: bool = False, item_features: str | None = "auto", tag_min_items: int = 2, **carca):
        seed = torch.initial_seed()  # build_model seeded torch with the run's seed
        if user_latent and latent_source == "none" and not latent_path:
            raise ValueError("user_latent=true needs latents (latent_source bivae|vaecf|lightgcn or latent_path)")
        latents = item_latents(data, latent_source, seed, latent_dim, latent_epochs, latent_holdout, latent_cache,
                               latent_path, latent_device, with_users=user_latent)
        users = None
        if user_latent:
            latents, users = latents
        parts = [] if latents is None else [latents]
        latent_width = parts[0].shape[1] if parts else 0
        if with_attributes or not parts:  # plain CARCA keeps its attributes
            spec = self.auto_features(data) if item_features == "auto" else item_features
            parts.append(item_feature_matrix(data, spec, tag_min_items))
        matrix = np.concatenate(parts, 1) if parts else np.zeros((data.n_items, 0), np.float32)
        torch.manual_seed(seed)  # CARCA's initialisation does not depend on the latents' training
        super().__init__(data, item_attribute_matrix=matrix, **carca)
        self.latent_source, self.latent_width = ("file" if latent_path else latent_source), latent_width
        if finetune_latents and latent_width:
            self.attributes = nn.Parameter(self._buffers.pop("attributes"))  # the slot trains with the model
        self.user_proj = None
        if users is not None:
            self.register_buffer("user_latents", torch.from_numpy(users))
            self.user_proj = nn.Linear(users.shape[1], self.d, bias=False)
            nn.init.zeros_(self.user_proj.weight)  # starts as the item-only model

    def candidate_offset(self, users: torch.Tensor) -> torch.Tensor | None:
        return None if self.user_proj is None else self.user_proj(self.user_latents[users])
