"""Loading time of every loader in :mod:`gcf.data.loaders` on the real datasets.

    python benchmarks/bench_loaders.py --data-dir ../shared/data [--repeats 5] [--check]

The datasets are those of ``../shared/data`` (see its README.md); the data directory is
``--data-dir``, else ``$GCF_DATA_DIR``, else ``../shared/data`` beside the repository. A dataset
whose files are missing is listed as skipped. Each loader runs ``--repeats`` times in this
process, one after another; reported are the best and the median wall-clock seconds and the
interactions loaded per second (best run). ``budget_s`` holds the limits that used to be
asserted in ``tests/test_loaders.py`` (3 s for ml-100k atomic and for Gowalla); ``--check``
exits with status 1 when a best time is over its budget.

Writes ``benchmarks/results/loaders.json`` (``--out``) and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from gcf.data import loaders  # noqa: E402

EMBEDDED = Path(loaders.__file__).resolve().parent / "ml-latest-small"


def jobs(data: Path, scratch: Path) -> list[dict]:
    """What to time: name, loader, the files it reads, the call, and a time budget (or None)."""
    small = data / "ml-latest-small" if (data / "ml-latest-small").is_dir() else EMBEDDED
    return [
        dict(name="ml-latest-small", loader="load_movielens", files=[small / "ratings.csv"],
             call=lambda: loaders.load_movielens(small / "ratings.csv")),
        dict(name="ml-latest-small (csv table)", loader="load_table", files=[small / "ratings.csv"],
             call=lambda: loaders.load_table(small / "ratings.csv", "userId", "movieId", "rating", "timestamp")),
        dict(name="ml-latest-small (parquet table)", loader="load_table", files=[small / "ratings.csv"],
             call=lambda: loaders.load_table(_parquet_copy(small / "ratings.csv", scratch),
                                             "userId", "movieId", "rating", "timestamp"),
             needs="pyarrow"),
        dict(name="ml-100k", loader="load_atomic", files=[data / "ml-100k" / "ml-100k.inter"],
             call=lambda: loaders.load_atomic(data / "ml-100k" / "ml-100k"), budget=3.0),
        dict(name="ml-1m", loader="load_diffurec_pickle", files=[data / "ml-1m" / "dataset.pkl"],
             call=lambda: loaders.load_diffurec_pickle(data / "ml-1m" / "dataset.pkl")),
        dict(name="gowalla", loader="load_lightgcn_txt", files=[data / "gowalla" / "train.txt"],
             call=lambda: loaders.load_lightgcn_txt(data / "gowalla"), budget=3.0),
        dict(name="lastfm", loader="load_pairs_txt", files=[data / "lastfm" / "data1.txt"],
             call=lambda: loaders.load_pairs_txt(data / "lastfm" / "data1.txt", data / "lastfm" / "test1.txt")),
        dict(name="amazon-beauty (s3rec)", loader="load_sequence_lines",
             files=[data / "amazon-beauty" / "s3rec" / "Beauty.txt"],
             call=lambda: loaders.load_sequence_lines(data / "amazon-beauty" / "s3rec" / "Beauty.txt")),
        dict(name="amazon-beauty (bert4rec)", loader="load_sequence_pairs",
             files=[data / "amazon-beauty" / "bert4rec" / "beauty.txt"],
             call=lambda: loaders.load_sequence_pairs(data / "amazon-beauty" / "bert4rec" / "beauty.txt")),
    ]


def _parquet_copy(csv_path: Path, scratch: Path) -> Path:
    """``csv_path`` written once as Parquet in ``scratch`` (the write is not timed again)."""
    target = scratch / (csv_path.stem + ".parquet")
    if not target.exists():
        pd.read_csv(csv_path).to_parquet(target)
    return target


def _have(module: str | None) -> bool:
    if module is None:
        return True
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def n_interactions(result) -> int:
    """Rows loaded: one Interactions, or a (train, test) pair."""
    parts = result if isinstance(result, tuple) else (result,)
    return sum(len(p) for p in parts if p is not None)


def run(job: dict, repeats: int) -> dict:
    """Time ``job`` ``repeats`` times (or say why it is skipped)."""
    row = {"name": job["name"], "loader": job["loader"], "files": [str(f) for f in job["files"]],
           "budget_s": job.get("budget")}
    missing = [str(f) for f in job["files"] if not f.is_file()]
    if missing or not _have(job.get("needs")):
        row["skipped"] = f"missing {', '.join(missing)}" if missing else f"needs {job['needs']}"
        return row
    if job.get("needs"):
        job["call"]()  # builds the scratch copy outside the timed runs
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = job["call"]()
        times.append(time.perf_counter() - start)
    best = min(times)
    row.update(rows=n_interactions(result), best_s=round(best, 4), median_s=round(statistics.median(times), 4),
               runs_s=[round(t, 4) for t in times], rows_per_s=round(n_interactions(result) / best))
    if row["budget_s"] is not None:
        row["within_budget"] = best <= row["budget_s"]
    return row


def table(rows: list[dict]) -> str:
    lines = ["| dataset | loader | interactions | best s | median s | interactions/s | budget s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['name']} | {r['loader']} | skipped: {r['skipped']} | | | | |")
            continue
        budget = "" if r["budget_s"] is None else f"{r['budget_s']:g} ({'ok' if r['within_budget'] else 'OVER'})"
        lines.append(f"| {r['name']} | {r['loader']} | {r['rows']:,} | {r['best_s']:.3f} | {r['median_s']:.3f} | "
                     f"{r['rows_per_s']:,} | {budget} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    default_data = os.environ.get("GCF_DATA_DIR") or HERE.parents[1] / "shared" / "data"
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(default_data))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "loaders.json")
    parser.add_argument("--check", action="store_true", help="exit 1 when a time budget is exceeded")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="gcf-bench-loaders-") as scratch:
        rows = [run(job, args.repeats) for job in jobs(args.data_dir.resolve(), Path(scratch))]
    report = {
        "data_dir": str(args.data_dir.resolve()), "repeats": args.repeats,
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__,
                    "cpus": os.cpu_count(), "platform": platform.platform()},
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(rows))
    print(f"\nwrote {args.out}")
    over = [r["name"] for r in rows if r.get("within_budget") is False]
    if over:
        print(f"over budget: {', '.join(over)}")
    return 1 if args.check and over else 0


if __name__ == "__main__":
    sys.exit(main())
