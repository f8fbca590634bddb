"""Pseudo-labelling (train.pseudo_label): learning from unlabelled rows through the one training loop.

Round 0 trains a teacher on the labelled rows alone (the run's config as it is). Each round after
that: the teacher, the best model so far by validation, predicts every unlabelled row; the rows it
is confident of (a probability threshold, or per predicted class its most confident fraction) join
the training rows with their predicted class and `weight` in the loss; a student trains on them.
With `soft`, a kept row also keeps the teacher's probabilities and the loss is the cross-entropy against
them (knowledge distillation on the unlabelled rows; a labelled row's target stays one-hot). With `classes`, the
teacher's probabilities of classes the unlabelled corpus does not have are set to 0 first. With `align`,
the teacher's probabilities are then re-weighted per class, towards the labelled rows' class shares or
towards the unlabelled rows' own shares estimated by EM (`align` below).
Validation and test rows are never candidates. Each round is a run of its own in the run's folder
(`round0`, `round1`, …), and `pseudo_label.json` records, per round and class, how many rows were
kept and, where the manifest keeps their real labels apart (`hidden_label`), how many were right.

    <out>/<name>/config.yaml, pseudo_label.json, metrics.json (the round chosen on validation),
                 manifest_round<r>.csv, round<r>/ (each round's run folder)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from emofuse.config import PseudoLabelConfig, RunConfig, dump_config
from emofuse.corpora.base import Manifest
from emofuse.training.tracking import parent_run

UNLABELED = "unlabeled"


def candidates(manifest: Manifest, extra: str = "") -> Manifest:
    """The run's manifest with the rows of `extra` (another manifest of the same corpus) added as
    unlabelled rows: their labels, if any, kept apart in hidden_label. Every row gets a weight of 1."""
    df = manifest.df.copy()
    if extra:
        more = Manifest.load(extra)
        if more.corpus != manifest.corpus:
            raise ValueError(f"train.pseudo_label.unlabelled: {extra} is corpus {more.corpus!r}, the run's is "
                             f"{manifest.corpus!r} (their features must be in the same cache under one corpus)")
        add = more.df.copy()
        if "hidden_label" not in add:
            add["hidden_label"] = add["label"]
        add["label"], add["soft_label"], add["split"] = "", "", UNLABELED
        clash = set(add["id"]) & set(df["id"])
        if clash:
            raise ValueError(f"train.pseudo_label.unlabelled: {len(clash)} ids of {extra} are already in the run's "
                             f"manifest (e.g. {sorted(clash)[:3]})")
        df = pd.concat([df, add], ignore_index=True)
    if "hidden_label" not in df:
        df["hidden_label"] = ""
    df["hidden_label"] = df["hidden_label"].fillna("").astype(str)
    df["weight"], df["pseudo"] = "1.0", ""
    if not (df["split"] == UNLABELED).any():
        raise ValueError("train.pseudo_label: the manifest has no unlabeled rows (split 'unlabeled') and "
                         "train.pseudo_label.unlabelled names no manifest of them")
    return Manifest(manifest.corpus, manifest.label_set, df.reset_index(drop=True), dict(manifest.meta))


def select(probs: np.ndarray, cfg: PseudoLabelConfig) -> np.ndarray:
    """(N,) bool: the rows kept. threshold: the top probability reaches it; top_fraction: per
    predicted class, its most confident fraction of the rows (at least one where the class has any)."""
    top, guess = probs.max(1), probs.argmax(1)
    if cfg.top_fraction is None:
        return top >= cfg.threshold
    keep = np.zeros(len(probs), bool)
    for c in np.unique(guess):
        rows = np.flatnonzero(guess == c)
        n = max(1, int(round(cfg.top_fraction * len(rows))))
        keep[rows[np.argsort(-top[rows], kind="stable")[:n]]] = True
    return keep


def align(probs: np.ndarray, labelled_prior: np.ndarray, how: str, *, iters: int = 1000,
          tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's (N, C) probabilities re-weighted per class (train.pseudo_label.align) and the class
    shares they were aligned to. "labelled": p * prior / mean(p) renormalised, so the rows' mean moves to
    the labelled rows' shares (one step, as distribution alignment; exact where the teacher's scale is
    the only error). "em": p * q / prior renormalised, q the unlabelled rows' shares found by EM (q <- mean
    of the re-weighted rows, from q = prior, until it moves less than tol). A class with no labelled row
    keeps probability 0 either way; "none" returns them as they are."""
    prior = np.asarray(labelled_prior, np.float64)
    if probs.ndim != 2 or prior.shape != (probs.shape[1],):
        raise ValueError(f"align: probabilities {probs.shape} and a prior of {prior.shape} do not match")
    if how == "none" or not len(probs):
        return probs, prior
    known = prior > 0
    if how == "labelled":
        mean = probs.mean(0)
        ratio = np.where(known, prior / np.maximum(mean, 1e-12), 0.0)
        out = probs * ratio
        return out / np.maximum(out.sum(1, keepdims=True), 1e-12), prior
    if how != "em":
        raise ValueError(f"align: none, labelled or em, not {how!r}")

    def towards(q: np.ndarray) -> np.ndarray:  # the probabilities with the prior replaced by q
        out = probs * np.where(known, q / np.where(known, prior, 1.0), 0.0)
        return out / np.maximum(out.sum(1, keepdims=True), 1e-12)

    q = prior.copy()
    for _ in range(iters):
        new = towards(q).mean(0)
        done = np.abs(new - q).max() < tol
        q = new
        if done:
            break
    return towards(q), q


