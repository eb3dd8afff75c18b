"""One RecBole 1.2.1 CTR model on ml-100k under RecBole's context protocol, with its training time
per epoch; run with the python of a side venv that has RecBole 1.2.1 (see
../shared/benchmarks-peers.md). Prints one JSON line.

    venv-recbole/bin/python benchmarks/recbole_ctr_runner.py DeepFM DATA_DIR

Protocol (the same as ``../shared/peers/recbole_ctr.py``, whose numbers the issue quotes): ratings
of 3 dropped, label = rating >= 4, fields user_id, item_id, age, gender, occupation, release_year,
genres (``class``), random 8:1:1, labelled evaluation (AUC, LogLoss), embedding 16, batch 4096,
early stopping on validation AUC with patience 10, at most 100 epochs, seed 2020, 2 threads.
RecBole's own ``Trainer.fit`` runs unchanged; its ``_train_epoch`` is wrapped only to time each
epoch (validation excluded); ``train_rows``, ``epochs`` and ``train_sec`` are named as
``bench_ctr.py``'s own rows, so one throughput function serves both.
"""
import json
import sys
import tempfile
import time

import torch

_load = torch.load  # RecBole 1.2.1 reloads its own pickled checkpoint with torch.load (weights_only)
torch.load = lambda *a, **k: _load(*a, **{**k, "weights_only": False})

from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.utils import get_model, get_trainer, init_seed  # noqa: E402


def main(model_name: str, data_path: str, max_epochs: int = 100) -> dict:
    with tempfile.TemporaryDirectory() as work:  # RecBole's checkpoint of the best epoch
        return fit_and_test(model_name, data_path, max_epochs, work)


def fit_and_test(model_name: str, data_path: str, max_epochs: int, work: str) -> dict:
    torch.set_num_threads(2)
    config = Config(model=model_name, dataset="ml-100k", config_dict={
        "data_path": data_path, "checkpoint_dir": work, "seed": 2020, "reproducibility": True,
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"],
                     "user": ["user_id", "age", "gender", "occupation"],
                     "item": ["item_id", "release_year", "class"]},
        "val_interval": {"rating": "[0,3);(3,inf)"}, "threshold": {"rating": 4},
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": None, "mode": "labeled"},
        "metrics": ["AUC", "LogLoss"], "valid_metric": "AUC", "eval_batch_size": 4096,
        "train_batch_size": 4096, "epochs": max_epochs, "stopping_step": 10, "show_progress": False,
        "embedding_size": 16, "tensorboard": False, "log_wandb": False, "state": "WARNING",
    })
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    model = get_model(config["model"])(config, train.dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    epoch_secs = []
    train_epoch = trainer._train_epoch

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        out = train_epoch(*args, **kwargs)
        epoch_secs.append(time.perf_counter() - t0)
        return out

    trainer._train_epoch = timed
    t0 = time.perf_counter()
    _, best_valid = trainer.fit(train, valid, saved=True, show_progress=False)
    fit_sec = time.perf_counter() - t0
    result = trainer.evaluate(test, load_best_model=True, show_progress=False)
    return {"toolkit": "recbole", "version": "1.2.1", "model": model_name, "dataset": "ml-100k",
            "n_inter": len(dataset.inter_feat), "train_rows": len(train.dataset),
            "valid": {k: float(v) for k, v in best_valid.items()}, "test": {k: float(v) for k, v in result.items()},
            "fit_sec": round(fit_sec, 2), "train_sec": round(sum(epoch_secs), 3), "epochs": len(epoch_secs),
            "epoch_secs": [round(s, 4) for s in epoch_secs]}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:4]))))
