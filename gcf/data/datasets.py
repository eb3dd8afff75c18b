"""Named datasets: ``load_dataset("gowalla")`` -> ``(interactions, own_test_or_None)``;
``load_dataset(name, with_valid=True)`` -> ``(interactions, own_test_or_None, own_valid_or_None)``.

Each name is a YAML file ``configs/data/<name>.yaml`` with the keys

- ``format``: atomic | movielens | lightgcn_txt | pairs_txt | seq_pairs | seq_lines |
  diffurec_pickle | diffrec_npy | table (see :mod:`gcf.data.loaders`); ``diffrec_npy`` (a folder
  with DiffRec's ``train_list.npy``/``valid_list.npy``/``test_list.npy``) is the one format that
  brings its own validation part as well, which ``split: fixed`` then uses as it is;
- ``path`` (and ``test_path`` for pairs_txt; ``user_col``/``item_col``/``rating_col``/
  ``time_col``/``sep`` for table), relative to the data directory;
- the dataset's default preparation: ``rating_threshold``, ``user_k``, ``item_k``, ``split``,
  ``split_ratios``, ``valid_ratio`` (applied by :func:`gcf.data.prepare.load_split`, not here).

The data directory is the ``data_dir`` argument, else ``$GCF_DATA_DIR``; ``ml-latest-small``
also falls back to the copy embedded in the package (``gcf/data/ml-latest-small``).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..yamlfiles import config_dir, read_yaml
from . import loaders
from .interactions import Interactions

EMBEDDED_DIR = Path(__file__).resolve().parent  # holds ml-latest-small/
EMBEDDED = ("ml-latest-small",)

FORMATS = ("atomic", "movielens", "lightgcn_txt", "pairs_txt", "seq_pairs", "seq_lines",
           "diffurec_pickle", "diffrec_npy", "table")
LOADER_KEYS = {"format", "path", "test_path", "sep", "user_col", "item_col", "rating_col", "time_col"}
PREPARE_KEYS = {"rating_threshold", "user_k", "item_k", "split", "split_ratios", "valid_ratio"}

__all__ = ["load_dataset", "dataset_config", "list_datasets", "FORMATS"]


def list_datasets() -> list[str]:
    """Names with a ``configs/data/<name>.yaml``."""
    return sorted(p.stem for p in (config_dir() / "data").glob("*.yaml"))


def dataset_config(name: str) -> dict:
    """The keys of ``configs/data/<name>.yaml``, checked for ``format`` and ``path``."""
    path = config_dir() / "data" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown dataset {name!r} (no {path}); known datasets: "
                         f"{', '.join(list_datasets()) or 'none'}")
    cfg = read_yaml(path)
    _check_config(cfg, str(path))
    return cfg


def _check_config(cfg: dict, where: str) -> None:
    for key in ("format", "path"):
        if not cfg.get(key):
            raise ValueError(f"{where}: missing key {key!r}")
    if cfg["format"] not in FORMATS:
        raise ValueError(f"{where}: unknown format {cfg['format']!r}; expected one of {', '.join(FORMATS)}")
    if cfg["format"] == "table":
        for key in ("user_col", "item_col"):
            if not cfg.get(key):
                raise ValueError(f"{where}: format 'table' needs the key {key!r}")


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, with_valid: bool = False, **overrides
                 ) -> tuple[Interactions, Interactions | None] | tuple[Interactions, Interactions | None,
                                                                      Interactions | None]:
    """Load a named dataset: ``(interactions, test)`` where ``test`` is the source's own test
    file (gowalla, lastfm) sharing the id space, else ``None``. No filtering or splitting
    happens here. ``overrides`` replace keys of the YAML file (e.g. ``path=...``).

    ``with_valid=True`` returns ``(interactions, test, valid)``, ``valid`` being the source's own
    validation file (format ``diffrec_npy``) or ``None``. Without it, a dataset that has its own
    validation file is an error rather than a silent loss of that file."""
    cfg = dataset_config(name)
    unknown = sorted(set(overrides) - LOADER_KEYS - PREPARE_KEYS - set(cfg))
    if unknown:
        raise ValueError(f"dataset {name!r}: unknown key(s) {', '.join(map(repr, unknown))}; known: "
                         f"{', '.join(sorted(LOADER_KEYS | PREPARE_KEYS | set(cfg)))}")
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    _check_config(cfg, f"dataset {name!r}")
    root = _data_root(name, cfg, data_dir)
    parts = _LOAD[cfg["format"]](cfg, root)
    inter, test, valid = parts if len(parts) == 3 else (*parts, None)
    if with_valid:
        return inter, test, valid
    if valid is not None:
        raise ValueError(f"dataset {name!r} (format {cfg['format']!r}) comes with its own validation file: "
                         "load it with load_dataset(..., with_valid=True) (gcf.data.prepare.load_split does)")
    return inter, test


# ------------------------------------------------------------------ data directory
def _required(cfg: dict) -> list[str]:
    """Files (relative to the data directory) the format reads and needs."""
    fmt, path = cfg["format"], cfg["path"]
    if fmt == "atomic":
        return [path + ".inter"]
    if fmt == "lightgcn_txt":
        return [f"{path}/train.txt", f"{path}/test.txt"]
    if fmt == "diffrec_npy":
        return [f"{path}/{part}_list.npy" for part in ("train", "valid", "test")]
    if fmt == "pairs_txt" and cfg.get("test_path"):
        return [path, cfg["test_path"]]
    return [path]


def _data_root(name: str, cfg: dict, data_dir) -> Path:
    """The data directory holding the dataset's files (see the module docstring)."""
    if data_dir is not None:
        candidates, told = [Path(data_dir)], f"data_dir={data_dir}"
    elif os.environ.get("GCF_DATA_DIR"):
        candidates, told = [Path(os.environ["GCF_DATA_DIR"])], f"GCF_DATA_DIR={os.environ['GCF_DATA_DIR']}"
    else:
        candidates, told = [], "no data_dir given and GCF_DATA_DIR is not set"
    if name in EMBEDDED and data_dir is None:
        candidates.append(EMBEDDED_DIR)
    needed = _required(cfg)
    for root in candidates:
        if all((root / rel).exists() for rel in needed):
            return root
    if not candidates:
        raise FileNotFoundError(f"dataset {name!r} needs a data directory ({told}): pass data_dir=... or "
                                f"set GCF_DATA_DIR to the folder holding {needed[0]}")
    missing = next(root / rel for root in candidates for rel in needed if not (root / rel).exists())
    raise FileNotFoundError(f"dataset {name!r}: {missing} not found ({told}); pass data_dir=... or set "
                            f"GCF_DATA_DIR to the folder holding {needed[0]}")


