"""ckplus: CK+ posed faces, which the bundled FER2013 CNN never saw, by subject-grouped cross-validation.

The six CK+ classes that FER2013 shares (anger, disgust, fear, happy, sadness, surprise; contempt
has no FER2013 counterpart and is excluded, its images listed in the rejects file) are cut into
`folds` seeded stratified folds of subjects (never of images: a sequence's frames are near-copies).
Each fold is a task: that fold's subjects are test, the next fold's validation, the rest train.
Every image is thus tested once by models that never saw its subject, and the closing table pools
the folds' test predictions, with 95% intervals from a bootstrap over subjects.

Rows: the bundled CNN read as a classifier (its probabilities for the six shared classes, argmax; no
training), with and without test-time augmentation (the encoder's `tta` option); the project's MLP
on the CNN's features, on HOG and on both (early fusion), trained on the training subjects; logistic
regression on the same features (--baseline linear). The face path's row is the project run with the best mean validation
score over the folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from emofuse.bench import BENCHMARKS, BenchConfig
from emofuse.bench.driver import (
    Baseline,
    BenchOptions,
    BenchSpec,
    ModelRun,
    Target,
    Task,
    final_manifest,
    prepared,
    resolve_root,
)
from emofuse.corpora.base import FACE_IMAGES, Manifest
from emofuse.corpora.ckplus import CKPLUS6

# the CNN's (FER2013's) name for a CK+ class where they differ
TO_FER = {"anger": "angry", "sadness": "sad"}
# the CNN without and with test-time augmentation: the encoder's own option, so each is its own
# cached feature set; flip_shift is 10 views (5 positions x mirrored)
TTA = ("none", "flip", "flip_shift")


def _spec(tta: str) -> str:
    return f"fer2013@tta={tta}"


def cnn_six(spec: str):
    """The reference scorer: the CNN's probabilities of the six shared classes on a task's test rows."""

    def score(manifest_path, opts: BenchOptions) -> tuple[list[str], np.ndarray]:
        from emofuse.features.cache import load_features
        from emofuse.features.encoders.builtin import FER2013_CLASSES
        from emofuse.features.encoders.hf import build_encoder

        manifest = Manifest.load(manifest_path)
        cols = [FER2013_CLASSES.index(TO_FER.get(c, c)) for c in manifest.label_set.classes]
        ids = manifest.df.loc[manifest.df["split"] == "test", "id"].tolist()
        # pinned to this spec's fingerprint: the name alone may hold the other TTA's features
        table = load_features(opts.cache_dir, manifest.corpus, build_encoder(spec)).lookup(ids)
        return ids, table.vectors[:, cols]

    return score


class Options(BenchConfig):
    folds: int = Field(5, description="subject folds (5: about 21 of the 106 subjects, 185 images tested per fold)")


@BENCHMARKS.register("ckplus", options=Options)
def bench_ckplus(opts: BenchOptions, folds: int = 5) -> BenchSpec:
    """folds: subject folds (5: about 21 of the 106 subjects, 185 images tested per fold)."""
    folds = int(folds)
    out = opts.out
    root = resolve_root(opts.data, "ckplus48", "ckplus")
    full = prepared("ckplus", root, out / "prepared" / "ckplus.csv", opts, n_folds=folds, labels="ckplus6")
    specs = [_spec(t) for t in TTA]
    hog = "hog"
    mlp = {"hidden": 128, "dropout": 0.3}
    batch = {"batch_size": 64}
    runs = [ModelRun(f"unimodal(fer2013,tta={t})", "unimodal", {"video": _spec(t)}, mlp, data=batch) for t in TTA]
    runs.append(ModelRun("unimodal(hog)", "unimodal", {"video": hog}, mlp, data=batch))
    # the CNN's features beside HOG: the CNN learned on FER2013's faces, HOG on none
    both = {t: {"video": [_spec(t), hog]} for t in ("none", "flip_shift")}
    runs += [ModelRun(f"early(fer2013,tta={t}+hog)", "early", f, mlp, data=batch) for t, f in both.items()]
    baselines = [Baseline(f"baseline-linear-fer2013,tta={t}", {"video": _spec(t)}) for t in TTA]
    baselines.append(Baseline("baseline-linear-hog", {"video": hog}))
    baselines += [Baseline(f"baseline-linear-fer2013,tta={t}+hog", f) for t, f in both.items()]
    references = {f"fer2013-cnn{'' if t == 'none' else f' tta={t}'}": cnn_six(_spec(t)) for t in TTA}
    tasks = []
    for k in range(folds):
        df = full.df.copy()
        val = (k + 1) % folds
        df["split"] = np.where(df["fold"] == k, "test", np.where(df["fold"] == val, "val", "train"))
        m = Manifest(full.corpus, full.label_set, df, dict(full.meta, split_counts=df["split"].value_counts().to_dict()))
        path = final_manifest(m, out / "ckplus" / f"fold{k}.csv", opts)
        targets = [Target("accuracy", None, "the face path at least matches the bundled CNN (no TTA) on faces it never saw",
                          versus="fer2013-cnn")]
        tasks.append(Task(f"ckplus-fold{k}", path, [*specs, hog], runs, baselines=baselines,
                          extract={**FACE_IMAGES, "batch_size": 256},
                          train={"lr": 1e-3, "max_epochs": 100, "patience": 15, "mse_weight": 0.0},
                          targets=targets, references=references, monitor="val_accuracy"))
    n_sub = full.df["speaker"].nunique()
    intro = [f"CK+ posed faces (48×48 grey), the {len(CKPLUS6)} classes FER2013 shares (contempt excluded: "
             f"{full.meta.get('rows_excluded', 0)} images), {len(full.df)} images of {n_sub} subjects; "
             f"{folds}-fold subject-grouped cross-validation (fold k test, fold k+1 validation, the rest train), "
             "accuracy. The bundled FER2013 CNN was never trained on CK+."]
    return BenchSpec(tasks, intro, after=lambda tasks, outs: pooled_lines(tasks, outs, opts))


def _predictions(task_dir: Path, row: str, entry: dict) -> pd.DataFrame | None:
    """A row's test predictions (id, true, predicted) of one fold, from the run folder the driver wrote."""
    path = task_dir / (entry.get("run_dir") or f"runs/{row}") / "predictions.csv"
    if not path.is_file():
        return None
    return pd.read_csv(path, dtype=str, keep_default_na=False)[["id", "true", "predicted"]]


