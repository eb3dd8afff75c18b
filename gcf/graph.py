r"""The user-item graph and its propagation, shared by every graph model.

The bipartite adjacency over ``N = n_users + n_items`` nodes is

.. math::
    A = \begin{pmatrix} 0 & R \\ R^\top & 0 \end{pmatrix}, \qquad
    \hat A = D^{-1/2} A D^{-1/2}

(LightGCN, eq. 7; NGCF's Laplacian), with a zero degree giving a zero row. Propagation is one
sparse matrix product ``\hat A E`` held as a torch sparse CSR tensor, on CPU and CUDA alike.

Because :math:`\hat A` is symmetric, the gradient of :math:`\hat A E` with respect to ``E`` is
:math:`\hat A^\top G = \hat A G`: :class:`SymmetricSpMM` reuses the forward matrix in the
backward instead of letting autograd transpose it on every call (about 4x faster per epoch on
CPU, see ``benchmarks/``). A second backend, ``"scatter"``, propagates over the edge list with
``torch_scatter`` (the ``scatter`` extra) or, when it is not installed, ``Tensor.index_add_``.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

try:  # optional extra: pip install gcf[scatter]
    import torch_scatter
except ImportError:  # pragma: no cover - depends on the environment
    torch_scatter = None


def bipartite_adjacency(train: sp.csr_matrix, self_loops: bool = False) -> sp.csr_matrix:
    """The ``(U+I) x (U+I)`` binary adjacency of the interaction matrix ``train``."""
    r = sp.csr_matrix(train, dtype=np.float32, copy=True)
    r.data[:] = 1.0
    a = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    if self_loops:
        a = (a + sp.identity(a.shape[0], dtype=np.float32, format="csr")).tocsr()
    return a


def normalize(a: sp.csr_matrix, kind: str = "sym") -> sp.csr_matrix:
    """``sym``: D^-1/2 A D^-1/2 (symmetric); ``left``: D^-1 A (row-normalised)."""
    deg = np.asarray(a.sum(1)).ravel()
    with np.errstate(divide="ignore"):
        if kind == "sym":
            d = np.where(deg > 0, deg ** -0.5, 0.0)
            out = sp.diags(d) @ a @ sp.diags(d)
        elif kind == "left":
            d = np.where(deg > 0, 1.0 / deg, 0.0)
            out = sp.diags(d) @ a
        else:
            raise ValueError(f"unknown normalisation {kind!r}; expected 'sym' or 'left'")
    out = out.tocsr().astype(np.float32)
    out.sort_indices()
    return out


def to_torch_csr(m: sp.csr_matrix, device="cpu") -> torch.Tensor:
    """A torch sparse CSR tensor of ``m``, with int32 indices where they fit (:func:`csr_int32`)."""
    m = m.tocsr()
    index = np.int32 if _fits_int32(m.nnz, m.shape) else np.int64
    with warnings.catch_warnings():  # "sparse CSR support is in beta": known, and what we want
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.from_numpy(m.indptr.astype(index)),
                                       torch.from_numpy(m.indices.astype(index)),
                                       torch.from_numpy(m.data.astype(np.float32)),
                                       size=m.shape, device=device)


def _fits_int32(nnz: int, shape) -> bool:
    return max(nnz, *shape) < 2 ** 31 - 1


def csr_int32(a: torch.Tensor) -> torch.Tensor:
    """The CSR tensor ``a`` with int32 row pointers and column indices where they fit: the CPU
    product (MKL) takes int32 and otherwise converts int64 indices on every call, ~25% of a
    LightGCN propagation on ml-100k (``benchmarks/bench_speed.py``)."""
    if a.crow_indices().dtype == torch.int32 or not _fits_int32(a._nnz(), a.shape):
        return a
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(a.crow_indices().to(torch.int32), a.col_indices().to(torch.int32),
                                       a.values(), size=a.shape, device=a.device)


class SymmetricSpMM(torch.autograd.Function):
    """``A @ x`` for a symmetric sparse ``A``; the backward is ``A @ grad`` (no transpose)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.a = a
        return torch.sparse.mm(a, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, torch.sparse.mm(ctx.a, grad.contiguous())


class Graph(torch.nn.Module):
    """A fixed normalised adjacency with its propagation, kept as a (non-persistent) buffer
    so that ``model.to(device)`` moves it and checkpoints do not store it.

    Args:
        train: the ``n_users x n_items`` training matrix.
        norm: ``"sym"`` (LightGCN, NGCF paper) or ``"left"`` (NGCF code's ``D^-1 (A+I)``).
        self_loops: add ``I`` before normalising (default: ``False``).
        backend: ``"spmm"`` (sparse CSR product) or ``"scatter"`` (edge list + scatter-add).
    """

    def __init__(self, train: sp.csr_matrix, norm: str = "sym", self_loops: bool = False, backend: str = "spmm"):
        super().__init__()
        if backend not in ("spmm", "scatter"):
            raise ValueError(f"graph backend must be 'spmm' or 'scatter', got {backend!r}")
        self.n_users, self.n_items = train.shape
        self.backend = backend
        self.symmetric = norm == "sym"
        adj = normalize(bipartite_adjacency(train, self_loops), norm)
        self.register_buffer("adj", to_torch_csr(adj), persistent=False)
        coo = adj.tocoo()
        self.register_buffer("edge_index", torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64)),
                             persistent=False)
        self.register_buffer("edge_weight", torch.from_numpy(coo.data.astype(np.float32)), persistent=False)

    # torch cannot pickle sparse CSR tensors: drop the matrix, rebuild it from the edge list
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_buffers"] = {k: v for k, v in self._buffers.items() if k != "adj"}
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self._buffers["adj"] = csr_int32(torch.sparse_coo_tensor(
                self.edge_index, self.edge_weight, (self.n_nodes, self.n_nodes)).coalesce().to_sparse_csr())

    @property
    def n_nodes(self) -> int:
        return self.n_users + self.n_items

    def propagate(self, x: torch.Tensor) -> torch.Tensor:
        """``\\hat A x`` for node features ``x`` of shape ``[N, d]``."""
        if self.backend == "scatter":
            return scatter_propagate(self.edge_index, self.edge_weight, x, self.n_nodes)
        if self.symmetric and torch.is_grad_enabled() and x.requires_grad:
            return SymmetricSpMM.apply(self.adj, x)
        return torch.sparse.mm(self.adj, x)

    def dropout(self, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """The adjacency with each non-zero dropped with probability ``p`` and the rest scaled
        by ``1/(1-p)`` (NGCF's "node dropout", which drops edges). Returns a sparse CSR tensor."""
        keep = torch.rand(self.edge_weight.shape, generator=generator, device=self.edge_weight.device) >= p
        idx = self.edge_index[:, keep]
        val = self.edge_weight[keep] / (1.0 - p)
        return csr_int32(torch.sparse_coo_tensor(idx, val, (self.n_nodes, self.n_nodes)).coalesce().to_sparse_csr())


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum rows of ``src`` into ``dim_size`` buckets given by ``index`` (torch_scatter when
    installed, otherwise ``index_add_``: the same result)."""
    if torch_scatter is not None:
        return torch_scatter.scatter(src, index, dim=0, dim_size=dim_size, reduce="sum")
    out = torch.zeros(dim_size, *src.shape[1:], dtype=src.dtype, device=src.device)
    return out.index_add_(0, index, src)


def scatter_propagate(edge_index: torch.Tensor, edge_weight: torch.Tensor, x: torch.Tensor, n_nodes: int) -> torch.Tensor:
    """Message passing ``out[row] += w * x[col]`` over the edge list."""
    row, col = edge_index
    return scatter_sum(x[col] * edge_weight.unsqueeze(1), row, n_nodes)
