"""The one training loop of every model.

Per epoch: the batches of the model's batch builder (``model.batches``, seeded by ``(seed, epoch)``), ``loss``,
backward, optimizer step; a non-finite loss stops the run with an error naming the epoch and
batch. Every ``eval_step`` epochs and after the last epoch the validation split is ranked;
the best epoch on ``valid_metric`` is kept in ``best.pt`` and training stops after
``stopping_step`` validations without improvement. ``last.pt`` (model, optimizer, the model's
``extra_state()``, the torch CPU and CUDA and numpy RNG states, epoch, early-stopping state) is
written every epoch, so ``resume=True`` continues a killed run and reaches the same result
as an uninterrupted one. Checkpoints hold only tensors and plain values:
``torch.load(path, weights_only=True)`` reads them. The test split is ranked once, at the end,
with the best checkpoint. Closed-form models (``batch_kind is None``) are fitted once.
Under ``torchrun`` the model is wrapped in DistributedDataParallel, each rank trains on its
share of every epoch's batches and ranks its share of the users, and rank 0 writes the files
(:mod:`gcf.distributed`).
With ``task=ctr`` the parts hold labelled rows and are scored, not ranked: validation and test
give AUC and LogLoss (:func:`gcf.evaluate.evaluate_labelled`), and ``valid_metric`` is ``auc``.
"""
from __future__ import annotations

import copy
import logging
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from . import distributed
from .data.split import Split
from .data.train_data import TrainData
from .evaluate import _sampled_spec, evaluate, evaluate_labelled
from .metrics import monitor_score
from .models.base import Recommender

log = logging.getLogger("gcf")


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: the run stops and writes no metrics."""


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available (use device=cpu or device=auto)")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    return torch.device(device)


def _to(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    return batch


def valid_metric_name(cfg: dict) -> str:
    """``valid_metric``, carrying the sampling label when the run ranks sampled negatives
    (``sampled=uni100``: ``ndcg@20`` -> ``ndcg@20[uni100]``), so validation follows the protocol.
    It may join several metrics with + and - (``auc-logloss``): :func:`gcf.metrics.monitor_score`."""
    metric, sampled = str(cfg["valid_metric"]).replace(" ", ""), cfg.get("sampled")
    if not sampled:
        return metric
    return "".join(piece if piece in "+-" or "[" in piece else f"{piece}[{sampled}]"
                   for piece in re.split(r"([+-])", metric))


def test_protocols(cfg: dict) -> list[str]:
    """``test_sampled`` as a list (``uni100`` or ``[uni100, pop100]``): the sampled protocols the
    test part is also ranked under, after training (validation and early stopping never see
    them); the one ``sampled`` already ranks is not repeated."""
    value = cfg.get("test_sampled")
    protocols = [value] if isinstance(value, str) else list(value or [])
    if protocols and cfg.get("task", "ranking") == "ctr":
        raise ValueError(f"test_sampled={value!r} ranks items against sampled negatives; task=ctr scores "
                         "labelled rows (auc, logloss): leave test_sampled unset")
    for p in protocols:
        try:
            _sampled_spec(p if isinstance(p, str) else "")  # an unknown protocol fails before training
        except ValueError:
            raise ValueError(f"test_sampled: expected a protocol like uni100 / pop100 (uni<N>, pop<N>) or a "
                             f"list of them, got {value!r}") from None
    return [p for p in dict.fromkeys(protocols) if p != cfg.get("sampled")]


def evaluate_part(model: Recommender, split: Split, cfg: dict, part: str, sampled: str | None,
                  device="cpu", users=None) -> dict:
    """The metrics of ``part`` as the run config ``cfg`` asks for them (cut-offs, metrics, batch size,
    masking, the seed of the sampled negatives): what :meth:`Trainer.evaluate` and a finished run's
    later evaluation (:func:`gcf.runs.add_test_metrics`) both compute."""
    if cfg.get("task", "ranking") == "ctr":
        return evaluate_labelled(model, split, part, metrics=cfg["metrics"], batch_size=int(cfg["eval_batch_size"]))
    return evaluate(model, split, part, ks=cfg["topk"], metrics=cfg["metrics"], batch_size=int(cfg["eval_batch_size"]),
                    device=device, sampled=sampled, seed=int(cfg["seed"]), mask_seen=bool(cfg.get("mask_seen", True)),
                    users=users)


def rng_state(device: torch.device) -> dict:
    """Every RNG stream a run draws from, as tensors (``weights_only`` loads them)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch_rng": torch.get_rng_state(),
             "numpy_rng": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
             "numpy_rng_pos": int(pos), "numpy_rng_gauss": [int(has_gauss), float(cached)]}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(ckpt: dict) -> None:
    torch.set_rng_state(ckpt["torch_rng"])
    if "numpy_rng" in ckpt:
        g = ckpt["numpy_rng_gauss"]
        np.random.set_state(("MT19937", ckpt["numpy_rng"].numpy().astype(np.uint32), int(ckpt["numpy_rng_pos"]),
                             int(g[0]), float(g[1])))
    if "cuda_rng" in ckpt and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["cuda_rng"])


