"""The one driver every benchmark shares: prepare (done by the benchmark) -> extract -> train the
project's models through the one training loop -> an optional logistic-regression baseline on the
same features -> test metrics with seeded bootstrap intervals and calibration (ECE, reliability
diagram, temperature fitted on validation) -> the product of each fusion's own unimodal members as a
reference row -> metrics.json, report.md, per-class tables and confusion matrices.

A benchmark is a list of `Task`s (one label set and protocol each: RAVDESS 8 and 7 classes are two
tasks); a task is a manifest, the encoders to extract, the model runs and the baseline's inputs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emofuse.corpora.augment import originals
from emofuse.corpora.base import Manifest
from emofuse.scoring.metrics import (
    METRIC_NAMES,
    bootstrap_intervals,
    classification_metrics,
    confusion,
    multilabel_confusion,
    multilabel_metrics,
    multilabel_per_class,
    per_class,
)

@dataclass
class BenchOptions:
    """What every benchmark takes from the command line."""

    data: Path  # the corpus folder (or the shared data folder holding it)
    out: Path
    eval_data: Path | None = None  # a separate folder of the same corpus: all its rows are the test set
    # more such folders (--eval-data given again): only benchmarks marked many_eval_data take them
    extra_eval_data: list[Path] = field(default_factory=list)
    cache: Path | None = None  # feature cache; default <out>/cache, reused by later runs
    encoders: dict[str, str] = field(default_factory=dict)  # modality -> encoder spec, over the defaults
    baseline: str | None = None  # "linear": logistic regression on the same features, in the same run
    limit: int | None = None  # at most this many rows per split (seeded, stratified): the CI slices
    seeds: list[int] = field(default_factory=lambda: [0])
    max_epochs: int | None = None  # over each run's own budget
    models: list[str] | None = None  # run only the project models with these names (None: all)
    extra_models: list[str] = field(default_factory=list)  # more registered models, e.g. finetune_text
    bootstrap: int = 1000  # resamples of the test set for the 95% intervals
    seed: int = 0  # of the splits, pairings, subsamples and the bootstrap
    progress: bool = True
    # reuse a project run finished in <out> by an earlier bench with the same config (its metrics.json
    # and predictions), instead of training it again: the code is assumed unchanged
    resume: bool = False

    @property
    def eval_folders(self) -> list[Path]:
        """Every --eval-data folder, in the order given."""
        return ([Path(self.eval_data)] if self.eval_data else []) + [Path(p) for p in self.extra_eval_data]

    @property
    def cache_dir(self) -> Path:
        return Path(self.cache) if self.cache else Path(self.out) / "cache"


@dataclass
class ModelRun:
    """One project model trained on a task through the training loop."""

    name: str  # the row name in the tables, e.g. "early+context"
    model: str  # a registered model
    features: dict[str, Any]  # DataConfig.features: input -> encoder (or list of candidates)
    params: dict[str, Any] = field(default_factory=dict)  # the model's own config
    data: dict[str, Any] = field(default_factory=dict)  # more DataConfig fields (context, standardise, ...)
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields over the task's
    # another manifest of the task's rows (same ids and splits), e.g. other speaker groups for
    # per-speaker standardisation, so rows normalised differently share one task and one choice
    manifest: Path | None = None


@dataclass
class Target:
    """A figure the project's best model must reach on the task, and the baseline it must beat."""

    metric: str  # one of METRIC_NAMES
    value: float | None  # the project's best must reach this (None: only beat the baselines)
    text: str  # the wording, for the report
    versus: str | None = None  # ... or reach the figure of this reference row (e.g. the bundled CNN)
    gain: float | None = None  # ... or the best fusion must beat the best unimodal run by this much
    over_baseline: float | None = None  # ... or the project's model must beat the strongest baseline by this much
    # the project rows and baseline rows the target is about (None: all of them), e.g. only the HOG
    # rows, when the other rows' features were learned on the test images
    project_rows: list[str] | None = None
    baseline_rows: list[str] | None = None
    unmeasurable: str | None = None  # why the target cannot be measured on this data (then no verdict)


