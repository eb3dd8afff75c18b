r"""L-DiffRec: DiffRec in a compressed latent space, with items clustered into groups.

Wang, Xu, Feng, Lin, He, Chua, "Diffusion Recommender Model", SIGIR 2023 (arXiv 2304.04971),
section 3.4 (L-DiffRec).

Items are split into ``n_cate`` clusters by k-means on item embeddings. Cluster :math:`c`
(:math:`I_c` items) gets its own variational encoder, which maps the user's interactions with
those items, :math:`x_u^{(c)}`, to a Gaussian of size :math:`d_c \approx d \cdot I_c / I`
(:math:`d` = ``ae_dims[-1]``, the last cluster takes the remainder so the sizes add up to
:math:`d`). The concatenated latent :math:`z_u \in \mathbb R^d` is what the DiffRec diffusion
of :mod:`gcf.models.diffrec` runs on (same schedule, x0 prediction, reweighting and importance
sampling, with a denoiser of width :math:`d`). A linear decoder maps the denoised latent
:math:`\hat z_u` back to item logits. Training minimises, per batch,

.. math::
    \mathcal L = \lambda\,\mathcal L_{diff}(z_u)
      - \sum_i x_{ui} \log \mathrm{softmax}(W \hat z_u + b)_i
      + \gamma\,\mathrm{KL}\big(q(z_u \mid x_u)\,\|\,\mathcal N(0, I)\big),

the multinomial likelihood of Mult-VAE being computed on the **denoised** latent.
:math:`\gamma = \min(\text{vae\_anneal\_cap}, \text{batches}/\text{vae\_anneal\_steps})` and
:math:`\lambda = \max\big((1 - \text{epoch}/\text{anneal\_steps})\,\text{lamda},\ \text{anneal\_cap}\big)`,
with :math:`\lambda` counting **epochs** (through :meth:`start_epoch`). With ``reweight=False`` the
weights swap: :math:`\mathcal L_{diff} + \lambda(\text{NLL} + \gamma \mathrm{KL})`. The score of a user
is :math:`W\,\mathrm{denoise}(\mu_u) + b`: the posterior mean goes through the reverse diffusion
and the decoder.

Faithful to the official code (YiyanXu/DiffRec ``L-DiffRec``), including its quirks:

- each encoder is ``Linear`` layers with the activation after **every** layer, the last one
  included: :math:`\mu` and :math:`\log\sigma^2` come out of a ``tanh``;
- dropout (``ae_dropout`` 0.1) is applied to the raw binary row, and the dropped-out (and
  rescaled) row is also the target of the multinomial likelihood;
- KL :math:`= -\tfrac12\,\mathrm{mean}_u \sum_k (1 + \log\sigma^2 - \mu^2 - \sigma^2)`; Xavier-normal
  weights and zero biases in the autoencoder; the denoiser is DiffRec's (dropout 0.5 on its input);
- two learning rates: ``ae_learning_rate`` for the autoencoder (official ``lr1``) and the
  run's ``learning_rate`` for the denoiser (``lr2``), through :meth:`param_groups` (the
  released 5e-4 / 1e-4 are too slow on small data: ``configs/model/ldiffrec.yaml`` uses 1e-3 / 1e-3).

Departures:

- Item embeddings for the clustering. The official code loads ``item_emb.npy`` from a
  pre-trained LightGCN. Here ``item_latents`` names a ``latents.npz`` written by any gcf run
  (``python -m gcf.train lightgcn`` writes ``runs/lightgcn-<dataset>/latents.npz``); its items
  are matched by raw id, and a file trained on another split (another training part, which
  could hold this split's validation or test interactions) is refused by its split fingerprint.
  The constructor takes the vectors themselves (``item_vectors``); :meth:`from_config` reads
  the file. Without it the embeddings are the top-64 right singular vectors (scaled
  by the singular values) of the binary training matrix, computed deterministically.
- k-means is seeded k-means++ then Lloyd iterations in numpy (official: ``kmeans_pytorch`` with
  random initial centres). The cluster of each item is the buffer ``item_cluster``.
- Only the one-layer decoder (the released configurations' ``out_dims=[]``) is implemented. It
  is ``Linear(d, I)`` in the items' own order; the official decoder emits items in cluster
  order and maps them back, which is the same layer with its rows permuted.

Args:
    n_cate: number of item clusters, 1 = one encoder over all items (default: 2, the released
        configurations).
    ae_dims: encoder widths; the last is the latent size d (default: ``[300]``).
    ae_dropout: dropout on the input row (default: 0.1).
    act_fn: ``'tanh'``, ``'relu'`` or ``'sigmoid'`` (default: ``'tanh'``).
    reparam: sample the latent in training (default: True); otherwise use the mean.
    lamda, anneal_cap, anneal_steps: the weight of the diffusion loss, see above
        (defaults: 0.03, 0.005, 500).
    vae_anneal_cap, vae_anneal_steps: the KL weight schedule (defaults: 0.3, 200).
    ae_learning_rate: learning rate of the autoencoder (default: 5e-4; the config ships 1e-3).
    item_latents: path of a ``latents.npz`` whose item vectors are clustered (default: None = SVD);
        ``item_vectors`` (``[n_items, d]``) in the constructor.
    beta_fixed: fix :math:`\beta_1 = 10^{-5}` as DiffRec does (default: True). The official
        L-DiffRec code does not fix it (its ``GaussianDiffusion`` defaults to ``beta_fixed=False``,
        DiffRec's to True); with ``reweight`` and ``x0`` the weight of step 1,
        ``SNR(0) - SNR(1)``, then drops from ~1e5 to ~1e3, and on ml-100k (RS 8:1:1, split seeds
        1-5) test Recall@20 / NDCG@20 fell from 0.37 / 0.31 to 0.339 +- 0.011 / 0.264 +- 0.009
        (``benchmarks/README.md``): ``beta_fixed=false`` is the official behaviour, as an option.
    The remaining keys are DiffRec's (:mod:`gcf.models.diffrec`) on the latent: ``dims_dnn``,
    ``emb_size``, ``steps``, ``noise_schedule``, ``noise_scale``, ``noise_min``, ``noise_max``,
    ``sampling_steps``, ``reweight``, ``mean_type``, ``dropout``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import svds
from torch import nn
from torch.nn import functional as F

from ..latents import item_vectors_for
from .base import TrainData
from .diffrec import DiffRec

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}
SVD_DIM = 64


def kmeans(x: np.ndarray, k: int, seed: int = 0, iters: int = 100) -> np.ndarray:
    """Cluster labels ``[n]`` of the rows of ``x [n, f]``: k-means++ seeding, Lloyd iterations."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"n_cate={k} clusters for {n} items")
    rng = np.random.default_rng(seed)
    centres = [x[rng.integers(n)]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1.0 / n)
        centres.append(x[rng.choice(n, p=p)])
        d2 = np.minimum(d2, ((x - centres[-1]) ** 2).sum(1))
    centres = np.stack(centres)
    labels = np.full(n, -1)
    for _ in range(iters):
        dist = (x ** 2).sum(1)[:, None] - 2 * x @ centres.T + (centres ** 2).sum(1)[None]
        new = dist.argmin(1)
        if (new == labels).all():
            break
        labels = new
        for c in range(k):
            if (labels == c).any():
                centres[c] = x[labels == c].mean(0)
    return labels


