"""Train one run (one config, one or more seeds) and save everything needed to reproduce or use it.

One job: running training. The steps of a run are named functions below: the data (`_load_data`),
each unit's fit (`_fit_one`: its splits, trainer, loaders, fit, then `_finish_unit`), and the run's
files (`_write_unit`, `_write_run`). Where it runs is training/placement.py, which rows each unit
uses training/plans.py, epoch budgets training/budgets.py; predictions, decisions and scores are
evaluation/predictions.py's, shared with inference and the benchmarks."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from emofuse.config import RunConfig, dump_config
from emofuse.corpora.augment import is_augmented
from emofuse.corpora.base import AUGMENTED, Manifest
from emofuse.data.dataset import FeatureDataset, per_speaker_keys, unstandardised_keys
from emofuse.data.raw import RawDataset
from emofuse.evaluation.predictions import (
    concat_predictions,
    decide,
    eval_order,
    fit_threshold,
    predict,
    score,
    summarise,
    truth,
    write_predictions,
)
from emofuse.evaluation.selection import write_selection
from emofuse.models.build import build_model, model_class, model_config
from emofuse.scoring.metrics import confusion, multilabel_confusion, multilabel_per_class, per_class
from emofuse.training.budgets import BudgetSnapshots, check_budgets, replayed
from emofuse.training.module import BestWeights, EmotionModule, WeightAverage, class_weights
from emofuse.training.placement import (
    close_group_at_exit,
    from_rank_zero,
    placement,
    process_rank,
    quiet_lightning,
    sharded,
)
from emofuse.training.plans import plans, speaker_folds
from emofuse.training.pseudo import pseudo_label_run
from emofuse.versions import library_versions


def _select_and_refit(cfg: RunConfig, data, plan: dict, seed: int, unit_dir: Path, classes: list[str], tb_dir: Path, df):
    """train.cross_validation: speaker. The epoch budget is chosen by speaker-grouped folds over the
    training and validation speakers (each fold validates, with early stopping, on speakers it never
    trained on; the budget is the median of the folds' best epochs), then the model is refitted on all
    of those rows for that many epochs and scored once on test. The "validation" predictions it
    returns are out-of-fold: each row predicted by the fold model that never saw its speaker."""
    pool = np.concatenate([plan["train"], plan["val"]])
    # augmented copies (corpora.augment) train in a fold only when their original does
    copy = is_augmented(df).to_numpy()[pool]
    originals, copies = pool[~copy], pool[copy]
    folds = speaker_folds(df, originals, cfg.train.cv_folds, seed)
    fold_info, oof, oof_true = [], [], []
    for k, held in enumerate(folds):
        of_held = (np.isin(df[AUGMENTED].astype(str).to_numpy()[copies], df["id"].astype(str).to_numpy()[held])
                   if len(copies) else np.zeros(0, bool))
        train = np.concatenate([np.setdiff1d(originals, held), copies[~of_held]])
        sub = {"name": f"cv{k}", "train": train, "val": held, "test": held}
        _, _, _, val_m, info = _fit_one(cfg, data, sub, seed, unit_dir / "cv" / f"fold{k}", classes, tb_dir)
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
    model, test_pred, y_true, _, info = _fit_one(refit_cfg, data, whole, seed, unit_dir, classes, tb_dir, refit=True)
    if model is None:  # not process 0
        return None, None, None, None, info
    merged = concat_predictions(oof)
    oof_y = np.concatenate(oof_true)
    info["val_prediction"] = (merged, oof_y)
    info["selection"] = {"mode": "speaker_cv", "folds": fold_info, "epochs": epochs,
                         "cv": summarise([f["val"] for f in fold_info])}
    return model, test_pred, y_true, score(oof_y, decide(merged), len(classes)), info


def _splits(cfg: RunConfig, data, plan: dict) -> tuple[list, dict]:
    """The unit's train, val and test rows, standardised by statistics of its training rows alone
    (val and test never leak into them); returns the three datasets and the statistics."""
    train_ds, val_ds, test_ds = (data.subset(plan[s]) for s in ("train", "val", "test"))
    for name, ds in (("train", train_ds), ("val", val_ds), ("test", test_ds)):
        if len(ds) == 0:
            raise ValueError(f"split {name!r} of {cfg.data.manifest} is empty{' in ' + plan['name'] if plan['name'] else ''}")
    stats = train_ds.fit_standardiser()
    for k in unstandardised_keys(cfg.data.standardise, stats):  # standardise: none (probabilities, say)
        stats[k] = (np.zeros_like(stats[k][0]), np.ones_like(stats[k][1]))
    return [ds.standardised(stats) for ds in (train_ds, val_ds, test_ds)], stats


def _trainer(cfg: RunConfig, plan: dict, seed: int, tb_dir: Path, best: BestWeights, mode: str, refit: bool) -> L.Trainer:
    from emofuse.training.tracking import loggers

    logger = loggers(cfg, plan, seed, tb_dir, process_rank(cfg.train)) or False  # train.loggers
    return L.Trainer(
        **placement(cfg.train),
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


def _loaders(cfg: RunConfig, model, train_ds, val_ds, seed: int, trainer: L.Trainer, refit: bool):
    """(train, val, the val loader the fit validates with): raw text in batches of similar lengths;
    distributed, each process validates its own share of the rows."""
    bs, pin = cfg.data.batch_size, torch.cuda.is_available()
    g = torch.Generator().manual_seed(seed)
    lengths = model.input_lengths(train_ds)
    if lengths is not None:  # raw text: batches of similar lengths, far less padding to encode
        from transformers.trainer_pt_utils import LengthGroupedSampler

        sampler = LengthGroupedSampler(bs, lengths=lengths, generator=g)
        train_dl = DataLoader(train_ds, batch_size=bs, sampler=sampler, collate_fn=train_ds.collate, pin_memory=pin)
    else:
        train_dl = DataLoader(train_ds, batch_size=bs, shuffle=True, collate_fn=train_ds.collate, generator=g, pin_memory=pin)
    # validation in length order where rows differ in length (raw text): far less padding, same metrics
    val_dl = DataLoader(val_ds, batch_size=bs, shuffle=False, sampler=eval_order(model, val_ds), collate_fn=train_ds.collate,
                        pin_memory=pin)
    if trainer.world_size == 1:
        return train_dl, val_dl, val_dl
    if refit and sharded(trainer.strategy):
        raise ValueError(f"train.cross_validation: speaker refits and keeps the last weights, which strategy "
                         f"{cfg.train.strategy} leaves sharded: use strategy ddp")
    # each process validates its own share of the rows, none twice: Lightning's default sampler
    # would pad the shares with repeated rows, which the gathered metrics would count twice
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

    share = UnrepeatedDistributedSampler(val_ds, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False)
    return train_dl, val_dl, DataLoader(val_ds, batch_size=bs, sampler=share, collate_fn=train_ds.collate, pin_memory=pin)


def _fit(trainer: L.Trainer, module: EmotionModule, train_dl, val_dl, trainable: bool) -> None:
    with warnings.catch_warnings():
        # tiny in-memory datasets: worker and batch-count advice does not apply
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        # distributed: EmotionModule gathers the validation rows itself, so its metrics need no sync_dist
        warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")
        if trainable:  # a zero-shot model has nothing to fit: straight to validation and test
            trainer.fit(module, train_dl, val_dl)


def _fit_one(cfg: RunConfig, data: FeatureDataset, plan: dict, seed: int, unit_dir: Path, classes: list[str], tb_dir: Path,
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
    (train_ds, val_ds, test_ds), stats = _splits(cfg, data, plan)
    n_classes = len(classes)
    mode = "min" if cfg.train.monitor == "val_loss" else "max"
    L.seed_everything(seed, workers=True, verbose=False)
    model = build_model(cfg.model.name, cfg.model.params, data.in_dims(), n_classes)
    model.prepare_fit()
    if cfg.train.init_from:
        init_weights(model, cfg.train.init_from)
    if model.classes is not None and list(model.classes) != list(classes):  # a zero-shot model's own classes
        raise ValueError(f"{cfg.model.name} predicts classes {list(model.classes)} but the manifest's label set is "
                         f"{list(classes)}")
    weights = class_weights(train_ds.labels, n_classes, cfg.train.class_weights)
    module = EmotionModule(model, cfg.train.lr, cfg.train.weight_decay, cfg.train.mse_weight,
                           weights, cfg.train.lr_schedule, cfg.train.warmup, multi_label=cfg.train.multi_label,
                           optimizer=cfg.train.optimizer, modality_dropout=cfg.train.modality_dropout,
                           ce_label_smoothing=cfg.train.ce_label_smoothing, ce_target=cfg.train.ce_target)
    best = BestWeights(cfg.train.monitor, mode)
    trainer = _trainer(cfg, plan, seed, tb_dir, best, mode, refit)
    # Deterministic algorithms, but without torch's debugging fill of every new tensor with NaN (it
    # comes with them and changes no result): a third of a CPU fine-tuning epoch (emofuse speed finetune)
    torch.utils.deterministic.fill_uninitialized_memory = False
    train_dl, val_dl, fit_val_dl = _loaders(cfg, model, train_ds, val_ds, seed, trainer, refit)
    t0 = time.perf_counter()
    trainable = any(p.requires_grad for p in model.parameters())
    snaps = None
    if cfg.train.budgets and not refit:
        snaps = BudgetSnapshots(best, cfg.train.budgets, t0)
        trainer.callbacks.append(snaps)  # after BestWeights: it reads what that has just kept
    replay = None
    if cfg.train.replay_from:  # nothing to train: the longer run's weights at this budget
        state, replay = replayed(cfg, unit_dir, run_dir or unit_dir)
        best.state = state or None
        best.best_epoch, best.best_step, best.best = replay["best_epoch"], replay["best_step"], replay["best"]
        best.checks, best.record = replay["checks"], replay["record"]
        trainable = False
    swa = None
    if cfg.train.swa_epochs and trainable and not cfg.train.replay_from:
        swa = WeightAverage(cfg.train.swa_epochs, cfg.train.max_epochs)
        trainer.callbacks.append(swa)
    _fit(trainer, module, train_dl, fit_val_dl, trainable)
    if trainer.world_size > 1:
        close_group_at_exit()
    if trainer.global_rank != 0:  # the other processes of a distributed fit: process 0 predicts and writes
        return None, None, None, None, {"best_epoch": best.best_epoch}
    # kept instead of the best epoch's weights; batch norm recomputed on the fit's device
    averaged = swa.apply(model, train_dl, trainer.strategy.root_device) if swa is not None else 0
    if best.state is not None and not averaged:
        if trainer.world_size > 1 and sharded(trainer.strategy):  # its layers were wrapped in place: a fresh copy
            model = build_model(cfg.model.name, cfg.model.params, data.in_dims(), n_classes)
        model.load_state_dict(best.state)
    fitted = {}
    if not refit:  # e.g. late-fusion weights, fitted on val only (a refit trained on its val rows)
        model.eval()
        fitted = model.fit_validation(val_dl)
    fit_s = time.perf_counter() - t0
    _write_unit(cfg, model, stats, unit_dir, plan, seed, best, snaps, trainer.current_epoch, fit_s, classes)
    if replay is not None:
        fit_s = replay["fit_time_s"]  # the longer run's seconds to the end of this budget's last epoch
    epochs_run = replay["epochs_run"] if replay else trainer.current_epoch if trainable else 0
    if cfg.train.predict_unlabeled and len(plan.get("unlabeled", ())):  # the rows a teacher pseudo-labels
        _predict_unlabeled(cfg, model, data.subset(plan["unlabeled"]).standardised(stats), unit_dir, classes)
    model, test_pred, y_true, val_m, info = _predict_unit(
        cfg, model, (val_ds, test_ds), plan, seed, best, fitted, fit_s, epochs_run,
        {"train": len(train_ds), "val": len(val_ds), "test": len(test_ds)}, trainer.world_size, n_classes)
    if averaged:  # the kept weights are no epoch's: say which epochs they average
        info["weights"] = f"mean of epochs {epochs_run - averaged + 1}-{epochs_run} (train.swa_epochs)"
    return model, test_pred, y_true, val_m, info


def _write_unit(cfg: RunConfig, model, stats: dict, unit_dir: Path, plan: dict, seed: int, best: BestWeights,
                snaps: BudgetSnapshots | None, epochs: int, fit_s: float, classes: list[str]) -> None:
    """The unit's folder: budget snapshots, the learning curve, the model's own artefacts, its
    weights and the standardiser."""
    unit_dir.mkdir(parents=True, exist_ok=True)
    if snaps is not None:
        snaps.finish(epochs, fit_s)
        snaps.save(unit_dir)
    if best.history:  # the learning curve, as a table and a picture (a replayed budget fits nothing: none)
        from emofuse.evaluation.report import save_history

        save_history(best.history, unit_dir, best.best_epoch + 1, cfg.train.monitor,
                     title=f"{cfg.name}{' ' + plan['name'] if plan['name'] else ''} (seed {seed})")
    model.save_artifacts(unit_dir, classes)  # e.g. a fine-tuned encoder, saved for use as a feature encoder
    # (a frozen pretrained LLM backbone leaves itself out of state_dict(): see llama_topn)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(unit_dir / "model.safetensors"))
    save_file({f"{k}.{part}": torch.from_numpy(a) for k, (mean, std) in stats.items() for part, a in (("mean", mean), ("std", std))},
              str(unit_dir / "standardiser.safetensors"))


def _predict_unlabeled(cfg: RunConfig, model, ds, unit_dir: Path, classes: list[str]) -> None:
    """predictions_unlabeled.csv: the kept model's probabilities on the manifest's unlabeled rows."""
    device = torch.device("cuda" if placement(cfg.train)["accelerator"] == "gpu" else "cpu")
    pred = predict(model, ds, cfg.data.batch_size, device, cfg.train.multi_label)
    write_predictions(unit_dir / "predictions_unlabeled.csv", model, pred, truth(ds, cfg.train.multi_label), classes)


def _predict_unit(cfg: RunConfig, model, splits: tuple, plan: dict, seed: int, best: BestWeights, fitted: dict,
                  fit_s: float, epochs_run: int, n: dict, processes: int, n_classes: int):
    """The kept model on the unit's val and test rows (a multi-label threshold fitted on val) and the
    unit's record."""
    val_ds, test_ds = splits
    device = torch.device("cuda" if placement(cfg.train)["accelerator"] == "gpu" else "cpu")
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
            "epochs_run": epochs_run,
            "at_best_epoch": best.record, "fit_time_s": fit_s, "fitted_on_val": fitted,
            "n": n, "processes": processes,
            "val_prediction": (val_pred, truth(val_ds, multi))}  # written beside the test predictions, then dropped
    return model, test_pred, truth(test_ds, multi), val_metrics, info


