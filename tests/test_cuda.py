"""The CUDA path (``device=cuda``): every model trains, evaluates and exports latents on the
GPU, and gives the CPU's results where the computation is the same on both. Skipped where no
GPU is present (CI has none); run on a GPU machine with ``python -m pytest tests/test_cuda.py``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gcf.evaluate import evaluate
from gcf.latents import load_latents
from gcf.runs import load_trained
from gcf.models import MODELS
from gcf.train import run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

FAST = ["item_k=10", "user_k=10", "progress=false", "eval_batch_size=256"]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_trains_on_cuda(model, tmp_path):
    metrics = run(model, [f"out_dir={tmp_path}", "epochs=3", "device=cuda", *FAST], quiet=True)
    test = metrics["test"]
    assert all(np.isfinite(v) for v in test.values()) and 0 < test["recall@20"] <= 1
    lat = load_latents(tmp_path / "latents.npz") if (tmp_path / "latents.npz").exists() else None
    trained, split = load_trained(tmp_path, device="cuda")
    assert next(iter(trained.state_dict().values())).device.type == "cuda"
    again = evaluate(trained, split, "test", ks=[10, 20], device=torch.device("cuda"))
    assert again["recall@20"] == pytest.approx(test["recall@20"], rel=1e-5)
    if lat is not None:
        assert lat["user"].shape[0] == split.n_users and lat["item"].shape[0] == split.n_items


@pytest.mark.parametrize("model", ["pop", "ease"])
def test_closed_form_models_match_cpu(model, tmp_path):
    gpu = run(model, [f"out_dir={tmp_path / 'gpu'}", "device=cuda", *FAST], quiet=True)["test"]
    cpu = run(model, [f"out_dir={tmp_path / 'cpu'}", "device=cpu", *FAST], quiet=True)["test"]
    assert gpu == pytest.approx(cpu, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("model", ["lightgcn", "ngcf", "bpr", "vaecf", "bivae", "diffrec"])
def test_trained_model_scores_the_same_on_cuda(model, tmp_path):
    """A CPU-trained checkpoint scores (and ranks) the same on the GPU."""
    run(model, [f"out_dir={tmp_path}", "epochs=2", "device=cpu", *FAST], quiet=True)
    cpu_model, split = load_trained(tmp_path, device="cpu")
    gpu_model, _ = load_trained(tmp_path, device="cuda")
    users = torch.arange(min(64, split.n_users))
    with torch.no_grad():
        a = cpu_model.score(users)
        b = gpu_model.score(users.cuda()).cpu()
    torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)
    m_cpu = evaluate(cpu_model, split, "test", ks=[20])
    m_gpu = evaluate(gpu_model, split, "test", ks=[20], device=torch.device("cuda"))
    assert m_gpu["ndcg@20"] == pytest.approx(m_cpu["ndcg@20"], abs=2e-3)


def test_cornac_wrapper_on_cuda(ml_small_split):
    pytest.importorskip("cornac")
    from cornac.data import Dataset

    from gcf.cornac import LightGCN

    train = ml_small_split.train
    triples = list(zip(train.user_ids[train.users], train.item_ids[train.items], np.ones(len(train))))
    model = LightGCN(epochs=2, device="cuda").fit(Dataset.from_uir(triples, seed=1))
    assert model.model.device.type == "cuda"
    scores = model.score(0)
    assert scores.shape == (model.model.n_items,) and np.isfinite(scores).all()
