"""From a run config to a :class:`Split`: load, filter, split. Shared by every package's CLI."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from .datasets import load_dataset
from .fields import parse_fields
from .interactions import Interactions
from .split import Split, make_split


def load_split(cfg: dict) -> Split:
    """Load ``cfg['dataset']`` and apply ``rating_threshold``, ``user_k``/``item_k`` and ``split``.

    With ``label_threshold`` set (``task=ctr``, ``configs/task/ctr.yaml``) every row gets a click
    label (``rating >= label_threshold``) after the rows rated within ``drop_ratings`` are
    removed (:meth:`Interactions.labelled`). The dataset's declared ``fields`` are checked here
    (an unknown key, type or source is an error naming it) and travel with the split."""
    fields = parse_fields(cfg.get("fields"))  # fail before loading anything
    inter, test, valid = load_dataset(cfg["dataset"], cfg.get("data_dir"), with_valid=True,
                                      **{k: cfg[k] for k in ("format", "path") if cfg.get(k) is not None})
    threshold = cfg.get("rating_threshold")
    inter = inter.implicit(threshold)
    if cfg.get("label_threshold") is not None:
        if test is not None:
            raise ValueError(f"dataset {cfg['dataset']!r} has a fixed test file: click labels (task=ctr) need "
                             "a dataset split by the run")
        inter = inter.labelled(float(cfg["label_threshold"]), cfg.get("drop_ratings"))
    if test is not None:
        if cfg.get("user_k") or cfg.get("item_k"):
            raise ValueError(f"dataset {cfg['dataset']!r} has a fixed test file: user_k/item_k filtering "
                             "would change its id space; set user_k=0 item_k=0")
        test = test.implicit(threshold) if test.ratings is not None else test
        if valid is not None and valid.ratings is not None:
            valid = valid.implicit(threshold)
    else:
        inter = inter.k_core(int(cfg.get("user_k") or 0), int(cfg.get("item_k") or 0))
    split = make_split(inter, cfg["split"], tuple(cfg["split_ratios"]), int(cfg["seed"]),  # make_split dedups
                       test=test, valid_ratio=float(cfg.get("valid_ratio", 0.1)), valid=valid)
    for part in ("train", "test"):
        if len(getattr(split, part)) == 0:
            raise ValueError(f"dataset {cfg['dataset']!r}: the {part} split is empty after filtering ({split.summary()})")
    split.fields = None if fields is None else [f.to_dict() for f in fields]
    return split


def source_files(inter: Interactions) -> list[Path]:
    """Existing file paths named in ``inter.source``."""
    return sorted({Path(p) for p in re.split(r"[,;\s]+", inter.source) if p and Path(p).is_file()})


def hash_files(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