@dataclass
class Baseline:
    """Logistic regression on frozen features, fitted in the same run as the project's models."""

    name: str  # the row name, e.g. "baseline-linear"
    features: dict[str, str]  # input -> encoder; their utterance vectors are concatenated
    standardise: str | dict = "train"  # as DataConfig.standardise
    # inverse regularisation strengths tried, the best on validation kept; few, because one fit on
    # 10,000-40,000 rows takes tens of seconds on two cores (28 of them for a 28-label task)
    cs: tuple[float, ...] = (0.01, 0.1, 1.0)
    manifest: Path | None = None  # as ModelRun.manifest


@dataclass
class Combined:
    """What a combined row's callable returns: class probabilities on the validation and test rows."""

    val_ids: list[str]
    val_probs: np.ndarray  # (N_val, C)
    test_ids: list[str]
    test_probs: np.ndarray  # (N_test, C)
    inputs: str  # for the tables: what it combines
    fitted: dict[str, Any] = field(default_factory=dict)  # what was fitted on validation (weights, temperatures)


@dataclass
class Task:
    """One protocol on one manifest: what to extract, the project's runs, the baselines, the targets."""

    name: str
    manifest: Path
    encoders: list[str]  # specs to extract
    runs: list[ModelRun]
    baselines: list[Baseline] = field(default_factory=list)  # run with --baseline linear
    extract: dict[str, Any] = field(default_factory=dict)  # keyword arguments of features.extract
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields for every run
    multi_label: bool = False
    targets: list[Target] = field(default_factory=list)  # the first one's metric chooses the best model
    notes: list[str] = field(default_factory=list)  # markdown lines for the report
    # rows scored outside the loop (e.g. the FER2013 CNN read as a classifier): name ->
    # callable(manifest path, opts) -> (test ids, (N, C) probabilities), called after extraction
    references: dict[str, Any] = field(default_factory=dict)
    # project rows made from other rows' predictions and fitted on validation (e.g. an ensemble of the
    # network trained here and the bundled CNN): name -> callable(task_dir, results, manifest path, opts)
    # -> Combined, or None when its members are not there (a row filtered out by --model)
    combined: dict[str, Any] = field(default_factory=dict)
    monitor: str = "val_weighted_f1"

    @property
    def metric(self) -> str:
        """The metric the project's best model is chosen by (on validation) and reported on."""
        return self.targets[0].metric if self.targets else self.monitor.removeprefix("val_")


# ---------------------------------------------------------------------------------------------
# manifests


def limit_manifest(manifest: Manifest, n: int | None, seed: int) -> Manifest:
    """At most n rows per split, drawn with the class proportions of the split (seeded)."""
    if not n:
        return manifest
    from sklearn.model_selection import train_test_split

    parts = []
    for _, df in manifest.df.groupby("split", sort=False):
        if len(df) > n:
            counts = df["label"].value_counts()
            strat = df["label"] if counts.min() >= 2 and len(counts) <= n else None
            df, _ = train_test_split(df, train_size=n, random_state=seed, stratify=strat)
        parts.append(df)
    df = pd.concat(parts).sort_index()  # manifest order, so dialogues stay in spoken order
    return Manifest(manifest.corpus, manifest.label_set, df.reset_index(drop=True),
                    dict(manifest.meta, limit=n, split_counts=df["split"].value_counts().to_dict()))


