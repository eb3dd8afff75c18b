"""Times one RecBole model on one dataset; run with the python of a side venv that has
RecBole 1.2.1 (see ../shared/benchmarks-peers.md). Prints one JSON line.

    venv-recbole/bin/python benchmarks/recbole_runner.py LightGCN ml-100k DATA_DIR EPOCHS ['{"n_layers": 3}']

The optional last argument is a JSON object of RecBole config keys that override its defaults
(the callers pass every setting they compare on, e.g. LightGCN's ``n_layers``, so that the
peer runs exactly the settings the table states).
"""
import json
import resource
import sys
import tempfile
import time

from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed


def main(model_name: str, dataset: str, data_path: str, epochs: int, extra: dict | None = None) -> dict:
    """Train ``epochs`` epochs; with ``"_valid_each_epoch": true`` in ``extra`` also rank the
    validation split after each epoch (its time is not counted in the epoch's)."""
    extra = dict(extra or {})
    valid_each_epoch = bool(extra.pop("_valid_each_epoch", False))
    tmp = tempfile.mkdtemp()
    config = Config(model=model_name, dataset=dataset, config_dict={
        "data_path": data_path, "epochs": epochs, "train_batch_size": 2048, "embedding_size": 64,
        "show_progress": False, "checkpoint_dir": tmp, "eval_step": 0, "log_wandb": False,
        "worker": 0, "gpu_id": "", "use_gpu": False, "state": "WARNING", **(extra or {}),
    })
    init_seed(config["seed"], config["reproducibility"])
    data = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, data)
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    secs, valid = [], []
    for epoch in range(epochs):
        t0 = time.perf_counter()
        trainer._train_epoch(train_data, epoch, show_progress=False)
        secs.append(time.perf_counter() - t0)
        if valid_each_epoch:
            res = trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
            valid.append({k: float(v) for k, v in res.items()})
    t0 = time.perf_counter()
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    eval_sec = time.perf_counter() - t0
    return {"impl": "recbole-1.2.1", "model": model_name.lower(), "dataset": dataset, "epoch_secs": secs,
            "config": {k: config[k] for k in sorted(extra or {})},
            "train_interactions": int(train_data.dataset.inter_num), "valid_history": valid,
            "eval_sec": eval_sec, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "test": {k: float(v) for k, v in result.items()}}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]),
                          json.loads(sys.argv[5]) if len(sys.argv) > 5 else None)))
