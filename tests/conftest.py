"""Shared fixtures: the embedded MovieLens ``ml-latest-small`` and its default split.

Built directly with pandas + :meth:`Interactions.from_raw` so that these fixtures do not depend
on the dataset registry (``gcf.data.datasets``).

Tests on the real datasets of ``../shared/data`` (``GCF_TEST_DATA`` overrides) skip when that
folder is missing, except under ``GCF_REQUIRE_DATA=1`` (set by ``.ci/run``): then a missing
folder fails the run, so a green CI means the real-file tests ran.

The tests use one torch thread (``GCF_TEST_THREADS`` overrides): their tensors are small, and on
a shared machine with few cores extra intra-op threads make them many times slower.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from gcf.data.interactions import Interactions
from gcf.data.split import random_ratio

torch.set_num_threads(int(os.environ.get("GCF_TEST_THREADS", "1")))

DATA = Path(os.environ.get("GCF_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
if os.environ.get("GCF_REQUIRE_DATA") == "1" and not (DATA / "ml-100k").is_dir():
    raise RuntimeError(f"GCF_REQUIRE_DATA=1 but the real datasets are not in {DATA} (set GCF_TEST_DATA): the "
                       "tests on real files would be skipped")

ML_SMALL = Path(__file__).resolve().parents[1] / "gcf" / "data" / "ml-latest-small" / "ratings.csv"


@pytest.fixture(scope="session")
def ml_small() -> Interactions:
    df = pd.read_csv(ML_SMALL)
    return Interactions.from_raw(df["userId"].to_numpy(), df["movieId"].to_numpy(), df["rating"].to_numpy(),
                                 df["timestamp"].to_numpy(), source=str(ML_SMALL))


@pytest.fixture(scope="session")
def ml_small_split(ml_small):
    return random_ratio(ml_small, (0.8, 0.1, 0.1), seed=2020)