class _LossOf(torch.nn.Module):
    """``forward(batch) = model.loss(batch)``: DistributedDataParallel synchronises the gradients
    of what runs through ``forward``."""

    def __init__(self, model: Recommender):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.loss(batch)


class Trainer:
    """Fits ``model`` on ``split`` following ``cfg`` (the resolved run config)."""

    def __init__(self, model: Recommender, split: Split, cfg: dict, out_dir: str | Path | None = None):
        self.model = model
        self.split = split
        self.cfg = cfg
        self.device = distributed.local_device(resolve_device(str(cfg.get("device", "auto"))))
        self.model.to(self.device)
        self.out_dir = Path(out_dir) if out_dir else None
        self.main = distributed.is_main()  # the rank that writes files
        if self.out_dir and self.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.data = TrainData.from_split(split)
        self.history: list[dict] = []
        self.has_valid = len(split.valid) > 0
        self.valid_users = self.valid_sample()  # drawn once: a bad valid_users fails before training
        test_protocols(cfg)  # a bad test_sampled fails before training too
        self.optimizer = None
        self.step_loss = model.loss  # what a training step calls: through DDP under torchrun
        if model.batch_kind is not None:
            self.optimizer = torch.optim.Adam(model.param_groups(), lr=float(cfg["learning_rate"]),
                                              weight_decay=float(cfg.get("weight_decay", 0.0)))
            if distributed.world() > 1:
                wrapped = _LossOf(model)
                # sparse buffers (a graph's adjacency) are built alike on every rank and cannot be broadcast
                DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                    wrapped, [n for n, b in wrapped.named_buffers() if b.layout != torch.strided])
                self.step_loss = DistributedDataParallel(
                    wrapped, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                    find_unused_parameters=bool(cfg.get("ddp_find_unused_parameters", False)))

    # ------------------------------------------------------------ evaluation
    def evaluate(self, part: str, sampled: str | None | bool = True) -> dict:
        """Metrics of ``part``; ``sampled=True`` follows the config's ``sampled`` protocol,
        ``None`` forces full ranking."""
        return evaluate_part(self.model, self.split, self.cfg, part,
                             self.cfg.get("sampled") if sampled is True else sampled, self.device,
                             users=self.valid_users if part == "valid" else None)

    def valid_sample(self) -> np.ndarray | None:
        """The validation users (``valid_users``: a fixed sample of that many, drawn from the
        seed; ``None``: all). For models whose full ranking is slow (CARCA, DiffuRec on Beauty),
        early stopping on a sample keeps the validation cheap; the test part is never sampled."""
        n = self.cfg.get("valid_users")
        if n is None:
            return None
        if int(n) < 1:
            raise ValueError(f"valid_users must be >= 1 (or null for all), got {n}")
        held = np.unique(self.split.valid.users)
        if int(n) >= len(held):
            return None
        rng = np.random.default_rng([int(self.cfg["seed"]), 0x5A11D])
        return np.sort(rng.choice(held, size=int(n), replace=False))

    # ------------------------------------------------------------ checkpoints
    def _path(self, name: str) -> Path | None:
        return self.out_dir / name if self.out_dir else None

    def _save_last(self, state: dict) -> None:
        if not self.out_dir:
            return
        ranks_rng = distributed.gather_objects(rng_state(self.device)) if distributed.world() > 1 else None
        if not self.main:
            return
        extra = {"rank_rng": ranks_rng} if ranks_rng else {}
        tmp = self._path("last.pt.tmp")
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "model_extra": self.model.extra_state(), **rng_state(self.device), **extra, **state}, tmp)
        tmp.replace(self._path("last.pt"))
        every = self.cfg.get("save_every")
        if every and state["epoch"] % int(every) == 0:  # a snapshot kept (S3-Rec's pre-training: every 10)
            shutil.copyfile(self._path("last.pt"), self._path(f"epoch-{state['epoch']}.pt"))

    def _save_best(self, epoch: int, valid: dict) -> None:
        if self.out_dir and self.main:
            torch.save({"model": self.model.state_dict(), "epoch": epoch, "valid": valid}, self._path("best.pt"))
        else:  # keep the best weights in memory (the other ranks under torchrun, too)
            self._best_state = {k: v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
                                for k, v in self.model.state_dict().items()}  # extra state: plain values

    def _load_best(self) -> None:
        path = self._path("best.pt")
        if getattr(self, "_best_state", None) is not None:
            self.model.load_state_dict(self._best_state)
        elif path and path.exists():
            self.model.load_state_dict(torch.load(path, map_location=self.device, weights_only=True)["model"])

    # ------------------------------------------------------------ training
    def fit(self) -> dict:
        """Train, early-stop on validation, rank the test split with the best model; returns
        the metrics dict that ``metrics.json`` holds."""
        torch.manual_seed(int(self.cfg["seed"]) + distributed.rank())  # rank 0: the single-process stream
        # deterministic kernels on CPU (e.g. the index_put backward is otherwise order-dependent),
        # for this fit only: the caller's process (a cornac Experiment, ...) gets its setting back
        before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
        if self.device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            if self.model.batch_kind is None:
                return self._fit_closed_form()
            return self._fit_loop()
        finally:
            torch.use_deterministic_algorithms(before[0], warn_only=before[1])

    def _fit_closed_form(self) -> dict:
        """One fit, or (with a validation split) one per candidate of ``model.fit_path``, the best
        on ``valid_metric`` kept (refitted at its setting when it was not the last)."""
        if not self.has_valid:
            start = time.perf_counter()
            self.model.fit(self.data)
            fit_sec = time.perf_counter() - start
            self._save_best(0, {})
            self.history.append({"epoch": 1, "sec": fit_sec, "valid": {}})
            return self._finish({}, [fit_sec], epochs=1, best_epoch=1)
        metric = valid_metric_name(self.cfg)
        secs, best, last = [], None, None
        start = time.perf_counter()
        for setting in self.model.fit_path(self.data):
            secs.append(time.perf_counter() - start)
            valid = self.evaluate("valid")
            score = monitor_score(valid, metric)
            self.history.append({"epoch": 1, "sec": secs[-1], "setting": setting, "valid": valid})
            if setting:
                log.info("%s: valid %s %.4f", ", ".join(f"{k}={v}" for k, v in setting.items()), metric, score)
            if best is None or score > best[0]:
                best = (score, setting, valid)
            last = setting
            start = time.perf_counter()
        _, setting, valid = best
        if setting is not last:
            start = time.perf_counter()
            self.model.fit(self.data, **setting)
            secs.append(time.perf_counter() - start)
        self._save_best(0, valid)
        out = self._finish(valid, secs, epochs=1, best_epoch=1)
        return {**out, "selected": setting} if setting else out

    def _fit_loop(self) -> dict:
        c = self.cfg
        seed, epochs, bs = int(c["seed"]), int(c["epochs"]), int(c["batch_size"])
        patience, eval_step, metric = int(c["stopping_step"]), int(c["eval_step"]), valid_metric_name(c)
        state = {"epoch": 0, "best_score": -math.inf, "best_epoch": 0, "bad_evals": 0, "epoch_secs": [],
                 "best_valid": {}}
        if c.get("resume") and self._path("last.pt") and self._path("last.pt").exists():
            state = self._resume(state)
        builder = self.model.batches(self.data, bs)
        total_batches = distributed.steps(len(builder))  # this rank's share under torchrun
        stopped_early = False
        for epoch in range(state["epoch"], epochs):
            if state["bad_evals"] >= patience:
                stopped_early = True
                break
            self.model.train()
            self.model.start_epoch(epoch)
            rng = np.random.default_rng([seed, epoch])
            t0 = time.perf_counter()
            loss_sum, count = 0.0, 0
            bar = tqdm(distributed.shard(builder.epoch(rng), len(builder)), total=total_batches,
                       desc=f"epoch {epoch + 1}/{epochs}", leave=False,
                       disable=not (c.get("progress", True) and self.main), dynamic_ncols=True)
            for b, batch in enumerate(bar):
                loss = self.step_loss(_to(batch, self.device))
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(
                        f"loss is {loss.item()} at epoch {epoch + 1}, batch {b + 1}: training stopped "
                        f"(try a lower learning_rate; no metrics were written)")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                loss_sum += float(loss.detach())
                count += 1
                if b % 10 == 0:
                    bar.set_postfix(loss=f"{loss_sum / count:.4f}")
            sec = time.perf_counter() - t0
            state["epoch_secs"].append(sec)
            record = {"epoch": epoch + 1, "loss": loss_sum / max(count, 1), "sec": sec}
            if self.has_valid and ((epoch + 1) % eval_step == 0 or epoch + 1 == epochs):  # the last one too
                t1 = time.perf_counter()
                valid = self.evaluate("valid")
                record["eval_sec"] = time.perf_counter() - t1
                score = monitor_score(valid, metric)  # an error naming a metric not computed
                record["valid"] = valid
                if score > state["best_score"]:
                    state.update(best_score=score, best_epoch=epoch + 1, bad_evals=0, best_valid=valid)
                    self._save_best(epoch + 1, valid)
                else:
                    state["bad_evals"] += 1
                    if state["bad_evals"] % max(1, int(c.get("lr_patience", 1))) == 0:
                        self._decay_lr()
            self.history.append(record)
            state["epoch"] = epoch + 1
            state["history"] = self.history
            self._save_last(state)
            log.info("epoch %d/%d loss %.4f %.2fs%s", epoch + 1, epochs, record["loss"], sec,
                     f" valid {metric} {monitor_score(record['valid'], metric):.4f}" if "valid" in record else "")
        if not self.has_valid:  # no validation split: the last epoch is the model
            self._save_best(state["epoch"], {})
            state["best_epoch"] = state["epoch"]
        if stopped_early or state["bad_evals"] >= patience:
            log.info("early stop: no improvement of %s for %d validations (best epoch %d)", metric, patience,
                     state["best_epoch"])
        self._load_best()
        return self._finish(state["best_valid"], state["epoch_secs"], state["epoch"], state["best_epoch"])

    def _decay_lr(self) -> None:
        """``lr_decay`` (FuxiCTR's ``reduce_lr_on_plateau``): after every ``lr_patience``-th
        validation in a row without improvement (1: each one, as FuxiCTR) every group's learning
        rate is multiplied by it, down to ``min_lr``. The rates live in the optimizer's state, so
        ``last.pt`` resumes them."""
        factor = float(self.cfg.get("lr_decay") or 1.0)
        if factor == 1.0:
            return
        floor = float(self.cfg.get("min_lr", 1e-6))
        for group in self.optimizer.param_groups:
            group["lr"] = max(group["lr"] * factor, floor)
        log.info("no improvement: learning rate now %.3g", self.optimizer.param_groups[0]["lr"])

    def _resume(self, state: dict) -> dict:
        ckpt = torch.load(self._path("last.pt"), map_location=self.device, weights_only=True)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.model.load_extra_state(ckpt.get("model_extra", {}))
        if distributed.world() > 1:
            ranks = ckpt.get("rank_rng")
            if not ranks or len(ranks) != distributed.world():
                raise ValueError(f"{self._path('last.pt')} was written by a run with "
                                 f"{len(ranks) if ranks else 1} process(es); resume it with as many "
                                 f"(this run has {distributed.world()})")
            set_rng_state(ranks[distributed.rank()])
        elif ckpt.get("rank_rng"):
            raise ValueError(f"{self._path('last.pt')} was written under torchrun with {len(ckpt['rank_rng'])} "
                             "processes; resume it with torchrun --nproc_per_node of the same N")
        else:
            set_rng_state(ckpt)
        for key in state:
            state[key] = ckpt[key]
        self.history = list(ckpt.get("history", []))
        log.info("resumed from %s at epoch %d", self._path("last.pt"), state["epoch"])
        return state

    def _finish(self, valid: dict, epoch_secs: list, epochs: int, best_epoch: int) -> dict:
        t0 = time.perf_counter()
        # cornac's fit has no test part; test=false leaves the ranking to the caller
        test = self.evaluate("test") if len(self.split.test) and self.cfg.get("test", True) else {}
        if test and self.cfg.get("sampled"):  # the sampled protocol's test is reported next to full ranking
            test = {**self.evaluate("test", sampled=None), **test}
        if test:
            for protocol in test_protocols(self.cfg):  # and the sampled ones asked for next to it
                test.update(self.evaluate("test", sampled=protocol))
        eval_sec = time.perf_counter() - t0
        secs = epoch_secs[1:] if len(epoch_secs) > 2 else epoch_secs  # first epoch includes warm-up
        return {"valid": valid, "test": test,
                "sec_per_epoch": float(np.median(secs)) if secs else 0.0,
                "eval_sec": eval_sec, "epochs": epochs, "best_epoch": best_epoch,
                "train_sec": float(np.sum(epoch_secs))}
