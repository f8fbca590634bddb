"""`emofuse evaluate RUN --data MANIFEST --out DIR`: a trained run scored on another corpus.

The run is loaded as `emofuse predict` loads it (bundle.load_bundle: weights, standardiser and
encoders built on this machine). The corpus's rows go through the normal feature cache with the
run's own encoders (features.extract, progress bar, nothing recomputed), are standardised as in
training (when the run was trained so, each speaker first by its own statistics over the rows
evaluated here, no labels read; then the run's training statistics), predicted by the training loop's own `predict` and scored by
scoring.metrics: accuracy, UAR, weighted and macro F1, per class, confusion matrix.

Labels: each of the corpus's classes counts as the run's class of the same name or alias
(labels.map_labels), with `--map from=to` on top. Rows whose class has no counterpart among the
run's classes are not scored but reported, per label: how many, and what the model predicted for
them. The scores cover the mapped rows only, and say how many those are.

    DIR/metrics.json     scores, per class, confusion, row counts, label map, unseen labels, encoders
    DIR/predictions.csv  id, speaker, label (the corpus's), true (the run's class or ""), predicted, p_<class>
    DIR/confusion.png    the scored rows, over the run's classes
    DIR/report.md        the same for people, headed by the command
    DIR/evaluate.yaml    this evaluation's settings (EvaluateConfig), the command among them
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np

from emofuse.config import StrictConfig

METRICS = ("accuracy", "uar", "weighted_f1", "macro_f1")


class EvaluateError(ValueError):
    """An evaluation that cannot be run as asked; the message says why in one line."""


class EvaluateConfig(StrictConfig):
    run: str  # run directory or exported bundle
    data: str  # manifest CSV of the corpus to score on (`emofuse prepare`)
    out: str  # output folder
    map: dict[str, str] = {}  # corpus label -> run class ("" leaves the label out)
    splits: list[str] = []  # manifest splits to score; empty: every labelled row
    cache: str = ""  # feature cache folder; "" -> <out>/cache
    unit: str | None = None  # fold/seed unit of a cross-validated or multi-seed run
    batch_size: int = 16
    device: str = "cpu"  # cpu | cuda | auto
    command: str = ""  # the command line that ran it, for the record


def parse_map(items: list[str]) -> dict[str, str]:
    """["calm=neutral", "surprised="] -> {"calm": "neutral", "surprised": ""}."""
    out = {}
    for item in items:
        if "=" not in item:
            raise EvaluateError(f"--map {item!r} is not from=to (e.g. --map calm=neutral)")
        k, v = item.split("=", 1)
        if not k.strip():
            raise EvaluateError(f"--map {item!r}: no label before '='")
        out[k.strip()] = v.strip()
    return out


def evaluate_run(cfg: EvaluateConfig, *, progress: bool = True) -> dict:
    """Score cfg.run on cfg.data; writes the files of the module docstring and returns metrics.json's content."""
    from emofuse.config import dump_config
    from emofuse.corpora.base import Manifest
    from emofuse.scoring.metrics import classification_metrics, confusion, per_class
    from emofuse.evaluation.report import save_confusion_png
    from emofuse.features.extract import extract
    from emofuse.inference.bundle import RAW, load_bundle, read_spec
    from emofuse.labels import map_labels
    from emofuse.evaluation.predictions import predict
    from emofuse.versions import library_versions

    spec = read_spec(cfg.run, cfg.unit)  # cheap checks first: nothing heavy is loaded before they pass
    run_cfg = _run_config(spec.path)
    if run_cfg is not None and run_cfg.train.multi_label:
        raise EvaluateError(f"{cfg.run} is a multi-label run; evaluate scores single-label runs")
    if run_cfg is not None and any(k > 0 for k in run_cfg.data.context.values()):
        raise EvaluateError(f"{cfg.run} reads dialogue context ({run_cfg.data.context}); evaluate does not build it yet")
    manifest = Manifest.load(cfg.data)
    try:
        mapping = map_labels(manifest.label_set, spec.labels, cfg.map)
    except ValueError as e:
        raise EvaluateError(f"--{e}") from None  # "--map calm=x: ..."
    df = manifest.df
    wanted = df["label"] != ""
    if cfg.splits:
        unknown = sorted(set(cfg.splits) - set(df["split"]))
        if unknown:
            raise EvaluateError(f"{cfg.data} has no split {', '.join(unknown)}; its splits: {', '.join(sorted(set(df['split'])))}")
        wanted &= df["split"].isin(cfg.splits)
    df = df[wanted].reset_index(drop=True)
    where = f" in split {', '.join(cfg.splits)}" if cfg.splits else ""
    if df.empty:
        raise EvaluateError(f"{cfg.data}: no labelled rows{where}; nothing to score")
    true_class = [mapping[lab] for lab in df["label"]]
    if not any(true_class):
        counts = ", ".join(f"{k} {v}" for k, v in Counter(df["label"]).most_common())
        raise EvaluateError(
            f"{cfg.data}: none of its {len(df)} labelled rows{where} has a class of the model after mapping "
            f"(labels: {counts}; the model's classes: {', '.join(spec.labels.classes)}); map them with --map LABEL=CLASS")

    bundle = load_bundle(cfg.run, unit=cfg.unit, device=cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cfg.cache) if cfg.cache else out / "cache"
    rows = Manifest(manifest.corpus, manifest.label_set, df, manifest.meta)
    classes = list(spec.labels.classes)
    y_true = np.array([classes.index(c) if c else -1 for c in true_class], dtype=np.int64)
    if any(s.encoder == RAW for s in spec.inputs.values()):  # the model reads the media itself: no extraction
        data, present = _raw_dataset(rows, bundle, y_true, run_cfg)
    else:
        encoders = list({id(e): e for e in bundle.encoders.values()}.values())  # one per spec: inputs may share one
        d = spec.decoding
        extract(rows, encoders, cache, batch_size=cfg.batch_size, video_sampling=d.video_sampling,
                face_size=d.face_size, no_face=d.no_face, progress=progress)
        data, present = _dataset(rows, bundle, cache, y_true, run_cfg)
    device = next(bundle.model.parameters()).device
    pred = predict(bundle.model, data, cfg.batch_size, device)
    y_pred = pred["probs"].argmax(1)
    usable = present.any(1)  # rows with at least one of the model's inputs
    scored = (y_true >= 0) & usable
    if not scored.any():
        raise EvaluateError(f"{cfg.data}: none of the {int((y_true >= 0).sum())} mapped rows has any of the model's "
                            f"inputs ({', '.join(spec.inputs)}); see {cache}")

    yt, yp = y_true[scored], y_pred[scored]
    cm = confusion(yt, yp, len(classes))
    unseen = {}
    for lab in sorted({lab for lab, c in zip(df["label"], true_class) if not c}):
        idx = np.flatnonzero((df["label"] == lab).to_numpy() & usable)
        unseen[lab] = {"rows": int((df["label"] == lab).sum()),
                       "predicted": dict(Counter(classes[int(j)] for j in y_pred[idx]).most_common())}
    warnings = list(bundle.warnings)
    if spec.info.get("unit") and not cfg.unit:
        warnings.append(f"the run holds several trained units (folds or seeds); scored with {spec.info['unit']} "
                        "(choose another with --unit)")
    for k, s in spec.inputs.items():
        n = int(present[:, list(spec.inputs).index(k)].sum())
        if n < len(df):
            warnings.append(f"input {k} ({s.encoder}): absent in {len(df) - n} of {len(df)} rows (masked, as in training)")
    if (~usable).any():
        warnings.append(f"{int((~usable).sum())} rows have none of the model's inputs and are not scored")
    absent_classes = [c for i, c in enumerate(classes) if not (yt == i).any()]
    result = {
        "run": str(spec.path.resolve()), "run_name": spec.name, "unit": spec.info.get("unit"),
        "trained_on": spec.info.get("corpus"), "data": str(Path(cfg.data).resolve()), "corpus": manifest.corpus,
        "synthetic": bool(manifest.meta.get("synthetic", False)), "splits": cfg.splits or "all labelled rows",
        "classes": classes, "label_map": mapping, "label_rows": dict(Counter(df["label"])),
        "rows": {"labelled": len(df), "scored": int(scored.sum()), "unseen_label": int((y_true < 0).sum()),
                 "no_input": int(((y_true >= 0) & ~usable).sum())},
        "test": classification_metrics(yt, yp, len(classes)),
        "per_class": per_class(yt, yp, classes),
        "confusion": cm.tolist(),
        "classes_absent_from_data": absent_classes,
        "unseen_labels": unseen,
        "encoders": {k: {"encoder": s.encoder, "trained_fingerprint": s.fingerprint,
                         "fingerprint": bundle.encoders[k].fingerprint() if k in bundle.encoders else s.fingerprint}
                     for k, s in spec.inputs.items()},
        "standardise": _standardise_mode(run_cfg),
        "cache": str(cache),
        "warnings": warnings,
        "versions": library_versions(),
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    _write_predictions(out / "predictions.csv", df, true_class, pred, y_pred, scored, classes)
    title = f"{spec.name} on {manifest.corpus}{' (synthetic)' if result['synthetic'] else ''}: {int(scored.sum())} rows"
    save_confusion_png(cm, classes, out / "confusion.png", title=title)
    dump_config(cfg, out / "evaluate.yaml")
    (out / "report.md").write_text(_report(cfg, result))
    return result


def _run_config(path: Path):
    """The run's RunConfig (run directories, and exports that copied it), or None."""
    from emofuse.config import ConfigError, RunConfig, load_config

    f = path / "config.yaml"
    if not f.is_file():
        return None
    try:
        return load_config(RunConfig, f)
    except ConfigError:
        return None  # an export's copy from another version: read_spec has what prediction needs


def _standardise_mode(run_cfg) -> str | dict:
    return run_cfg.data.standardise if run_cfg is not None else "train"


def _raw_dataset(rows, bundle, y_true: np.ndarray, run_cfg):
    """The rows' media for a model that reads them itself (fine-tuned face, text or audio models),
    decoded as its training decoded them (the run's data.raw), and the presence of each input."""
    from emofuse.data.raw import RawDataset

    if run_cfg is None:
        raise EvaluateError(f"{bundle.spec.path}: the model reads raw media, and how it decoded them is in the run's "
                            "config.yaml, which this folder lacks")
    inputs = bundle.spec.inputs.values()
    data = RawDataset.from_manifest(rows, {s.modality: "raw" for s in inputs}, run_cfg.data.raw)
    data.labels = np.asarray(y_true, np.int64)
    data.targets = np.zeros((len(y_true), len(bundle.spec.labels)), np.float32)
    data.targets[y_true >= 0, y_true[y_true >= 0]] = 1.0
    present = np.stack([np.asarray(data.columns[f"present_{s.modality}"], bool) for s in inputs], 1)
    return data, present


def _dataset(rows, bundle, cache: Path, y_true: np.ndarray, run_cfg):
    """The rows' features, keyed as the model's inputs and standardised as in training, and the
    (N, n_inputs) presence of each input."""
    from emofuse.data.dataset import FeatureDataset, ModalityFeatures, per_speaker_keys
    from emofuse.features.cache import load_features, row_keys

    ids = rows.df["id"].astype(str).tolist()
    feats = {}
    for key, s in bundle.spec.inputs.items():
        enc = bundle.encoders[key]
        # this encoder's fingerprint, each row computed from exactly its own media
        table = load_features(cache, rows.corpus, enc).lookup(ids, row_keys(rows.df, s.modality))
        if s.sequence and table.sequences is None:
            raise EvaluateError(f"input {key}: the model reads sequences, and {s.encoder} cached none")
        feats[key] = ModalityFeatures(enc.name, np.asarray(table.vectors, np.float32), np.asarray(table.present, bool),
                                      table.sequences if s.sequence else None, enc.fingerprint())
    n_classes = len(bundle.spec.labels)
    targets = np.zeros((len(ids), n_classes), np.float32)
    targets[y_true >= 0, y_true[y_true >= 0]] = 1.0
    texts = rows.df["text"].fillna("").astype(str).tolist() if "text" in rows.df else []
    data = FeatureDataset(ids, y_true, targets, feats, rows.df["speaker"].astype(str).tolist(),
                          texts=texts if any(t.strip() for t in texts) else None)  # transcripts: a prompt model reads them
    keys = per_speaker_keys(_standardise_mode(run_cfg), feats)
    if keys:  # as training did: each speaker by its own statistics (no labels read), then the run's
        data = data.per_speaker_standardised(keys=keys)
    present = np.stack([f.present for f in feats.values()], 1)  # (N, n_inputs)
    return data.standardised(bundle.standardiser), present


def _write_predictions(path: Path, df, true_class, pred: dict, y_pred, scored, classes) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "speaker", "label", "true", "predicted", "scored", *(f"p_{c}" for c in classes)])
        for i, (sid, spk, lab) in enumerate(zip(df["id"], df["speaker"], df["label"])):
            w.writerow([sid, spk, lab, true_class[i] or "", classes[int(y_pred[i])], int(scored[i]),
                        *(f"{p:.5f}" for p in pred["probs"][i])])