def _cluster_order(clusters: np.ndarray) -> torch.Tensor:
    """Item ids sorted by cluster (stable: by id within a cluster)."""
    return torch.from_numpy(np.argsort(clusters, kind="stable"))


def svd_item_embeddings(train: sp.csr_matrix, dim: int = SVD_DIM) -> np.ndarray:
    """``[I, dim]`` right singular vectors times singular values of the binary matrix."""
    x = train.astype(np.float64)
    dim = max(1, min(dim, min(x.shape) - 1))
    v0 = np.random.default_rng(0).random(min(x.shape))  # a fixed start vector: deterministic
    _, s, vt = svds(x, k=dim, v0=v0)
    return (vt.T * s)[:, ::-1].copy()


class LDiffRec(DiffRec):
    batch_kind = "user_rows"

    @classmethod
    def from_config(cls, data: TrainData, item_latents: str | None = None, **kwargs) -> "LDiffRec":
        """The config names a ``latents.npz`` (``item_latents``); the model takes its item vectors,
        checked to come from this split's training part (:func:`gcf.latents.item_vectors_for`)."""
        vectors = item_vectors_for(item_latents, data) if item_latents else None
        return cls(data, item_vectors=vectors, **kwargs)

    def __init__(self, data: TrainData, n_cate: int = 2, ae_dims=(300,), ae_dropout: float = 0.1,
                 act_fn: str = "tanh", reparam: bool = True, lamda: float = 0.03, anneal_cap: float = 0.005,
                 anneal_steps: int = 500, vae_anneal_cap: float = 0.3, vae_anneal_steps: int = 200,
                 ae_learning_rate: float = 5e-4, item_vectors: np.ndarray | None = None, dims_dnn=(300,),
                 emb_size: int = 10, steps: int = 5, noise_schedule: str = "linear-var", noise_scale: float = 0.1,
                 noise_min: float = 1e-4, noise_max: float = 0.02, sampling_steps: int = 0, reweight: bool = True,
                 mean_type: str = "x0", dropout: float = 0.5, beta_fixed: bool = True):
        if act_fn not in ACTIVATIONS:
            raise ValueError(f"act_fn must be one of {', '.join(ACTIVATIONS)}, got {act_fn!r}")
        dims = [int(d) for d in ae_dims]
        if not dims or min(dims) < 1:
            raise ValueError(f"ae_dims must be positive widths, got {ae_dims}")
        super().__init__(data, dims_dnn=dims_dnn, emb_size=emb_size, steps=steps, noise_schedule=noise_schedule,
                         noise_scale=noise_scale, noise_min=noise_min, noise_max=noise_max,
                         sampling_steps=sampling_steps, reweight=reweight, mean_type=mean_type, dropout=dropout,
                         beta_fixed=beta_fixed, width=dims[-1])
        self.latent_dim = dims[-1]
        self.reparam = bool(reparam)
        self.lamda, self.anneal_cap, self.anneal_steps = float(lamda), float(anneal_cap), int(anneal_steps)
        self.vae_anneal_cap, self.vae_anneal_steps = float(vae_anneal_cap), int(vae_anneal_steps)
        self.ae_learning_rate = float(ae_learning_rate)
        self.ae_drop = nn.Dropout(float(ae_dropout))
        self.register_buffer("update_count", torch.zeros((), dtype=torch.long))  # batches, for the KL anneal
        self._epoch = 0

        n_cate = int(n_cate)
        if n_cate == 1:
            clusters = np.zeros(data.n_items, dtype=np.int64)
        else:
            if item_vectors is None:
                item_vectors = svd_item_embeddings(data.train)
            elif len(item_vectors) != data.n_items:
                raise ValueError(f"item_vectors has {len(item_vectors)} rows, expected one per item ({data.n_items})")
            clusters = kmeans(np.asarray(item_vectors, dtype=np.float64), n_cate, seed=0)
        sizes = np.bincount(clusters, minlength=n_cate)
        if (sizes == 0).any():
            raise ValueError(f"k-means left {(sizes == 0).sum()} of n_cate={n_cate} clusters empty; use fewer")
        self.register_buffer("item_cluster", torch.from_numpy(clusters))  # [I]
        self.register_buffer("item_order", _cluster_order(clusters), persistent=False)  # items by cluster
        self.cluster_sizes = sizes.tolist()
        # latent widths per cluster and layer: proportional to the cluster's share, the last takes the rest
        widths = [[max(1, int(n / data.n_items * d)) for d in dims] for n in self.cluster_sizes[:-1]]
        widths.append([d - sum(w[j] for w in widths) for j, d in enumerate(dims)])
        if min(min(w) for w in widths) < 1:
            raise ValueError(f"ae_dims={dims} is too small for {n_cate} clusters")
        self.cluster_dims = [w[-1] for w in widths]
        act = ACTIVATIONS[act_fn]
        self.encoders = nn.ModuleList()
        for n, w in zip(self.cluster_sizes, widths):
            layer_dims = [n, *w[:-1], 2 * w[-1]]
            layers = []
            for a, b in zip(layer_dims[:-1], layer_dims[1:]):
                layers += [nn.Linear(a, b), act()]  # the activation after the last layer too (official)
            self.encoders.append(nn.Sequential(*layers))
        self.decoder = nn.Linear(self.latent_dim, data.n_items)
        for m in [*self.encoders.modules(), self.decoder]:
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Also restores the clustering the weights were trained with (``item_cluster``)."""
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        clusters = self.item_cluster.cpu().numpy()
        if np.bincount(clusters, minlength=len(self.cluster_sizes)).tolist() != self.cluster_sizes:
            raise ValueError("the checkpoint's item clusters have other sizes than this model's encoders")
        self.item_order.copy_(_cluster_order(clusters))
        return out

    # ------------------------------------------------------------ pieces
    def param_groups(self) -> list[dict]:
        ae = [*self.encoders.parameters(), *self.decoder.parameters()]
        return [{"params": ae, "lr": self.ae_learning_rate}, {"params": list(self.net.parameters())}]

    def start_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)

    def extra_state(self) -> dict:
        return {"epoch": self._epoch}

    def load_extra_state(self, state: dict) -> None:
        self._epoch = int(state.get("epoch", self._epoch))

    def encode(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(dropped-out rows [B, I], mu [B, d], logvar [B, d])`` of binary rows."""
        rows = self.ae_drop(rows)
        parts = torch.split(rows[:, self.item_order], self.cluster_sizes, dim=1)
        mus, logvars = [], []
        for encoder, part, d in zip(self.encoders, parts, self.cluster_dims):
            h = encoder(part)  # [B, 2 d_c]
            mus.append(h[:, :d])
            logvars.append(h[:, d:])
        return rows, torch.cat(mus, 1), torch.cat(logvars, 1)

    @property
    def diffusion_weight(self) -> float:
        if self.anneal_steps > 0:
            return max((1.0 - self._epoch / self.anneal_steps) * self.lamda, self.anneal_cap)
        return max(self.lamda, self.anneal_cap)

    @property
    def kl_weight(self) -> float:
        if self.vae_anneal_steps > 0:
            return min(self.vae_anneal_cap, float(self.update_count) / self.vae_anneal_steps)
        return self.vae_anneal_cap

    # ------------------------------------------------------------ contract
    def loss(self, batch) -> torch.Tensor:
        _, rows = batch
        target, mu, logvar = self.encode((rows > 0).float())  # [B, I], [B, d], [B, d]
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training and self.reparam else mu
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1).mean()
        diff, z0_hat = self.diffusion_loss(z)  # [B], [B, d]
        nll = -(F.log_softmax(self.decoder(z0_hat), dim=1) * target).sum(1).mean()
        vae = nll + self.kl_weight * kl
        lam = self.diffusion_weight
        if self.training:
            self.update_count += 1
        return lam * diff.mean() + vae if self.reweight else diff.mean() + lam * vae

    @torch.no_grad()
    def _user_means(self, users: torch.Tensor) -> torch.Tensor:
        was_training = self.ae_drop.training
        self.ae_drop.eval()
        mu = self.encode((self.history_rows(users) > 0).float())[1]
        self.ae_drop.train(was_training)
        return mu

    @torch.no_grad()
    def score(self, users: torch.Tensor, history=None) -> torch.Tensor:
        return self.decoder(self.denoise(self._user_means(users)))  # [B, I]

    @torch.no_grad()
    def latents(self):
        """``(posterior means [U, d], decoder weight [I, d])``: users in the diffused space (before
        denoising), items as the decoder's rows."""
        return self.over_all_users(self._user_means), self.decoder.weight.detach()