def _warn_absent(data, manifest: Manifest) -> None:
    """Before training: say so, with the counts, when an input is absent in most training rows (a
    corpus whose clips lack a track, or whose encoder failed on most of them)."""
    features = data.features
    train = np.flatnonzero(manifest.df["split"].to_numpy() == "train")
    for key, f in features.items():
        if f.present is None:  # raw inputs (fine-tuning): presence is known per batch only
            continue
        present = int(np.asarray(f.present)[train].sum()) if len(train) else 0
        if len(train) and present < 0.5 * len(train):
            msg = (f"input {key} ({f.encoder}) is absent in {len(train) - present} of the {len(train)} training rows "
                   f"(present in {present}); the model learns it from few samples. Check the media (no track?) "
                   "and the extraction's errors (emofuse extract prints them; meta.json lists them)")
            warnings.warn(msg, UserWarning, stacklevel=3)
            print(f"warning: {msg}")


def _load_data(cfg: RunConfig, manifest: Manifest):
    """The run's inputs: the media themselves for a model that reads them (fine-tuning, zero-shot),
    else the cached features, standardised per speaker where data.standardise says so."""
    if model_class(cfg.model.name).raw_inputs:
        return RawDataset.from_manifest(manifest, cfg.data.features, cfg.data.raw, label_smoothing=cfg.data.label_smoothing)
    data = FeatureDataset.from_manifest(
        manifest, cfg.data.cache, cfg.data.features,
        sequence=cfg.data.sequence, label_smoothing=cfg.data.label_smoothing, context=cfg.data.context,
    )
    keys = per_speaker_keys(cfg.data.standardise, data.features)
    if keys:  # label-free: each speaker's rows by that speaker's own statistics
        data = data.per_speaker_standardised(keys=keys)
    return data