def with_eval_rows(manifest: Manifest, evaluation: Manifest, validate: bool = False) -> Manifest:
    """--eval-data: every labelled row of `evaluation` is test; the manifest's own test rows join
    its training rows, so all of --data trains and validates. Evaluation ids get an `eval:`
    prefix, so the same folder given twice cannot collide with itself.
    validate: validation in the target corpus instead. `evaluation` keeps its own val / test split
    (by subject or speaker, so validation and test never share a person) and every row of
    `manifest` trains: epochs and the reported model are chosen on target-domain rows the test
    never holds."""
    if list(evaluation.label_set.classes) != list(manifest.label_set.classes):
        raise ValueError(f"--eval-data has classes {evaluation.label_set.classes}, --data has {manifest.label_set.classes}")
    own = manifest.df.copy()
    own.loc[own["split"].isin(["val", "test"] if validate else ["test"]), "split"] = "train"
    if validate:
        ev = evaluation.df[evaluation.df["split"].isin(["val", "test"])].copy()
        if not {"val", "test"} <= set(ev["split"]):
            raise ValueError(f"the evaluation corpus needs val and test rows, has {sorted(set(ev['split']))}")
    else:
        ev = evaluation.df[evaluation.df["split"] != "unlabeled"].copy()
        ev["split"], ev["fold"] = "test", -1
    ev["id"] = "eval:" + ev["id"].astype(str)
    df = pd.concat([own, ev], ignore_index=True)
    meta = dict(manifest.meta, eval_root=evaluation.meta.get("root"), split_counts=df["split"].value_counts().to_dict())
    if validate:
        meta["target_validation"] = True
    return Manifest(manifest.corpus, manifest.label_set, df, meta)


def drop_classes(manifest: Manifest, classes: list[str], name: str) -> Manifest:
    """The manifest without the rows of `classes`, under a label set without them."""
    from emofuse.labels import LabelSet

    keep = [c for c in manifest.label_set.classes if c not in classes]
    df = manifest.df[~manifest.df["label"].isin(classes)].reset_index(drop=True)
    aliases = {k: v for k, v in manifest.label_set.aliases.items() if v in keep}
    return Manifest(manifest.corpus, LabelSet(name, tuple(keep), aliases), df,
                    dict(manifest.meta, dropped_classes=list(classes), split_counts=df["split"].value_counts().to_dict()))


def row_manifest(task_manifest: Manifest, path: Path | None) -> Manifest:
    """The manifest a run or baseline reads: the task's, or its own copy of the task's rows (refused
    when its ids or splits differ, so every row of a task is scored and chosen on the same samples)."""
    if path is None:
        return task_manifest
    own = Manifest.load(path)
    cols = ["id", "split"]
    rows = originals(own).df  # its augmented copies (training only) are its own
    if not rows[cols].reset_index(drop=True).equals(task_manifest.df[cols].reset_index(drop=True)):
        raise ValueError(f"{path}: not the task's rows (ids and splits must match {task_manifest.corpus}'s manifest)")
    return own


def selected(run: ModelRun, opts: BenchOptions) -> bool:
    """Whether `-m` keeps this run: no `-m`, or it names the run or its model."""
    return opts.models is None or run.name in opts.models or run.model in opts.models


def extract_own_rows(task: Task, manifest: Manifest, users: list[ModelRun | Baseline],
                     opts: BenchOptions) -> None:
    """The features of rows a run's or baseline's own manifest adds to the task's (its augmented
    copies), for the task's encoders it reads: the task's extraction covers only the task's rows."""
    from emofuse.features.encoders.hf import build_encoder
    from emofuse.features.extract import extract

    wanted: dict[Path, set[str]] = {}
    for u in users:
        if u.manifest is not None:
            names = [v for f in u.features.values() for v in (f if isinstance(f, list) else [f])]
            wanted.setdefault(Path(u.manifest), set()).update(str(n) for n in names)
    for path, names in wanted.items():
        own = row_manifest(manifest, path)
        if len(own.df) == len(manifest.df):
            continue  # the task's rows: extracted already
        specs = [e for e in task.encoders if build_encoder(e).name in names or e in names]
        if specs:
            extract(own, specs, opts.cache_dir, progress=opts.progress, **task.extract)


def resolve_root(data: Path, *names: str) -> Path:
    """`data` itself, or its sub-folder of one of `names` (so --data may be the shared data folder)."""
    data = Path(data)
    for n in names:
        if (data / n).is_dir():
            return data / n
    return data


# ---------------------------------------------------------------------------------------------
# scoring


