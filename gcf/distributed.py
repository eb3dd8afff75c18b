"""Running under ``torchrun``: one process per rank, gradients averaged by DistributedDataParallel.

``torchrun --nproc_per_node=N -m gcf.train MODEL ...`` (or ``-m seq.train``) starts N copies of
the CLI; :func:`init` (called by the CLI) sees torchrun's ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``
and joins the process group: ``gloo`` on CPU, ``nccl`` on CUDA (rank ``r`` on ``cuda:LOCAL_RANK``).
Without torchrun (``WORLD_SIZE`` unset or 1) nothing here does anything and a run is exactly a
single-process run.

What each rank does (:class:`gcf.trainer.Trainer`):

- Every rank builds the same model from the same seed (DDP also broadcasts rank 0's
  parameters), and the same epoch of batches from the shared ``(seed, epoch)`` stream; rank
  ``r`` trains on batches ``r, r + N, r + 2N, ...`` (:func:`shard`). Each step's gradient is
  the mean over the N ranks' batches, so an epoch is one pass over the data with an effective
  batch of ``N x batch_size`` (as with PyTorch's ``DistributedSampler``). When the batch count
  is not a multiple of N, the last ranks wrap around to the first batches, so every rank takes
  the same number of steps. The torch RNG of rank ``r > 0`` (dropout, model-side sampling) is
  seeded ``seed + r``; rank 0's is the single-process one.
- Evaluation is sharded by users (rank ``r`` ranks users ``r, r + N, ...``) and the metric sums
  are all-reduced (:func:`all_sum`), so every rank sees the same validation numbers and takes
  the same early-stopping decision. Sampled negatives come from each user's own stream, so
  they do not depend on the sharding either.
- Rank 0 alone writes ``config.yaml``, ``train.log``, checkpoints, ``metrics.json`` and
  ``latents.npz``; ``last.pt`` holds every rank's RNG states, so ``resume=true`` under torchrun
  continues each rank's streams exactly. State a model keeps outside its parameters
  (``extra_state``) is rank 0's.
- Graph models replicate their propagation on every rank (the graph is not partitioned): the
  speed-up comes from splitting the batches, and memory per rank is that of a single run.
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist


def world() -> int:
    """Number of ranks (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    """Started by torchrun (or another launcher setting ``WORLD_SIZE > 1``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str = "auto") -> None:
    """Join torchrun's process group (once); a no-op outside torchrun. ``device`` picks the
    backend: ``nccl`` where the run uses CUDA, ``gloo`` otherwise."""
    if not launched() or dist.is_initialized():
        return
    for key in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {key} is not set: start distributed runs "
                             "with torchrun --nproc_per_node=N -m gcf.train MODEL ...")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=30))


def close() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """``cuda`` becomes this rank's GPU (``cuda:LOCAL_RANK``) under torchrun."""
    if world() > 1 and device.type == "cuda" and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shard(batches, total: int):
    """This rank's share of an epoch's ``total`` batches: ``r, r + N, ...``, ``ceil(total / N)``
    of them, wrapping around to the first batches when ``total`` is not a multiple of ``N``."""
    n, r = world(), rank()
    if n == 1:
        yield from batches
        return
    steps = -(-total // n)
    mine = [r + k * n for k in range(steps)]
    direct = {i for i in mine if i < total}
    wrapped = [i - total for i in mine if i >= total]
    kept = {}
    for i, batch in enumerate(batches):
        if i in direct:
            yield batch
        if i in wrapped:
            kept[i] = batch
    for i in wrapped:
        yield kept[i]


def steps(total: int) -> int:
    """How many batches :func:`shard` yields on each rank."""
    return -(-total // world())


def all_sum(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Sum of each value over the ranks (float64); every rank passes the same keys in the same order."""
    if world() == 1 or not values:
        return values
    keys = list(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))


def gather_objects(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if world() == 1:
        return [obj]
    out = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world() > 1:
        dist.barrier()