def init_weights(model, source: str) -> None:
    """train.init_from: a finished run's kept weights (its folder, or the file) into this model, which must
    hold the same tensors (the same model, params and input widths)."""
    from safetensors.torch import load_file

    path = Path(source)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"train.init_from: no model.safetensors at {source}: give a finished run's folder "
                                "(a seed's own, seed<k>/, where the run had several seeds) or the file")
    try:  # torch names the missing, unexpected and differently shaped tensors
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as e:
        raise ValueError(f"train.init_from {path}: its weights are not this model's (the run it comes from must have "
                         f"the same model, params and inputs): {e}") from None


def input_records(data) -> dict[str, dict]:
    """Each input's record, as encoders.json keeps it: its encoder, fingerprint, width and decoding."""
    return {k: {"encoder": f.encoder, "fingerprint": f.fingerprint, "dim": f.dim,
                **({"decoding": f.decoding} if f.decoding else {})} for k, f in data.features.items()}


def write_inputs(run_dir: Path, records: dict[str, dict]) -> None:
    """encoders.json (input_records) and versions.json."""
    (run_dir / "encoders.json").write_text(json.dumps(records, indent=2))
    (run_dir / "versions.json").write_text(json.dumps(library_versions(), indent=2))


def _write_unit_predictions(run_dir: Path, unit_dir: Path, model, info: dict, pred: dict, y_true, classes: list[str],
                            first: bool) -> None:
    val_pred, val_true = info.pop("val_prediction")
    # validation predictions too: late fusion of runs and sweeps fit and select on them, never on test
    write_predictions(unit_dir / "predictions_val.csv", model, val_pred, val_true, classes)
    if unit_dir != run_dir and first:
        write_predictions(run_dir / "predictions_val.csv", model, val_pred, val_true, classes)
    write_predictions(unit_dir / "predictions.csv", model, pred, y_true, classes)


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
    model_config(cfg.model)  # a wrong model key fails here, before any data is read
    if cfg.train.pseudo_label is not None:  # rounds of teacher and student, each a run of this loop
        return pseudo_label_run(cfg, train_run)
    if (cfg.train.budgets or cfg.train.replay_from) and (why := check_budgets(cfg.train)):
        raise ValueError(f"run {cfg.name!r}: train.budgets / train.replay_from cannot stand for runs of those "
                         f"budgets here: {why}")
    quiet_lightning()
    lead = process_rank(cfg.train) == 0  # process 0 writes; any others only train
    run_dir = Path(cfg.out) / cfg.name
    manifest = Manifest.load(cfg.data.manifest)
    manifest.df = manifest.df.reset_index(drop=True)
    classes = list(manifest.label_set.classes)
    if lead:
        run_dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")
        (run_dir / "labels.json").write_text(json.dumps(manifest.label_set.to_dict(), indent=2))
    data = _load_data(cfg, manifest)
    if lead:
        _warn_absent(data, manifest)
        write_inputs(run_dir, input_records(data))
    units = [(p, s) for p in plans(manifest, cfg.train.cross_validation is True) for s in cfg.train.seeds]
    t0 = time.perf_counter()
    done = _run_units(cfg, data, units, run_dir, classes, manifest, lead)
    if not lead:
        return from_rank_zero(None)
    metrics = _write_run(cfg, manifest, run_dir, classes, done, len(units), time.perf_counter() - t0 + done["replayed_s"])
    from emofuse.training.tracking import finish

    finish(cfg, run_dir, metrics)  # MLflow / W&B: the test metrics and the run folder's files, once
    return from_rank_zero(metrics)


