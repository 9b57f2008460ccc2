"""RecBole 1.2.1 SASRec on a split exported by ``benchmarks/recsys.py`` (runs in a separate venv).

Not part of the package: RecBole is only the side-by-side reference. Usage (done by recsys.py):

    /work/recbole-venv/bin/python benchmarks/recsys_recbole.py SPEC.json OUT.json

SPEC holds ``data_dir`` (a folder with ``<dataset>/<dataset>.inter``; per-user timestamps are the
event order, so RecBole's time sort reproduces our tie-break exactly), the hyper-parameters, the
epoch cap, and ``histories``/``targets`` (our item ids) so that the test ranking can also be scored
here with seen items excluded (RecBole itself keeps them for sequential models; see
shared/PROTOCOL.md). Shims needed on this machine: numpy 2 aliases, torch.load(weights_only=False),
empty sys.argv, explicit data_path.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

for _alias, _target in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
    if not hasattr(np, _alias):
        setattr(np, _alias, _target)

import torch  # noqa: E402

_torch_load = torch.load


def _load_full(*args, **kwargs):
    kwargs["weights_only"] = False
    return _torch_load(*args, **kwargs)


torch.load = _load_full


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(open(spec_path).read())
    argv, sys.argv = sys.argv, sys.argv[:1]
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    torch.set_num_threads(spec.get("num_threads", 2))
    hp = spec["hyper"]
    config_dict = {
        "data_path": spec["data_dir"],
        "checkpoint_dir": spec["checkpoint_dir"],
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)",
        "MAX_ITEM_LIST_LENGTH": hp["max_len"],
        "hidden_size": hp["hidden"], "inner_size": hp.get("inner_size", hp["hidden"]), "n_layers": hp["n_blocks"], "n_heads": hp["n_heads"],
        "hidden_dropout_prob": hp["dropout"], "attn_dropout_prob": hp["attn_dropout"], "hidden_act": "gelu",
        "loss_type": "CE", "train_neg_sample_args": None,
        "learning_rate": hp["lr"], "train_batch_size": hp["recbole_batch_size"], "eval_batch_size": 256,
        "epochs": spec["max_epochs"], "stopping_step": hp["patience"],
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["Recall", "NDCG", "MRR"], "topk": [5, 10, 20], "valid_metric": "NDCG@10",
        "seed": spec["seed"], "reproducibility": True, "use_gpu": False, "device": "cpu",
        "show_progress": False, "log_wandb": False,
    }  # fmt: skip
    config = Config(model="SASRec", dataset=spec["dataset"], config_dict=config_dict)
    sys.argv = argv
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = SASRec(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)

    epoch_seconds: list[float] = []
    train_epoch = trainer._train_epoch

    def timed_epoch(*args, **kwargs):
        t0 = time.perf_counter()
        out = train_epoch(*args, **kwargs)
        epoch_seconds.append(time.perf_counter() - t0)
        return out

    trainer._train_epoch = timed_epoch
    valid_seconds: list[float] = []
    valid_scores: list[float] = []
    valid_epoch = trainer._valid_epoch

    def timed_valid(*args, **kwargs):
        t0 = time.perf_counter()
        out = valid_epoch(*args, **kwargs)
        valid_seconds.append(time.perf_counter() - t0)
        valid_scores.append(float(out[0]))
        return out

    trainer._valid_epoch = timed_valid
    t0 = time.perf_counter()
    best_valid, _ = trainer.fit(train_data, valid_data, saved=True, show_progress=False, verbose=False)
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    recbole_test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    eval_seconds = time.perf_counter() - t0

    # our own scoring of the same trained model: seen items kept and excluded
    item_tokens = dataset.field2id_token["item_id"]  # internal id -> our item index (as str); 0 = [PAD]
    user_tokens = dataset.field2id_token["user_id"]
    n_ours = spec["n_items"]
    rb_to_ours = np.full(len(item_tokens), -1, dtype=np.int64)
    rb_to_ours[1:] = [int(t) for t in item_tokens[1:]]
    histories = {int(u): np.asarray(h, dtype=np.int64) for u, h in spec["histories"].items()}
    targets = {int(u): int(t) for u, t in spec["targets"].items()}
    model.eval()
    ranks_kept, ranks_excl = [], []
    with torch.no_grad():
        for batched in test_data:
            interaction = batched[0]
            scores_rb = model.full_sort_predict(interaction.to(config["device"])).view(len(interaction), -1).numpy()
            ours = np.full((len(interaction), n_ours), -np.inf, dtype=np.float32)
            ours[:, rb_to_ours[1:]] = scores_rb[:, 1:]
            users = [int(user_tokens[u]) for u in interaction["user_id"].numpy()]
            tgt = np.array([targets[u] for u in users])
            rows = np.arange(len(users))
            ts = ours[rows, tgt]
            ranks_kept.append((ours > ts[:, None]).sum(1))
            for r, u in enumerate(users):
                ours[r, histories[u]] = -np.inf
            ranks_excl.append((ours > ts[:, None]).sum(1))

    def metrics(ranks: np.ndarray) -> dict[str, float]:
        out = {}
        for k in (5, 10, 20):
            hit = ranks < k
            out[f"recall@{k}"] = float(hit.mean())
            out[f"ndcg@{k}"] = float(np.where(hit, 1 / np.log2(ranks + 2.0), 0).mean())
            out[f"mrr@{k}"] = float(np.where(hit, 1 / (ranks + 1.0), 0).mean())
        return out

    result = {
        "recbole_version": __import__("recbole").__version__,
        "torch_version": torch.__version__,
        "epochs_run": len(epoch_seconds),
        "epoch_cap": spec["max_epochs"],
        "epoch_seconds": epoch_seconds,
        "fit_seconds": fit_seconds,
        "best_valid_ndcg@10_recbole": float(best_valid),
        "test_recbole_own_seen_kept": {k: float(v) for k, v in recbole_test.items()},
        "test_eval_seconds_recbole": eval_seconds,
        "test_ours_seen_kept": metrics(np.concatenate(ranks_kept)),
        "test_ours_seen_excluded": metrics(np.concatenate(ranks_excl)),
        "n_test_users": int(sum(len(r) for r in ranks_kept)),
        "train_samples_per_epoch": len(train_data._dataset),
        "valid_ndcg_curve": valid_scores,
        "valid_seconds": valid_seconds,
    }
    if valid_scores:  # time to the best validation epoch: its training and validation passes, summed
        # RecBole keeps a later epoch that ties the best (its early stopping updates on >=), and
        # that epoch's checkpoint is the model tested above
        best = len(valid_scores) - 1 - int(np.argmax(valid_scores[::-1]))
        result["best_epoch"] = best + 1
        result["seconds_to_best"] = float(sum(epoch_seconds[: best + 1]) + sum(valid_seconds[: best + 1]))
    open(out_path, "w").write(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
