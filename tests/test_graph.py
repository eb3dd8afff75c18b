"""The normalised bipartite graph and its propagation against dense numpy/torch and PyG."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import gcf.graph
from gcf.graph import Graph, bipartite_adjacency, normalize, scatter_propagate
from gcf.models.base import TrainData
from gcf.models.lightgcn import LightGCN

U, I = 7, 11


@pytest.fixture(scope="module")
def R() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    dense = (rng.random((U, I)) < 0.35).astype(np.float32)
    dense[3] = 0  # a user with no items
    dense[:, 5] = 0  # an item with no users
    dense[0, 0] = 1
    return sp.csr_matrix(dense)


def dense_adjacency(r: np.ndarray, self_loops: bool = False) -> np.ndarray:
    u, i = r.shape
    a = np.zeros((u + i, u + i))
    a[:u, u:] = r
    a[u:, :u] = r.T
    if self_loops:
        a += np.eye(u + i)
    return a


def dense_sym(a: np.ndarray) -> np.ndarray:
    deg = a.sum(1)
    d = np.zeros_like(deg)
    d[deg > 0] = deg[deg > 0] ** -0.5
    return d[:, None] * a * d[None, :]


def test_bipartite_adjacency(R):
    a = bipartite_adjacency(R)
    assert a.shape == (U + I, U + I)
    np.testing.assert_array_equal(a.toarray(), dense_adjacency(R.toarray()))
    weighted = R.copy()
    weighted.data[:] = 4.0  # ratings become binary edges
    np.testing.assert_array_equal(bipartite_adjacency(weighted).toarray(), dense_adjacency(R.toarray()))
    np.testing.assert_array_equal(bipartite_adjacency(R, self_loops=True).toarray(),
                                  dense_adjacency(R.toarray(), True))


def test_sym_normalize_equals_dense(R):
    norm = normalize(bipartite_adjacency(R)).toarray()
    expected = dense_sym(dense_adjacency(R.toarray()))
    np.testing.assert_allclose(norm, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(norm, norm.T)
    assert np.all(norm[3] == 0) and np.all(norm[:, 3] == 0)  # user without items: zero row/column
    assert np.all(norm[U + 5] == 0)
    # largest eigenvalue of D^-1/2 A D^-1/2 is 1
    assert np.abs(np.linalg.eigvalsh(norm.astype(np.float64))).max() == pytest.approx(1.0, abs=1e-5)


def test_left_normalize_and_bad_kind(R):
    a = dense_adjacency(R.toarray(), self_loops=True)
    left = normalize(bipartite_adjacency(R, self_loops=True), "left").toarray()
    np.testing.assert_allclose(left, a / a.sum(1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(left.sum(1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown normalisation 'bogus'"):
        normalize(bipartite_adjacency(R), "bogus")


def test_bad_backend(R):
    with pytest.raises(ValueError, match="graph backend must be 'spmm' or 'scatter'"):
        Graph(R, backend="dense")


def test_propagate_and_gradient_equal_dense(R):
    g = Graph(R)
    a = torch.from_numpy(dense_sym(dense_adjacency(R.toarray()))).float()
    torch.manual_seed(0)
    x0 = torch.randn(U + I, 5)
    w = torch.randn(U + I, 5)
    with torch.no_grad():
        torch.testing.assert_close(g.propagate(x0), a @ x0, rtol=1e-5, atol=1e-6)

    x = x0.clone().requires_grad_(True)
    out = g.propagate(g.propagate(x))  # two layers through SymmetricSpMM
    assert out.grad_fn is not None and "SymmetricSpMM" in type(out.grad_fn).__name__
    (out * w).sum().backward()
    xd = x0.clone().requires_grad_(True)
    ((a @ (a @ xd)) * w).sum().backward()
    torch.testing.assert_close(out, a @ (a @ x0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad, xd.grad, rtol=1e-5, atol=1e-6)
    # the analytic gradient A^T (A^T w) = A (A w)
    torch.testing.assert_close(x.grad, a @ (a @ w), rtol=1e-5, atol=1e-6)


def test_left_norm_gradient_uses_autograd(R):
    g = Graph(R, norm="left", self_loops=True)
    a = dense_adjacency(R.toarray(), True)
    a = torch.from_numpy(a / a.sum(1, keepdims=True)).float()  # not symmetric
    assert not torch.allclose(a, a.T)
    x = torch.randn(U + I, 3, requires_grad=True)
    w = torch.randn(U + I, 3)
    (g.propagate(x) * w).sum().backward()
    torch.testing.assert_close(x.grad, a.T @ w, rtol=1e-5, atol=1e-6)


def _scatter_vs_spmm(R):
    spmm, scatter = Graph(R, backend="spmm"), Graph(R, backend="scatter")
    x0 = torch.randn(U + I, 4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(scatter.propagate(x0), spmm.propagate(x0), rtol=1e-5, atol=1e-6)
    xs, xt = x0.clone().requires_grad_(True), x0.clone().requires_grad_(True)
    w = torch.randn(U + I, 4, generator=torch.Generator().manual_seed(2))
    (spmm.propagate(xs) * w).sum().backward()
    (scatter.propagate(xt) * w).sum().backward()
    torch.testing.assert_close(xt.grad, xs.grad, rtol=1e-5, atol=1e-6)


def test_scatter_backend_fallback(R, monkeypatch):
    monkeypatch.setattr(gcf.graph, "torch_scatter", None)
    _scatter_vs_spmm(R)


def test_scatter_backend_torch_scatter(R):
    pytest.importorskip("torch_scatter")
    assert gcf.graph.torch_scatter is not None
    _scatter_vs_spmm(R)


def test_scatter_propagate_by_hand():
    edge_index = torch.tensor([[0, 0, 2], [1, 2, 0]])
    w = torch.tensor([0.5, 2.0, 3.0])
    x = torch.tensor([[1.0], [10.0], [100.0]])
    out = scatter_propagate(edge_index, w, x, 3)
    assert out.flatten().tolist() == [0.5 * 10 + 2 * 100, 0.0, 3.0]


def _edge_index(r: sp.csr_matrix) -> torch.Tensor:
    coo = r.tocoo()
    u = torch.from_numpy(coo.row.astype(np.int64))
    i = torch.from_numpy(coo.col.astype(np.int64)) + r.shape[0]
    return torch.stack([torch.cat([u, i]), torch.cat([i, u])])


@pytest.mark.parametrize("n_layers", [1, 3])
def test_lightgcn_matches_pyg(R, n_layers):
    import torch_geometric.nn as pyg  # a hard dependency of the package: never skipped
    torch.manual_seed(0)
    ours = LightGCN(TrainData(U, I, R), embedding_size=8, n_layers=n_layers)
    ref = pyg.models.LightGCN(U + I, 8, n_layers, alpha=1.0 / (n_layers + 1))
    with torch.no_grad():
        ref.embedding.weight.copy_(torch.cat([ours.user_embedding.weight, ours.item_embedding.weight]))
    edge_index = _edge_index(R)
    with torch.no_grad():
        expected = ref.get_embedding(edge_index)
        users, items = ours.propagate()
    torch.testing.assert_close(torch.cat([users, items]), expected, rtol=1e-5, atol=1e-6)
    # the same with LGConv layers by hand, and our scatter backend
    conv = pyg.conv.LGConv()
    x = ref.embedding.weight.detach()
    total = x
    for _ in range(n_layers):
        x = conv(x, edge_index)
        total = total + x
    torch.testing.assert_close(torch.cat([users, items]), total / (n_layers + 1), rtol=1e-5, atol=1e-6)
    scatter = LightGCN(TrainData(U, I, R), embedding_size=8, n_layers=n_layers, graph_backend="scatter")
    scatter.load_state_dict(ours.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(torch.cat(scatter.propagate()), expected, rtol=1e-5, atol=1e-6)


def test_lightgcn_matches_pyg_on_real_data(ml_small_split):
    import torch_geometric.nn as pyg  # a hard dependency of the package: never skipped
    train = ml_small_split.csr("train")
    torch.manual_seed(0)
    ours = LightGCN(TrainData(ml_small_split.n_users, ml_small_split.n_items, train), embedding_size=16, n_layers=2)
    ref = pyg.models.LightGCN(ml_small_split.n_users + ml_small_split.n_items, 16, 2, alpha=1 / 3)
    with torch.no_grad():
        ref.embedding.weight.copy_(torch.cat([ours.user_embedding.weight, ours.item_embedding.weight]))
        expected = ref.get_embedding(_edge_index(train))
        got = torch.cat(ours.propagate())
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)


def test_csr_indices_are_int32_and_products_equal_int64(R):
    """The CPU sparse product takes int32 indices (int64 ones are converted on every call): the
    graph's matrix, a dropped-out one and an unpickled one hold int32, with the same products."""
    import pickle

    g = Graph(R)
    assert g.adj.crow_indices().dtype == g.adj.col_indices().dtype == torch.int32
    assert g.dropout(0.2).crow_indices().dtype == torch.int32
    assert pickle.loads(pickle.dumps(g)).adj.col_indices().dtype == torch.int32
    wide = torch.sparse_csr_tensor(g.adj.crow_indices().long(), g.adj.col_indices().long(), g.adj.values(),
                                   size=g.adj.shape)
    x = torch.randn(U + I, 4)
    torch.testing.assert_close(g.propagate(x), torch.sparse.mm(wide, x))
    assert gcf.graph.csr_int32(wide).col_indices().dtype == torch.int32