def check_classes(classes: list[str], allowed: list[str]) -> None:
    """Refuses an `allowed` (train.pseudo_label.classes) that names a class the label set lacks, or none."""
    unknown = sorted(set(allowed) - set(classes))
    if unknown or not allowed:
        raise ValueError(f"train.pseudo_label.classes: {unknown or 'none given'}: not classes of the label set {classes}")


def restrict(probs: np.ndarray, classes: list[str], allowed: list[str]) -> np.ndarray:
    """The (N, C) probabilities with every class outside `allowed` set to 0, renormalised
    (train.pseudo_label.classes; check_classes refuses bad names)."""
    check_classes(classes, allowed)
    out = probs * np.isin(np.asarray(classes, dtype=object), list(allowed))
    return out / np.maximum(out.sum(1, keepdims=True), 1e-12)


def labelled_prior(df: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """The class shares of the labelled training rows (pseudo-labelled rows left out)."""
    rows = (df["split"] == "train") & (df["pseudo"].astype(str) != "1") & (df["label"].astype(str) != "")
    counts = df.loc[rows, "label"].astype(str).value_counts()
    share = np.array([counts.get(c, 0) for c in classes], np.float64)
    if share.sum() == 0:
        raise ValueError("train.pseudo_label.align: the manifest has no labelled training rows to take shares from")
    return share / share.sum()


def kept_by_class(classes: list[str], guess: np.ndarray, keep: np.ndarray, hidden: np.ndarray) -> dict:
    """Per predicted class: the rows kept and, among those with a hidden label, how many were right."""
    out = {}
    for c in classes:
        rows = keep & (guess == c)
        known = rows & (hidden != "")
        right = int((hidden[known] == c).sum())
        out[c] = {"kept": int(rows.sum()), "with_hidden_label": int(known.sum()),
                  "accuracy": right / int(known.sum()) if known.any() else None}
    return out


def _round_cfg(cfg: RunConfig, r: int, manifest_path: Path, run_dir: Path) -> RunConfig:
    update = {"pseudo_label": None, "predict_unlabeled": True}
    if cfg.train.pseudo_label.soft:  # the teacher's probabilities reach the loss (every round alike)
        update["ce_target"] = "distribution"
    train = cfg.train.model_copy(update=update)
    data = cfg.data.model_copy(update={"manifest": str(manifest_path)})
    return cfg.model_copy(update={"name": f"round{r}", "out": str(run_dir), "train": train, "data": data})


def teacher_probs(run_dir: Path, classes: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """A run's probabilities on its unlabeled rows: the mean over its seeds where it has several (the
    seeds' ensemble teaches), else its own."""
    files = sorted(run_dir.glob("seed*/predictions_unlabeled.csv")) or [run_dir / "predictions_unlabeled.csv"]
    preds = [pd.read_csv(f, dtype={"id": str}, keep_default_na=False) for f in files]
    for p in preds[1:]:
        if list(p["id"]) != list(preds[0]["id"]):
            raise ValueError(f"{run_dir}: the seeds predicted different unlabeled rows")
    cols = [f"p_{c}" for c in classes]
    return preds[0], np.mean([p[cols].to_numpy(np.float64) for p in preds], axis=0)


def _labelled(work: Manifest, teacher_dir: Path, cfg: PseudoLabelConfig) -> tuple[Manifest, dict]:
    """The teacher's predictions on the rows still unlabelled in its manifest -> the next round's manifest
    (the teacher's, with the rows it is confident of now labelled) and the round's record."""
    classes = list(work.label_set.classes)
    pred, probs = teacher_probs(teacher_dir, classes)
    df = work.df.copy()
    if cfg.classes:
        probs = restrict(probs, classes, cfg.classes)
    if cfg.align != "none":
        prior = labelled_prior(df, classes)
        probs, target = align(probs, prior, cfg.align)
    keep = select(probs, cfg)
    guess = np.asarray(classes, dtype=object)[probs.argmax(1)]
    index = {k: i for i, k in enumerate(df["id"])}
    rows = np.array([index[k] for k in pred["id"]])
    if (df["split"].to_numpy()[rows] != UNLABELED).any():
        raise AssertionError("pseudo-labels reached rows that are not unlabeled")  # val and test: never
    hidden = df["hidden_label"].to_numpy(dtype=object)[rows].astype(str)
    chosen = rows[keep]
    df.loc[chosen, "split"] = "train"
    df.loc[chosen, "label"] = guess[keep]
    df.loc[chosen, "weight"] = str(cfg.weight)
    df.loc[chosen, "pseudo"] = "1"
    if cfg.soft:  # the teacher's distribution, not only its top class
        df.loc[chosen, "soft_label"] = [json.dumps([round(float(v), 6) for v in p]) for p in probs[keep]]
    known = keep & (hidden != "")
    pseudo = df["pseudo"].to_numpy(dtype=object).astype(str) == "1"  # every pseudo-label, this round's and before
    seen = pseudo & (df["hidden_label"].to_numpy(dtype=object).astype(str) != "")
    so_far = {"rows": int(pseudo.sum()), "accuracy": float((df["hidden_label"][seen] == df["label"][seen]).mean())
              if seen.any() else None}
    record = {"candidates": int(len(rows)), "kept": int(keep.sum()), "pseudo_labelled_so_far": so_far,
              "accuracy": float((hidden[known] == guess[known]).mean()) if known.any() else None,
              "teacher_accuracy_all": float((hidden[hidden != ""] == guess[hidden != ""]).mean())
              if (hidden != "").any() else None,
              "per_class": kept_by_class(classes, guess, keep, hidden)}
    if cfg.classes:
        record["classes"] = [c for c in classes if c in set(cfg.classes)]
    if cfg.align != "none":  # the shares the teacher's probabilities were aligned to, beside the labelled rows'
        record["align"] = {"how": cfg.align, "labelled_shares": dict(zip(classes, np.round(prior, 4).tolist())),
                           "aligned_to": dict(zip(classes, np.round(target, 4).tolist()))}
    return Manifest(work.corpus, work.label_set, df, dict(work.meta)), record


def _score(val: dict, monitor: str) -> float:
    return float(val[monitor] if monitor in val else val["accuracy"])


@parent_run("pseudo_label", lambda cfg: Path(cfg.out) / cfg.name)  # MLflow / W&B: the rounds as one run's children
def pseudo_label_run(cfg: RunConfig, train: Callable[[RunConfig], dict]) -> dict:
    """Run train.pseudo_label's rounds, each through `train` (training.run.train_run); returns the
    metrics of the round chosen on validation, with the rounds' record under "pseudo_label"."""
    from emofuse.models.build import model_class

    pl = cfg.train.pseudo_label
    if model_class(cfg.model.name).raw_inputs and pl.weight != 1.0:
        raise ValueError(f"train.pseudo_label.weight {pl.weight}: {cfg.model.name} reads the media (data/raw.py), whose "
                         "batches carry no row weights yet; use weight 1.0, or a model on cached features")
    run_dir = Path(cfg.out) / cfg.name
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / "config.yaml")
    work = candidates(Manifest.load(cfg.data.manifest), pl.unlabelled)
    if pl.classes:  # a wrong name is refused before the teacher trains, not after
        check_classes(list(work.label_set.classes), pl.classes)
    monitor = cfg.train.monitor.removeprefix("val_")
    better = (lambda a, b: a < b) if monitor == "loss" else (lambda a, b: a > b)
    rounds, best = [], None
    for r in range(pl.rounds + 1):
        record = None
        if r > 0:  # the best teacher so far keeps its own pseudo-labels and adds those it is now sure of
            teacher = Manifest.load(run_dir / f"manifest_round{best}.csv")
            work, record = _labelled(teacher, run_dir / f"round{best}", pl)
        path = run_dir / f"manifest_round{r}.csv"
        work.save(path)
        metrics = train(_round_cfg(cfg, r, path, run_dir))
        rounds.append({"round": r, "teacher": None if r == 0 else f"round{best}", "pseudo_labels": record,
                       "val": metrics["val"], "test": metrics["test"]})
        if best is None or better(_score(metrics["val"], monitor), _score(rounds[best]["val"], monitor)):
            best = r
    summary = {"chosen_round": best, "monitor": cfg.train.monitor, "threshold": pl.threshold,
               "top_fraction": pl.top_fraction, "weight": pl.weight, "align": pl.align, "classes": pl.classes,
               "rounds": rounds}
    (run_dir / "pseudo_label.json").write_text(json.dumps(summary, indent=2))
    for name in ("predictions.csv", "predictions_val.csv", "confusion.png", "reliability.png"):  # the chosen round's
        if (run_dir / f"round{best}" / name).is_file():
            shutil.copyfile(run_dir / f"round{best}" / name, run_dir / name)
    chosen = json.loads((run_dir / f"round{best}" / "metrics.json").read_text())
    chosen["pseudo_label"] = summary
    chosen["name"] = cfg.name
    (run_dir / "metrics.json").write_text(json.dumps(chosen, indent=2))
    return chosen