def _run_units(cfg: RunConfig, data, units: list, run_dir: Path, classes: list[str], manifest: Manifest, lead: bool) -> dict:
    """Fit every (plan, seed) unit, writing each unit's predictions; returns what the run's files pool:
    per-unit test and val metrics, the units' records, and the first seed's predictions of every fold."""
    done = {"test": [], "val": [], "infos": [], "true": [], "pred": [], "model": None, "replayed_s": 0.0}
    # a replayed budget: the longer run's training seconds up to it count as this run's
    for plan, seed in units:
        parts = [x for x in (plan["name"], f"seed{seed}" if len(cfg.train.seeds) > 1 else "") if x]
        unit_dir = run_dir.joinpath(*parts) if parts else run_dir
        if cfg.train.cross_validation == "speaker":
            model, pred, y_true, val_m, info = _select_and_refit(cfg, data, plan, seed, unit_dir, classes,
                                                                 run_dir / "tb", manifest.df)
        else:
            model, pred, y_true, val_m, info = _fit_one(cfg, data, plan, seed, unit_dir, classes, run_dir / "tb",
                                                        run_dir=run_dir)
            done["replayed_s"] += info["fit_time_s"] if cfg.train.replay_from else 0.0
        if not lead:
            continue
        first = plan is units[0][0] and seed == cfg.train.seeds[0]
        _write_unit_predictions(run_dir, unit_dir, model, info, pred, y_true, classes, first)
        m = score(y_true, decide(pred), len(classes))
        done["test"].append(m)
        done["val"].append(val_m)
        done["infos"].append(info | {"val": val_m, "test": m})
        done["model"] = model
        if seed == cfg.train.seeds[0]:  # the run's own predictions: first seed, every fold
            done["true"].append(y_true)
            done["pred"].append(pred)
    return done


def _write_run(cfg: RunConfig, manifest: Manifest, run_dir: Path, classes: list[str], done: dict, n_units: int,
               wall: float) -> dict:
    """The run's own files: pooled predictions.csv (several units), confusion.png, metrics.json,
    the calibration figures and reliability.png, and the Top-N selection counts."""
    from emofuse.evaluation.report import save_confusion_png

    model, pooled_pred, infos = done["model"], done["pred"], done["infos"]
    y_true = np.concatenate(done["true"])
    y_pred = np.concatenate([decide(p) for p in pooled_pred])
    if n_units > 1:  # units wrote their own files in sub-folders; pool them at the top
        merged = concat_predictions(pooled_pred)
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
        "test": summarise(done["test"]),
        "val": summarise(done["val"]),
        **({"cv": summarise([f["val"] for u in infos for f in u["selection"]["folds"]]),
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
    write_selection(run_dir, model.candidate_names)  # Top-N models: how often each was kept
    return metrics
