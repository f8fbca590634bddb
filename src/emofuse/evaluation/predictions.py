"""A model's predictions on a dataset, the decision rules that turn them into classes, their scores,
and the predictions.csv that records them: what training, `emofuse evaluate`, the bundles and the
benchmarks share. Nothing here needs Lightning."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from emofuse.data.dataset import FeatureDataset
from emofuse.models.base import EmotionModel
from emofuse.scoring.metrics import METRIC_NAMES, classification_metrics, multilabel_metrics


def eval_order(model: EmotionModel, ds) -> list[int] | None:
    """The order in which to evaluate a dataset whose rows differ in length (raw text: the model's
    `input_lengths`), shortest first, so that each batch pads to little; None to keep the rows' order."""
    lengths = model.input_lengths(ds)
    return None if lengths is None else sorted(range(len(lengths)), key=lengths.__getitem__)


def predict(model: EmotionModel, ds: FeatureDataset, batch_size: int, device: torch.device,
            multi_label: bool = False) -> dict:
    """Class probabilities (softmax; per-class sigmoids with multi_label), and the per-sample
    modality weights / Top-N selections where the model gives them, in the dataset's row order
    (raw text is run in length order, `eval_order`, and put back)."""
    model.eval().to(device)
    order = eval_order(model, ds)
    probs, weights, selected, ids = [], [], [], []
    with torch.no_grad():
        for batch in DataLoader(ds, batch_size=batch_size, shuffle=False, sampler=order, collate_fn=ds.collate):
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            out = model(batch)
            logits = out["logits"].float()
            probs.append((torch.sigmoid(logits) if multi_label else torch.softmax(logits, -1)).cpu().numpy())
            if "weights" in out:
                weights.append(out["weights"].float().cpu().numpy())
            if "selected" in out:
                selected.append(out["selected"].cpu().numpy())
            ids += batch["id"]
    pred = {
        "ids": ids,
        "probs": np.concatenate(probs) if probs else np.zeros((0, model.n_classes)),
        "weights": np.concatenate(weights) if weights else None,
        "selected": np.concatenate(selected) if selected else None,
    }
    if order is None:
        return pred
    back = np.argsort(np.asarray(order))  # position of each row in the evaluated order
    return {"ids": [ids[i] for i in back], **{k: (v[back] if v is not None else None) for k, v in pred.items() if k != "ids"}}


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
    weight_names, candidates = model.weight_names, model.candidate_names
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


def summarise(per_seed: list[dict]) -> dict:
    out = {}
    for k in METRIC_NAMES:
        vals = np.array([m[k] for m in per_seed])
        out[k] = float(vals.mean())
        out[f"{k}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    return out


def concat_predictions(preds: list[dict]) -> dict:
    """Several units' prediction dicts (predict()) as one: probs, weights, selected and ids in order."""
    merged = {k: (np.concatenate([p[k] for p in preds]) if preds[0].get(k) is not None else None)
              for k in ("probs", "weights", "selected")}
    merged["ids"] = [i for p in preds for i in p["ids"]]
    return merged
