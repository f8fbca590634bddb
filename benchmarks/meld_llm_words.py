"""MELD text through the LLM (issue 27, item 3): llama_topn's `readout: prompt` with words only (no soft
tokens; the LLM as a text classifier, LoRA alone trains), beside frozen MiniLM on the same rows.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/meld_llm_words.py \
        --manifest runs/meld-mpnet/meld-text/manifest.csv --cache runs/meld-mpnet/cache --train-rows 2000

The manifest is `emofuse bench meld-text`'s (MELD's official split). On CPU a stated, seeded and
stratified subset of the training utterances trains (`--train-rows`; 0: all of them); dev and test are
whole. Each row picks its epoch on dev weighted F1 and is scored once on test. Rows:
- `llm words-only, zero-shot`: SmolLM2's own answer, nothing trained;
- `llm words-only`: the same prompt, LoRA adapters trained through the one training loop;
- `unimodal(tokens)` on the same subset: frozen MiniLM token states, attention pooling, an MLP (the
  bench's row, whose full-data figure is the issue's reference, 59.3).

`--init-from RUN` starts the LLM rows from a finished run's kept weights: `--epochs 1 --init-from R` after a
one-epoch run R is its second epoch at the same constant learning rate; give it another `--seed` (with
`--train-rows 0` the seed only orders the batches), or the second epoch sees the first one's order again.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from emofuse.bench.meld_text import llm_words_run
from emofuse.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from emofuse.corpora.base import Manifest
from emofuse.training.run import train_run

def subset(manifest: Manifest, n: int, seed: int) -> Manifest:
    """`n` training rows drawn per class in proportion (seeded); dev and test whole."""
    df = manifest.df
    train = df[df["split"] == "train"]
    if not n or n >= len(train):
        return manifest
    rng = np.random.default_rng(seed)
    keep = []
    for _, g in train.groupby("label"):
        keep += list(rng.choice(g.index.to_numpy(), int(round(n * len(g) / len(train))), replace=False))
    out = df[(df["split"] != "train") | df.index.isin(keep)].reset_index(drop=True)
    return Manifest(manifest.corpus, manifest.label_set, out,
                    dict(manifest.meta, subset=f"{len(keep)} training rows, seed {seed}, stratified by class"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=Path("runs/meld-mpnet/meld-text/manifest.csv"))
    ap.add_argument("--cache", type=Path, default=Path("runs/meld-mpnet/cache"))
    ap.add_argument("--out", type=Path, default=Path("runs/meld-llm"))
    ap.add_argument("--train-rows", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", action="append", default=None, help="rows to run (default: all three)")
    ap.add_argument("--init-from", default="", help="the LLM rows start from this finished run's kept weights "
                                                     "(train.init_from): --epochs more of a run")
    a = ap.parse_args()
    m = subset(Manifest.load(a.manifest), a.train_rows, a.seed)
    path = a.out / f"manifest-{a.train_rows or 'all'}.csv"
    m.save(path)
    n_train = int((m.df["split"] == "train").sum())
    print(f"{path}: {n_train} training rows, {int((m.df['split'] == 'val').sum())} dev, "
          f"{int((m.df['split'] == 'test').sum())} test", flush=True)
    recipe = llm_words_run(m.label_set.name)  # the bench's row (bench meld-text -o llm_words=true); --epochs here
    llm, lr = dict(recipe.params), {"lr": recipe.train["lr"]}
    rows = {
        "llm words-only, zero-shot": ("llama_topn", llm | {"zero_shot": True}, lr, {}),
        "llm words-only": ("llama_topn", llm, lr, {}),
        "unimodal(tokens)": ("unimodal", {"hidden": 256, "dropout": 0.3, "pooling": "attention"},
                             {"lr": 1e-3, "max_epochs": 100, "patience": 15}, {"sequence": {"text": True}}),
    }
    table = []
    for name, (model, params, train, data) in rows.items():
        if a.only and name not in a.only:
            continue
        if a.init_from and model == "llama_topn":
            train = train | {"init_from": a.init_from}
        cfg = RunConfig(
            name=name.replace(" ", "_").replace(",", ""), out=str(a.out / "runs"),
            data=DataConfig(manifest=str(path), cache=str(a.cache), features={"text": "minilm"}, batch_size=32, **data),
            model=ModelConfig(name=model, params=params),
            train=TrainConfig(**({"max_epochs": a.epochs, "patience": a.epochs} | train), seeds=[a.seed], mse_weight=0.0,
                              monitor="val_weighted_f1", progress=True, logger="none"),
        )
        t0 = time.perf_counter()
        res = train_run(cfg)
        wall = time.perf_counter() - t0
        unit = res["units"][0]
        table.append((name, res["test"], unit.get("val", {}), wall, unit.get("fit_time_s"), unit.get("best_epoch")))
        print(f"{name}: test wF1 {100 * res['test']['weighted_f1']:.1f} ({wall:.0f} s)", flush=True)
    lines = [f"MELD text, {n_train} training rows (seed {a.seed}), dev and test whole; epoch chosen on dev weighted F1.",
             "", "| row | test wF1 | test accuracy | dev wF1 | wall s | fit s | best epoch |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, test, val, wall, fit, best in table:
        v = f"{100 * val['weighted_f1']:.1f}" if val else ""
        lines.append(f"| {name} | {100 * test['weighted_f1']:.1f} | {100 * test['accuracy']:.1f} | {v} | {wall:.0f} | "
                     f"{fit or 0:.0f} | {best if best is not None else ''} |")
    print("\n".join(lines))
    (a.out / f"table-{a.train_rows or 'all'}.md").write_text("\n".join(lines) + "\n")
    (a.out / f"results-{a.train_rows or 'all'}.json").write_text(json.dumps(table, indent=2, default=str))


if __name__ == "__main__":
    main()
