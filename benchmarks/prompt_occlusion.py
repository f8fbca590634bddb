"""Which parts of its prompt does a trained `readout: prompt` model use? Occlusion at test time, no training.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/prompt_occlusion.py \
        runs/ablations/paired-llama-ablation/prompt --split test

Each trained unit (seed) of the run scores the split as it is, then with one part of its input taken away:

- "no words": the transcript's word tokens left out of the prompt (as `prompt_words: false` builds it);
- "<input> at its mean": that input's features replaced by zeros after standardisation, i.e. by the training
  rows' mean, so its soft token says nothing about the sample (the token itself and its name stay);
- "every input at its mean": all soft tokens uninformative, the words alone left.

A part whose removal costs little is one the model routes around; the ablation rows that train without a part
(`prompt-no-words`, `prompt-words-only`) say what a model can learn without it, this says what the trained one
relies on. The run's own manifest, cache and standardisation are used (its config.yaml), as `emofuse evaluate`
does. Prints a table (weighted F1 and accuracy in %, mean over units) and writes it to <run>/occlusion.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def conditions(data):
    """(name, dataset) for the split as it is and each occlusion."""
    from dataclasses import replace

    from emofuse.data.dataset import FeatureDataset

    def variant(words=True, mean=()):
        feats = {k: (replace(f, vectors=np.zeros_like(f.vectors),
                             sequences=None if f.sequences is None else [np.zeros_like(s) for s in f.sequences])
                     if k in mean else f) for k, f in data.features.items()}
        return FeatureDataset(data.ids, data.labels, data.targets, feats, data.speakers,
                              texts=data.texts if words else None)

    yield "as it is", variant()
    if data.texts is not None:
        yield "no words", variant(words=False)
    for k in data.features:
        yield f"{k} at its mean", variant(mean=(k,))
    yield "every input at its mean", variant(mean=tuple(data.features))


def occlusion(model, data, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Condition -> class probabilities (N, C) for the rows of `data` (standardised as the model was trained)."""
    from emofuse.evaluation.predictions import predict

    return {name: predict(model, ds, batch_size, torch.device("cpu"))["probs"]
            for name, ds in conditions(data)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a finished run folder of a readout: prompt model (every unit is scored)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    from emofuse.corpora.base import Manifest
    from emofuse.inference.bundle import _units, load_bundle, read_spec
    from emofuse.inference.evaluate import _dataset, _run_config
    from emofuse.scoring.metrics import classification_metrics

    spec = read_spec(args.run, _units(args.run)[0] if _units(args.run) else None)
    run_cfg = _run_config(spec.path)
    manifest = Manifest.load(run_cfg.data.manifest)
    df = manifest.df[manifest.df["split"] == args.split].reset_index(drop=True)
    rows = Manifest(manifest.corpus, manifest.label_set, df, manifest.meta)
    classes = list(spec.labels.classes)
    y = np.array([classes.index(c) for c in df["label"]], dtype=np.int64)
    units = _units(args.run) or [None]
    scores: dict[str, list[tuple[float, float]]] = {}
    for unit in units:
        bundle = load_bundle(args.run, unit=unit)
        data, _ = _dataset(rows, bundle, Path(run_cfg.data.cache), y, run_cfg)
        for name, probs in occlusion(bundle.model, data, args.batch_size).items():
            m = classification_metrics(y, probs.argmax(1), len(classes))
            scores.setdefault(name, []).append((m["weighted_f1"], m["accuracy"]))
            print(f"{unit or 'run'}: {name}: weighted F1 {100 * scores[name][-1][0]:.1f}", flush=True)
    base = np.mean([s[0] for s in scores["as it is"]])
    lines = [f"Occlusion at test time: `{args.run}`, split {args.split} ({len(df)} rows), units: "
             f"{', '.join(u or 'run' for u in units)}", "",
             "| input | weighted F1 | accuracy | change in weighted F1 |", "|---|---:|---:|---:|"]
    for name, s in scores.items():
        f1, acc = np.mean([v[0] for v in s]), np.mean([v[1] for v in s])
        sd = f" ± {100 * np.std([v[0] for v in s], ddof=1):.1f}" if len(s) > 1 else ""
        lines.append(f"| {name} | {100 * f1:.1f}{sd} | {100 * acc:.1f} | "
                     f"{'' if name == 'as it is' else f'{100 * (f1 - base):+.1f}'} |")
    lines += ["", "Mean (± sample std) over the units; an input \"at its mean\" is zero after the run's standardisation."]
    table = "\n".join(lines)
    (args.run / "occlusion.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