def _report(cfg: EvaluateConfig, r: dict) -> str:
    from emofuse.evaluation.report import metrics_table, per_class_table

    n = r["rows"]
    lines = [
        f"# {r['run_name']} evaluated on {r['corpus']}{' (SYNTHETIC corpus)' if r['synthetic'] else ''}",
        "",
        f"Command: `{cfg.command or '(from Python)'}`",
        "",
        f"Run: `{r['run']}`{' (unit ' + r['unit'] + ')' if r['unit'] else ''}, trained on {r['trained_on'] or '?'}. "
        f"Data: `{r['data']}` ({r['splits'] if isinstance(r['splits'], str) else 'splits ' + ', '.join(r['splits'])}).",
        "",
        f"Scored: {n['scored']} of {n['labelled']} labelled rows. Not scored: {n['unseen_label']} whose label is not "
        f"among the run's classes, {n['no_input']} with none of the model's inputs.",
        "",
        metrics_table({r["run_name"]: r["test"]}),
        "",
        "## Label map (the data's label -> the run's class)",
        "",
        "| label | class | rows |",
        "|---|---|---:|",
    ]
    for lab, c in r["label_map"].items():
        lines.append(f"| {lab} | {c or '(none: not scored)'} | {r['label_rows'].get(lab, 0)} |")
    if r["unseen_labels"]:
        lines += ["", "## Labels the run never saw (not scored)", "", "| label | rows | predicted as |", "|---|---:|---|"]
        for lab, u in r["unseen_labels"].items():
            lines.append(f"| {lab} | {u['rows']} | {', '.join(f'{c} {k}' for c, k in u['predicted'].items())} |")
    if r["classes_absent_from_data"]:
        lines += ["", f"The run's classes with no row in the data (every prediction of them is an error): "
                      f"{', '.join(r['classes_absent_from_data'])}."]
    lines += ["", "## Per class (scored rows)", "", per_class_table(r["per_class"]), "", "![confusion](confusion.png)"]
    if r["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in r["warnings"]]
    return "\n".join(lines) + "\n"