def _read_predictions(path: Path, classes: list[str], multi_label: bool) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, truth, decisions) from a run's predictions.csv: class indices, or (N, C) indicators."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    index = {c: i for i, c in enumerate(classes)}
    if multi_label:
        def hot(cells):
            out = np.zeros((len(cells), len(classes)), bool)
            for r, cell in enumerate(cells):
                for c in filter(None, cell.split(";")):
                    out[r, index[c]] = True
            return out
        return df["id"].tolist(), hot(df["true"]), hot(df["predicted"])
    return df["id"].tolist(), df["true"].map(index).to_numpy(int), df["predicted"].map(index).to_numpy(int)


def score_entry(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], opts: BenchOptions) -> dict:
    """Point metrics, bootstrap intervals, per-class scores and the confusion matrix of one model."""
    multi = y_true.ndim == 2
    point = multilabel_metrics(y_true, y_pred) if multi else classification_metrics(y_true, y_pred, len(classes))
    ci = bootstrap_intervals(y_true, y_pred, len(classes), n_resamples=opts.bootstrap, seed=opts.seed,
                             multi_label=multi)
    entry: dict[str, Any] = {}
    for k in METRIC_NAMES:
        entry[k] = point[k]
        entry[f"{k}_ci95"] = ci[k]
    if "micro_f1" in point:
        entry["micro_f1"] = point["micro_f1"]
    entry["n_test"] = int(len(y_true))
    entry["per_class"] = (multilabel_per_class if multi else per_class)(y_true, y_pred, classes)
    entry["confusion"] = (multilabel_confusion(y_true, y_pred) if multi else confusion(y_true, y_pred, len(classes))).tolist()
    return entry


def product_rows(results: dict[str, dict], task_dir: Path, classes: list[str], opts: BenchOptions) -> dict[str, dict]:
    """For every fusion run whose inputs each have a unimodal run here (same encoder): the plain
    product of those unimodal runs' probabilities (equal weights, no fitting: the simplest fusion
    of the project's own members), scored as a reference row, and the fusion's paired-bootstrap
    difference to it (fusion minus product, weighted F1) stored in the fusion's entry."""
    from emofuse.evaluation.report import read_probs
    from emofuse.models.late import combine_log_probs
    from emofuse.scoring.calibration import calibration_summary
    from emofuse.evaluation.compare import compare_runs

    unimodal = {}
    for name, e in results.items():
        feats = e.get("features") or {}
        if e.get("kind") == "project" and e.get("model") == "unimodal" and len(feats) == 1:
            unimodal.setdefault(tuple(feats.items())[0], name)
    rows: dict[str, dict] = {}
    for name, e in list(results.items()):
        feats = e.get("features") or {}
        if e.get("kind") != "project" or e.get("model") == "unimodal" or len(feats) < 2:
            continue
        if any(not isinstance(v, str) or (k, v) not in unimodal for k, v in feats.items()):
            continue
        members = [unimodal[(k, v)] for k, v in sorted(feats.items())]
        row = "product of " + " × ".join(sorted(feats))
        out_dir = task_dir / "runs" / row.replace(" ", "_").replace("×", "x")
        if row not in rows:
            split_probs = {}
            for split, f in (("test", "predictions.csv"), ("val", "predictions_val.csv")):
                read = [read_probs(task_dir / results[m]["run_dir"] / f, classes) for m in members]
                if any(r is None for r in read):
                    break
                ids = read[0][0]
                index = [{i: j for j, i in enumerate(r[0])} for r in read]
                log_p = np.stack([np.log(np.clip(r[2][[ix[i] for i in ids]], 1e-12, None)) for r, ix in zip(read, index)], 1)
                prob = np.exp(combine_log_probs(log_p, np.ones(len(read)), None, "product"))  # (N, C)
                split_probs[split] = (ids, read[0][1], prob)
            if "test" not in split_probs or "val" not in split_probs:
                continue
            ids, y, prob = split_probs["test"]
            out_dir.mkdir(parents=True, exist_ok=True)
            frame = pd.DataFrame({"id": ids, "true": [classes[i] for i in y], "predicted": [classes[i] for i in prob.argmax(1)]})
            for j, c in enumerate(classes):
                frame[f"p_{c}"] = np.round(prob[:, j], 6)
            frame.to_csv(out_dir / "predictions.csv", index=False)
            _, y_val, p_val = split_probs["val"]
            entry = score_entry(y, prob.argmax(1), classes, opts)
            entry.update(kind="reference", model="product", members=members,
                         inputs="product of the probabilities of " + ", ".join(members),
                         val=classification_metrics(y_val, p_val.argmax(1), len(classes)),
                         calibration=calibration_summary(prob, y, p_val, y_val), run_dir=str(out_dir.relative_to(task_dir)))
            rows[row] = entry
        if row in rows:
            cmp = compare_runs(out_dir, task_dir / e["run_dir"], n_boot=opts.bootstrap, seed=opts.seed)
            d = next(x for x in cmp.differences if x.metric == "weighted_f1")
            e["versus_product"] = {"row": row, "diff": d.diff, "ci95": [d.low, d.high], "p_value": d.p_value}
    return rows


