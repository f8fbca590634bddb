"""Late fusion of runs: the MELD system by one config. Each modality has its own system, a normal
run of the one loop (fine-tuned text, fine-tuned audio, CLIP zero-shot video, or any run); their
class probabilities are combined (a weighted mean, or a product of experts: a weighted sum of
log-probabilities) with temperatures and weights fitted on the validation split (never test), and
each member and the fusion are reported on test, per class and overall, with their calibration.

    name: meld-late-fusion
    manifest: work/meld/manifest.csv
    members:
      text:  {model: {name: finetune_text, params: {encoder: minilm}}, data: {features: {text: raw}}, train: {...}}
      audio: {run: runs/meld/meld-ft-wav2vec2}          # or an existing run directory, used as it is
      video: {model: {name: clip_zeroshot, params: {model: openai/clip-vit-base-patch32, label_set: meld7}},
              data: {features: {video: raw}}}
    fusion: {combine: product}       # or {fit: grid, weight_step: 0.05, prior: {...}, tolerance: 0.005}

A member given as a config is trained into <out>/<name>/members/<name>-<modality>; a finished run
there with the same config is reused (retrain: true trains it again).

fusion.fit: cv (the default without a prior) calibrates each member by a temperature, fits the
weights with a pull towards equal whose strength is chosen by cross-validation on the validation
rows, and a temperature of the fused output (models.late.fit_fusion). fit: grid (the default with a
prior) searches the simplex of mean weights; the weighting closest to the prior among those within
`tolerance` of the best validation score wins, so text stays weighted most unless the validation
split says otherwise.

Writes <out>/<name>/: config.yaml, labels.json, metrics.json (fused test/val as a run's, plus every
member's, with calibration), predictions.csv and predictions_val.csv (with w_<modality> columns),
confusion.png, reliability.png and table.md (rows: each modality's system and the fusion; columns:
F1 per class, weighted F1, accuracy, ECE)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from emofuse.config import ConfigError, RunConfig, StrictConfig, dump_config, validate
from emofuse.scoring.metrics import METRIC_NAMES, classification_metrics, confusion, per_class


class MemberConfig(StrictConfig):
    """One modality's system: an existing run directory, or the sections of a run config."""

    run: str | None = None  # a finished run directory (with predictions.csv and predictions_val.csv)
    data: dict = Field(default_factory=dict)  # data.manifest defaults to the system's manifest
    model: dict | None = None
    train: dict = Field(default_factory=dict)


class FusionConfig(StrictConfig):
    combine: Literal["mean", "product"] = "mean"  # product: a weighted sum of log-probabilities
    # auto: grid when a prior is given (the prior is the grid's), else cv
    fit: Literal["auto", "cv", "grid"] = "auto"
    calibrate: bool = True  # member and fused temperatures fitted on validation (fit: cv)
    cv_folds: int = 5  # folds over the validation rows that choose the pull towards equal weights (fit: cv)
    weight_step: float = 0.05  # grid step over the weight simplex
    metric: Literal["accuracy", "uar", "weighted_f1", "macro_f1"] = "weighted_f1"  # fitted on validation
    prior: dict[str, float] = Field(default_factory=dict)  # modality -> weight it keeps unless validation disagrees
    tolerance: float = 0.0  # how much validation score the prior may cost

    @property
    def method(self) -> str:
        return ("grid" if self.prior else "cv") if self.fit == "auto" else self.fit


class LateRunsConfig(StrictConfig):
    name: str
    manifest: str  # the manifest every trained member reads (a member's data.manifest overrides it)
    members: dict[str, MemberConfig]  # modality (or any name) -> member
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    retrain: bool = False  # train members again even where a finished run of the same config exists
    out: str = "runs"

    @model_validator(mode="after")
    def _check(self) -> "LateRunsConfig":
        if len(self.members) < 2:
            raise ValueError(f"late fusion needs at least two members, got {sorted(self.members)}")
        if self.fusion.method == "grid" and self.fusion.combine != "mean":
            raise ValueError("fusion.fit: grid searches the weights of a mean; combine: product needs fit: cv")
        unknown = sorted(set(self.fusion.prior) - set(self.members))
        if unknown:
            raise ValueError(f"fusion.prior names {unknown}, which are not members ({', '.join(self.members)})")
        self.member_configs()  # every trained member's run config validates now, not after the first has trained
        return self

    def member_configs(self) -> dict[str, RunConfig]:
        """The run config of every member that is trained here (not those given as run directories)."""
        out = {}
        for key, m in self.members.items():
            if m.run is not None:
                if m.model is not None or m.data or m.train:
                    raise ValueError(f"member {key!r}: give either run (an existing run) or a run config, not both")
                continue
            if m.model is None:
                raise ValueError(f"member {key!r}: give run (an existing run directory) or model/data/train")
            try:
                out[key] = validate(RunConfig, {
                    "name": f"{self.name}-{key}",
                    "data": {"manifest": self.manifest, **m.data},
                    "model": m.model,
                    "train": m.train,
                    "out": str(Path(self.out) / self.name / "members"),
                })
            except ConfigError as e:
                raise ValueError(f"member {key!r}: {e}") from None
            if out[key].train.cross_validation:
                # each fold has its own validation rows: there is no one split to fit the weights on
                raise ValueError(f"member {key!r}: late fusion of runs needs the manifest's fixed split, "
                                 "not train.cross_validation")
        return out


