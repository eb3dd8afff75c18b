"""seq.itemspace: the 2-D picture of a run's item space (PNG from one command)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gcf.data.train_data import TrainData
from gcf.runs import load_trained
from gcf.train import run
from seq.itemspace import item_labels, main, project


@pytest.fixture(scope="module")
def bpr_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bpr")
    run("bpr", [f"out_dir={out}", "epochs=1", "progress=false", "device=cpu"], quiet=True)
    return out


def test_png_from_one_command_with_a_users_vectors(bpr_run, tmp_path, capsys):
    png = tmp_path / "items.png"
    assert main([str(bpr_run), "--user", "1", "--method", "pca", "--max-items", "300", "--out", str(png)]) == 0
    with Image.open(png) as im:
        assert im.size[0] > 500 and im.size[1] > 500
    assert main([str(bpr_run), "--user", "no-such-user", "--method", "pca", "--out", str(tmp_path / "x.png")]) == 2
    assert "no-such-user" in capsys.readouterr().err


def test_labels_and_projection(bpr_run):
    model, split = load_trained(bpr_run)
    data = TrainData.from_split(split)
    genres, what = item_labels(data, "auto")
    assert what == "first genre" and len(genres) == data.n_items and "Comedy" in set(genres)
    pop, what = item_labels(data, "popularity")
    most = int(np.argmax(np.diff(data.train.tocsc().indptr)))
    assert what == "training popularity decile" and pop[most] == "top 10%"
    x = np.random.default_rng(0).normal(size=(50, 8))
    xy = project(x, "pca", 0)
    assert xy.shape == (50, 2) and np.var(xy[:, 0]) >= np.var(xy[:, 1])
    with pytest.raises(ValueError, match="--method"):
        project(x, "umap", 0)
