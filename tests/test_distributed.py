"""Training under torchrun (DistributedDataParallel, gloo on CPU): batches sharded, gradients
synchronised, evaluation sharded and gathered, rank 0 writes, resume continues every rank."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from gcf import distributed
from gcf.evaluate import evaluate
from gcf.runs import load_trained

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not Path(TORCHRUN).exists(),
                                reason="torch.distributed / torchrun not available")


def _torchrun(args: list[str], tmp_path: Path, n: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [TORCHRUN, f"--nproc_per_node={n}", "--master_port=0", "--rdzv_backend=c10d",
           "--rdzv_endpoint=localhost:0", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1], timeout=300)
    torn_down = "terminate called without an active exception" in proc.stderr and "files:" in proc.stdout
    if proc.returncode != 0 and torn_down:
        # a rank aborted in gloo's teardown after the run had finished and written its files (seen once
        # in 7 runs under pytest-xdist load, torch 2.13): run the same command again, once. A repeated
        # run is the same run (seeded; a resume from a finished last.pt only re-tests it).
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1], timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("total,world", [(10, 2), (7, 2), (1, 2), (5, 3), (3, 4)])
def test_shard_gives_every_batch_and_equal_steps(monkeypatch, total, world):
    taken = []
    for r in range(world):
        monkeypatch.setattr(distributed, "world", lambda: world)
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        mine = list(distributed.shard(iter(range(total)), total))
        assert len(mine) == distributed.steps(total)  # every rank the same number of steps
        taken += mine
    assert set(taken) == set(range(total))  # each batch trained on
    assert len(taken) == -(-total // world) * world  # the wrap-around only fills the last round


def test_cli_under_torchrun_syncs_ranks_and_gathers_the_evaluation(tmp_path):
    out = tmp_path / "bpr"
    proc = _torchrun(["-m", "gcf.train", "bpr", "epochs=2", "device=cpu", "progress=false", "eval_step=1",
                      f"out_dir={out}"], tmp_path)
    assert proc.stdout.count("test metrics") == 1  # rank 0 prints
    record = (out / "config.yaml").read_text()
    assert "world_size: 2" in record and "backend: gloo" in record
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    # the metrics the two ranks gathered equal a single process ranking every user with best.pt
    cfg = yaml.safe_load(record)["config"]
    model, split = load_trained(out)
    single = evaluate(model, split, "test", ks=cfg["topk"], metrics=cfg["metrics"])
    assert list(single) == list(metrics["test"])
    for key, value in single.items():
        assert metrics["test"][key] == pytest.approx(value, abs=1e-9), key


def test_resume_under_torchrun_is_exact(tmp_path):
    """SASRec (dropout: each rank's RNG stream matters): 2 epochs straight = 1 epoch, then resumed to 2."""
    common = ["-m", "seq.train", "sasrec", "device=cpu", "progress=false", "eval_step=1", "max_len=20",
              "hidden_size=16", "batch_size=64"]
    _torchrun(common + ["epochs=2", f"out_dir={tmp_path / 'straight'}"], tmp_path)
    _torchrun(common + ["epochs=1", f"out_dir={tmp_path / 'resumed'}"], tmp_path)
    _torchrun(common + ["epochs=2", "resume=true", f"out_dir={tmp_path / 'resumed'}"], tmp_path)
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)
    assert len(a["rank_rng"]) == 2 and not torch.equal(a["rank_rng"][0]["torch_rng"], a["rank_rng"][1]["torch_rng"])
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    ma = json.loads((tmp_path / "straight" / "metrics.json").read_text())["test"]
    mb = json.loads((tmp_path / "resumed" / "metrics.json").read_text())["test"]
    assert ma == mb
    # a 2-process last.pt is refused by a single process, with the reason
    import seq.models  # noqa: F401  (registers sasrec)
    from gcf.train import run
    with pytest.raises(ValueError, match="torchrun with 2 processes"):
        run("sasrec", common[3:] + ["epochs=3", "resume=true", f"out_dir={tmp_path / 'resumed'}"], quiet=True,
            family="seq")


def test_two_ranks_equal_one_rank_with_the_same_global_batch(tmp_path):
    """LightGCN (graph replicated per rank), 3 epochs: 1 process at batch 2800 and 2 ranks at 1400
    each see the same 29 global batches of the 81,200 training pairs (a multiple, so no
    wrap-around); the parameters agree to float32 reduction order (stated tolerance 1e-4) and the
    gathered test metrics to 1e-6."""
    from gcf.train import run
    common = ["epochs=3", "device=cpu", "progress=false"]
    one = run("lightgcn", common + ["batch_size=2800", f"out_dir={tmp_path / 'one'}"], quiet=True)
    _torchrun(["-m", "gcf.train", "lightgcn", *common, "batch_size=1400", f"out_dir={tmp_path / 'two'}"], tmp_path)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    for key, value in one["test"].items():
        assert two["test"][key] == pytest.approx(value, abs=1e-6), key
    a = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "two" / "last.pt", weights_only=True)["model"]
    for key, value in a.items():
        if value.layout == torch.strided:
            assert torch.allclose(value, b[key], atol=1e-4, rtol=0), key