def _subject_bootstrap(y: np.ndarray, p: np.ndarray, subjects: np.ndarray, n: int, seed: int) -> list[float]:
    """95% percentile interval of accuracy over resamples of subjects (a subject's images move
    together: they are near-copies, so resampling images would understate the spread)."""
    rng = np.random.default_rng(seed)
    uniq, inv = np.unique(subjects, return_inverse=True)
    hits = np.bincount(inv, weights=(y == p).astype(float), minlength=len(uniq))
    sizes = np.bincount(inv, minlength=len(uniq)).astype(float)
    draws = rng.integers(0, len(uniq), size=(n, len(uniq)))
    accs = hits[draws].sum(1) / sizes[draws].sum(1)
    return [float(np.quantile(accs, 0.025)), float(np.quantile(accs, 0.975))]


def pooled_lines(tasks: list[Task], outs: list[dict], opts: BenchOptions) -> list[str]:
    """Markdown: every row's test predictions pooled over the folds (each image once), accuracy with a
    subject bootstrap interval, mean validation accuracy over the folds, and the face path's verdict."""
    from emofuse.scoring.metrics import classification_metrics

    manifest = Manifest.load(tasks[0].manifest)
    subject = dict(zip(manifest.df["id"], manifest.df["speaker"]))
    classes = list(manifest.label_set.classes)
    index = {c: i for i, c in enumerate(classes)}
    rows: dict[str, dict] = {}
    for task, out in zip(tasks, outs):
        task_dir = Path(opts.out) / task.name
        test = Manifest.load(task.manifest).df.query("split == 'test'")
        for name, e in out["results"].items():
            if e["kind"] == "reference":  # no run folder: score it again (cheap, cached features)
                ids, probs = task.references[name](task.manifest, opts)
                truth = dict(zip(test["id"], test["label"]))
                df = pd.DataFrame({"id": ids, "true": [truth[i] for i in ids],
                                   "predicted": [classes[j] for j in probs.argmax(1)]})
            else:
                df = _predictions(task_dir, name, e)
                if df is None:
                    continue
            r = rows.setdefault(name, {"kind": e["kind"], "parts": [], "val": []})
            r["parts"].append(df)
            if "val" in e:
                r["val"].append(e["val"]["accuracy"])
            elif "fitted" in e:
                r["val"].append(e["fitted"].get("val_accuracy", np.nan))
    if not rows:
        return []
    table = []
    for name, r in rows.items():
        df = pd.concat(r["parts"], ignore_index=True)
        y, p = df["true"].map(index).to_numpy(), df["predicted"].map(index).to_numpy()
        m = classification_metrics(y, p, len(classes))
        ci = _subject_bootstrap(y, p, df["id"].map(subject).to_numpy(), opts.bootstrap, opts.seed)
        val = float(np.nanmean(r["val"])) if r["val"] else None
        table.append((name, r["kind"], m["accuracy"], ci, m["weighted_f1"], val, len(df), len(r["parts"])))
    project = [t for t in table if t[1] == "project" and t[5] is not None]
    chosen = max(project, key=lambda t: t[5]) if project else None
    cnn = next((t for t in table if t[0] == "fer2013-cnn"), None)
    lines = ["## All folds pooled", "",
             "Each image's prediction comes from the fold in which its subject was test; 95% intervals resample "
             "subjects. Validation accuracy is the mean over folds of each fold's validation subjects; the face "
             "path (bold) is the project row with the best mean validation accuracy.", "",
             "| model | kind | test accuracy | 95% CI (subjects) | test weighted F1 | mean val accuracy | test images | folds |",
             "|---|---|---|---|---|---|---|---|"]
    for name, kind, acc, ci, wf1, val, n, nf in sorted(table, key=lambda t: (t[1] != "project", t[1], t[0])):
        bold = "**" if chosen and name == chosen[0] else ""
        v = "" if val is None or np.isnan(val) else f"{100 * val:.1f}"
        lines.append(f"| {bold}{name}{bold} | {kind} | {100 * acc:.1f} | [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] | "
                     f"{100 * wf1:.1f} | {v} | {n} | {nf} |")
    if chosen and cnn:
        gain = 100 * (chosen[2] - cnn[2])
        lines += ["", f"Target (issue 12): the face path ≥ the bundled CNN alone + 1 point of accuracy on faces it never "
                      f"saw: {chosen[0]} {100 * chosen[2]:.1f} vs fer2013-cnn {100 * cnn[2]:.1f} ({gain:+.1f} points): "
                      f"**{'reached' if gain >= 1.0 else 'not reached'}**. The face path here is trained on CK+'s "
                      "training subjects; the CNN alone is not trained on CK+ at all."]
    return lines
