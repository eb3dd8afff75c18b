"""NGCF's ablation switches (``feature_transform``, ``nonlinearity``, ``bi_interaction``): each
removes exactly its part of a layer, the defaults are NGCF itself, and every variant keeps the
batch-rows pass equal to the full pass."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from gcf.config import resolve_config
from gcf.models.base import TrainData
from gcf.models.ngcf import NGCF


@pytest.fixture(scope="module")
def data(ml_small_split):
    return TrainData(ml_small_split.n_users, ml_small_split.n_items, ml_small_split.csr("train"))


def _model(data, **kw):
    torch.manual_seed(0)
    return NGCF(data, 8, [8, 8], message_dropout=0.0, **kw)


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(30, 8, generator=g), torch.randn(30, 8, generator=g)  # side = L E, x = E


def test_defaults_are_ngcf(data):
    model = _model(data)
    side, x = _inputs()
    w1, w2 = model.w1[0], model.w2[0]
    torch.testing.assert_close(model.layer(0, side, x), F.leaky_relu(w1(side + x) + w2(side * x), 0.2))
    cfg, kwargs = resolve_config("ngcf")
    assert kwargs["feature_transform"] and kwargs["nonlinearity"] and kwargs["bi_interaction"]


def test_without_feature_transform(data):
    model = _model(data, feature_transform=False)
    names = {n for n, _ in model.named_parameters()}
    assert names == {"user_embedding.weight", "item_embedding.weight"}  # no W1, W2, biases
    side, x = _inputs()
    torch.testing.assert_close(model.layer(1, side, x), F.leaky_relu(side + x + side * x, 0.2))
    with pytest.raises(ValueError, match="hidden_size_list"):
        NGCF(data, 8, [8, 16], feature_transform=False)


def test_without_nonlinearity(data):
    default, linear = _model(data), _model(data, nonlinearity=False)
    linear.load_state_dict(default.state_dict())
    side, x = _inputs()
    pre = default.w1[0](side + x) + default.w2[0](side * x)
    out = linear.layer(0, side, x)
    torch.testing.assert_close(out, pre)
    assert (out < 0).any()  # negatives pass unchanged: not LeakyReLU's 0.2 x
    assert not torch.allclose(out, default.layer(0, side, x))


def test_without_bi_interaction(data):
    model = _model(data, bi_interaction=False)
    assert len(model.w2) == 0 and len(model.w1) == 2
    side, x = _inputs()
    torch.testing.assert_close(model.layer(0, side, x), F.leaky_relu(model.w1[0](side + x), 0.2))
    # the layer no longer depends on side * x: swapping side and x (same sum) gives the same output
    torch.testing.assert_close(model.layer(0, x, side), model.layer(0, side, x))
    both = _model(data, bi_interaction=False, feature_transform=False, nonlinearity=False)
    torch.testing.assert_close(both.layer(0, side, x), side + x)


@pytest.mark.parametrize("kw", [{"feature_transform": False}, {"nonlinearity": False}, {"bi_interaction": False},
                                {"feature_transform": False, "nonlinearity": False}])
def test_variants_batch_rows_equal_full_pass(data, kw):
    model = _model(data, **kw)
    U = data.n_users
    nodes = torch.tensor([0, 5, U + 3, U + 100, 17])
    users, items = model.propagate()
    torch.testing.assert_close(model.propagate(nodes), torch.cat([users, items])[nodes])
    assert users.shape[1] == 8 * 3  # [e0 | e1 | e2]
    users.sum().backward()
    assert model.user_embedding.weight.grad.abs().sum() > 0