def choose(entries: dict[str, dict], metric: str) -> str | None:
    """The entry with the best *validation* score (the first on ties): the model a user would
    pick without looking at test, whose test score is then the one to quote."""
    return max(entries, key=lambda k: entries[k]["val"][metric]) if entries else None


def describe_inputs(features: dict, data: dict) -> str:
    """'text: minilm + 3 preceding utterances' style summary of a run's inputs for the tables."""
    parts = []
    for k, v in features.items():
        part = f"{k}: {'+'.join(v) if isinstance(v, list) else v}"
        if data.get("context", {}).get(k):
            part += f" + {data['context'][k]} preceding utterances"
        if data.get("raw", {}).get("context"):
            part += f" + {data['raw']['context']} preceding utterances"
        mode = data.get("standardise", "train")
        if (mode.get(k) if isinstance(mode, dict) else mode) == "per_speaker":
            part += " (per speaker)"
        parts.append(part)
    if data.get("sequence"):
        parts.append("sequences")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# the linear baseline


def linear_baseline(task: Task, baseline: Baseline, manifest: Manifest, opts: BenchOptions,
                    run_dir: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """Logistic regression on the task's baseline features (utterance vectors of each input,
    concatenated; standardised as the project's models are: per speaker where the task says so,
    then with training statistics). C is chosen on validation by the task's monitored metric;
    multi-label tasks fit one classifier per class and a decision threshold on validation.
    Returns (info, test truth, test decisions) and writes predictions.csv under run_dir."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from emofuse.data.dataset import FeatureDataset, per_speaker_keys
    from emofuse.evaluation.predictions import fit_threshold

    t0 = time.perf_counter()
    df = manifest.df.reset_index(drop=True)
    data = FeatureDataset.from_manifest(manifest, opts.cache_dir, baseline.features)
    mode = baseline.standardise
    keys = per_speaker_keys(mode, data.features)
    if keys:
        data = data.per_speaker_standardised(keys=keys)
    x = np.concatenate([np.where(f.present[:, None], f.vectors, 0.0) for _, f in sorted(data.features.items())], 1)
    split = df["split"].to_numpy()
    tr, va, te = (np.flatnonzero(split == s) for s in ("train", "val", "test"))
    mean, std = x[tr].mean(0), x[tr].std(0)
    x = (x - mean) / np.where(std > 1e-6, std, 1.0)
    metric = task.monitor.removeprefix("val_")
    classes = list(manifest.label_set.classes)
    if task.multi_label:
        y = data.targets > 0
    else:
        y = data.labels
    best = None
    for c in baseline.cs:
        lr = LogisticRegression(C=c, max_iter=300, tol=1e-3)
        clf = OneVsRestClassifier(lr) if task.multi_label else lr
        clf.fit(x[tr], y[tr])
        p_val = clf.predict_proba(x[va])
        if task.multi_label:
            t = fit_threshold(y[va], p_val)
            s = multilabel_metrics(y[va], p_val >= t)[metric]
        else:
            t = None
            s = classification_metrics(y[va], clf.classes_[p_val.argmax(1)], len(classes))[metric]
        if best is None or s > best[0]:
            best = (s, c, clf, t)
    _, c, clf, t = best
    probs = clf.predict_proba(x[te])
    if task.multi_label:
        pred = probs >= t
    else:
        full = np.zeros((len(te), len(classes)))
        full[:, clf.classes_] = probs
        probs, pred = full, full.argmax(1)
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = pd.DataFrame({"id": df["id"].to_numpy()[te]})
    if task.multi_label:
        rows["true"] = [";".join(c_ for c_, v in zip(classes, r) if v) for r in y[te]]
        rows["predicted"] = [";".join(c_ for c_, v in zip(classes, r) if v) for r in pred]
    else:
        rows["true"] = [classes[i] for i in y[te]]
        rows["predicted"] = [classes[i] for i in pred]
    for j, name in enumerate(classes):
        rows[f"p_{name}"] = np.round(probs[:, j], 5)
    rows.to_csv(run_dir / "predictions.csv", index=False)
    if not task.multi_label:  # validation probabilities too: calibration is fitted on them
        p_val = np.zeros((len(va), len(classes)))
        p_val[:, clf.classes_] = clf.predict_proba(x[va])
        val_rows = pd.DataFrame({"id": df["id"].to_numpy()[va], "true": [classes[i] for i in y[va]],
                                 "predicted": [classes[i] for i in p_val.argmax(1)]})
        for j, name in enumerate(classes):
            val_rows[f"p_{name}"] = np.round(p_val[:, j], 5)
        val_rows.to_csv(run_dir / "predictions_val.csv", index=False)
    info = {"C": c, "threshold": t, f"val_{metric}": best[0], "inputs": baseline.features,
            "standardise": mode, "dim": int(x.shape[1]), "wall_time_s": time.perf_counter() - t0}
    (run_dir / "baseline.json").write_text(json.dumps(info, indent=2))
    return info, y[te], pred


# ---------------------------------------------------------------------------------------------
# one task


def _combined_entry(name: str, got: Combined, manifest: Manifest, classes: list[str], task_dir: Path,
                    opts: BenchOptions) -> dict:
    """A combined row scored as a project row: validation metrics (by which it may be chosen) and test
    metrics, its predictions written beside the runs' (predictions.csv, predictions_val.csv)."""
    from emofuse.evaluation.report import write_calibration

    index = {k: i for i, k in enumerate(manifest.df["id"])}
    y_all = manifest.label_indices()
    run_dir = task_dir / "runs" / name.replace(" ", "_").replace("/", "_")
    run_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, ids, probs, f in (("val", got.val_ids, got.val_probs, "predictions_val.csv"),
                                 ("test", got.test_ids, got.test_probs, "predictions.csv")):
        y = y_all[[index[k] for k in ids]]
        frame = pd.DataFrame({"id": ids, "true": [classes[i] for i in y], "predicted": [classes[i] for i in probs.argmax(1)]})
        for j, c in enumerate(classes):
            frame[f"p_{c}"] = np.round(probs[:, j], 5)
        frame.to_csv(run_dir / f, index=False)
        out[split] = (y, probs.argmax(1))
    entry = score_entry(*out["test"], classes, opts)
    val = classification_metrics(*out["val"], len(classes))
    entry.update(kind="project", model="combined", features={}, inputs=got.inputs, val={k: val[k] for k in METRIC_NAMES},
                 run_dir=str(Path("runs") / run_dir.name), fitted_on_val=got.fitted,
                 calibration=write_calibration(run_dir, classes))
    return entry


def _finished(cfg) -> dict | None:
    """The metrics of a run an earlier bench finished under cfg.out with exactly this config, else None."""
    from emofuse.config import ConfigError, RunConfig, load_config

    run_dir = Path(cfg.out) / cfg.name
    if not ((run_dir / "metrics.json").is_file() and (run_dir / "config.yaml").is_file()
            and (run_dir / "predictions.csv").is_file()):
        return None
    try:
        if load_config(RunConfig, run_dir / "config.yaml") != cfg:
            return None
    except ConfigError:
        return None
    return json.loads((run_dir / "metrics.json").read_text())



def run_task(task: Task, opts: BenchOptions) -> dict:
    """Extract, train every run, score, and write <out>/<task>/: per-run folders, confusion PNG of
    the best project model. Returns {"results": {row: entry}, "timings": {...}, ...}."""
    from emofuse.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from emofuse.evaluation.report import save_confusion_png, write_calibration
    from emofuse.features.extract import extract
    from emofuse.registry import MODELS
    from emofuse.training.run import train_run

    task_dir = Path(opts.out) / task.name
    task_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.load(task.manifest)
    classes = list(manifest.label_set.classes)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    if task.encoders:
        extract(manifest, task.encoders, opts.cache_dir, progress=opts.progress, **task.extract)
    timings["extract"] = time.perf_counter() - t

    results: dict[str, dict] = {}
    runs = [r for r in task.runs if selected(r, opts)]
    for extra in opts.extra_models:  # a hook for models the benchmark does not list (e.g. finetune_text)
        MODELS.get(extra)  # fails with the valid names
        base = runs[0] if runs else task.runs[0]
        runs.append(ModelRun(extra, extra, dict(base.features), data=dict(base.data)))
    t = time.perf_counter()
    extract_own_rows(task, manifest, [*runs, *(task.baselines if opts.baseline == "linear" else [])], opts)
    timings["extract"] += time.perf_counter() - t
    for run in runs:
        row_manifest(manifest, run.manifest)
        train = {"max_epochs": 100, "patience": 15, "seeds": list(opts.seeds), "monitor": task.monitor,
                 "progress": False, "logger": "none", "multi_label": task.multi_label, **task.train, **run.train}
        if opts.max_epochs:
            train["max_epochs"] = min(opts.max_epochs, train["max_epochs"])
        if task.multi_label:
            train["mse_weight"] = 0.0
        cfg = RunConfig(
            name=run.name.replace("/", "_"),
            data=DataConfig(manifest=str(task.manifest if run.manifest is None else run.manifest),
                            cache=str(opts.cache_dir), features=run.features, **run.data),
            model=ModelConfig(name=run.model, params=run.params),
            train=TrainConfig(**train),
            out=str(task_dir / "runs"),
        )
        t = time.perf_counter()
        m = _finished(cfg) if opts.resume else None
        if m is not None:
            wall = float(m.get("wall_time_s", 0.0))
            if opts.progress:
                print(f"  {task.name} {run.name:<24} reused (--resume): {Path(cfg.out) / cfg.name}", flush=True)
        else:
            m = train_run(cfg)
            wall = time.perf_counter() - t
        ids, y_true, y_pred = _read_predictions(task_dir / "runs" / cfg.name / "predictions.csv", classes, task.multi_label)
        entry = score_entry(y_true, y_pred, classes, opts)
        units = m.get("units", [])
        seeds = cfg.train.seeds
        # a run over several seeds predicts test with its first seed (its predictions.csv); its validation
        # figure, by which the reported model is chosen, is then that seed's too, not the seeds' mean
        first_seed = len(seeds) > 1 and bool(units) and all(u.get("fold") is None for u in units)
        val = units[0]["val"] if first_seed else m["val"]
        entry.update(kind="project", model=run.model, features=run.features, inputs=describe_inputs(run.features, run.data),
                     wall_time_s=wall,
                     best_epochs=[u.get("best_epoch") for u in units],
                     val={k: val[k] for k in METRIC_NAMES},  # what the best model is chosen by
                     run_dir=str(Path("runs") / cfg.name),
                     calibration=None if task.multi_label else
                     m.get("calibration") or write_calibration(task_dir / "runs" / cfg.name, classes))
        fitted = [u["fitted_on_val"] for u in units if u.get("fitted_on_val")]
        if fitted:  # e.g. late fusion's weights and temperatures (the first unit's)
            entry["fitted_on_val"] = fitted[0]
        if len(seeds) > 1:  # the point figures are the first seed's; the seeds' mean and spread too
            entry["seeds"] = {k: [m["test"][k], m["test"][f"{k}_std"]] for k in METRIC_NAMES}
        results[run.name] = entry
        if opts.progress:
            print(f"  {task.name} {run.name:<24} test weighted F1 {100 * entry['weighted_f1']:.1f}  ({wall:.0f} s)", flush=True)
    timings["train"] = sum(r["wall_time_s"] for r in results.values())

    for name, fn in task.combined.items():
        t = time.perf_counter()
        got = fn(task_dir, results, task.manifest, opts)
        if got is None:
            continue
        entry = _combined_entry(name, got, manifest, classes, task_dir, opts)
        entry["wall_time_s"] = time.perf_counter() - t
        results[name] = entry
        if opts.progress:
            print(f"  {task.name} {name:<24} test weighted F1 {100 * entry['weighted_f1']:.1f}", flush=True)

    for name, score_fn in task.references.items():
        ids, probs = score_fn(task.manifest, opts)
        index = {k: i for i, k in enumerate(manifest.df["id"])}
        y_all = manifest.label_indices()
        y_true = y_all[[index[k] for k in ids]]
        entry = score_entry(y_true, probs.argmax(1), classes, opts)
        entry.update(kind="reference", inputs="its own class probabilities (argmax), no training here")
        results[name] = entry

    if opts.baseline not in (None, "none", "linear"):
        raise ValueError(f"unknown baseline {opts.baseline!r}; valid: linear, none")
    for b in task.baselines if opts.baseline == "linear" else []:
        t = time.perf_counter()
        info, y_true, y_pred = linear_baseline(task, b, row_manifest(manifest, b.manifest), opts, task_dir / "runs" / b.name)
        entry = score_entry(y_true, y_pred, classes, opts)
        entry.update(kind="baseline", model="logistic regression", features=b.features,
                     inputs=describe_inputs(b.features, {"standardise": b.standardise}),
                     wall_time_s=time.perf_counter() - t, fitted=info,
                     calibration=None if task.multi_label else write_calibration(task_dir / "runs" / b.name, classes))
        results[b.name] = entry
        timings[b.name] = entry["wall_time_s"]
        if opts.progress:
            print(f"  {task.name} {b.name:<24} test weighted F1 {100 * entry['weighted_f1']:.1f}  "
                  f"({entry['wall_time_s']:.0f} s)", flush=True)

    if not task.multi_label:
        results.update(product_rows(results, task_dir, classes, opts))

    project = {k: v for k, v in results.items() if v["kind"] == "project"}
    best = choose(project, task.metric)
    if best:
        cm = np.asarray(results[best]["confusion"])
        save_confusion_png(cm, classes, task_dir / "confusion.png", title=f"{task.name}: {best} (test)")
    return {"results": results, "timings": timings, "best": best, "classes": classes,
            # counted on the rows the task ran (a manifest's recorded counts may predate rows it hid or added)
            "split_counts": {str(k): int(v) for k, v in manifest.df["split"].value_counts().items()},
            "n_test": int((manifest.df["split"] == "test").sum())}


@dataclass
class BenchSpec:
    """What a benchmark function returns: its tasks, the report's opening and closing lines, and
    an optional step run after the tasks (it returns more closing lines)."""

    tasks: list[Task]
    intro: list[str] = field(default_factory=list)
    closing: list[str] = field(default_factory=list)
    after: Any = None  # callable(tasks, outs) -> list[str]


def prepared(corpus: str, root: Path, out: Path, opts: BenchOptions, **options) -> Manifest:
    """prepare() with the benchmark's seed, rows the corpus cannot use skipped (and listed)."""
    from emofuse.corpora.base import prepare

    return prepare(corpus, root, out, on_error="skip", seed=opts.seed, **options)


def final_manifest(manifest: Manifest, path: Path, opts: BenchOptions) -> Path:
    """Apply --limit and save the manifest a task trains on."""
    manifest = limit_manifest(manifest, opts.limit, opts.seed)
    for s in ("train", "val", "test"):
        if not (manifest.df["split"] == s).any():
            raise ValueError(f"{path}: no {s} rows (split counts {manifest.meta.get('split_counts')})")
    manifest.save(path)
    return path
