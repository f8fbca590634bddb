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
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from emofuse.config import RunConfig, dump_config, validate
from emofuse.corpora.base import Manifest
from emofuse.data.dataset import FeatureDataset, collate
from emofuse.evaluation.metrics import METRIC_NAMES, classification_metrics, confusion, per_class
from emofuse.models.base import EmotionModel
from emofuse.registry import MODELS
from emofuse.training.module import BestWeights, EmotionModule


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


def _predict(model: EmotionModel, ds: FeatureDataset, batch_size: int, device: torch.device) -> dict:
    model.eval().to(device)
    probs, weights, ids = [], [], []
    with torch.no_grad():
        for batch in DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate):
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            out = model(batch)
            probs.append(torch.softmax(out["logits"].float(), -1).cpu().numpy())
            if "weights" in out:
                weights.append(out["weights"].float().cpu().numpy())
            ids += batch["id"]
    return {
        "ids": ids,
        "probs": np.concatenate(probs) if probs else np.zeros((0, model.n_classes)),
        "weights": np.concatenate(weights) if weights else None,
    }


def write_predictions(path: Path, ids, y_true, probs, classes, weights=None, modalities=()) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        head = ["id", "true", "predicted"] + [f"p_{c}" for c in classes]
        if weights is not None:
            head += [f"w_{m}" for m in modalities]
        w.writerow(head)
        for i, sid in enumerate(ids):
            row = [sid, classes[y_true[i]] if y_true[i] >= 0 else "", classes[int(probs[i].argmax())]]
            row += [f"{p:.5f}" for p in probs[i]]
            if weights is not None:
                row += [f"{x:.5f}" for x in weights[i]]
            w.writerow(row)


def _summarise(per_seed: list[dict]) -> dict:
    out = {}
    for k in METRIC_NAMES:
        vals = np.array([m[k] for m in per_seed])
        out[k] = float(vals.mean())
        out[f"{k}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    return out


def train_run(cfg: RunConfig) -> dict:
    """Fit cfg.model on the train split with early stopping on val; evaluate on test.

    Writes <out>/<name>/: config.yaml, labels.json, encoders.json, versions.json, model.safetensors
    (seed dirs when several seeds), metrics.json, predictions.csv, confusion.png, tb/."""
    from emofuse.evaluation.report import save_confusion_png

    run_dir = Path(cfg.out) / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / "config.yaml")
    manifest = Manifest.load(cfg.data.manifest)
    classes = list(manifest.label_set.classes)
    (run_dir / "labels.json").write_text(json.dumps(manifest.label_set.to_dict(), indent=2))

    def split(name: str) -> FeatureDataset:
        return FeatureDataset.from_manifest(
            manifest, cfg.data.cache, cfg.data.features, split=name,
            sequence=cfg.data.sequence, label_smoothing=cfg.data.label_smoothing,
        )

    train_ds, val_ds, test_ds = split("train"), split("val"), split("test")
    for name, ds in (("train", train_ds), ("val", val_ds), ("test", test_ds)):
        if len(ds) == 0:
            raise ValueError(f"split {name!r} of {cfg.data.manifest} is empty")
    (run_dir / "encoders.json").write_text(json.dumps(
        {m: {"encoder": f.encoder, "fingerprint": f.fingerprint, "dim": f.dim} for m, f in train_ds.features.items()},
        indent=2))
    (run_dir / "versions.json").write_text(json.dumps(library_versions(), indent=2))

    gpu = cfg.train.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    precision = cfg.train.precision or ("bf16-mixed" if gpu else "32-true")
    mode = "min" if cfg.train.monitor == "val_loss" else "max"
    per_seed, seed_info = [], []
    t0 = time.perf_counter()
    for seed in cfg.train.seeds:
        seed_dir = run_dir if len(cfg.train.seeds) == 1 else run_dir / f"seed{seed}"
        seed_dir.mkdir(parents=True, exist_ok=True)
        L.seed_everything(seed, workers=True, verbose=False)
        model = build_model(cfg.model.name, cfg.model.params, train_ds.in_dims(), len(classes))
        module = EmotionModule(model, cfg.train.lr, cfg.train.weight_decay, cfg.train.mse_weight)
        best = BestWeights(cfg.train.monitor, mode)
        logger = False
        if cfg.train.logger == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger

            logger = TensorBoardLogger(str(run_dir), name="tb", version=f"seed{seed}", default_hp_metric=False)
        trainer = L.Trainer(
            max_epochs=cfg.train.max_epochs,
            accelerator="gpu" if gpu else "cpu",
            devices=1,
            precision=precision,
            callbacks=[L.pytorch.callbacks.EarlyStopping(cfg.train.monitor, patience=cfg.train.patience, mode=mode), best],
            logger=logger,
            enable_checkpointing=False,
            enable_progress_bar=cfg.train.progress,
            enable_model_summary=False,
            deterministic=cfg.train.deterministic,
            log_every_n_steps=1,
        )
        g = torch.Generator().manual_seed(seed)
        train_dl = DataLoader(train_ds, batch_size=cfg.data.batch_size, shuffle=True, collate_fn=collate, generator=g)
        val_dl = DataLoader(val_ds, batch_size=cfg.data.batch_size, shuffle=False, collate_fn=collate)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*too few batches.*|.*number of training batches.*")
            trainer.fit(module, train_dl, val_dl)
        if best.state is not None:
            model.load_state_dict(best.state)
        fitted = {}
        if hasattr(model, "fit_validation"):  # e.g. late-fusion weights, fitted on val only
            model.eval()
            fitted = model.fit_validation(val_dl)
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(seed_dir / "model.safetensors"))
        device = torch.device("cuda" if gpu else "cpu")
        pred = _predict(model, test_ds, cfg.data.batch_size, device)
        y_pred = pred["probs"].argmax(1)
        m = classification_metrics(test_ds.labels, y_pred, len(classes))
        per_seed.append(m)
        seed_info.append({"seed": seed, "best_epoch": best.best_epoch, f"best_{cfg.train.monitor}": best.best,
                          "epochs_run": trainer.current_epoch, "fitted_on_val": fitted, "test": m})
        write_predictions(seed_dir / "predictions.csv", pred["ids"], test_ds.labels, pred["probs"], classes,
                          pred["weights"], getattr(model, "weight_names", model.modalities))
        cm = confusion(test_ds.labels, y_pred, len(classes))
        save_confusion_png(cm, classes, seed_dir / "confusion.png", title=f"{cfg.name} (test, seed {seed})")
        if seed_dir == run_dir:
            per_class_rows = per_class(test_ds.labels, y_pred, classes)
    wall = time.perf_counter() - t0
    summary = _summarise(per_seed)
    metrics = {
        "name": cfg.name,
        "model": cfg.model.name,
        "corpus": manifest.corpus,
        "synthetic": bool(manifest.meta.get("synthetic", False)),
        "test": summary,
        "seeds": seed_info,
        "n": {"train": len(train_ds), "val": len(val_ds), "test": len(test_ds)},
        "wall_time_s": wall,
    }
    if len(cfg.train.seeds) == 1:
        metrics["per_class"] = per_class_rows
        metrics["confusion"] = cm.tolist()
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics

