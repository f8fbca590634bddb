"""Train one run (one config, one or more seeds) and save everything needed to reproduce or use it."""

from __future__ import annotations

import csv
import json
import platform
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
import yaml
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from emofuse.config import RunConfig, TrainConfig, dump_config, validate
from emofuse.corpora.base import Manifest
from emofuse.data.dataset import FeatureDataset, collate, per_speaker_keys, unstandardised_keys
from emofuse.data.raw import RawDataset
from emofuse.evaluation.metrics import (
    METRIC_NAMES,
    classification_metrics,
    confusion,
    multilabel_confusion,
    multilabel_metrics,
    multilabel_per_class,
    per_class,
)
from emofuse.evaluation.selection import write_selection
from emofuse.models.base import EmotionModel
from emofuse.registry import MODELS
from emofuse.training.module import BestWeights, EmotionModule, class_weights


def build_model(name: str, params: dict, in_dims: dict[str, int], n_classes: int) -> EmotionModel:
    cls = MODELS.get(name)
    cfg = validate(cls.Config, params)
    return cls(in_dims, n_classes, cfg)


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("emofuse", "torch", "lightning", "numpy", "scikit-learn", "transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def placement(train: TrainConfig) -> dict:
    """The Trainer's accelerator, processes and precision from train.accelerator, devices, num_nodes,
    strategy and precision: cpu when no GPU is present, and 32-bit there (bf16-mixed on GPU)."""
    gpu = train.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    # ddp (and auto with more than one process, which Lightning would make ddp): with the search for
    # unused parameters, which most models here have (an attention pool per input that vectors skip,
    # Top-N candidates left out, late fusion's members on absent inputs); without it DDP stops at the
    # first step. ddp_find_unused_parameters_false skips the search.
    several = train.devices != 1 or train.num_nodes > 1
    strategy = train.strategy
    if strategy == "ddp" or (strategy == "auto" and several):
        strategy = "ddp_find_unused_parameters_true"
    return {"accelerator": "gpu" if gpu else "cpu", "devices": train.devices, "num_nodes": train.num_nodes,
            "strategy": strategy, "precision": train.precision or ("bf16-mixed" if gpu else "32-true")}


def process_rank(train: TrainConfig) -> int:
    """This process's rank among those that train together (0 when one process trains). The launch
    decides it (Lightning's ddp re-runs the command with LOCAL_RANK set, torchrun sets RANK, SLURM
    SLURM_PROCID, a machine of several NODE_RANK), and a Trainer built with the run's settings reads
    it before anything is launched."""
    if train.devices == 1 and train.num_nodes == 1:
        return 0
    return L.Trainer(**placement(train), logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False).global_rank


def _sharded(strategy) -> bool:
    """Whether the strategy wraps the model's own layers in place (fsdp, deepspeed, model parallel), so
    that the model object is not usable as it was after the fit."""
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

    return isinstance(strategy, (DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy))


_CLOSE_REGISTERED = False


def _close_group_at_exit() -> None:
    """Destroy the default process group (made by Lightning's ddp for the first distributed fit and
    kept for the next) when the interpreter exits, before finalisation tears gloo's threads down in
    no particular order: left to the destructors, a process that trained on several processes
    sometimes ends with `terminate called without an active exception` (SIGABRT) after it finished."""
    global _CLOSE_REGISTERED
    if _CLOSE_REGISTERED:
        return
    import atexit

    import torch.distributed as dist

    def close() -> None:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()

    atexit.register(close)
    _CLOSE_REGISTERED = True


def _from_rank_zero(metrics: dict | None) -> dict | None:
    """Process 0's metrics on every process of a distributed run (the others trained but neither
    predicted nor wrote), so that what calls train_run decides alike on all of them."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return metrics
    box = [metrics]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def predict(model: EmotionModel, ds: FeatureDataset, batch_size: int, device: torch.device,
            multi_label: bool = False) -> dict:
    """Class probabilities (softmax; per-class sigmoids with multi_label), and the per-sample
    modality weights / Top-N selections where the model gives them."""
    model.eval().to(device)
    probs, weights, selected, ids = [], [], [], []
    with torch.no_grad():
        for batch in DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=getattr(ds, "collate", collate)):
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            out = model(batch)
            logits = out["logits"].float()
            probs.append((torch.sigmoid(logits) if multi_label else torch.softmax(logits, -1)).cpu().numpy())
            if "weights" in out:
                weights.append(out["weights"].float().cpu().numpy())
            if "selected" in out:
                selected.append(out["selected"].cpu().numpy())
            ids += batch["id"]
    return {
        "ids": ids,
        "probs": np.concatenate(probs) if probs else np.zeros((0, model.n_classes)),
        "weights": np.concatenate(weights) if weights else None,
        "selected": np.concatenate(selected) if selected else None,
    }


def truth(ds: FeatureDataset, multi_label: bool) -> np.ndarray:
    """What predictions are scored against: class indices (N,), or (N, C) multi-hot indicators."""
    return ds.targets > 0 if multi_label else ds.labels


def decide(pred: dict) -> np.ndarray:
    """Predicted classes: the argmax (N,), or with a multi-label threshold in `pred` the (N, C)
    indicators of every class whose probability reaches it."""
    if pred.get("threshold") is not None:  # one threshold, or one per row (units pooled)
        t = np.asarray(pred["threshold"], dtype=np.float64)
        return pred["probs"] >= (t[:, None] if t.ndim == 1 else t)
    return pred["probs"].argmax(1)


def score(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, float]:
    return multilabel_metrics(y_true, y_pred) if y_true.ndim == 2 else classification_metrics(y_true, y_pred, n_classes)


def fit_threshold(y_true: np.ndarray, probs: np.ndarray) -> float:
    """The multi-label decision threshold, one for all classes, with the best mean F1 over classes
    on validation (ties: the one nearest 0.5). One threshold, as the GoEmotions paper's baselines
    use (theirs fixed at 0.3): with rare labels, sigmoids rarely pass 0.5."""
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)
    return float(max(grid, key=lambda t: (multilabel_metrics(y_true, probs >= t)["macro_f1"], -abs(t - 0.5))))


def write_predictions(path: Path, model: EmotionModel, pred: dict, y_true: np.ndarray, classes: list[str]) -> None:
    """id, true, predicted, one probability per class, and per-sample weights / selections when present.
    Multi-label: true and predicted list every class, joined by ";"."""
    weight_names = getattr(model, "weight_names", model.modalities)
    candidates = getattr(model, "candidate_names", None)
    picked = decide(pred) if y_true.ndim == 2 else None  # (N, C) multi-label decisions
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        head = ["id", "true", "predicted"] + [f"p_{c}" for c in classes]
        if pred["weights"] is not None:
            head += [f"w_{m}" for m in weight_names]
        if pred["selected"] is not None:
            head.append("selected")
        w.writerow(head)
        for i, sid in enumerate(pred["ids"]):
            probs = pred["probs"][i]
            if y_true.ndim == 2:
                row = [sid, ";".join(c for c, t in zip(classes, y_true[i]) if t),
                       ";".join(c for c, t in zip(classes, picked[i]) if t)]
            else:
                row = [sid, classes[y_true[i]] if y_true[i] >= 0 else "", classes[int(probs.argmax())]]
            row += [f"{p:.5f}" for p in probs]
            if pred["weights"] is not None:
                row += [f"{x:.5f}" for x in pred["weights"][i]]
            if pred["selected"] is not None:
                sel = pred["selected"][i].tolist()
                row.append(";".join(candidates[j] if candidates else str(j) for j in sel if j >= 0))
            w.writerow(row)


def _summarise(per_seed: list[dict]) -> dict:
    out = {}
    for k in METRIC_NAMES:
        vals = np.array([m[k] for m in per_seed])
        out[k] = float(vals.mean())
        out[f"{k}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    return out


def _plans(manifest: Manifest, cross_validation: bool) -> list[dict]:
    """Which rows train, validate and test in each unit of work. With cross-validation, fold f is
    the test fold and fold f+1 the validation fold, so test folds cover every labelled row once."""
    df = manifest.df.reset_index(drop=True)
    labelled = df["split"] != "unlabeled"
    if not cross_validation:
        return [{"name": "", **{s: np.flatnonzero(df["split"] == s) for s in ("train", "val", "test")}}]
    folds = sorted(int(f) for f in df.loc[labelled, "fold"].unique() if int(f) >= 0)
    if len(folds) < 3:
        raise ValueError(f"cross-validation needs at least 3 folds in the manifest, found {folds}")
    plans = []
    for i, f in enumerate(folds):
        v = folds[(i + 1) % len(folds)]
        fold = df["fold"].astype(int)
        plans.append({
            "name": f"fold{f}",
            "test": np.flatnonzero(labelled & (fold == f)),
            "val": np.flatnonzero(labelled & (fold == v)),
            "train": np.flatnonzero(labelled & (fold != f) & (fold != v)),
        })
    return plans


def _concat_predictions(preds: list[dict]) -> dict:
    """Several units' prediction dicts (predict()) as one: probs, weights, selected and ids in order."""
    merged = {k: (np.concatenate([p[k] for p in preds]) if preds[0].get(k) is not None else None)
              for k in ("probs", "weights", "selected")}
    merged["ids"] = [i for p in preds for i in p["ids"]]
    return merged


def _speaker_folds(df, rows: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """rows cut into k speaker-disjoint folds, stratified by label where the speakers allow."""
    from sklearn.model_selection import StratifiedGroupKFold

    speakers = df["speaker"].fillna("").astype(str).to_numpy()[rows] if "speaker" in df else np.full(len(rows), "")
    if (speakers == "").any():
        raise ValueError(f"train.cross_validation: speaker groups folds by speaker, but {int((speakers == '').sum())} of "
                         f"the {len(rows)} training and validation rows have no speaker (manifest column `speaker`)")
    n = len(set(speakers))
    if n < 3:
        raise ValueError(f"train.cross_validation: speaker needs at least 3 training speakers, found {n}")
    labels = df["label"].astype(str).to_numpy()[rows]
    cv = StratifiedGroupKFold(n_splits=min(k, n), shuffle=True, random_state=seed)
    return [rows[held] for _, held in cv.split(rows, labels, speakers)]


def _select_and_refit(cfg: RunConfig, data, plan: dict, seed: int, unit_dir: Path, n_classes: int, tb_dir: Path, df):
    """train.cross_validation: speaker. The epoch budget is chosen by speaker-grouped folds over the
    training and validation speakers (each fold validates, with early stopping, on speakers it never
    trained on; the budget is the median of the folds' best epochs), then the model is refitted on all
    of those rows for that many epochs and scored once on test. The "validation" predictions it
    returns are out-of-fold: each row predicted by the fold model that never saw its speaker."""
    pool = np.concatenate([plan["train"], plan["val"]])
    folds = _speaker_folds(df, pool, cfg.train.cv_folds, seed)
    fold_info, oof, oof_true = [], [], []
    for k, held in enumerate(folds):
        sub = {"name": f"cv{k}", "train": np.setdiff1d(pool, held), "val": held, "test": held}
        _, _, _, val_m, info = _fit_one(cfg, data, sub, seed, unit_dir / "cv" / f"fold{k}", n_classes, tb_dir)
        if val_m is None:  # not process 0: it took part in the fit only (its best epoch is process 0's)
            fold_info.append({"best_epoch": info["best_epoch"]})
            continue
        pred, true = info.pop("val_prediction")
        oof.append(pred)
        oof_true.append(true)
        speakers = sorted(set(df["speaker"].astype(str).to_numpy()[held]))
        fold_info.append({"fold": k, "speakers": speakers, "best_epoch": info["best_epoch"], "val": val_m,
                          "fit_time_s": info["fit_time_s"]})
    epochs = max(1, int(round(float(np.median([f["best_epoch"] for f in fold_info])))) + 1)
    refit_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_epochs": epochs})})
    whole = {"name": plan["name"], "train": pool, "val": plan["val"], "test": plan["test"]}
    model, test_pred, y_true, _, info = _fit_one(refit_cfg, data, whole, seed, unit_dir, n_classes, tb_dir, refit=True)
    if model is None:  # not process 0
        return None, None, None, None, info
    merged = _concat_predictions(oof)
    oof_y = np.concatenate(oof_true)
    info["val_prediction"] = (merged, oof_y)
    info["selection"] = {"mode": "speaker_cv", "folds": fold_info, "epochs": epochs,
                         "cv": _summarise([f["val"] for f in fold_info])}
    return model, test_pred, y_true, score(oof_y, decide(merged), n_classes), info


def check_budgets(train: TrainConfig) -> str:
    """Why train.budgets / train.replay_from cannot stand for runs of those budgets ('' when they can)."""
    if train.lr_schedule != "constant" or train.warmup > 0:
        return "the learning-rate schedule depends on the budget (lr_schedule linear or warmup)"
    if train.val_checks_per_epoch != 1:
        return "budgets are whole epochs, so one validation check per epoch (val_checks_per_epoch 1)"
    if train.cross_validation:
        return "cross-validation chooses its own epochs"
    return ""


class BudgetSnapshots(L.Callback):
    """At the end of epoch k of each budget k, what a run of k epochs would have kept: BestWeights'
    state then (the best weights of the first k epochs) and its record, with the seconds so far."""

    def __init__(self, best: BestWeights, budgets: list[int], t0: float):
        self.best, self.budgets, self.t0 = best, sorted(set(budgets)), t0
        self.kept: dict[int, dict] = {}

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        epoch = trainer.current_epoch + 1
        if epoch in self.budgets and epoch not in self.kept:
            self.take(epoch, epoch)

    def take(self, budget: int, epochs_run: int, seconds: float | None = None) -> None:
        b = self.best
        self.kept[budget] = {"state": b.state, "best_epoch": b.best_epoch, "best_step": b.best_step, "best": b.best,
                             "checks": b.checks, "record": dict(b.record), "epochs_run": epochs_run,
                             "fit_time_s": time.perf_counter() - self.t0 if seconds is None else seconds}

    def finish(self, epochs_run: int, fit_s: float) -> None:
        """A fit stopped early: the budgets it did not reach keep what it ended with and its time (as
        would a longer run of theirs, stopped at the same epoch)."""
        for k in self.budgets:
            if k not in self.kept:
                self.take(k, epochs_run, fit_s)

    def save(self, unit_dir: Path) -> None:
        folder = unit_dir / "budgets"
        folder.mkdir(parents=True, exist_ok=True)
        for k, snap in self.kept.items():
            state = snap["state"] or {}
            save_file({n: v.detach().cpu().contiguous() for n, v in state.items()}, str(folder / f"ep{k}.safetensors"))
            (folder / f"ep{k}.json").write_text(json.dumps({n: v for n, v in snap.items() if n != "state"}, indent=2))


def _replayed(cfg: RunConfig, unit_dir: Path, run_dir: Path) -> tuple[dict, dict]:
    """The weights and record train.replay_from's run kept for this unit at budget max_epochs."""
    from safetensors.torch import load_file

    folder = Path(cfg.train.replay_from).joinpath(unit_dir.relative_to(run_dir), "budgets")
    k = cfg.train.max_epochs
    try:
        return load_file(str(folder / f"ep{k}.safetensors")), json.loads((folder / f"ep{k}.json").read_text())
    except OSError:
        raise FileNotFoundError(f"run {cfg.name!r} replays the {k}-epoch budget of {cfg.train.replay_from}, which "
                                f"kept none in {folder} (train it with train.budgets including {k})") from None


def _fit_one(cfg: RunConfig, data: FeatureDataset, plan: dict, seed: int, unit_dir: Path, n_classes: int, tb_dir: Path,
             refit: bool = False, run_dir: Path | None = None):
    """Train one (fold, seed) unit; returns (model, test prediction, test truth, val metrics, info).
    refit: train for exactly train.max_epochs and keep the last weights (no early stopping, no
    best-epoch pick: its validation rows are among its training rows).

    Distributed (train.devices x train.num_nodes > 1): every process runs this, builds the same
    initial weights (seeded before the model is built; ddp also broadcasts process 0's) and fits on
    its share of each epoch's training rows (Lightning shards the sampler, the length-grouped one
    too); validation is shared out without repeats and gathered (EmotionModule). Then process 0
    alone predicts the whole val and test splits with the best weights and writes the unit; the
    others return (None, None, None, None, {"best_epoch": ...}) and go on to the next fit, where
    they wait for process 0."""
    train_ds, val_ds, test_ds = (data.subset(plan[s]) for s in ("train", "val", "test"))
    for name, ds in (("train", train_ds), ("val", val_ds), ("test", test_ds)):
        if len(ds) == 0:
            raise ValueError(f"split {name!r} of {cfg.data.manifest} is empty{' in ' + plan['name'] if plan['name'] else ''}")
    stats = train_ds.fit_standardiser()  # training rows only: val and test never leak into it
    for k in unstandardised_keys(cfg.data.standardise, stats):  # standardise: none (probabilities, say)
        stats[k] = (np.zeros_like(stats[k][0]), np.ones_like(stats[k][1]))
    train_ds, val_ds, test_ds = (ds.standardised(stats) for ds in (train_ds, val_ds, test_ds))
    where = placement(cfg.train)
    mode = "min" if cfg.train.monitor == "val_loss" else "max"
    L.seed_everything(seed, workers=True, verbose=False)
    model = build_model(cfg.model.name, cfg.model.params, data.in_dims(), n_classes)
    prompted = getattr(model, "classes", None)  # a zero-shot model's own class list must be the data's
    if prompted is not None and hasattr(data, "classes") and list(prompted) != list(data.classes):
        raise ValueError(f"{cfg.model.name} predicts classes {list(prompted)} but the manifest's label set is "
                         f"{list(data.classes)}")
    weights = class_weights(train_ds.labels, n_classes, cfg.train.class_weights)
    module = EmotionModule(model, cfg.train.lr, cfg.train.weight_decay, cfg.train.mse_weight,
                           weights, cfg.train.lr_schedule, cfg.train.warmup, multi_label=cfg.train.multi_label,
                           optimizer=cfg.train.optimizer, modality_dropout=cfg.train.modality_dropout,
                           ce_label_smoothing=cfg.train.ce_label_smoothing)
    best = BestWeights(cfg.train.monitor, mode)
    logger = False
    if cfg.train.logger == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        version = "_".join(x for x in (plan["name"], f"seed{seed}") if x)
        logger = TensorBoardLogger(str(tb_dir), name="", version=version, default_hp_metric=False)
    trainer = L.Trainer(
        **where,
        max_epochs=cfg.train.max_epochs,
        callbacks=[] if refit else [L.pytorch.callbacks.EarlyStopping(cfg.train.monitor, patience=cfg.train.patience,
                                                                       mode=mode), best],
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=cfg.train.progress,
        enable_model_summary=False,
        deterministic=cfg.train.deterministic,
        log_every_n_steps=1,
        accumulate_grad_batches=cfg.train.accumulate_grad_batches,
        gradient_clip_val=cfg.train.gradient_clip,
        val_check_interval=1.0 / cfg.train.val_checks_per_epoch,
    )
    # Deterministic algorithms, but without torch's debugging fill of every new tensor with NaN (it
    # comes with them and changes no result): a third of a CPU fine-tuning epoch (emofuse speed finetune)
    torch.utils.deterministic.fill_uninitialized_memory = False
    g = torch.Generator().manual_seed(seed)
    collate_fn = getattr(train_ds, "collate", collate)  # raw-input datasets batch their own way
    lengths = train_ds.lengths() if hasattr(train_ds, "lengths") else None
    if lengths is not None:  # raw text: batches of similar lengths, far less padding to encode
        from transformers.trainer_pt_utils import LengthGroupedSampler

        sampler = LengthGroupedSampler(cfg.data.batch_size, lengths=lengths, generator=g)
        train_dl = DataLoader(train_ds, batch_size=cfg.data.batch_size, sampler=sampler, collate_fn=collate_fn, pin_memory=torch.cuda.is_available())
    else:
        train_dl = DataLoader(train_ds, batch_size=cfg.data.batch_size, shuffle=True, collate_fn=collate_fn, generator=g, pin_memory=torch.cuda.is_available())
    val_dl = DataLoader(val_ds, batch_size=cfg.data.batch_size, shuffle=False, collate_fn=collate_fn, pin_memory=torch.cuda.is_available())
    fit_val_dl = val_dl
    if trainer.world_size > 1:
        if refit and _sharded(trainer.strategy):
            raise ValueError(f"train.cross_validation: speaker refits and keeps the last weights, which strategy "
                             f"{cfg.train.strategy} leaves sharded: use strategy ddp")
        # each process validates its own share of the rows, none twice: Lightning's default sampler
        # would pad the shares with repeated rows, which the gathered metrics would count twice
        from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

        share = UnrepeatedDistributedSampler(val_ds, num_replicas=trainer.world_size, rank=trainer.global_rank,
                                             shuffle=False)
        fit_val_dl = DataLoader(val_ds, batch_size=cfg.data.batch_size, sampler=share, collate_fn=collate_fn, pin_memory=torch.cuda.is_available())
    t0 = time.perf_counter()
    trainable = any(p.requires_grad for p in model.parameters())
    snaps = None
    if cfg.train.budgets and not refit:
        snaps = BudgetSnapshots(best, cfg.train.budgets, t0)
        trainer.callbacks.append(snaps)  # after BestWeights: it reads what that has just kept
    replayed = None
    if cfg.train.replay_from:  # nothing to train: the longer run's weights at this budget
        state, replayed = _replayed(cfg, unit_dir, run_dir or unit_dir)
        best.state = state or None
        best.best_epoch, best.best_step, best.best = replayed["best_epoch"], replayed["best_step"], replayed["best"]
        best.checks, best.record = replayed["checks"], replayed["record"]
        trainable = False
    with warnings.catch_warnings():
        # tiny in-memory datasets: worker and batch-count advice does not apply
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        # distributed: EmotionModule gathers the validation rows itself, so its metrics need no sync_dist
        warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")
        if trainable:  # a zero-shot model has nothing to fit: straight to validation and test
            trainer.fit(module, train_dl, fit_val_dl)
    if trainer.world_size > 1:
        _close_group_at_exit()
    if trainer.global_rank != 0:  # the other processes of a distributed fit: process 0 predicts and writes
        return None, None, None, None, {"best_epoch": best.best_epoch}
    if best.state is not None:
        if trainer.world_size > 1 and _sharded(trainer.strategy):  # its layers were wrapped in place: a fresh copy
            model = build_model(cfg.model.name, cfg.model.params, data.in_dims(), n_classes)
        model.load_state_dict(best.state)
    fitted = {}
    if hasattr(model, "fit_validation") and not refit:  # e.g. late-fusion weights, fitted on val only
        model.eval()
        fitted = model.fit_validation(val_dl)
    fit_s = time.perf_counter() - t0
    unit_dir.mkdir(parents=True, exist_ok=True)
    if snaps is not None:
        snaps.finish(trainer.current_epoch, fit_s)
        snaps.save(unit_dir)
    if best.history:  # the learning curve, as a table and a picture (a replayed budget fits nothing: none)
        from emofuse.evaluation.report import save_history

        save_history(best.history, unit_dir, best.best_epoch + 1, cfg.train.monitor,
                     title=f"{cfg.name}{' ' + plan['name'] if plan['name'] else ''} (seed {seed})")
    if replayed is not None:
        fit_s = replayed["fit_time_s"]  # the longer run's seconds to the end of this budget's last epoch
    if hasattr(model, "save_artifacts"):  # e.g. a fine-tuned encoder, saved for use as a feature encoder
        model.save_artifacts(unit_dir)
    # (a frozen pretrained LLM backbone leaves itself out of state_dict(): see llama_topn)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(unit_dir / "model.safetensors"))
    save_file({f"{k}.{part}": torch.from_numpy(a) for k, (mean, std) in stats.items() for part, a in (("mean", mean), ("std", std))},
              str(unit_dir / "standardiser.safetensors"))
    device = torch.device("cuda" if where["accelerator"] == "gpu" else "cpu")
    multi = cfg.train.multi_label
    val_pred = predict(model, val_ds, cfg.data.batch_size, device, multi)
    test_pred = predict(model, test_ds, cfg.data.batch_size, device, multi)
    if multi:  # one decision threshold, chosen on validation, applied to test
        val_pred["threshold"] = test_pred["threshold"] = fit_threshold(truth(val_ds, True), val_pred["probs"])
        fitted = {**fitted, "threshold": val_pred["threshold"]}
    val_metrics = score(truth(val_ds, multi), decide(val_pred), n_classes)
    info = {"seed": seed, "fold": plan["name"] or None, "best_epoch": best.best_epoch,
            "best_step": best.best_step, "validation_checks": best.checks,
            f"best_{cfg.train.monitor}": best.best,
            "epochs_run": replayed["epochs_run"] if replayed else trainer.current_epoch if trainable else 0,
            "at_best_epoch": best.record, "fit_time_s": fit_s, "fitted_on_val": fitted,
            "n": {"train": len(train_ds), "val": len(val_ds), "test": len(test_ds)}, "processes": trainer.world_size,
            "val_prediction": (val_pred, truth(val_ds, multi))}  # written beside the test predictions, then dropped
    return model, test_pred, truth(test_ds, multi), val_metrics, info


def _quiet_lightning() -> None:
    """Lightning's banners (GPU available: False, tips) and a deprecation warning from its own
    pytree code repeat for every unit of a run; keep the output to what the user asked for."""
    import logging

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def _warn_absent(data, manifest: Manifest) -> None:
    """Before training: say so, with the counts, when an input is absent in most training rows (a
    corpus whose clips lack a track, or whose encoder failed on most of them)."""
    features = getattr(data, "features", None)
    if not features:
        return
    train = np.flatnonzero(manifest.df["split"].to_numpy() == "train")
    for key, f in features.items():
        if getattr(f, "present", None) is None:  # raw inputs (fine-tuning): presence is known per batch only
            continue
        present = int(np.asarray(f.present)[train].sum()) if len(train) else 0
        if len(train) and present < 0.5 * len(train):
            msg = (f"input {key} ({f.encoder}) is absent in {len(train) - present} of the {len(train)} training rows "
                   f"(present in {present}); the model learns it from few samples. Check the media (no track?) "
                   "and the extraction's errors (emofuse extract prints them; meta.json lists them)")
            warnings.warn(msg, UserWarning, stacklevel=3)
            print(f"warning: {msg}")


def finished_run(run: RunConfig) -> dict | None:
    """The metrics of a run already finished with exactly this config (its config.yaml and
    metrics.json in place), else None."""
    run_dir = Path(run.out) / run.name
    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    try:  # read by today's config: a field added since, at its default, is the run as it was
        same = RunConfig.model_validate(saved).model_dump(mode="json") == run.model_dump(mode="json")
    except ValueError:  # a field since removed or renamed
        return None
    if not same:
        return None
    return metrics if _same_features(run, run_dir) else None


def _same_features(run: RunConfig, run_dir: Path) -> bool:
    """Whether the features a finished run trained on (its encoders.json) are those its config would
    load now: for each encoder, the newest complete cache entry has the same fingerprint and video
    decoding (an encoder's defaults or a decoding changed since: the run is stale)."""
    from emofuse.features.cache import list_entries

    try:
        used = json.loads((run_dir / "encoders.json").read_text())
        corpus = Manifest.load(run.data.manifest).corpus
    except (OSError, ValueError):
        return False
    for v in used.values():
        complete = [e for e in list_entries(run.data.cache, corpus, v["encoder"]) if e.complete] if run.data.cache else []
        if complete and (complete[-1].fingerprint != v["fingerprint"]
                         or (complete[-1].meta.get("decoding") or {}) != v.get("decoding", {})):
            return False
    return True


def train_run(cfg: RunConfig, *, one_process_as: str | None = None) -> dict:
    """Fit cfg.model with early stopping on the validation metric and evaluate on test, for every
    seed (and every fold with train.cross_validation). Metrics are mean ± std over those units.

    Writes <out>/<name>/: config.yaml, labels.json, encoders.json, versions.json, metrics.json,
    predictions.csv, confusion.png, tb/ and, per unit (fold/seed sub-folders when more than one),
    model.safetensors, predictions.csv, and the learning curve: history.csv (train loss and validation
    metrics per validation check) and curves.png (the kept epoch marked).

    Distributed (train.devices, train.num_nodes, train.strategy; docs/distributed.md): every process
    runs this and takes part in every fit, units one after the other as with one process; process 0
    alone predicts and writes the run folder, and every process returns its metrics. Lightning's ddp
    starts the other processes by re-running the command (sys.argv), so call this from the CLI
    (`emofuse train C --set train.devices=2 --set train.strategy=ddp`), from torchrun, or from a script
    run as `python script.py` — never in-process from a test runner or a notebook, whose command is
    not this run. one_process_as: the caller runs many runs and writes around them (a sweep, a grid),
    named so; a run configured for several processes is then refused."""
    if one_process_as and (cfg.train.devices != 1 or cfg.train.num_nodes != 1):
        # sweeps, grids, ablations and the like write their own tables around the runs, in every
        # process that Lightning's ddp would start: distributed training is `emofuse train`'s
        raise ValueError(f"{one_process_as} trains one process per run, but run {cfg.name!r} sets train.devices="
                         f"{cfg.train.devices}, train.num_nodes={cfg.train.num_nodes}; train a run on several "
                         "devices with `emofuse train CONFIG --set train.devices=N` (docs/distributed.md)")
    from emofuse.evaluation.report import save_confusion_png

    if (cfg.train.budgets or cfg.train.replay_from) and (why := check_budgets(cfg.train)):
        raise ValueError(f"run {cfg.name!r}: train.budgets / train.replay_from cannot stand for runs of those "
                         f"budgets here: {why}")
    _quiet_lightning()
    lead = process_rank(cfg.train) == 0  # process 0 writes; any others only train
    run_dir = Path(cfg.out) / cfg.name
    manifest = Manifest.load(cfg.data.manifest)
    manifest.df = manifest.df.reset_index(drop=True)
    classes = list(manifest.label_set.classes)
    if lead:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")
        (run_dir / "labels.json").write_text(json.dumps(manifest.label_set.to_dict(), indent=2))
    if getattr(MODELS.get(cfg.model.name), "raw_inputs", False):  # fine-tuning / zero-shot: the media themselves
        data = RawDataset.from_manifest(manifest, cfg.data.features, cfg.data.raw, label_smoothing=cfg.data.label_smoothing)
    else:
        data = FeatureDataset.from_manifest(
            manifest, cfg.data.cache, cfg.data.features,
            sequence=cfg.data.sequence, label_smoothing=cfg.data.label_smoothing, context=cfg.data.context,
        )
        keys = per_speaker_keys(cfg.data.standardise, data.features)
        if keys:  # label-free: each speaker's rows by that speaker's own statistics
            data = data.per_speaker_standardised(keys=keys)
    if lead:
        _warn_absent(data, manifest)
        (run_dir / "encoders.json").write_text(json.dumps(
            {k: {"encoder": f.encoder, "fingerprint": f.fingerprint, "dim": f.dim,
                 **({"decoding": f.decoding} if getattr(f, "decoding", None) else {})} for k, f in data.features.items()},
            indent=2))
        (run_dir / "versions.json").write_text(json.dumps(library_versions(), indent=2))

    plans = _plans(manifest, cfg.train.cross_validation is True)
    units = [(p, s) for p in plans for s in cfg.train.seeds]
    t0 = time.perf_counter()
    per_unit, infos, val_per_unit = [], [], []
    replayed_s = 0.0  # a replayed budget: the longer run's training seconds up to it count as this run's
    pooled_true, pooled_pred = [], []
    for plan, seed in units:
        parts = [x for x in (plan["name"], f"seed{seed}" if len(cfg.train.seeds) > 1 else "") if x]
        unit_dir = run_dir.joinpath(*parts) if parts else run_dir
        if cfg.train.cross_validation == "speaker":
            model, pred, y_true, val_m, info = _select_and_refit(cfg, data, plan, seed, unit_dir, len(classes),
                                                                 run_dir / "tb", manifest.df)
        else:
            model, pred, y_true, val_m, info = _fit_one(cfg, data, plan, seed, unit_dir, len(classes), run_dir / "tb",
                                                        run_dir=run_dir)
            replayed_s += info["fit_time_s"] if cfg.train.replay_from else 0.0
        if not lead:
            continue
        val_pred, val_true = info.pop("val_prediction")
        # validation predictions too: late fusion of runs and sweeps fit and select on them, never on test
        write_predictions(unit_dir / "predictions_val.csv", model, val_pred, val_true, classes)
        if unit_dir != run_dir and plan is units[0][0] and seed == cfg.train.seeds[0]:
            write_predictions(run_dir / "predictions_val.csv", model, val_pred, val_true, classes)
        y_pred = decide(pred)
        m = score(y_true, y_pred, len(classes))
        per_unit.append(m)
        val_per_unit.append(val_m)
        infos.append(info | {"val": val_m, "test": m})
        write_predictions(unit_dir / "predictions.csv", model, pred, y_true, classes)
        if seed == cfg.train.seeds[0]:  # the run's own predictions: first seed, every fold
            pooled_true.append(y_true)
            pooled_pred.append(pred)
    if not lead:
        return _from_rank_zero(None)
    wall = time.perf_counter() - t0 + replayed_s
    y_true = np.concatenate(pooled_true)
    y_pred = np.concatenate([decide(p) for p in pooled_pred])
    if len(units) > 1:  # units wrote their own files in sub-folders; pool them at the top
        merged = _concat_predictions(pooled_pred)
        if pooled_pred[0].get("threshold") is not None:  # each unit's rows keep their unit's threshold
            merged["threshold"] = np.concatenate([np.full(len(p["ids"]), p["threshold"]) for p in pooled_pred])
        write_predictions(run_dir / "predictions.csv", model, merged, y_true, classes)
    multi = y_true.ndim == 2
    cm = multilabel_confusion(y_true, y_pred) if multi else confusion(y_true, y_pred, len(classes))
    title = f"{cfg.name} (test{', synthetic corpus' if manifest.meta.get('synthetic') else ''})"
    save_confusion_png(cm, classes, run_dir / "confusion.png", title=title)
    metrics = {
        "name": cfg.name,
        "model": cfg.model.name,
        "corpus": manifest.corpus,
        "synthetic": bool(manifest.meta.get("synthetic", False)),
        "features": cfg.data.features,
        "test": _summarise(per_unit),
        "val": _summarise(val_per_unit),
        **({"cv": _summarise([f["val"] for u in infos for f in u["selection"]["folds"]]),
            "cv_epochs": [u["selection"]["epochs"] for u in infos]} if cfg.train.cross_validation == "speaker" else {}),
        "units": infos,
        "per_class": (multilabel_per_class if multi else per_class)(y_true, y_pred, classes),
        "confusion": cm.tolist(),
        "wall_time_s": wall,
        **({"replayed_from": cfg.train.replay_from} if cfg.train.replay_from else {}),
    }
    if not multi:  # ECE before / after a temperature fitted on validation, and reliability.png
        from emofuse.evaluation.report import write_calibration

        metrics["calibration"] = write_calibration(run_dir, classes, title=title)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_selection(run_dir, getattr(model, "candidate_names", None))  # Top-N models: how often each was kept
    return _from_rank_zero(metrics)
