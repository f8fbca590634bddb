"""Which rows train, validate and test in each unit of a run: the manifest's splits, its folds with
train.cross_validation, and speaker-grouped folds for train.cross_validation: speaker."""

from __future__ import annotations

import numpy as np

from emofuse.corpora.augment import is_augmented
from emofuse.corpora.base import Manifest


def plans(manifest: Manifest, cross_validation: bool) -> list[dict]:
    """Which rows train, validate and test in each unit of work (and, without cross-validation, which
    are unlabeled: train.predict_unlabeled predicts them). With cross-validation, fold f is
    the test fold and fold f+1 the validation fold, so test folds cover every labelled row once."""
    df = manifest.df.reset_index(drop=True)
    labelled = df["split"] != "unlabeled"
    # augmented copies (corpora.augment) only ever train: never validated, tested or pseudo-labelled
    copy = is_augmented(df).to_numpy()
    if not cross_validation:
        split = df["split"].to_numpy()
        return [{"name": "", "train": np.flatnonzero(split == "train"),
                 **{s: np.flatnonzero((split == s) & ~copy) for s in ("val", "test", "unlabeled")}}]
    folds = sorted(int(f) for f in df.loc[labelled, "fold"].unique() if int(f) >= 0)
    if len(folds) < 3:
        raise ValueError(f"cross-validation needs at least 3 folds in the manifest, found {folds}")
    out = []
    for i, f in enumerate(folds):
        v = folds[(i + 1) % len(folds)]
        fold = df["fold"].astype(int)
        out.append({
            "name": f"fold{f}",
            "test": np.flatnonzero(labelled & ~copy & (fold == f)),
            "val": np.flatnonzero(labelled & ~copy & (fold == v)),
            "train": np.flatnonzero(labelled & (fold != f) & (fold != v)),
        })
    return out


def speaker_folds(df, rows: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
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