def _same_config(run_dir: Path, cfg: RunConfig) -> bool:
    import yaml

    f, done = run_dir / "config.yaml", run_dir / "metrics.json"
    if not (f.is_file() and done.is_file()) or done.stat().st_mtime < f.stat().st_mtime:
        return False  # never finished, or an interrupted retrain left an older run's metrics
    return yaml.safe_load(f.read_text()) == cfg.model_dump(mode="json")


def load_predictions(run_dir: Path, split: str) -> pd.DataFrame:
    name = {"test": "predictions.csv", "val": "predictions_val.csv"}[split]
    f = Path(run_dir) / name
    if not f.is_file():
        raise FileNotFoundError(f"{run_dir}: no {name} (a run of emofuse >= this version writes both splits)")
    return pd.read_csv(f, dtype={"id": str, "true": str, "predicted": str}, keep_default_na=False)


def _stack(frames: dict[str, pd.DataFrame], classes: list[str], split: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, labels (N,), member probabilities (N, M, C)) aligned on the first member's ids."""
    keys = list(frames)
    ids = frames[keys[0]]["id"].tolist()
    for k in keys[1:]:
        other = set(frames[k]["id"])
        if other != set(ids):
            raise ValueError(f"members {keys[0]!r} and {k!r} have different {split} ids "
                             f"({len(set(ids) - other)} only in {keys[0]!r}, {len(other - set(ids))} only in {k!r}); "
                             "train them on the same manifest")
    cols = [f"p_{c}" for c in classes]
    probs = np.stack([f.set_index("id").loc[ids, cols].to_numpy(np.float64) for f in frames.values()], axis=1)
    true = frames[keys[0]].set_index("id").loc[ids, "true"].tolist()
    labels = np.array([classes.index(t) if t else -1 for t in true])
    return ids, labels, probs