# -------------------------------------------------------------------- one per format
def _one(inter: Interactions) -> tuple[Interactions, None]:
    return inter, None


def _train_test_valid(train: Interactions, valid: Interactions, test: Interactions
                      ) -> tuple[Interactions, Interactions, Interactions]:
    return train, test, valid


_LOAD = {
    "atomic": lambda c, r: _one(loaders.load_atomic(r / c["path"])),
    "movielens": lambda c, r: _one(loaders.load_movielens(r / c["path"])),
    "lightgcn_txt": lambda c, r: loaders.load_lightgcn_txt(r / c["path"]),
    "pairs_txt": lambda c, r: loaders.load_pairs_txt(r / c["path"], r / c["test_path"] if c.get("test_path")
                                                     else None, c.get("sep")),
    "seq_pairs": lambda c, r: _one(loaders.load_sequence_pairs(r / c["path"], c.get("sep"))),
    "seq_lines": lambda c, r: _one(loaders.load_sequence_lines(r / c["path"])),
    "diffurec_pickle": lambda c, r: _one(loaders.load_diffurec_pickle(r / c["path"])),
    "diffrec_npy": lambda c, r: _train_test_valid(*loaders.load_diffrec_npy(r / c["path"])),
    "table": lambda c, r: _one(loaders.load_table(r / c["path"], c["user_col"], c["item_col"],
                                                  c.get("rating_col"), c.get("time_col"), c.get("sep") or ",")),
}