def test_dropout_keeps_fraction_and_rescales(ml_small_split):
    train = ml_small_split.csr("train")
    g = Graph(train)
    adj = normalize(bipartite_adjacency(train)).tocsr()
    n_edges = g.edge_weight.numel()
    assert n_edges == 2 * train.nnz
    p = 0.3
    dropped = g.dropout(p, generator=torch.Generator().manual_seed(0))
    assert dropped.layout == torch.sparse_csr
    coo = dropped.to_sparse_coo().coalesce()
    rows, cols = coo.indices().numpy()
    vals = coo.values().numpy()
    assert abs(len(vals) / n_edges - (1 - p)) < 0.01
    original = np.asarray(adj[rows, cols]).ravel()
    assert np.all(original > 0)  # only existing edges survive
    np.testing.assert_allclose(vals, original / (1 - p), rtol=1e-6)
    again = g.dropout(p, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.to_sparse_coo().coalesce().indices(), coo.indices())
    assert g.dropout(0.0)._nnz() == n_edges


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_propagation_on_cuda_matches_cpu(ml_small_split):
    train = ml_small_split.csr("train")
    data = TrainData(ml_small_split.n_users, ml_small_split.n_items, train)
    torch.manual_seed(0)
    cpu = LightGCN(data, embedding_size=32, n_layers=3)
    gpu = LightGCN(data, embedding_size=32, n_layers=3)
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.to("cuda")
    assert gpu.graph.adj.device.type == "cuda"
    with torch.no_grad():
        for a, b in zip(cpu.propagate(), gpu.propagate()):
            torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-6)
    # gradient through SymmetricSpMM on the device
    for m in (cpu, gpu):
        m.train()
        users = torch.arange(0, 100, device=m.device)
        m.loss((users, users % 50, users % 50 + 60)).backward()
    torch.testing.assert_close(gpu.user_embedding.weight.grad.cpu(), cpu.user_embedding.weight.grad,
                               rtol=1e-3, atol=1e-6)
    for backend in ("spmm", "scatter"):
        g_cpu, g_gpu = Graph(train, backend=backend), Graph(train, backend=backend).to("cuda")
        x = torch.randn(g_cpu.n_nodes, 8)
        torch.testing.assert_close(g_gpu.propagate(x.cuda()).cpu(), g_cpu.propagate(x), rtol=1e-4, atol=1e-6)


def test_batch_rows_pass_equals_the_full_pass(ml_small_split):
    """NGCF's training loss reads only the batch's rows (``propagate(nodes)``): the same values and
    the same gradients as slicing the full pass (dropout off so both passes are deterministic)."""
    from gcf.models.ngcf import NGCF
    train = ml_small_split.csr("train")
    data = TrainData(ml_small_split.n_users, ml_small_split.n_items, train)
    torch.manual_seed(0)
    model = NGCF(data, 8, [8, 8, 8], message_dropout=0.0)
    U = ml_small_split.n_users
    nodes = torch.tensor([0, 5, 5, U + 3, U + 100, U + 3, 17])  # duplicates, users and items
    rows = model.propagate(nodes)
    users, items = model.propagate()
    full = torch.cat([users, items])[nodes]
    torch.testing.assert_close(rows, full)
    g_rows = torch.autograd.grad(rows.pow(2).sum(), model.item_embedding.weight)[0]
    users, items = model.propagate()
    g_full = torch.autograd.grad(torch.cat([users, items])[nodes].pow(2).sum(), model.item_embedding.weight)[0]
    torch.testing.assert_close(g_rows, g_full)
    assert g_rows.abs().sum() > 0