def run_late_runs(cfg: LateRunsConfig, progress: bool = True) -> dict:
    """Train (or reuse) every member, fit the fusion weights on validation, evaluate on test."""
    from emofuse.scoring.calibration import calibration_summary, save_reliability_diagram
    from emofuse.evaluation.report import save_confusion_png
    from emofuse.models.late import Fusion, fit_fusion, fit_fusion_weights
    from emofuse.training.run import train_run

    out = Path(cfg.out) / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    trained = cfg.member_configs()
    run_dirs: dict[str, Path] = {}
    for key, member in cfg.members.items():
        if key not in trained:
            run_dirs[key] = Path(member.run)
            continue
        rc = trained[key]
        run_dirs[key] = Path(rc.out) / rc.name
        if not cfg.retrain and _same_config(run_dirs[key], rc):
            if progress:
                print(f"  {key}: reusing {run_dirs[key]}")
            continue
        m = train_run(rc, one_process_as="late fusion (emofuse fuse)")
        if progress:
            print(f"  {key}: test weighted F1 {100 * m['test']['weighted_f1']:.1f} ({m['wall_time_s']:.0f} s) -> {run_dirs[key]}")

    labels_json = [json.loads((d / "labels.json").read_text()) for d in run_dirs.values()]
    classes = list(labels_json[0]["classes"])
    for k, lj in zip(run_dirs, labels_json):
        if list(lj["classes"]) != classes:
            raise ValueError(f"member {k!r} predicts {lj['classes']}, the first member {classes}: use one label set")
    (out / "labels.json").write_text(json.dumps(labels_json[0], indent=2))

    keys = list(run_dirs)
    split_data = {s: _stack({k: load_predictions(d, s) for k, d in run_dirs.items()}, classes, s) for s in ("val", "test")}
    _, y_val, p_val = split_data["val"]
    labelled = y_val >= 0
    prior = np.array([cfg.fusion.prior.get(k, 0.0) for k in keys]) if cfg.fusion.prior else None
    present = np.ones(p_val.shape[:2])  # every member predicts every row (its system decides how)
    if cfg.fusion.method == "grid":
        w, val_score = fit_fusion_weights(p_val[labelled], present[labelled], y_val[labelled], len(classes),
                                          cfg.fusion.weight_step, cfg.fusion.metric, prior, cfg.fusion.tolerance)
        fusion = Fusion("mean", w, np.ones(len(keys)), 1.0, float("nan"))
    else:
        fusion = fit_fusion(p_val[labelled], None, y_val[labelled], cfg.fusion.combine, cfg.fusion.calibrate,
                            cfg.fusion.cv_folds)
        w = fusion.weights
        val_score = classification_metrics(y_val[labelled], fusion.fuse(p_val[labelled]).argmax(1),
                                           len(classes))[cfg.fusion.metric]
    if progress:
        print(f"  fusion ({fusion.combine}) weights (fitted on validation): "
              + ", ".join(f"{k} {x:.2f}" for k, x in zip(keys, w)))

    results: dict = {"val": {}, "test": {}}
    fused: dict[str, np.ndarray] = {}
    for split, (ids, y, p) in split_data.items():
        fused[split] = fusion.fuse(p)
        ok = y >= 0
        for i, k in enumerate(keys):
            results[split][k] = classification_metrics(y[ok], p[ok, i].argmax(1), len(classes))
        results[split]["fusion"] = classification_metrics(y[ok], fused[split][ok].argmax(1), len(classes))
        _write(out / ("predictions.csv" if split == "test" else "predictions_val.csv"), ids, y, fused[split], w,
               keys, classes)

    ids, y, p = split_data["test"]
    ok = y >= 0
    y_pred = fused["test"].argmax(1)
    members_per_class = {k: per_class(y[ok], p[ok, i].argmax(1), classes) for i, k in enumerate(keys)}
    fused_per_class = per_class(y[ok], y_pred[ok], classes)
    cm = confusion(y[ok], y_pred[ok], len(classes))
    save_confusion_png(cm, classes, out / "confusion.png", title=f"{cfg.name} (test, late fusion)")
    save_reliability_diagram(fused["test"][ok], y[ok], out / "reliability.png", title=f"{cfg.name} (test, late fusion)")
    ok_val = y_val >= 0
    calibration = {k: calibration_summary(p[ok, i], y[ok], p_val[ok_val, i], y_val[ok_val]) for i, k in enumerate(keys)}
    calibration["fusion"] = calibration_summary(fused["test"][ok], y[ok])  # its temperatures are already fitted
    with_std = {split: {**results[split]["fusion"], **{f"{m}_std": 0.0 for m in METRIC_NAMES}} for split in results}
    metrics = {
        "name": cfg.name,
        "model": "late_runs",
        "test": with_std["test"],
        "val": with_std["val"],
        "fusion_weights": dict(zip(keys, w.tolist())),
        "fusion": {"method": cfg.fusion.method, **fusion.summary(keys)},
        "calibration": calibration,
        f"val_{cfg.fusion.metric}_fitted": val_score,
        "members": {k: {"run": str(run_dirs[k]), "test": results["test"][k], "val": results["val"][k],
                        "per_class": members_per_class[k], "calibration": calibration[k]} for k in keys},
        "per_class": fused_per_class,
        "confusion": cm.tolist(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    table = late_runs_table(metrics, classes)
    (out / "table.md").write_text(table + "\n")
    return metrics


def _write(path: Path, ids: list[str], y: np.ndarray, probs: np.ndarray, w: np.ndarray, keys: list[str],
           classes: list[str]) -> None:
    rows = {"id": ids, "true": [classes[i] if i >= 0 else "" for i in y],
            "predicted": [classes[i] for i in probs.argmax(1)]}
    rows |= {f"p_{c}": [f"{x:.5f}" for x in probs[:, j]] for j, c in enumerate(classes)}
    rows |= {f"w_{k}": [f"{w[i]:.5f}"] * len(ids) for i, k in enumerate(keys)}
    pd.DataFrame(rows).to_csv(path, index=False)


def late_runs_table(metrics: dict, classes: list[str]) -> str:
    """Markdown: one row per modality's system and one for the fusion; F1 per class, weighted F1 and
    accuracy on test (percent), the expected calibration error on test, and each system's fusion weight."""
    head = "| system | weight | " + " | ".join(classes) + " | weighted F1 | accuracy | ECE |"
    rows = [head, "|---|---:|" + "---:|" * (len(classes) + 3)]
    cal = metrics.get("calibration", {})

    def row(name: str, key: str, weight: str, pcs: list[dict], m: dict) -> str:
        f1 = {r["class"]: r["f1"] for r in pcs}
        ece = cal.get(key, {}).get("ece")
        cells = [f"{100 * f1[c]:.1f}" for c in classes] + [f"{100 * m['weighted_f1']:.1f}", f"{100 * m['accuracy']:.1f}",
                                                           "" if ece is None else f"{ece:.3f}"]
        return f"| {name} | {weight} | " + " | ".join(cells) + " |"

    for k, mm in metrics["members"].items():
        rows.append(row(k, k, f"{metrics['fusion_weights'][k]:.2f}", mm["per_class"], mm["test"]))
    how = metrics.get("fusion", {}).get("combine", "mean")
    rows.append(row(f"**late fusion ({how})**", "fusion", "", metrics["per_class"], metrics["test"]))
    return ("\n".join(rows) + "\n\nF1 per class, weighted F1 and accuracy on test (%); ECE: expected calibration "
            "error on test (15 bins; members as they predict, the fusion after its temperatures); weights fitted on "
            "validation.")
